package spotifyauth

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddyspotify/caddy-spotify-auth/internal/fifo"
	"github.com/caddyspotify/caddy-spotify-auth/internal/refresher"
)

// sharedPool keeps per-client state alive across config reloads: a
// refresh in flight during a reload must still be joined, and a state
// used before the reload must still count as used.
var sharedPool = caddy.NewUsagePool()

// Bounds on the in-memory caches, so no input can grow them without limit.
const (
	maxUsedStates     = 100_000
	usedStateLifetime = stateLifetime
)

type sharedState struct {
	// refresh is the refresh coordinator's memory: refreshes in flight,
	// their recent results, pauses, and Spotify's pauses of this app.
	refresh *refresher.State

	mu        sync.Mutex
	usedState *fifo.Map[struct{}]  // state hash → used (until it stops mattering)
	rejected  map[string]time.Time // access tokens the upstream found invalid → until when it matters
	// nRejected lets the hot path skip the map (and its lock) when empty.
	nRejected atomic.Int32

	// loggedOnce: topic and user already logged (firstLog; made on
	// first use).
	loggedOnce *fifo.Map[struct{}]

	app atomic.Pointer[appToken] // mode app: the current app token

	exchanges exchangeLimiter // code exchanges strangers can cause

	// maintenance is per storage: each storage the app's blocks keep
	// records in is swept on its own schedule.
	maintenance map[string]*maintenanceSchedule
}

func newSharedState() *sharedState {
	return &sharedState{
		refresh:     refresher.NewState(),
		usedState:   fifo.New[struct{}](maxUsedStates),
		rejected:    make(map[string]time.Time),
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
	if _, used := s.usedState.Get(key, now); used {
		return false
	}
	// All entries live equally long, so the oldest are the first to go
	// when a flood fills the memory, never the recent ones.
	s.usedState.Put(key, struct{}{}, now.Add(usedStateLifetime))
	return true
}

// stateUsed reports whether a state was used, without using it.
func (s *sharedState) stateUsed(key string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, used := s.usedState.Get(key, now)
	return used
}
