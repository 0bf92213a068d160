package spotifyauth

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/caddyspotify/caddy-spotify-auth/internal/refresher"
	"github.com/caddyspotify/caddy-spotify-auth/internal/storagekeys"
)

func TestReloadsMoreFrequentThanTheMaintenanceIntervalDoNotPutOffTheSweep(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	// Every config of this app on this storage, the reloads' too, follows
	// the schedule kept across reloads.
	hs.h.maintenance.schedule.mu.Lock()
	hs.h.maintenance.schedule.every = 300 * time.Millisecond
	hs.h.maintenance.schedule.mu.Unlock()
	ctx := context.Background()
	stale := storagekeys.RefreshResults + "stale"
	if err := hs.h.storage.Store(ctx, stale, []byte("x")); err != nil {
		t.Fatal(err)
	}
	long := time.Now().Add(-refreshResultKeep - time.Hour)
	if err := os.Chtimes(hs.h.storage.(*certmagic.FileStorage).Filename(stale), long, long); err != nil {
		t.Fatal(err)
	}

	// A reload every 100 ms, each a new handler with a new background
	// loop: the sweep is still due 300 ms after the first one started.
	old := hs.h
	deadline := time.Now().Add(3 * time.Second)
	for hs.h.storage.Exists(ctx, stale) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		next := provision(t, &Handler{ClientID: testClientID, CookieSecrets: []string{secretA},
			AuthorizeURL: hs.fake.AuthorizeURL(), TokenURL: hs.fake.TokenURL(), APIURL: hs.fake.APIURL(),
			StorageRaw: hs.storage})
		if err := old.Cleanup(); err != nil {
			t.Fatal(err)
		}
		old = next
	}
	if hs.h.storage.Exists(ctx, stale) {
		t.Fatal("an expired refresh result stayed in storage through 3 s of reloads every 100 ms (maintenance every 300 ms)")
	}
}

func TestMaintenanceDropsExpiredEntriesFromTheInMemoryCaches(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	s := hs.h.shared
	now := time.Now()
	s.useState("used long ago", now.Add(-usedStateLifetime-time.Second))
	s.useState("used now", now)
	// The refresh coordinator's memory, as an hour ago and now (what it
	// keeps, and when each entry ends, is its own package's test).
	cfg := refresherConfig(hs.h)
	cfg.Now = func() time.Time { return now.Add(-time.Hour) }
	hourAgo := refresher.New(s.refresh, cfg)
	expired := tokensOf(sampleSession())
	expired.Expires = now.Add(-time.Hour).Unix()
	hourAgo.Remember(refresher.Tokens{AccessToken: "refreshed long ago"}, expired)
	hs.h.refresh.Remember(refresher.Tokens{AccessToken: "refreshed now"}, tokensOf(sampleSession()))
	hourAgo.PauseRetry("paused long ago")
	hs.h.refresh.PauseRetry("paused now")
	s.markRejected("rejected now")
	s.markRejected("rejected long ago") // its session never came back
	s.mu.Lock()
	s.rejected["rejected long ago"] = now.Add(-time.Second)
	s.mu.Unlock()

	hs.h.maintenance.maintainOnce(context.Background(), now)

	s.mu.Lock()
	defer s.mu.Unlock()
	for name, m := range map[string]map[string]bool{
		"used states":     keysOfList(s.usedState.Keys()),
		"rejected tokens": keysOf(s.rejected),
	} {
		if len(m) != 1 {
			t.Errorf("%s after maintenance: %v, want only the live entry", name, m)
		}
	}
	if n := s.refresh.Len(); n != 2 {
		t.Errorf("the refresh coordinator holds %d entries after maintenance, want the 2 live ones", n)
	}
	if n := s.nRejected.Load(); n != 1 {
		t.Errorf("nRejected %d after maintenance, want 1", n)
	}
}

func keysOfList(keys []string) map[string]bool {
	out := map[string]bool{}
	for _, k := range keys {
		out[k] = true
	}
	return out
}

func keysOf[V any](m map[string]V) map[string]bool {
	keys := map[string]bool{}
	for k := range m {
		keys[k] = true
	}
	return keys
}

// The hourly sweep of stored sessions happens on the schedule itself, not
// only when a test asks for it: a day of minute-by-minute runs, long after
// a stored session expired, deletes it. (Counted as due on runs that were
// not this instance's turn, it never ran.)
func TestTheScheduleSweepsExpiredStoredSessions(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, withStoredSessions())
	hs.h.maintenance.stopAndWait() // the test drives the schedule
	hs.login(hs.browser, "/")
	if n := countStoredSessions(t, hs.h.storage); n != 1 {
		t.Fatalf("%d stored sessions after login, want 1", n)
	}
	m := hs.h.maintenance.schedule
	m.mu.Lock()
	m.last, m.sessionsSwept = time.Time{}, nil // start afresh, in the future
	m.mu.Unlock()
	next := m.start(time.Now().Add(time.Duration(hs.h.SessionLifetime) + time.Hour))
	for range 24 * 60 {
		now := next.Add(time.Millisecond) // a timer fires a little late
		hs.h.maintenance.maintainOnce(context.Background(), now)
		next = m.ran(now)
		if countStoredSessions(t, hs.h.storage) == 0 {
			return
		}
	}
	t.Fatal("a day of scheduled maintenance never swept the expired stored session")
}

// A cookie-mode block of the same app on the same storage shares the
// schedule of a block with session_store storage; running first, it must
// not use up that block's hourly sweep of stored sessions (it has none
// to sweep).
func TestACookieBlockDoesNotUseUpTheStoredSessionSweep(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, withStoredSessions())
	cookies := provision(t, &Handler{ClientID: testClientID, CookieSecrets: []string{secretA}, StorageRaw: hs.storage,
		AuthorizeURL: hs.fake.AuthorizeURL(), TokenURL: hs.fake.TokenURL(), APIURL: hs.fake.APIURL()})
	for _, h := range []*Handler{hs.h, cookies} {
		h.maintenance.stopAndWait() // the test drives the schedule
	}
	if cookies.maintenance.schedule != hs.h.maintenance.schedule {
		t.Fatal("the two blocks do not share a schedule: the test would prove nothing")
	}
	hs.login(hs.browser, "/")
	ctx := context.Background()
	start := time.Now().Add(time.Duration(hs.h.SessionLifetime) + time.Hour)
	for minute := range 3 * 60 {
		now := start.Add(time.Duration(minute) * time.Minute)
		cookies.maintenance.maintainOnce(ctx, now) // the cookie block always first
		hs.h.maintenance.maintainOnce(ctx, now.Add(time.Second))
	}
	if n := countStoredSessions(t, hs.h.storage); n != 0 {
		t.Fatalf("%d expired stored sessions left after three hours, want 0", n)
	}
}

// A maintenance stopped midway (a reload) gives back the turn of the
// sweep it cut short: the next run, here or elsewhere, makes it.
func TestAStoppedSweepGivesItsTurnBack(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, withStoredSessions())
	hs.h.maintenance.stopAndWait()
	hs.login(hs.browser, "/")
	later := time.Now().Add(time.Duration(hs.h.SessionLifetime) + time.Hour)
	stopped, cancel := context.WithCancel(context.Background())
	storage := hs.h.storage
	hs.h.maintenance.storage = cancelOnList{Storage: storage, cancel: cancel} // stops during the sessions' sweep
	if hs.h.maintenance.maintainOnce(stopped, later) {
		t.Fatal("a stopped run says it swept")
	}
	hs.h.maintenance.storage = storage
	hs.h.maintenance.maintainOnce(context.Background(), later.Add(time.Minute))
	if n := countStoredSessions(t, storage); n != 0 {
		t.Fatalf("%d expired stored sessions after the run that followed the stopped one, want 0", n)
	}
}

// cancelOnList cancels when the sweep lists the stored sessions.
type cancelOnList struct {
	certmagic.Storage
	cancel context.CancelFunc
}

func (c cancelOnList) List(ctx context.Context, prefix string, recursive bool) ([]string, error) {
	if prefix != storagekeys.Sessions {
		return c.Storage.List(ctx, prefix, recursive)
	}
	c.cancel()
	return nil, context.Canceled
}
