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
	// after a 429 (or the owner's lapsed Premium); until then no call is
	// made from this instance. backoffCause is what the answer meanwhile says.
	backoffUntil atomic.Int64
	backoffCause atomic.Pointer[pauseCause]

	mu        sync.Mutex
	usedState *fifoMap[struct{}]   // state hash → used (until it stops mattering)
	recent    *fifoMap[session]    // refreshKey → what that refresh produced
	paused    map[string]time.Time // sessionID → no retry of a failed refresh before
	forced    map[string]time.Time // sessionID → no refresh on the upstream's word before
	rejected  map[string]time.Time // access tokens the upstream found invalid → until when it matters
	failed    map[string]time.Time // sessionID → last failed refresh
	// nRejected lets the hot path skip the map (and its lock) when empty.
	nRejected atomic.Int32

	// unsharedLogged: rule and user already warned about a missing
	// field (made on first use).
	unsharedLogged *fifoMap[struct{}]

	app        atomic.Pointer[appToken] // mode app: the current app token
	appRetryAt atomic.Int64             // mode app: renewal failed; unix ns when to try again

	exchanges exchangeLimiter // code exchanges strangers can cause

	// coordinationWarned (unix seconds) rate-limits the warning that
	// storage failed to coordinate a refresh.
	coordinationWarned atomic.Int64

	// maintenance is per storage: each storage the app's blocks keep
	// records in is swept on its own schedule.
	maintenance map[string]*maintenanceSchedule
}

func newSharedState() *sharedState {
	return &sharedState{
		usedState:   newFIFOMap[struct{}](maxUsedStates),
		recent:      newFIFOMap[session](maxRecentRefresh),
		paused:      make(map[string]time.Time),
		forced:      make(map[string]time.Time),
		rejected:    make(map[string]time.Time),
		failed:      make(map[string]time.Time),
		maintenance: make(map[string]*maintenanceSchedule),
	}
}

// maintenanceFor returns the schedule of the background work on the
// storage named by storageID.
func (s *sharedState) maintenanceFor(storageID string) *maintenanceSchedule {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.maintenance[storageID]
	if m == nil {
		m = &maintenanceSchedule{every: maintenanceInterval}
		s.maintenance[storageID] = m
	}
	return m
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

// stateUsed reports whether a state was used, without using it.
func (s *sharedState) stateUsed(key string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, used := s.usedState.get(key, now)
	return used
}

// backoff returns how long calls to Spotify must still wait, if at all.
func (s *sharedState) backoff(now time.Time) time.Duration {
	return time.Duration(s.backoffUntil.Load() - now.UnixNano())
}

// noteRateLimit remembers a 429 (or the owner's lapsed Premium) so this
// instance stops calling Spotify.
func (s *sharedState) noteRateLimit(err error, now time.Time) {
	extendBackoff(&s.backoffUntil, &s.backoffCause, err, now)
}

// pauseCause is the failure that paused calls to Spotify, and when.
type pauseCause struct {
	ae authError
	at time.Time
}

// pausesCalls reports whether a failure stops every call to Spotify for
// a while: a 429, or the app owner's lapsed Premium (every call fails).
func pausesCalls(k failureKind) bool { return k == kindRateLimited || k == kindOwnerPremium }

// extendBackoff moves until (unix nanoseconds) to the end of the wait a
// pausing failure asks for, never earlier than it already is, and keeps
// the failure as the cause.
func extendBackoff(until *atomic.Int64, cause *atomic.Pointer[pauseCause], err error, now time.Time) {
	var ae *authError
	if !errors.As(err, &ae) || !pausesCalls(ae.Kind) {
		return
	}
	end := now.Add(ae.RetryAfter).UnixNano()
	for {
		cur := until.Load()
		if cur >= end {
			return
		}
		if until.CompareAndSwap(cur, end) {
			cause.Store(&pauseCause{ae: authError{Kind: ae.Kind, Message: ae.Message, Asked: ae.Asked, Said: ae.Said}, at: now})
			return
		}
	}
}

// pausedError is the answer while calls are paused: the cause's kind and
// words, with the wait left.
func pausedError(c *pauseCause, wait time.Duration, now time.Time, message string) *authError {
	ae := &authError{Kind: kindRateLimited, Message: message, RetryAfter: wait}
	if c != nil {
		ae.Kind, ae.Said = c.ae.Kind, c.ae.Said
		if c.ae.Kind != kindRateLimited {
			ae.Message = c.ae.Message
		}
		if asked := c.ae.Asked - now.Sub(c.at); asked > wait {
			ae.Asked = asked
		}
	}
	return ae
}

// premiumPaused returns the answer while calls are paused because the app
// owner's Premium has lapsed, or nil.
func (s *sharedState) premiumPaused(now time.Time) *authError {
	wait := s.backoff(now)
	if wait <= 0 {
		return nil
	}
	c := s.backoffCause.Load()
	if c == nil || c.ae.Kind != kindOwnerPremium {
		return nil
	}
	return pausedError(c, wait, now, ownerPremiumMessage)
}

// checkBackoff fails fast while Spotify has asked us to wait.
func (s *sharedState) checkBackoff(now time.Time) error {
	if wait := s.backoff(now); wait > 0 {
		return pausedError(s.backoffCause.Load(), wait, now, "Spotify is rate limiting this app")
	}
	return nil
}
