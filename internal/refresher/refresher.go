// Package refresher coordinates refreshes of Spotify access tokens: once
// per session in this process (single flight, and the memory of recent
// results for a browser that missed its refreshed cookie), once for all
// instances sharing Caddy's storage (a lock, then the result published,
// sealed, for the others), with the pauses that keep an outage from
// becoming a storm of calls (after a failure, after a refresh on the
// upstream's word) and the one gate that says whether Spotify may be
// called at all (its 429s, the owner's lapsed Premium).
//
// The caller (the HTTP handler) gives it a storage, a sealer, a token
// client and a clock; it keeps only the request side.
package refresher

import (
	"context"
	"errors"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/caddyspotify/caddy-spotify-auth/internal/seal"
	"github.com/caddyspotify/caddy-spotify-auth/internal/storagekeys"
)

// Tokens are what a refresh renews.
type Tokens struct {
	AccessToken  string
	RefreshToken string
	Expires      int64  // unix seconds
	Scopes       string // as granted; "" from the client: unchanged
}

// Key names one refresh: of this access token, with this refresh token.
// Results are remembered and published under it. It changes with every
// refresh, whether or not Spotify rotates the refresh token.
func (t Tokens) Key() string { return storagekeys.RefreshKey(t.RefreshToken, t.AccessToken) }

// Usable reports whether the access token may still be passed on while
// its refresh fails: it must outlive the trip to the upstream and the
// upstream's own call with it (the soak saw tokens in their last
// milliseconds arrive dead).
func (t Tokens) Usable(now time.Time) bool { return t.Expires-MinTokenLeft > now.Unix() }

// MinTokenLeft (seconds) is the least life a token must have left to be
// passed upstream when it could not be refreshed.
const MinTokenLeft = 2

// Session is what identifies a session's refresh.
type Session struct {
	// ID names the session across its refreshes and copies
	// (storagekeys.SessionID): pauses are keyed by it, so no rotation of
	// tokens can reset them.
	ID string
	Tokens
	// Forced: the upstream found the access token dead, though it is not
	// due. At most one such refresh per session every ForcedPause.
	Forced bool
}

// TokenClient redeems refresh tokens at Spotify.
type TokenClient interface {
	// Refresh returns the new tokens (RefreshToken "" if Spotify kept it,
	// Scopes "" if it said nothing) or the failure.
	Refresh(ctx context.Context, refreshToken string) (Tokens, error)
	// Judge says what a failure of Refresh means: whether the grant is
	// gone (no pause: nothing to retry) and whether Spotify asked every
	// call to wait (a pause for the gate; nil if not).
	Judge(err error) (revoked bool, pause *Pause)
}

// Errors Refresh returns besides the token client's own and a *Pause.
var (
	// ErrPaused: a refresh of this session failed a moment ago (or one on
	// the upstream's word was made lately) and its token still works, so
	// it is not tried again yet: serve the current token.
	ErrPaused = errors.New("refresh paused")
	// ErrFailedRecently: a refresh of this session failed less than a
	// second ago and its token has expired: answer at once, so clients
	// retrying without pause cannot turn an outage into a storm.
	ErrFailedRecently = errors.New("refresh failed a moment ago")
)

// Config builds a Coordinator.
type Config struct {
	Storage certmagic.Storage
	// Sealer returns the current sealer of published records (keys rotate).
	Sealer func() *seal.Sealer
	Client TokenClient
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// TokenURL and ClientID name the app, for its shared back-off.
	TokenURL, ClientID string
	// Leeway: a result due within it is followed (refreshed again).
	Leeway time.Duration
	// RetryPause is how long a session whose refresh failed is served its
	// still-valid token before refresh is tried again, on every instance.
	// Default 10s.
	RetryPause time.Duration
	// ForcedPause bounds refreshes asked for by the upstream. Default 5m.
	ForcedPause time.Duration
	// LockWait bounds waiting for another instance's refresh. Default 12s.
	LockWait time.Duration
	// MaxPause caps a published pause (clock skew, a bad entry). Default 1h.
	MaxPause time.Duration
	// Observer is told what happens (metrics, the operator's log). Optional.
	Observer Observer
}

// Observer is told what the coordinator did and met.
type Observer interface {
	Refreshed()       // Spotify gave a new token
	Reused()          // another instance's published result was used
	Failed(err error) // a refresh failed at Spotify or the gate
	// Paused: Spotify asked every call of the app to wait (a 429, the
	// owner's lapsed Premium); no instance calls it until the pause ends.
	Paused(p Pause)
	// Uncoordinated: the storage failed to coordinate (a lock, a
	// publish), so this instance acts alone for now: correct, but another
	// may refresh the same session too. Told at most once a minute.
	Uncoordinated(err error)
}

type nopObserver struct{}

func (nopObserver) Refreshed()          {}
func (nopObserver) Reused()             {}
func (nopObserver) Failed(error)        {}
func (nopObserver) Paused(Pause)        {}
func (nopObserver) Uncoordinated(error) {}

// Timing defaults and fixed intervals.
const (
	DefaultRetryPause  = 10 * time.Second
	DefaultForcedPause = 5 * time.Minute
	defaultLockWait    = 12 * time.Second
	defaultMaxPause    = time.Hour
	// ExpiredRetryInterval is how soon a session whose token has expired
	// may retry a refresh that Spotify failed.
	ExpiredRetryInterval = time.Second
	// maxRefreshHops bounds how far a stale cookie follows the refreshes
	// its copies made since it was set.
	maxRefreshHops = 4
	// resultPollInterval is how often an instance waiting for another's
	// refresh looks for its result: sooner than the lock would tell it
	// (file_system storage re-checks a held lock only every second).
	resultPollInterval = 50 * time.Millisecond
	// coordinationWarnInterval keeps a broken storage lock from flooding the log.
	coordinationWarnInterval = time.Minute
)

// Coordinator coordinates the refreshes of one config around the State
// that outlives it.
type Coordinator struct {
	state *State
	cfg   Config
	obs   Observer
}

// New returns a Coordinator over state with cfg's defaults filled in.
func New(state *State, cfg Config) *Coordinator {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RetryPause <= 0 {
		cfg.RetryPause = DefaultRetryPause
	}
	if cfg.ForcedPause <= 0 {
		cfg.ForcedPause = DefaultForcedPause
	}
	if cfg.LockWait <= 0 {
		cfg.LockWait = defaultLockWait
	}
	if cfg.MaxPause <= 0 {
		cfg.MaxPause = defaultMaxPause
	}
	c := &Coordinator{state: state, cfg: cfg, obs: cfg.Observer}
	if c.obs == nil {
		c.obs = nopObserver{}
	}
	return c
}

// Refresh renews the session's tokens, once however many callers (here,
// and on the instances sharing the storage) ask at the same moment. A
// session whose refresh happened already (its answer never reached the
// browser) gets that result, and follows it if that is due again. The
// returned Tokens always carry scopes.
func (c *Coordinator) Refresh(ctx context.Context, s Session) (Tokens, error) {
	now := c.cfg.Now()
	if (s.Forced && c.forcedPaused(ctx, s.ID, now)) || (s.Usable(now) && c.state.before(c.state.paused, s.ID, now, 0)) {
		// A pause holds back calls to Spotify, not a result made already:
		// a browser that missed its refreshed cookie gets that, not the
		// token the upstream found dead. (Storage is read only on the
		// upstream's word; a token merely due still works.)
		if fresh, ok := c.madeAlready(ctx, s.Tokens, now, s.Forced); ok && fresh.Usable(now) {
			return fresh, nil
		}
		return Tokens{}, ErrPaused
	}
	fresh, err := c.follow(ctx, s)
	if err == nil && s.Forced {
		// At most one refresh per session on the upstream's word every
		// few minutes, whatever the upstream keeps saying and however
		// often Spotify rotates the refresh token.
		c.pauseForced(ctx, s.ID, c.cfg.Now())
	}
	return fresh, err
}

// follow refreshes, following results made from this cookie's copies.
func (c *Coordinator) follow(ctx context.Context, s Session) (Tokens, error) {
	// The shared call must not die with whichever request started it.
	ctx = context.WithoutCancel(ctx)
	first := s.Key()
	cur := s.Tokens
	for hop := 0; ; hop++ {
		fresh, earlier, err := c.once(ctx, s.ID, cur)
		if err != nil {
			if hop > 0 && cur.Usable(c.cfg.Now()) {
				// The result this cookie missed is due again and its own
				// refresh failed (or is paused), but it still works:
				// that, not the cookie's dead token or an error page.
				return cur, nil
			}
			return Tokens{}, err
		}
		now := c.cfg.Now()
		if !earlier || hop == maxRefreshHops || time.Unix(fresh.Expires, 0).Add(-c.cfg.Leeway).After(now) {
			if key := cur.Key(); key != first {
				c.state.remember(first, fresh, now) // one hop next time
			}
			return fresh, nil
		}
		cur = fresh
	}
}

// Remembered returns what refreshing t gave, in this process, lately: a
// call that found t dead may take a refresh made meanwhile by another.
func (c *Coordinator) Remembered(t Tokens) (Tokens, bool) {
	return c.state.remembered(t.Key(), c.cfg.Now())
}

// Remember keeps fresh as what refreshing old gave.
func (c *Coordinator) Remember(old, fresh Tokens) {
	c.state.remember(old.Key(), fresh, c.cfg.Now())
}

// once returns what refreshing cur gives: a result remembered here or
// published by another instance (earlier), or a new one from Spotify.
func (c *Coordinator) once(ctx context.Context, id string, cur Tokens) (Tokens, bool, error) {
	key := cur.Key()
	if fresh, ok := c.state.remembered(key, c.cfg.Now()); ok {
		return fresh, true, nil
	}
	type result struct {
		t       Tokens
		earlier bool
	}
	v, err, _ := c.state.flight.Do(key, func() (any, error) {
		now := c.cfg.Now()
		if fresh, ok := c.state.remembered(key, now); ok {
			return result{fresh, true}, nil
		}
		p := c.Check(ctx, Calls, now)
		failedRecently := !cur.Usable(now) && c.state.before(c.state.failed, id, now, ExpiredRetryInterval)
		if p != nil || failedRecently {
			// Spotify may not be called now, but another instance may
			// have refreshed this already. Storage is read only for a
			// token that no longer works: one that does is served
			// meanwhile, and a back-off of an hour must not cost a
			// storage read per request of every session due.
			if fresh, ok := c.madeAlready(ctx, cur, now, !cur.Usable(now)); ok {
				return result{fresh, true}, nil
			}
			if p != nil {
				c.obs.Failed(p)
				return nil, p
			}
			return nil, ErrFailedRecently
		}
		fresh, published, err := c.acrossInstances(ctx, key, id, cur)
		if err != nil {
			return nil, err
		}
		return result{c.keep(key, cur, fresh, now), published}, nil
	})
	if err != nil {
		return Tokens{}, false, err
	}
	r := v.(result)
	return r.t, r.earlier, nil
}

// madeAlready returns what refreshing cur gave already: remembered here
// or, with readStorage, published by another instance. It may be due
// again itself (follow follows it).
func (c *Coordinator) madeAlready(ctx context.Context, cur Tokens, now time.Time, readStorage bool) (Tokens, bool) {
	key := cur.Key()
	if fresh, ok := c.state.remembered(key, now); ok {
		return fresh, true
	}
	if !readStorage {
		return Tokens{}, false
	}
	fresh, ok := c.published(ctx, key)
	if !ok {
		return Tokens{}, false
	}
	return c.keep(key, cur, fresh, now), true
}

// keep remembers fresh as what refreshing cur (named key) gave, with
// cur's scopes if Spotify said nothing of them (the grant is unchanged).
func (c *Coordinator) keep(key string, cur, fresh Tokens, now time.Time) Tokens {
	if fresh.Scopes == "" {
		fresh.Scopes = cur.Scopes
	}
	c.state.remember(key, fresh, now)
	return fresh
}

// call asks Spotify for new tokens. A failure pauses the session's
// refreshes (id), here and on the other instances.
func (c *Coordinator) call(ctx context.Context, id string, cur Tokens) (Tokens, error) {
	fresh, err := c.cfg.Client.Refresh(ctx, cur.RefreshToken)
	if err != nil {
		revoked, pause := c.cfg.Client.Judge(err)
		now := c.cfg.Now()
		if pause != nil {
			c.Note(ctx, Calls, *pause, now)
		}
		if !revoked {
			c.state.set(c.state.paused, id, now.Add(c.cfg.RetryPause), now)
			c.state.set(c.state.failed, id, now, now)
			c.storePause(ctx, storagekeys.Paused+id, sharedPause{Until: now.Add(c.cfg.RetryPause).UnixNano(), Kind: kindFailed})
		}
		c.obs.Failed(err)
		return Tokens{}, err
	}
	c.obs.Refreshed()
	if fresh.RefreshToken == "" {
		fresh.RefreshToken = cur.RefreshToken // Spotify kept it
	}
	return fresh, nil
}

// pauseForced starts the pause of refreshes on the upstream's word, here
// and for the other instances.
func (c *Coordinator) pauseForced(ctx context.Context, id string, now time.Time) {
	until := now.Add(c.cfg.ForcedPause)
	c.state.set(c.state.forced, id, until, now)
	c.storePause(ctx, storagekeys.ForcedPaused+id, sharedPause{Until: until.UnixNano(), Kind: kindForced})
}

// forcedPaused reports whether a refresh on the upstream's word is paused
// for this session, as this instance knows or another published. Storage
// is read only here, when an upstream has just rejected a token.
func (c *Coordinator) forcedPaused(ctx context.Context, id string, now time.Time) bool {
	if c.state.before(c.state.forced, id, now, 0) {
		return true
	}
	p, ok := c.loadPause(ctx, storagekeys.ForcedPaused+id, now)
	if ok {
		c.state.set(c.state.forced, id, time.Unix(0, p.Until), now)
	}
	return ok
}

// Once runs fn once for all concurrent callers naming key (the app
// token's renewal: one call per instance at a time).
func (c *Coordinator) Once(key string, fn func() (any, error)) (any, error) {
	v, err, _ := c.state.flight.Do("once:"+key, fn)
	return v, err
}

// RetryPaused reports whether a renewal named key (not a session: the
// app token) failed within RetryPause; PauseRetry starts that pause.
func (c *Coordinator) RetryPaused(key string) bool {
	return c.state.before(c.state.retryNot, key, c.cfg.Now(), 0)
}

// PauseRetry: see RetryPaused.
func (c *Coordinator) PauseRetry(key string) {
	now := c.cfg.Now()
	c.state.set(c.state.retryNot, key, now.Add(c.cfg.RetryPause), now)
}
