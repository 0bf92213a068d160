package refresher

import (
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/caddyspotify/caddy-spotify-auth/internal/fifo"
)

// Bounds on the in-memory tables, so no input can grow them without limit.
const (
	maxEntries = 100_000
	// MinRemembered is the least a refresh result is remembered; it is
	// kept until its own access token expires if that is later.
	MinRemembered = time.Minute
)

// State is the in-memory part of refresh coordination: what must survive
// a config reload (a refresh in flight is still joined, a pause still
// holds), so the caller keeps one per app where it keeps such state (the
// handler: in a caddy.UsagePool) and builds a Coordinator around it for
// each config.
type State struct {
	flight singleflight.Group

	// Spotify's pauses: every call of the app, and the logins' own.
	app, logins backoff

	mu       sync.Mutex
	recent   *fifo.Map[Tokens]    // refresh key → what that refresh produced
	paused   map[string]time.Time // session id → no retry of a failed refresh before
	forced   map[string]time.Time // session id → no refresh on the upstream's word before
	failed   map[string]time.Time // session id → last failed refresh
	retryNot map[string]time.Time // other renewals (the app token) → no retry before

	// coordinationWarned (unix seconds) rate-limits the warning that
	// storage failed to coordinate a refresh.
	coordinationWarned atomic.Int64
}

// NewState returns an empty State.
func NewState() *State {
	return &State{
		recent:   fifo.New[Tokens](maxEntries),
		paused:   make(map[string]time.Time),
		forced:   make(map[string]time.Time),
		failed:   make(map[string]time.Time),
		retryNot: make(map[string]time.Time),
	}
}

// Prune drops what no longer matters at now, so the tables hold only
// live entries rather than growing until their bound.
func (s *State) Prune(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recent.Prune(now)
	for _, m := range []map[string]time.Time{s.paused, s.forced, s.retryNot} {
		pruneBefore(m, now, 0)
	}
	pruneBefore(s.failed, now, ExpiredRetryInterval)
}

// Len is how many entries the tables hold (results, pauses, failures).
func (s *State) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recent.Len() + len(s.paused) + len(s.forced) + len(s.failed) + len(s.retryNot)
}

// remembered returns what the refresh named key produced, while kept.
func (s *State) remembered(key string, now time.Time) (Tokens, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recent.Get(key, now)
}

// remember keeps a refresh's result until its access token expires (an
// hour with Spotify), so a browser that never got the refreshed cookie
// (a request aborted, a tab closed) is not logged out: its old refresh
// token may be dead at Spotify once rotated.
func (s *State) remember(key string, t Tokens, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	until := time.Unix(t.Expires, 0)
	if least := now.Add(MinRemembered); until.Before(least) {
		until = least
	}
	s.recent.Put(key, t, until)
}

// set makes m[id] until, within maxEntries.
func (s *State) set(m map[string]time.Time, id string, until, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(m) >= maxEntries {
		pruneBefore(m, now, 0)
	}
	if len(m) >= maxEntries {
		clear(m) // a flood: pauses are an optimisation, forgetting them is safe
	}
	m[id] = until
}

// before reports whether now is before m[id] (+ after).
func (s *State) before(m map[string]time.Time, id string, now time.Time, after time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := m[id]
	return ok && now.Before(t.Add(after))
}

// pruneBefore drops the entries of m whose time (+ after) has passed.
func pruneBefore(m map[string]time.Time, now time.Time, after time.Duration) {
	for k, t := range m {
		if !now.Before(t.Add(after)) {
			delete(m, k)
		}
	}
}
