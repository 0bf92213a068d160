package spotifyauth

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"golang.org/x/sync/singleflight"
)

// sharedPool keeps per-client state alive across config reloads: a
// refresh in flight during a reload must still be joined, and a state
// used before the reload must still count as used.
var sharedPool = caddy.NewUsagePool()

// Bounds on the in-memory caches, so no input can grow them without limit.
const (
	maxUsedStates    = 100_000
	maxRecentRefresh = 100_000
	// minRecentRefresh is the least a refresh result is kept; it is kept
	// until its own access token expires if that is later (see
	// rememberRefresh).
	minRecentRefresh  = time.Minute
	usedStateLifetime = stateLifetime
)

type sharedState struct {
	refreshes singleflight.Group

	// backoffUntil (unix nanoseconds) is when Spotify allows calls again
	// after a 429; until then no call is made from this instance.
	backoffUntil atomic.Int64

	mu        sync.Mutex
	usedState *fifoMap[struct{}]   // state hash → used (until it stops mattering)
	recent    *fifoMap[session]    // refresh token hash → what its refresh produced
	paused    map[string]time.Time // refresh token hash → no retry before
	rejected  map[string]struct{}  // access tokens the upstream found invalid
	failed    map[string]time.Time // refresh token hash → last failed refresh
	// nRejected lets the hot path skip the map (and its lock) when empty.
	nRejected atomic.Int32

	app atomic.Pointer[appToken] // mode app: the current app token

	exchanges exchangeLimiter // code exchanges strangers can cause

	// coordinationWarned (unix seconds) rate-limits the warning that
	// storage failed to coordinate a refresh.
	coordinationWarned atomic.Int64

	maintenance maintenanceSchedule
}

func newSharedState() *sharedState {
	return &sharedState{
		usedState: newFIFOMap[struct{}](maxUsedStates),
		recent:    newFIFOMap[session](maxRecentRefresh),
		paused:    make(map[string]time.Time),
		rejected:  make(map[string]struct{}),
		failed:    make(map[string]time.Time),
	}
}

// Destruct implements caddy.Destructor.
func (s *sharedState) Destruct() error { return nil }

// useState marks a state as used and reports whether it was unused, so a
// replayed callback is refused even if the browser kept the state cookie.
func (s *sharedState) useState(key string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, used := s.usedState.get(key, now); used {
		return false
	}
	// All entries live equally long, so the oldest are the first to go
	// when a flood fills the memory, never the recent ones.
	s.usedState.put(key, struct{}{}, now.Add(usedStateLifetime))
	return true
}

func (s *sharedState) usedStateCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.usedState.len()
}

// recentRefresh returns the session a refresh produced for this refresh
// token, so requests still carrying the old cookie reuse it instead of
// refreshing again with a token Spotify may have rotated away. The result
// may itself be due for refresh by now: the caller follows it.
func (s *sharedState) recentRefresh(key string, now time.Time) (session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recent.get(key, now)
}

// rememberRefresh keeps a refresh's result until its access token expires
// (an hour with Spotify), so a browser that never got the refreshed
// cookie (a request aborted, a tab closed) is not logged out: its old
// refresh token is dead at Spotify once rotated.
func (s *sharedState) rememberRefresh(key string, sess session, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	until := time.Unix(sess.TokenExpires, 0)
	if least := now.Add(minRecentRefresh); until.Before(least) {
		until = least
	}
	s.recent.put(key, sess, until)
}

// pauseRefresh stops refresh attempts for a session for a moment after a
// failure, so requests served with a still-valid token during an outage
// don't each wait for Spotify to time out.
func (s *sharedState) pauseRefresh(key string, now time.Time, pause time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.paused) >= maxRecentRefresh {
		pruneExpired(s.paused, now, func(t time.Time) time.Time { return t })
	}
	if len(s.paused) >= maxRecentRefresh {
		clear(s.paused)
	}
	s.paused[key] = now.Add(pause)
}

func (s *sharedState) refreshPaused(key string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	until, ok := s.paused[key]
	return ok && now.Before(until)
}

// noteRefreshFailure records that Spotify failed a refresh of this session.
func (s *sharedState) noteRefreshFailure(key string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.failed) >= maxRecentRefresh {
		pruneExpired(s.failed, now, func(t time.Time) time.Time { return t.Add(expiredRetryInterval) })
	}
	if len(s.failed) >= maxRecentRefresh {
		clear(s.failed)
	}
	s.failed[key] = now
}

// failedRecently reports whether a refresh of this session failed less
// than expiredRetryInterval ago.
func (s *sharedState) failedRecently(key string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.failed[key]
	return ok && now.Before(at.Add(expiredRetryInterval))
}

// markRejected records that the upstream found this access token invalid.
func (s *sharedState) markRejected(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.rejected) >= maxRecentRefresh {
		clear(s.rejected) // a flood; the tokens expire on their own anyway
	}
	s.rejected[token] = struct{}{}
	s.nRejected.Store(int32(len(s.rejected)))
}

// takeRejected reports (once) whether the upstream rejected this token.
func (s *sharedState) takeRejected(token string) bool {
	if s.nRejected.Load() == 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.rejected[token]
	if ok {
		delete(s.rejected, token)
		s.nRejected.Store(int32(len(s.rejected)))
	}
	return ok
}

// backoff returns how long calls to Spotify must still wait, if at all.
func (s *sharedState) backoff(now time.Time) time.Duration {
	return time.Duration(s.backoffUntil.Load() - now.UnixNano())
}

// noteRateLimit remembers a 429 so this instance stops calling Spotify.
func (s *sharedState) noteRateLimit(err error, now time.Time) {
	var ae *authError
	if !errors.As(err, &ae) || ae.Kind != kindRateLimited {
		return
	}
	until := now.Add(ae.RetryAfter).UnixNano()
	for {
		cur := s.backoffUntil.Load()
		if cur >= until || s.backoffUntil.CompareAndSwap(cur, until) {
			return
		}
	}
}

// checkBackoff fails fast while Spotify has asked us to wait.
func (s *sharedState) checkBackoff(now time.Time) error {
	if wait := s.backoff(now); wait > 0 {
		return &authError{Kind: kindRateLimited, Message: "Spotify is rate limiting this app", RetryAfter: wait}
	}
	return nil
}

// pruneExpired drops the entries whose time has passed, so the maps hold
// only what still matters rather than growing until their cap.
func (s *sharedState) pruneExpired(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.usedState.prune(now)
	s.recent.prune(now)
	pruneExpired(s.paused, now, func(t time.Time) time.Time { return t })
	pruneExpired(s.failed, now, func(t time.Time) time.Time { return t.Add(expiredRetryInterval) })
}

// maintenanceSchedule is when the background work of a client's configs
// last ran, kept across reloads.
type maintenanceSchedule struct {
	mu               sync.Mutex
	last             time.Time // last run, or when the first config started
	lastSessionSweep time.Time
}

// start returns when a handler starting now runs its first maintenance:
// an interval after the last run of any config before it.
func (m *maintenanceSchedule) start(now time.Time) time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.last.IsZero() {
		m.last, m.lastSessionSweep = now, now
	}
	return m.last.Add(maintenanceInterval)
}

// ran records a run and returns when the next is due.
func (m *maintenanceSchedule) ran(now time.Time) time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.last = now
	return now.Add(maintenanceInterval)
}

// sessionSweepDue reports whether the (hourly) sweep of stored sessions
// is due, and if so counts it as done.
func (m *maintenanceSchedule) sessionSweepDue(now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if now.Sub(m.lastSessionSweep) < sessionSweepInterval {
		return false
	}
	m.lastSessionSweep = now
	return true
}

func pruneExpired[V any](m map[string]V, now time.Time, expiry func(V) time.Time) {
	for k, v := range m {
		if !now.Before(expiry(v)) {
			delete(m, k)
		}
	}
}
