package spotifyauth

import (
	"context"
	"errors"
	"io/fs"
	"time"

	"github.com/caddyspotify/caddy-spotify-auth/internal/seal"
	"github.com/caddyspotify/caddy-spotify-auth/internal/storagekeys"
	"go.uber.org/zap"
)

// Back-offs shared through storage. Spotify's rate limit is per app, and
// a refresh that failed fails for every instance alike: what one instance
// learns, the others honour, so N instances make one call, not N.
//
// Storage is read only when about to call Spotify (a code exchange, a
// refresh, an app token), never on the request path of a valid session;
// once read, a back-off is kept in memory, so it costs one read per
// instance.

// storageOpTimeout bounds a storage call made to coordinate, so a hung
// store cannot hold a login or refresh for long; it fails open to this
// instance's own memory (the call to Spotify is then made as before).
const storageOpTimeout = 2 * time.Second

// sharedPause is what storage holds (sealed) for a back-off.
type sharedPause struct {
	Until   int64  `json:"u"` // unix nanoseconds
	Kind    string `json:"k"` // the failure kind, for the answer given meanwhile
	Message string `json:"m,omitempty"`
	Said    string `json:"s,omitempty"` // Spotify's words, for the log
	// AskedUntil (unix nanoseconds): a 429 asked for longer than Until.
	AskedUntil int64 `json:"a,omitempty"`
}

func (h *Handler) backoffKey() string {
	return storagekeys.Backoff + storagekeys.Hash(16, h.TokenURL, h.ClientID)
}

// checkBackoff fails fast while Spotify has asked this app to wait: as
// this instance knows, or as another instance published.
func (h *Handler) checkBackoff(ctx context.Context, now time.Time) error {
	if err := h.shared.checkBackoff(now); err != nil {
		return err
	}
	if p, ok := h.loadPause(ctx, storagekeys.AppBackoff(h.TokenURL, h.ClientID), now); ok {
		ae := &authError{Kind: kindRateLimited, Message: "Spotify is rate limiting this app",
			RetryAfter: time.Duration(p.Until - now.UnixNano()), Said: cleanSpotifyText(p.Said, maxSpotifyText)}
		if p.Kind == kindOwnerPremium.String() {
			ae.Kind, ae.Message = kindOwnerPremium, ownerPremiumMessage
		}
		if asked := time.Duration(p.AskedUntil - now.UnixNano()); asked > ae.RetryAfter {
			ae.Asked = asked
		}
		h.shared.noteRateLimit(ae, now)
		h.logger.Debug("Spotify pause published by another instance; not calling Spotify meanwhile", zap.Stringer("reason", ae.Kind))
		return h.shared.checkBackoff(now)
	}
	return nil
}

// noteRateLimit remembers a failure that pauses every call to Spotify (a
// 429, the app owner's lapsed Premium) here and publishes it for the
// others.
func (h *Handler) noteRateLimit(ctx context.Context, err error, now time.Time) {
	var ae *authError
	if !errors.As(err, &ae) || !pausesCalls(ae.Kind) {
		return
	}
	switch {
	case ae.Kind == kindOwnerPremium:
		// The operator's problem, not the user's: every call fails.
		h.logger.Error("Spotify refuses this app because its owner has no active Premium subscription; "+
			"every login, refresh and Web API call fails until the owner of the Spotify app renews Premium. "+
			"No instance calls Spotify until the pause ends, then it is tried again",
			zap.Duration("pause", ae.RetryAfter), zap.String("spotify_said", ae.Said))
	case ae.Asked > ae.RetryAfter:
		h.logger.Warn("Spotify asks this app to wait longer than the plugin's cap; pausing calls for the cap, then trying again",
			zap.Duration("spotify_asked", ae.Asked), zap.String("spotify_asks", aboutDuration(ae.Asked)),
			zap.Duration("pause", ae.RetryAfter), zap.String("spotify_said", ae.Said))
	}
	h.shared.noteRateLimit(ae, now)
	p := sharedPause{Until: now.Add(ae.RetryAfter).UnixNano(), Kind: ae.Kind.String(), Said: ae.Said}
	if ae.Asked > ae.RetryAfter {
		p.AskedUntil = now.Add(ae.Asked).UnixNano()
	}
	h.storePause(ctx, storagekeys.AppBackoff(h.TokenURL, h.ClientID), p)
}

// publishRefreshPause tells the other instances that refreshing this
// session failed, so they don't try again before the pause ends.
func (h *Handler) publishRefreshPause(ctx context.Context, id string, ae *authError, now time.Time) {
	h.storePause(ctx, storagekeys.Paused+id, sharedPause{Until: now.Add(refreshRetryPause).UnixNano(), Kind: ae.Kind.String(), Message: ae.Message})
}

// refreshPausedElsewhere reports whether another instance's refresh of
// this session failed within the pause (and then pauses here too).
func (h *Handler) refreshPausedElsewhere(ctx context.Context, id string, now time.Time) (sharedPause, bool) {
	p, ok := h.loadPause(ctx, storagekeys.Paused+id, now)
	if ok {
		h.shared.pauseRefresh(id, now, time.Duration(p.Until-now.UnixNano()))
	}
	return p, ok
}

// pauseForcedRefresh starts the pause of the refreshes the upstream's 401s
// ask for, here and for the other instances: the session gets one every
// forcedRefreshInterval however its requests are spread.
func (h *Handler) pauseForcedRefresh(ctx context.Context, id string, now time.Time) {
	until := now.Add(forcedRefreshInterval)
	h.shared.pauseForced(id, until, now)
	h.storePause(ctx, storagekeys.ForcedPaused+id, sharedPause{Until: until.UnixNano(), Kind: "forced"})
}

// forcedRefreshPaused reports whether a refresh on the upstream's word is
// paused for this session, as this instance knows or another published.
// Storage is read only here, when an upstream has just rejected a token.
func (h *Handler) forcedRefreshPaused(ctx context.Context, id string, now time.Time) bool {
	if h.shared.forcedPaused(id, now) {
		return true
	}
	p, ok := h.loadPause(ctx, storagekeys.ForcedPaused+id, now)
	if ok {
		h.shared.pauseForced(id, time.Unix(0, p.Until), now)
	}
	return ok
}

func (h *Handler) storePause(ctx context.Context, key string, p sharedPause) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storageOpTimeout)
	defer cancel()
	if err := h.storeRecord(ctx, h.sealers().results, key, p); err != nil {
		h.warnCoordination(err)
	}
}

// loadPause reads a published pause that has not ended. Anything that
// does not open (another app's, tampered, a storage error) counts as none:
// this instance then calls Spotify, as it would alone.
func (h *Handler) loadPause(ctx context.Context, key string, now time.Time) (sharedPause, bool) {
	var p sharedPause
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storageOpTimeout)
	defer cancel()
	if err := h.loadRecord(ctx, h.sealers().results, key, &p); err != nil {
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, seal.ErrUnsealable) {
			h.logger.Debug("reading a shared back-off from storage", zap.Error(err))
		}
		return p, false
	}
	// A pause is never honoured for longer than Spotify may ask (clock
	// skew between instances, or a bad entry).
	if p.Until <= now.UnixNano() || time.Duration(p.Until-now.UnixNano()) > maxRetryAfter {
		return p, false
	}
	return p, true
}
