package spotifyauth

import (
	"context"
	"errors"
	"io/fs"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/caddyspotify/caddy-spotify-auth/internal/storagekeys"
)

// Background maintenance: re-reading generated keys and sweeping expired
// entries from storage and memory, on a schedule that survives reloads.

// maintenanceInterval paces the background work: key reloads and sweeping
// expired entries from storage and memory (a schedule's every).
const maintenanceInterval = time.Minute

// maintainer is one config's background work: re-reading generated keys
// and sweeping expired entries from storage and memory, on a schedule
// that survives reloads. Provision starts it and Cleanup stops it.
type maintainer struct {
	schedule *maintenanceSchedule // this app's on this storage, kept across reloads
	storage  certmagic.Storage
	logger   *zap.Logger
	// reloadKeys re-reads generated keys; nil when cookie_secret gives them.
	reloadKeys func(ctx context.Context, now time.Time) error
	// The memory and the session store it sweeps, read at each run (tests
	// switch a provisioned handler's).
	memory   func() *sharedState
	sessions func() sessionStore
	stop     context.CancelFunc
	done     chan struct{}
}

// start runs the maintenance, and alongside with it, until stopAndWait.
func (m *maintainer) start(ctx context.Context, alongside func(context.Context)) {
	ctx, m.stop = context.WithCancel(ctx)
	m.done = make(chan struct{})
	first := m.schedule.start(time.Now())
	go func() {
		defer close(m.done)
		var wg sync.WaitGroup
		wg.Go(func() { m.maintain(ctx, first) })
		wg.Go(func() { alongside(ctx) })
		wg.Wait()
	}()
}

// stopAndWait stops what start started and waits until it has returned.
func (m *maintainer) stopAndWait() {
	if m.stop != nil {
		m.stop()
		<-m.done
	}
}

// maintain runs the background work until ctx ends: re-reading generated
// keys (another instance may have rotated them) and sweeping expired
// entries out of storage.
//
// Every reload starts a new handler, so the schedule lives in the shared
// state (first is from it): counted from a fresh handler's start, reloads
// more frequent than the interval would put the work off forever.
func (m *maintainer) maintain(ctx context.Context, first time.Time) {
	runUntilDone(ctx, first, func(now time.Time) time.Time {
		m.maintainOnce(ctx, now)
		return m.schedule.ran(now)
	})
}

// runUntilDone runs work at first, then at the times it returns, until
// ctx ends.
func runUntilDone(ctx context.Context, first time.Time, work func(now time.Time) (next time.Time)) {
	timer := time.NewTimer(time.Until(first))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-timer.C:
			timer.Reset(time.Until(work(now)))
		}
	}
}

// maintainOnce reports whether it swept what every app shares (it was
// this instance's turn). Stored sessions have turns of their own, one per
// key set: only an app's keys open its sessions, so another app's turn
// (or a cookie-mode block's) must not stand for it.
func (m *maintainer) maintainOnce(ctx context.Context, now time.Time) (swept bool) {
	if m.reloadKeys != nil {
		if err := m.reloadKeys(ctx, now); err != nil && ctx.Err() == nil {
			m.logger.Warn("re-reading session keys from storage; keeping the current ones", zap.Error(err))
		}
	}
	m.memory().pruneExpired(now) // memory: every instance its own
	var taken []string           // turns recorded in storage whose sweep is not done yet
	turn := func(lock, last string, every time.Duration) bool {
		ok, recorded := m.takeSweepTurn(ctx, now, lock, last, every)
		if recorded {
			taken = append(taken, last)
		}
		return ok
	}
	if swept = turn(storagekeys.SweepLock, storagekeys.LastSweep, sweepTurnInterval); swept {
		m.sweep(ctx, storagekeys.RefreshResults, false, func(key string, modified time.Time) bool {
			return now.Sub(modified) > refreshResultKeep
		})
		// Back-offs end within maxRetryAfter of being written.
		for _, prefix := range []string{storagekeys.Paused, storagekeys.Backoff} {
			m.sweep(ctx, prefix, false, func(key string, modified time.Time) bool {
				return now.Sub(modified) > maxRetryAfter+time.Minute
			})
		}
		// A key set's turn is free an hour after it was taken: the
		// records of keys rotated away go later.
		m.sweep(ctx, storagekeys.SessionSweeps, false, func(key string, modified time.Time) bool {
			return now.Sub(modified) > 2*sessionSweepInterval
		})
		if ctx.Err() == nil {
			taken = nil
		}
	}
	// Asked only by a store that keeps sessions in storage, for its own
	// keys: a cookie-mode block of the same app must not use up the turn.
	var sessionKeys string
	m.sessions().sweep(ctx, now, func(keysID string) bool {
		if !m.schedule.sessionSweepDue(keysID, now) {
			return false
		}
		sessionKeys = keysID
		return turn(storagekeys.SessionSweepLock(keysID), storagekeys.SessionSweep(keysID), sessionSweepInterval)
	}, m.sweep)
	if ctx.Err() != nil {
		// Stopped midway (a reload): give back the turns of the sweeps
		// cut short, or nobody would make them for a whole interval.
		giveBack, cancel := context.WithTimeout(context.WithoutCancel(ctx), storageOpTimeout)
		defer cancel()
		for _, last := range taken {
			_ = m.storage.Delete(giveBack, last)
		}
		return false
	}
	if sessionKeys != "" {
		m.schedule.sessionsSweptAt(sessionKeys, now) // here, or by the instance that had the turn
	}
	return swept
}

// sweepTurnInterval is how often one of all the instances sharing the storage sweeps. Listing
// and checking every published result costs in proportion to the active
// sessions (two hours of refreshes), so it is done once per interval for
// the whole cluster, not once a minute by every instance (docs/scaling.md).
const (
	sweepTurnInterval = 10 * time.Minute
)

// takeSweepTurn reports whether this instance should sweep now (nobody
// recorded a sweep at last within every, under lock) and whether it
// recorded its own. A storage that cannot lock or read makes every
// instance sweep (correct, only redundant).
func (m *maintainer) takeSweepTurn(ctx context.Context, now time.Time, lock, last string, every time.Duration) (turn, recorded bool) {
	if ctx.Err() != nil {
		return false, false // stopping: no sweep, and no record of one
	}
	// Every call bounded: a hung storage must not stall the maintenance.
	ctx, cancel := context.WithTimeout(ctx, storageOpTimeout)
	defer cancel()
	if err := m.storage.Lock(ctx, lock); err != nil {
		return true, false
	}
	defer func() {
		unlockCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storageOpTimeout)
		defer cancel()
		if err := m.storage.Unlock(unlockCtx, lock); err != nil {
			m.logger.Debug("releasing the sweep lock", zap.Error(err))
		}
	}()
	if data, err := m.storage.Load(ctx, last); err == nil {
		if at, err := strconv.ParseInt(string(data), 10, 64); err == nil {
			if d := now.Sub(time.Unix(0, at)); d >= 0 && d < every {
				return false, false
			}
		}
	}
	if err := m.storage.Store(ctx, last, []byte(strconv.FormatInt(now.UnixNano(), 10))); err != nil {
		m.logger.Debug("recording the sweep in storage", zap.Error(err))
		return true, false
	}
	return true, true
}

// sweep deletes the entries under prefix that expired says are done.
// Several instances may sweep at once; deleting twice is harmless.
func (m *maintainer) sweep(ctx context.Context, prefix string, recursive bool, expired func(key string, modified time.Time) bool) {
	keys, err := m.storage.List(ctx, prefix, recursive)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			m.logger.Debug("listing storage to sweep", zap.String("prefix", prefix), zap.Error(err))
		}
		return
	}
	for _, k := range keys {
		info, err := m.storage.Stat(ctx, k)
		if err != nil || !info.IsTerminal || !expired(k, info.Modified) {
			continue
		}
		if err := m.storage.Delete(ctx, k); err != nil && !errors.Is(err, fs.ErrNotExist) {
			m.logger.Debug("sweeping storage", zap.String("key", k), zap.Error(err))
		}
	}
}

// pruneExpired drops the entries whose time has passed, so the maps hold
// only what still matters rather than growing until their cap.
func (s *sharedState) pruneExpired(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.usedState.Prune(now)
	pruneExpired(s.rejected, now, func(t time.Time) time.Time { return t })
	s.nRejected.Store(int32(len(s.rejected)))
	s.refresh.Prune(now)
}

// maintenanceSchedule is when the background work of a client's configs
// last ran, kept across reloads.
type maintenanceSchedule struct {
	mu    sync.Mutex
	every time.Duration // maintenanceInterval; a test of frequent reloads shortens it
	last  time.Time     // last run, or when the first config started
	// sessionsSwept is each key set's last sweep of stored sessions
	// here (blocks of one app may have different keys, or none stored),
	// for the last sessionSweepInterval.
	sessionsSwept map[string]time.Time
}

// start returns when a handler starting now runs its first maintenance:
// an interval after the last run of any config before it.
func (m *maintenanceSchedule) start(now time.Time) time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.last.IsZero() {
		m.last = now
	}
	return m.last.Add(m.every)
}

// ran records a run and returns when the next is due.
func (m *maintenanceSchedule) ran(now time.Time) time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.last = now
	return now.Add(m.every)
}

// sessionSweepDue reports whether the (hourly) sweep of the stored
// sessions that the keys named keysID open is due here: it is, unless
// made within the hour. (A process that restarts more often than hourly
// still sweeps; the turn in storage keeps the instances from sweeping
// more often than that.)
func (m *maintenanceSchedule) sessionSweepDue(keysID string, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	last, ok := m.sessionsSwept[keysID]
	return !ok || now.Sub(last) >= sessionSweepInterval
}

// sessionsSweptAt records that sweep, made here or by the instance that
// had the turn, and forgets those too old to matter (keys rotated away).
func (m *maintenanceSchedule) sessionsSweptAt(keysID string, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sessionsSwept == nil {
		m.sessionsSwept = make(map[string]time.Time)
	}
	pruneExpired(m.sessionsSwept, now, func(t time.Time) time.Time { return t.Add(sessionSweepInterval) })
	m.sessionsSwept[keysID] = now
}

func pruneExpired[V any](m map[string]V, now time.Time, expiry func(V) time.Time) {
	for k, v := range m {
		if !now.Before(expiry(v)) {
			delete(m, k)
		}
	}
}

// sessionSweepInterval paces the (more expensive) sweep of expired
// server-side sessions.
const sessionSweepInterval = time.Hour
