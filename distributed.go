package spotifyauth

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"strconv"
	"time"

	"go.uber.org/zap"
	"golang.org/x/oauth2"
)

// What instances sharing Caddy's storage coordinate through it: one
// refresh per session (a lock, then the result published for the others)
// and, with session_store storage, the sessions themselves. Only the
// certmagic.Storage interface is used, so any storage module works.

// Storage layout and timing.
const (
	refreshResultPrefix = "spotify_auth/refresh/"
	// resultPollInterval is how often an instance waiting for another's
	// refresh looks for its result: sooner than the lock would tell it
	// (file_system storage re-checks a held lock only every second).
	resultPollInterval = 50 * time.Millisecond
	// sessionSweepInterval paces the (more expensive) sweep of expired
	// server-side sessions.
	sessionSweepInterval = time.Hour
)

// maintenanceInterval paces the background work: key reloads and sweeping
// expired entries from storage and memory. A variable: the test of
// maintenance across frequent reloads shortens it.
var maintenanceInterval = time.Minute

// refreshResultKeep is when the sweep deletes a published result: its
// access token (an hour with Spotify) has expired by then.
const refreshResultKeep = 2 * time.Hour

// coordinationWarnInterval keeps a broken storage lock from flooding the log.
const coordinationWarnInterval = time.Minute

// refreshResult is what a refresh produced; published (sealed) in
// storage so other instances reuse it.
type refreshResult struct {
	AccessToken  string `json:"a"`
	RefreshToken string `json:"r"`
	TokenExpires int64  `json:"e"`
	Scopes       string `json:"s"`
	At           int64  `json:"t"` // unix seconds
}

func (tr refreshResult) applyTo(sess session) session {
	sess.AccessToken = tr.AccessToken
	sess.RefreshToken = tr.RefreshToken
	sess.TokenExpires = tr.TokenExpires
	sess.Scopes = tr.Scopes
	return sess
}

// refreshAcrossInstances refreshes the token once for all instances
// sharing the storage. The first to take the storage lock (keyed by the
// refresh token's hash) calls Spotify and publishes the result; the others
// pick that result up. If the storage can't lock (or the holder vanished
// for longer than a refresh can take), this instance refreshes on its
// own rather than fail a session that can be saved. published says the
// result came from another instance (and so may be due again).
//
// A refresh that failed on another instance a moment ago is not tried
// again before its pause ends (N instances, one failing call) while the
// token still works (tokenExpires says until when); it is served meanwhile.
func (h *Handler) refreshAcrossInstances(ctx context.Context, key, refreshToken string, tokenExpires int64) (tr refreshResult, published bool, err error) {
	if tr, ok := h.publishedRefresh(ctx, key); ok {
		return tr, true, nil
	}
	pausedElsewhere := func() error {
		// As with a pause of this instance's own (ensureFresh), an
		// expired token is tried again at once: nothing else can serve it.
		now := time.Now()
		if tokenExpires <= now.Unix() {
			return nil
		}
		if _, ok := h.refreshPausedElsewhere(ctx, key, now); ok {
			return errRefreshPaused
		}
		return nil
	}
	if err := pausedElsewhere(); err != nil {
		return tr, false, err
	}
	lockName := "spotify_auth_refresh_" + key
	lockCtx, cancel := context.WithTimeout(ctx, time.Duration(h.Timeout)+2*time.Second)
	defer cancel()
	locked := make(chan error, 1)
	go func() { locked <- h.storage.Lock(lockCtx, lockName) }()
	poll := time.NewTicker(resultPollInterval)
	defer poll.Stop()
	for {
		select {
		case err := <-locked:
			if err != nil {
				h.warnCoordination(err)
			} else {
				defer h.unlock(ctx, lockName)
			}
			if tr, ok := h.publishedRefresh(ctx, key); ok {
				return tr, true, nil
			}
			if err := pausedElsewhere(); err != nil {
				return tr, false, err
			}
			tr, err := h.callRefresh(ctx, key, refreshToken)
			if err == nil {
				h.publishRefresh(ctx, key, tr)
			}
			return tr, false, err
		case <-poll.C:
			if tr, ok := h.publishedRefresh(ctx, key); ok {
				cancel()
				if <-locked == nil {
					h.unlock(ctx, lockName)
				}
				return tr, true, nil
			}
		}
	}
}

// callRefresh asks Spotify for a new access token.
func (h *Handler) callRefresh(ctx context.Context, key, refreshToken string) (refreshResult, error) {
	now := time.Now()
	ctx = context.WithValue(ctx, oauth2.HTTPClient, h.httpClient)
	tok, err := h.oauth.TokenSource(ctx, &oauth2.Token{RefreshToken: refreshToken}).Token()
	if err != nil {
		ae := classifyTokenError(err, "refresh")
		h.noteRateLimit(ctx, ae, time.Now())
		if ae.Kind != kindRefreshRevoked {
			h.shared.pauseRefresh(key, time.Now(), refreshRetryPause)
			h.shared.noteRefreshFailure(key, time.Now())
			h.publishRefreshPause(ctx, key, ae, time.Now())
		}
		h.metrics.refreshFailures.WithLabelValues(ae.Kind.String()).Inc()
		return refreshResult{}, ae
	}
	h.metrics.refreshes.Inc()
	tr := refreshResult{AccessToken: tok.AccessToken, RefreshToken: refreshToken,
		TokenExpires: tokenExpiry(tok, now), Scopes: grantedScopes(tok, ""), At: now.Unix()}
	if tok.RefreshToken != "" {
		tr.RefreshToken = tok.RefreshToken // Spotify rotated it
	}
	return tr, nil
}

func (h *Handler) publishRefresh(ctx context.Context, key string, tr refreshResult) {
	data, err := json.Marshal(tr)
	if err != nil {
		return
	}
	sk := refreshResultPrefix + key
	sealed := h.sealers().results.Seal(data, []byte(sk))
	if err := h.storage.Store(ctx, sk, []byte(sealed)); err != nil {
		h.warnCoordination(err)
	}
}

// publishedRefresh returns another instance's result for this refresh
// token while its access token lives (a browser that missed the refreshed
// cookie comes back with the old one); one that is due again is followed
// by the caller.
func (h *Handler) publishedRefresh(ctx context.Context, key string) (refreshResult, bool) {
	var tr refreshResult
	sk := refreshResultPrefix + key
	data, err := h.storage.Load(ctx, sk)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			h.warnCoordination(err)
		}
		return tr, false
	}
	plain, err := h.sealers().results.Open(string(data), []byte(sk))
	if err != nil || json.Unmarshal(plain, &tr) != nil || tr.AccessToken == "" {
		return tr, false
	}
	if tr.TokenExpires <= time.Now().Unix() {
		return tr, false
	}
	h.metrics.refreshesShared.Inc()
	return tr, true
}

func (h *Handler) unlock(ctx context.Context, name string) {
	if err := h.storage.Unlock(context.WithoutCancel(ctx), name); err != nil {
		h.warnCoordination(err)
	}
}

// warnCoordination reports that the storage failed at coordinating, so
// this instance acts alone for now: correct, but other instances may
// refresh the same session too.
func (h *Handler) warnCoordination(err error) {
	now := time.Now().Unix()
	last := h.shared.coordinationWarned.Load()
	if now-last < int64(coordinationWarnInterval/time.Second) || !h.shared.coordinationWarned.CompareAndSwap(last, now) {
		return
	}
	h.logger.Warn("Caddy's storage failed to coordinate a token refresh between instances; "+
		"this instance refreshes on its own, so another may refresh the same session",
		zap.Error(err))
}

// maintain runs the background work until ctx ends: re-reading generated
// keys (another instance may have rotated them) and sweeping expired
// entries out of storage.
//
// Every reload starts a new handler, so the schedule lives in the shared
// state (first is from it): counted from a fresh handler's start, reloads
// more frequent than the interval would put the work off forever.
func (h *Handler) maintain(ctx context.Context, first time.Time) {
	timer := time.NewTimer(time.Until(first))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-timer.C:
			sweepSessions := h.storeSessions && h.shared.maintenance.sessionSweepDue(now)
			h.maintainOnce(ctx, now, sweepSessions)
			timer.Reset(time.Until(h.shared.maintenance.ran(now)))
		}
	}
}

// maintainOnce reports whether it swept (it was this instance's turn).
func (h *Handler) maintainOnce(ctx context.Context, now time.Time, sweepSessions bool) (swept bool) {
	if h.generatedKeys {
		if err := h.reloadKeys(ctx, now); err != nil && ctx.Err() == nil {
			h.logger.Warn("re-reading session keys from storage; keeping the current ones", zap.Error(err))
		}
	}
	h.shared.pruneExpired(now) // memory: every instance its own
	if !h.takeSweepTurn(ctx, now) {
		return false
	}
	h.sweep(ctx, refreshResultPrefix, false, func(key string, modified time.Time) bool {
		return now.Sub(modified) > refreshResultKeep
	})
	// Back-offs end within maxRetryAfter of being written.
	for _, prefix := range []string{pausePrefix, backoffPrefix} {
		h.sweep(ctx, prefix, false, func(key string, modified time.Time) bool {
			return now.Sub(modified) > maxRetryAfter+time.Minute
		})
	}
	if sweepSessions {
		h.sweep(ctx, storedSessionPrefix, true, func(key string, modified time.Time) bool {
			return now.Sub(modified) > time.Duration(h.SessionLifetime) && h.storedSessionExpired(ctx, key, now)
		})
	}
	if ctx.Err() != nil {
		// Stopped midway (a reload): give the turn back, or nobody would
		// sweep for a whole interval.
		_ = h.storage.Delete(context.WithoutCancel(ctx), sweepTurnKey)
		return false
	}
	return true
}

// sweepTurnKey records when an instance last swept; sweepTurnInterval is
// how often one of all the instances sharing the storage sweeps. Listing
// and checking every published result costs in proportion to the active
// sessions (two hours of refreshes), so it is done once per interval for
// the whole cluster, not once a minute by every instance (SCALING.md).
const (
	sweepTurnKey      = "spotify_auth/last_sweep"
	sweepTurnLock     = "spotify_auth_sweep"
	sweepTurnInterval = 10 * time.Minute
)

// takeSweepTurn reports whether this instance should sweep now: nobody
// swept within sweepTurnInterval. A storage that cannot lock or read
// makes every instance sweep, as before (correct, only redundant).
func (h *Handler) takeSweepTurn(ctx context.Context, now time.Time) bool {
	lockCtx, cancel := context.WithTimeout(ctx, storageOpTimeout)
	defer cancel()
	if err := h.storage.Lock(lockCtx, sweepTurnLock); err != nil {
		return true
	}
	defer h.unlock(ctx, sweepTurnLock)
	if data, err := h.storage.Load(ctx, sweepTurnKey); err == nil {
		if last, err := strconv.ParseInt(string(data), 10, 64); err == nil {
			if d := now.Sub(time.Unix(0, last)); d >= 0 && d < sweepTurnInterval {
				return false
			}
		}
	}
	if err := h.storage.Store(ctx, sweepTurnKey, []byte(strconv.FormatInt(now.UnixNano(), 10))); err != nil {
		h.logger.Debug("recording the sweep in storage", zap.Error(err))
	}
	return true
}

// sweep deletes the entries under prefix that expired says are done.
// Several instances may sweep at once; deleting twice is harmless.
func (h *Handler) sweep(ctx context.Context, prefix string, recursive bool, expired func(key string, modified time.Time) bool) {
	keys, err := h.storage.List(ctx, prefix, recursive)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			h.logger.Debug("listing storage to sweep", zap.String("prefix", prefix), zap.Error(err))
		}
		return
	}
	for _, k := range keys {
		info, err := h.storage.Stat(ctx, k)
		if err != nil || !info.IsTerminal || !expired(k, info.Modified) {
			continue
		}
		if err := h.storage.Delete(ctx, k); err != nil && !errors.Is(err, fs.ErrNotExist) {
			h.logger.Debug("sweeping storage", zap.String("key", k), zap.Error(err))
		}
	}
}
