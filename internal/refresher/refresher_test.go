package refresher

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/caddyspotify/caddy-spotify-auth/internal/seal"
	"github.com/caddyspotify/caddy-spotify-auth/internal/storagekeys"
)

// fakeClient hands out numbered access tokens, never rotating the refresh
// token (as Spotify since June 2026), or fails with fail.
type fakeClient struct {
	calls atomic.Int32
	clock *clock
	mu    sync.Mutex
	fail  error
}

var errBroken = errors.New("accounts service failing")

func (f *fakeClient) Refresh(ctx context.Context, refreshToken string) (Tokens, error) {
	n := f.calls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return Tokens{}, f.fail
	}
	return Tokens{AccessToken: "access-" + strconv.Itoa(int(n)), Expires: f.clock.Now().Add(time.Hour).Unix()}, nil
}

func (f *fakeClient) Judge(err error) (bool, *Pause) { return false, nil }

func (f *fakeClient) failWith(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = err
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// cluster is instances of one app sharing one storage, one clock and one
// Spotify; each instance has its own memory.
type cluster struct {
	t       *testing.T
	storage certmagic.Storage
	clock   *clock
	client  *fakeClient
	sealer  *seal.Sealer
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	t.Parallel()
	s, err := seal.New([][]byte{[]byte("0123456789abcdef0123456789abcdef")}, "refresh result")
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	return &cluster{t: t, storage: &certmagic.FileStorage{Path: t.TempDir()}, clock: clk,
		client: &fakeClient{clock: clk}, sealer: s}
}

func (cl *cluster) instance() *Coordinator {
	return New(NewState(), Config{Storage: cl.storage, Sealer: func() *seal.Sealer { return cl.sealer },
		Client: cl.client, Now: cl.clock.Now, TokenURL: "https://accounts.example/api/token", ClientID: "app",
		Leeway: 5 * time.Minute, LockWait: time.Minute})
}

// due is a session whose token is due for refresh but still works.
func (cl *cluster) due() Session {
	return Session{ID: storagekeys.SessionID("app", "alice", 1), Tokens: Tokens{
		AccessToken: "access-0", RefreshToken: "refresh", Scopes: "streaming",
		Expires: cl.clock.Now().Add(time.Minute).Unix()}}
}

func (cl *cluster) calls() int { return int(cl.client.calls.Load()) }

func TestConcurrentCallersOfOneSessionShareOneRefresh(t *testing.T) {
	cl := newCluster(t)
	c := cl.instance()
	const n = 16
	got := make([]Tokens, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { got[i], errs[i] = c.Refresh(context.Background(), cl.due()) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || got[i] != got[0] {
			t.Fatalf("caller %d: %+v %v, caller 0: %+v", i, got[i], errs[i], got[0])
		}
	}
	if cl.calls() != 1 {
		t.Fatalf("%d calls to Spotify for %d concurrent callers, want 1", cl.calls(), n)
	}
	if got[0].Scopes != "streaming" || got[0].RefreshToken != "refresh" {
		t.Fatalf("result %+v lost the unchanged grant or refresh token", got[0])
	}
}

func TestAnotherInstanceReusesThePublishedResult(t *testing.T) {
	cl := newCluster(t)
	first, err := cl.instance().Refresh(context.Background(), cl.due())
	if err != nil {
		t.Fatal(err)
	}
	second, err := cl.instance().Refresh(context.Background(), cl.due())
	if err != nil || second != first {
		t.Fatalf("second instance: %+v %v, want the first's %+v", second, err, first)
	}
	if cl.calls() != 1 {
		t.Fatalf("%d calls to Spotify, want 1", cl.calls())
	}
}

func TestAResultSealedForAnotherAppIsNotReused(t *testing.T) {
	cl := newCluster(t)
	if _, err := cl.instance().Refresh(context.Background(), cl.due()); err != nil {
		t.Fatal(err)
	}
	other := *cl
	other.sealer, _ = seal.New([][]byte{[]byte("another app's secret, 32 bytes long")}, "refresh result")
	if _, err := other.instance().Refresh(context.Background(), cl.due()); err != nil {
		t.Fatal(err)
	}
	if cl.calls() != 2 {
		t.Fatalf("%d calls to Spotify, want 2: the other app cannot open the first's result", cl.calls())
	}
}

func TestAStaleCookieFollowsTheRefreshesItsCopiesMade(t *testing.T) {
	cl := newCluster(t)
	a := cl.instance()
	old := cl.due()
	first, err := a.Refresh(context.Background(), old)
	if err != nil {
		t.Fatal(err)
	}
	cl.clock.advance(56 * time.Minute) // the first result is due now
	second, err := a.Refresh(context.Background(), Session{ID: old.ID, Tokens: first})
	if err != nil || second == first {
		t.Fatalf("second refresh: %+v %v", second, err)
	}
	// A browser that never got either refreshed cookie comes back to an
	// instance that made neither refresh.
	got, err := cl.instance().Refresh(context.Background(), old)
	if err != nil || got != second {
		t.Fatalf("the stale cookie got %+v %v, want the newest result %+v", got, err, second)
	}
	if cl.calls() != 2 {
		t.Fatalf("%d calls to Spotify, want 2", cl.calls())
	}
}

func TestEachRefreshHasItsOwnKeyWhenTheRefreshTokenIsKept(t *testing.T) {
	cl := newCluster(t)
	c := cl.instance()
	s := cl.due()
	seen := map[string]bool{}
	for i := range 3 {
		fresh, err := c.Refresh(context.Background(), s)
		if err != nil {
			t.Fatal(err)
		}
		if fresh.RefreshToken != s.RefreshToken || seen[fresh.AccessToken] || fresh.AccessToken == s.AccessToken {
			t.Fatalf("refresh %d gave %+v from %+v: an earlier result again", i, fresh, s.Tokens)
		}
		seen[fresh.AccessToken] = true
		s.Tokens = fresh
		cl.clock.advance(56 * time.Minute)
	}
	if cl.calls() != 3 {
		t.Fatalf("%d calls to Spotify for 3 due refreshes, want 3", cl.calls())
	}
}

func TestAFailedRefreshPausesEveryInstanceUntilThePauseEnds(t *testing.T) {
	cl := newCluster(t)
	a, b := cl.instance(), cl.instance()
	cl.client.failWith(errBroken)
	if _, err := a.Refresh(context.Background(), cl.due()); !errors.Is(err, errBroken) {
		t.Fatalf("first refresh: %v, want Spotify's failure", err)
	}
	for name, c := range map[string]*Coordinator{"the same instance": a, "another instance": b} {
		if _, err := c.Refresh(context.Background(), cl.due()); err != ErrPaused {
			t.Fatalf("%s during the pause: %v, want ErrPaused", name, err)
		}
	}
	if cl.calls() != 1 {
		t.Fatalf("%d calls to Spotify during the pause, want 1", cl.calls())
	}
	cl.clock.advance(DefaultRetryPause)
	cl.client.failWith(nil)
	if _, err := b.Refresh(context.Background(), cl.due()); err != nil || cl.calls() != 2 {
		t.Fatalf("after the pause: %v, %d calls, want a second call", err, cl.calls())
	}
}

func TestAnExpiredTokenIsRetriedDespiteThePauseButNotWithinASecond(t *testing.T) {
	cl := newCluster(t)
	c := cl.instance()
	expired := cl.due()
	expired.Expires = cl.clock.Now().Unix() - 1
	cl.client.failWith(errBroken)
	if _, err := c.Refresh(context.Background(), expired); !errors.Is(err, errBroken) {
		t.Fatal(err)
	}
	if _, err := c.Refresh(context.Background(), expired); err != ErrFailedRecently {
		t.Fatalf("at once: %v, want ErrFailedRecently", err)
	}
	cl.clock.advance(ExpiredRetryInterval)
	if _, err := c.Refresh(context.Background(), expired); !errors.Is(err, errBroken) || cl.calls() != 2 {
		t.Fatalf("a second later: %v with %d calls, want Spotify asked again", err, cl.calls())
	}
}

func TestTheForcedPauseHoldsAcrossTheSessionsRefreshes(t *testing.T) {
	cl := newCluster(t)
	a := cl.instance()
	s := cl.due()
	s.Expires = cl.clock.Now().Add(time.Hour).Unix() // not due: the upstream said it is dead
	s.Forced = true
	fresh, err := a.Refresh(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	// The new tokens have a new key; the session id is what the pause keeps.
	again := Session{ID: s.ID, Tokens: fresh, Forced: true}
	for name, c := range map[string]*Coordinator{"this instance": a, "another instance": cl.instance()} {
		if _, err := c.Refresh(context.Background(), again); err != ErrPaused {
			t.Fatalf("%s: a second forced refresh gave %v, want ErrPaused", name, err)
		}
	}
	cl.clock.advance(DefaultForcedPause)
	if _, err := a.Refresh(context.Background(), again); err != nil || cl.calls() != 2 {
		t.Fatalf("after the pause: %v with %d calls", err, cl.calls())
	}
}

func TestTheGatePausesEachScopeAsSpotifyAsked(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		noted   Scope
		premium bool
		paused  map[Scope]bool
	}{
		{"a login's 429 pauses logins only", Logins, false, map[Scope]bool{Logins: true}},
		{"a refresh's 429 pauses logins and refreshes, not Web API calls", Calls, false, map[Scope]bool{Logins: true, Calls: true}},
		{"the owner's lapsed Premium met at login pauses everything", Logins, true, map[Scope]bool{Logins: true, Calls: true, WebAPI: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := newCluster(t)
			c := cl.instance()
			now := cl.clock.Now()
			c.Note(ctx, tc.noted, Pause{Premium: tc.premium, Wait: time.Minute, Said: "wait"}, now)
			for _, scope := range []Scope{Logins, Calls, WebAPI} {
				p := c.Check(ctx, scope, now)
				if (p != nil) != tc.paused[scope] {
					t.Fatalf("scope %d: paused %v, want %v", scope, p != nil, tc.paused[scope])
				}
				if p != nil && (p.Premium != tc.premium || p.Wait != time.Minute || p.Said != "wait") {
					t.Fatalf("scope %d: %+v", scope, p)
				}
			}
			// Another instance learns app-wide pauses from storage (not
			// for Web API calls: that path reads no storage).
			other := cl.instance()
			if p := other.Check(ctx, Calls, now); (p != nil) != tc.paused[Calls] {
				t.Fatalf("another instance: paused %v, want %v", p != nil, tc.paused[Calls])
			}
			if tc.paused[Calls] {
				if p := other.Check(ctx, WebAPI, now); (p != nil) != tc.premium {
					t.Fatalf("another instance's Web API calls: paused %v, want %v", p != nil, tc.premium)
				}
			}
			for _, scope := range []Scope{Logins, Calls, WebAPI} {
				if p := c.Check(ctx, scope, now.Add(time.Minute)); p != nil {
					t.Fatalf("scope %d still paused once the wait passed: %+v", scope, p)
				}
			}
		})
	}
}

func TestARefreshDuringABackoffIsNotSentToSpotify(t *testing.T) {
	cl := newCluster(t)
	c := cl.instance()
	c.Note(context.Background(), Calls, Pause{Wait: time.Minute}, cl.clock.Now())
	var p *Pause
	if _, err := c.Refresh(context.Background(), cl.due()); !errors.As(err, &p) || cl.calls() != 0 {
		t.Fatalf("refresh during the back-off: %v, %d calls", err, cl.calls())
	}
}

func TestAnInstanceWaitingForTheLockTakesThePublishedResult(t *testing.T) {
	cl := newCluster(t)
	ctx := context.Background()
	s := cl.due()
	// Another instance holds the refresh's lock: it is calling Spotify.
	if err := cl.storage.Lock(ctx, storagekeys.RefreshLock(s.Key())); err != nil {
		t.Fatal(err)
	}
	done := make(chan Tokens)
	go func() {
		got, err := cl.instance().Refresh(ctx, s)
		if err != nil {
			t.Error(err)
		}
		done <- got
	}()
	// The holder publishes its result; the waiting instance picks it up
	// rather than calling Spotify itself.
	want := Tokens{AccessToken: "from-the-holder", RefreshToken: "refresh", Scopes: "streaming", Expires: cl.clock.Now().Add(time.Hour).Unix()}
	cl.instance().publish(ctx, s.Key(), want)
	if got := <-done; got != want {
		t.Fatalf("got %+v, want the holder's %+v", got, want)
	}
	if cl.calls() != 0 {
		t.Fatalf("%d calls to Spotify while another instance held the lock", cl.calls())
	}
	if err := cl.storage.Unlock(ctx, storagekeys.RefreshLock(s.Key())); err != nil {
		t.Fatal(err)
	}
}

func TestPruneKeepsOnlyWhatStillMatters(t *testing.T) {
	cl := newCluster(t)
	c := cl.instance()
	c.Refresh(context.Background(), cl.due()) //nolint:errcheck // a remembered result
	cl.client.failWith(errBroken)
	s := cl.due()
	s.ID, s.AccessToken = "another session", "another token"
	c.Refresh(context.Background(), s) //nolint:errcheck // a pause and a failure
	if n := c.state.Len(); n != 3 {
		t.Fatalf("%d entries, want 3", n)
	}
	c.state.Prune(cl.clock.Now().Add(2 * time.Hour))
	if n := c.state.Len(); n != 0 {
		t.Fatalf("%d entries two hours later, want 0", n)
	}
}

// brokenLocks is a storage whose locks fail (a networked store down).
type brokenLocks struct{ certmagic.Storage }

var errNoLock = errors.New("lock unavailable")

func (brokenLocks) Lock(context.Context, string) error { return errNoLock }

type uncoordinated struct {
	nopObserver
	n atomic.Int32
}

func (u *uncoordinated) Uncoordinated(error) { u.n.Add(1) }

func TestAStorageThatCannotLockStillRefreshesAndSaysSoOnce(t *testing.T) {
	cl := newCluster(t)
	obs := &uncoordinated{}
	c := New(NewState(), Config{Storage: brokenLocks{cl.storage}, Sealer: func() *seal.Sealer { return cl.sealer },
		Client: cl.client, Now: cl.clock.Now, Observer: obs})
	s := cl.due()
	for i := range 2 {
		s.ID, s.AccessToken = "session "+strconv.Itoa(i), "access "+strconv.Itoa(i)
		if _, err := c.Refresh(context.Background(), s); err != nil {
			t.Fatalf("refresh %d without a lock: %v", i, err)
		}
	}
	if cl.calls() != 2 || obs.n.Load() != 1 {
		t.Fatalf("%d calls, told %d times, want 2 calls and one word of it within a minute", cl.calls(), obs.n.Load())
	}
}

func TestAFailedAppTokenRenewalWaitsTheRetryPause(t *testing.T) {
	cl := newCluster(t)
	c := cl.instance()
	if c.RetryPaused("app-token") {
		t.Fatal("paused before any failure")
	}
	c.PauseRetry("app-token")
	if !c.RetryPaused("app-token") || c.RetryPaused("another") {
		t.Fatal("the pause does not hold for its key alone")
	}
	cl.clock.advance(DefaultRetryPause)
	if c.RetryPaused("app-token") {
		t.Fatal("still paused once the retry pause passed")
	}
}

// A browser that missed its refreshed cookie follows the result it
// missed; when that result is due again and its own refresh fails, the
// result still works and is what the browser gets, not its own dead
// token or an error.
func TestAStaleCookieGetsTheWorkingResultItMissedWhenTheNextRefreshFails(t *testing.T) {
	cl := newCluster(t)
	c := cl.instance()
	old := cl.due()
	first, err := c.Refresh(context.Background(), old)
	if err != nil {
		t.Fatal(err)
	}
	cl.clock.advance(56 * time.Minute) // the result is due, not yet expired; the old token is dead
	cl.client.failWith(errBroken)
	got, err := c.Refresh(context.Background(), old)
	if err != nil || got != first {
		t.Fatalf("the stale cookie got %+v %v, want the working result it missed %+v", got, err, first)
	}
	cl.clock.advance(5 * time.Minute) // the result has expired too
	if _, err := c.Refresh(context.Background(), old); err == nil {
		t.Fatal("a stale cookie whose result has expired too was given a token")
	}
}

// A browser that missed the cookie of a refresh made on the upstream's
// word still carries the dead token: the pause of such refreshes must not
// keep the result made already from it, here or on another instance.
func TestAForcedRefreshInItsPauseGetsTheResultMadeAlready(t *testing.T) {
	cl := newCluster(t)
	a := cl.instance()
	s := cl.due()
	s.Expires = cl.clock.Now().Add(time.Hour).Unix()
	s.Forced = true
	fresh, err := a.Refresh(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*Coordinator{"this instance": a, "another instance": cl.instance()} {
		got, err := c.Refresh(context.Background(), s)
		if err != nil || got != fresh {
			t.Fatalf("%s: the lost cookie got %+v %v, want the result made already %+v", name, got, err, fresh)
		}
	}
	if cl.calls() != 1 {
		t.Fatalf("%d calls to Spotify, want 1", cl.calls())
	}
}

// Spotify's back-off and the second after a failure hold back calls to
// Spotify, not a result another instance published.
func TestAPauseDoesNotHideAResultAnotherInstancePublished(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		// pause makes b pause; published is a's refresh, before or after it.
		run func(t *testing.T, cl *cluster, a, b *Coordinator, s Session) (published Tokens)
	}{
		{"Spotify's back-off (app-wide: after the result)", func(t *testing.T, cl *cluster, a, b *Coordinator, s Session) Tokens {
			published, err := a.Refresh(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			b.Note(ctx, Calls, Pause{Wait: time.Minute}, cl.clock.Now())
			return published
		}},
		{"b's failure a moment ago (before the result)", func(t *testing.T, cl *cluster, a, b *Coordinator, s Session) Tokens {
			cl.client.failWith(errBroken)
			if _, err := b.Refresh(ctx, s); err == nil {
				t.Fatal("the failing refresh succeeded")
			}
			cl.client.failWith(nil)
			published, err := a.Refresh(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			return published
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := newCluster(t)
			s := cl.due()
			s.Expires = cl.clock.Now().Add(-time.Second).Unix() // expired: no token to serve meanwhile
			a, b := cl.instance(), cl.instance()
			published := tc.run(t, cl, a, b, s)
			calls := cl.calls()
			got, err := b.Refresh(ctx, s)
			if err != nil || got != published {
				t.Fatalf("b: %+v %v, want a's published result %+v", got, err, published)
			}
			if cl.calls() != calls {
				t.Fatalf("b called Spotify during its pause")
			}
		})
	}
}

// countedLoads counts the storage loads of published results.
type countedLoads struct {
	certmagic.Storage
	results atomic.Int32
}

func (c *countedLoads) Load(ctx context.Context, key string) ([]byte, error) {
	if strings.HasPrefix(key, storagekeys.RefreshResults) {
		c.results.Add(1)
	}
	return c.Storage.Load(ctx, key)
}

// During Spotify's back-off (up to an hour), a session due for refresh
// whose token still works is served that token: looking for another
// instance's result costs it no storage read per request.
func TestABackoffCostsAWorkingTokenNoStorageRead(t *testing.T) {
	cl := newCluster(t)
	loads := &countedLoads{Storage: cl.storage}
	c := New(NewState(), Config{Storage: loads, Sealer: func() *seal.Sealer { return cl.sealer },
		Client: cl.client, Now: cl.clock.Now, Leeway: 5 * time.Minute})
	c.Note(context.Background(), Calls, Pause{Wait: time.Hour}, cl.clock.Now())
	var p *Pause
	for range 10 {
		if _, err := c.Refresh(context.Background(), cl.due()); !errors.As(err, &p) {
			t.Fatalf("refresh during the back-off: %v, want the pause", err)
		}
	}
	if n := loads.results.Load(); n != 0 {
		t.Fatalf("%d storage reads of published results for a token that still works, want 0", n)
	}
	expired := cl.due()
	expired.Expires = cl.clock.Now().Add(-time.Second).Unix()
	if _, err := c.Refresh(context.Background(), expired); !errors.As(err, &p) || loads.results.Load() != 1 {
		t.Fatalf("an expired token during the back-off: %v after %d reads, want the pause after one read", err, loads.results.Load())
	}
}

// During a back-off, a stale cookie still follows the refreshes its
// copies made, through a result in its last seconds, to one that works.
func TestAStaleCookieFollowsPublishedRefreshesDuringABackoff(t *testing.T) {
	cl := newCluster(t)
	a := cl.instance()
	s := cl.due()
	first, err := a.Refresh(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	cl.clock.advance(56 * time.Minute) // the first result is due in its turn
	second, err := a.Refresh(context.Background(), Session{ID: s.ID, Tokens: first})
	if err != nil || second == first {
		t.Fatalf("second refresh: %+v %v", second, err)
	}
	cl.clock.advance(4*time.Minute - time.Second) // the first result has a second left
	b := cl.instance()
	b.Note(context.Background(), Calls, Pause{Wait: time.Hour}, cl.clock.Now())
	got, err := b.Refresh(context.Background(), s)
	if err != nil || got != second {
		t.Fatalf("the stale cookie during the back-off: %+v %v, want the second result %+v", got, err, second)
	}
}

// Two sites of one Spotify app with different keys (staging and
// production) share a storage: each keeps to the back-off it recorded.
// Under one name, each overwrote the other's record with one the other
// cannot open, and its next instance called Spotify during the pause.
func TestEachKeySetKeepsItsOwnBackoffRecord(t *testing.T) {
	cl := newCluster(t)
	other, err := seal.New([][]byte{[]byte("another site's secret, same app.")}, "refresh result")
	if err != nil {
		t.Fatal(err)
	}
	instance := func(s *seal.Sealer) *Coordinator {
		return New(NewState(), Config{Storage: cl.storage, Sealer: func() *seal.Sealer { return s },
			Client: cl.client, Now: cl.clock.Now, TokenURL: "https://accounts.example/api/token", ClientID: "app"})
	}
	ctx, now := context.Background(), cl.clock.Now()
	instance(cl.sealer).Note(ctx, Calls, Pause{Wait: time.Minute}, now)
	instance(other).Note(ctx, Calls, Pause{Wait: time.Minute}, now)
	for name, s := range map[string]*seal.Sealer{"the first site": cl.sealer, "the second site": other} {
		if p := instance(s).Check(ctx, Calls, now); p == nil {
			t.Errorf("another instance of %s does not see its back-off", name)
		}
	}
	// The first site rotates its keys: a new key seals, the old still
	// opens. An instance started after the rotation keeps to the pause
	// recorded before it.
	rotated, err := seal.New([][]byte{[]byte("the first site's next secret...."), []byte("0123456789abcdef0123456789abcdef")}, "refresh result")
	if err != nil {
		t.Fatal(err)
	}
	if p := instance(rotated).Check(ctx, Calls, now); p == nil {
		t.Error("after a key rotation, an instance does not see the back-off recorded before it")
	}
}
