package spotifyauth

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"time"

	"github.com/caddyspotify/caddy-spotify-auth/internal/seal"
	"github.com/caddyspotify/caddy-spotify-auth/internal/storagekeys"
	"go.uber.org/zap"
	"golang.org/x/oauth2"
)

// Refreshing access tokens: when a request needs it, once per session in
// this process (singleflight and the memory of recent results), and once
// for all instances sharing Caddy's storage (a lock, then the result
// published for the others).

// refreshRetryPause is how long a session whose refresh failed is served
// with its still-valid token before refresh is tried again, on every
// instance. A variable: the test of that pause across instances shortens it.
var refreshRetryPause = 10 * time.Second

// Refresh timing.
const (
	// expiredRetryInterval is how soon a session whose token has expired
	// may retry a refresh that Spotify failed: requests in between get
	// 503 at once, so clients retrying without pause cannot turn an
	// outage into a storm of calls to Spotify.
	expiredRetryInterval = time.Second
	// minTokenLeft (seconds) is the least life a token must have left to
	// be passed upstream when it could not be refreshed.
	minTokenLeft = 2
	// forcedRefreshInterval bounds refreshes asked for by the upstream.
	forcedRefreshInterval = 5 * time.Minute
	// defaultTokenLifetime applies if Spotify omits expires_in.
	defaultTokenLifetime = time.Hour
)

// ensureFresh refreshes the session's token if it is near expiry (or the
// upstream said it is dead). It returns false if it has answered the
// request itself (login again, or Spotify unavailable).
func (h *Handler) ensureFresh(w http.ResponseWriter, r *http.Request, sess session, now time.Time) (session, bool) {
	needsRefresh := sess.TokenExpires-h.leeway <= now.Unix()
	forced := !needsRefresh && h.shared.takeRejected(sess.AccessToken)
	if !needsRefresh && !forced {
		return sess, true
	}
	id := h.sessionID(sess)
	var fresh session
	var err error
	switch {
	case forced && h.forcedRefreshPaused(r.Context(), id, now):
		err = errRefreshPaused
	case tokenUsable(sess, now) && h.shared.refreshPaused(id, now):
		err = errRefreshPaused
	default:
		if fresh, err = h.refresh(r.Context(), id, sess); err == nil {
			err = h.saveRefreshed(w, r, sess, &fresh)
		}
	}
	switch {
	case err == nil:
		if forced {
			// At most one refresh per session on the upstream's word
			// every few minutes, whatever the upstream keeps saying and
			// however often Spotify rotates the refresh token.
			h.pauseForcedRefresh(r.Context(), id, now)
		}
		return fresh, true
	case err == errNoSession || kindOf(err) == kindRefreshRevoked:
		if err != errNoSession { // else logged out (elsewhere) while the refresh ran
			h.metrics.sessionsEnded.WithLabelValues(endedRefreshRevoked).Inc()
			h.logger.Info("refresh token no longer valid (Spotify ends grants 6 months after consent, or the user revoked it); session ended, the user is sent to log in again",
				zap.String("user_id", sess.UserID), zap.Error(err))
		}
		h.sessions.clear(w, r)
		h.challenge(w, r)
		return sess, false
	case err == errRefreshPaused:
	case tokenUsable(sess, now):
		// The token still works: serve with it and try again later.
		h.logger.Warn("refresh failed; using the current token until it expires",
			zap.String("user_id", sess.UserID), zap.Error(err))
	default:
		h.logger.Error("refresh failed and the token has expired",
			zap.String("user_id", sess.UserID), zap.Error(err))
		h.fail(w, r, asAuthError(err), "")
		return sess, false
	}
	return sess, true
}

// saveRefreshed saves the refreshed session where sess lives. Only
// errNoSession, a logout meanwhile, stops the request: if saving fails
// otherwise, the new token still works, so the request is served with it.
func (h *Handler) saveRefreshed(w http.ResponseWriter, r *http.Request, sess session, fresh *session) error {
	// A shared result may come from another copy of this session.
	fresh.storeKey = sess.storeKey
	saved, err := h.sessions.save(w, r, *fresh)
	*fresh = saved
	if err != nil && err != errNoSession {
		h.logger.Warn("saving the refreshed session", zap.String("user_id", sess.UserID), zap.Error(err))
		return nil
	}
	return err
}

// tokenUsable reports whether the session's token may still be passed on
// while its refresh fails: it must outlive the trip to the upstream and
// the upstream's own call with it (the soak saw tokens in their last
// milliseconds arrive dead).
func tokenUsable(sess session, now time.Time) bool {
	return sess.TokenExpires-minTokenLeft > now.Unix()
}

// errRefreshPaused: a refresh of this session failed a moment ago and its
// token still works, so it is not tried again yet.
var errRefreshPaused = errors.New("refresh paused after a failure")

// maxRefreshHops bounds how far a stale cookie follows the refreshes
// its copies made since it was set.
const maxRefreshHops = 4

// refresh renews the session's access token, once per session however
// many requests need it at the same moment. A cookie whose refresh
// happened already (its answer never reached the browser) gets that
// result, and follows it if that is due again. id names the session
// itself (sessionID), for the pauses that must outlive its tokens.
func (h *Handler) refresh(ctx context.Context, id string, sess session) (session, error) {
	if sess.RefreshToken == "" {
		return session{}, &authError{Kind: kindRefreshRevoked, Message: "session has no refresh token"}
	}
	// The shared call must not die with whichever request started it.
	ctx = context.WithoutCancel(ctx)
	first := refreshKey(sess)
	key := first
	for hop := 0; ; hop++ {
		fresh, earlier, err := h.refreshOnce(ctx, key, id, sess)
		if err != nil {
			return session{}, err
		}
		if !earlier || hop == maxRefreshHops || fresh.TokenExpires-h.leeway > time.Now().Unix() {
			if key != first {
				h.shared.rememberRefresh(first, fresh, time.Now()) // one hop next time
			}
			return fresh, nil
		}
		sess, key = fresh, refreshKey(fresh)
	}
}

// refreshOnce returns what refreshing this token gives: a result
// remembered here or published by another instance (earlier), or a new
// one from Spotify.
func (h *Handler) refreshOnce(ctx context.Context, key, id string, sess session) (session, bool, error) {
	if fresh, ok := h.shared.recentRefresh(key, time.Now()); ok {
		return fresh, true, nil
	}
	type result struct {
		sess    session
		earlier bool
	}
	v, err, _ := h.shared.refreshes.Do(key, func() (any, error) {
		now := time.Now()
		if fresh, ok := h.shared.recentRefresh(key, now); ok {
			return result{fresh, true}, nil
		}
		if err := h.checkBackoff(ctx, now); err != nil {
			h.metrics.refreshFailures.WithLabelValues(kindOf(err).String()).Inc()
			return nil, err
		}
		if !tokenUsable(sess, now) && h.shared.failedRecently(id, now) {
			return nil, &authError{Kind: kindSpotifyUnavailable, Message: "Spotify's accounts service failed a moment ago"}
		}
		tr, published, err := h.refreshAcrossInstances(ctx, key, id, sess.RefreshToken, sess.TokenExpires)
		if err != nil {
			return nil, err
		}
		if tr.Scopes == "" {
			tr.Scopes = sess.Scopes // Spotify said nothing: the grant is unchanged
		}
		fresh := tr.applyTo(sess)
		h.shared.rememberRefresh(key, fresh, now)
		if !published {
			h.logger.Debug("refreshed access token", zap.String("user_id", sess.UserID))
		}
		return result{fresh, published}, nil
	})
	if err != nil {
		return session{}, false, err
	}
	r := v.(result)
	return r.sess, r.earlier, nil
}

func tokenExpiry(tok *oauth2.Token, now time.Time) int64 {
	if tok.Expiry.IsZero() {
		return now.Add(defaultTokenLifetime).Unix()
	}
	return tok.Expiry.Unix()
}

// grantedScopes returns the scopes Spotify granted; a response without
// "scope" keeps what was granted before.
func grantedScopes(tok *oauth2.Token, previous string) string {
	if s, ok := tok.Extra("scope").(string); ok && s != "" {
		return cleanScopes(s)
	}
	return previous
}

// refreshKey names one refresh: of this access token, with this refresh
// token. Results are remembered and published under it. It changes with
// every refresh, whether or not Spotify rotates the refresh token (since
// June 2026 it does not on refresh): a key of the refresh token alone
// would find the first result again at every later refresh.
func refreshKey(sess session) string {
	return storagekeys.RefreshKey(sess.RefreshToken, sess.AccessToken)
}

// sessionID names the session itself, across its refreshes and its
// copies (a lost cookie): the app, the user and when they logged in.
// Pauses are keyed by it, so no rotation of tokens can reset them.
func (h *Handler) sessionID(sess session) string {
	return storagekeys.SessionID(h.app, sess.UserID, sess.Created)
}

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
// sharing the storage. The first to take the storage lock (named by the
// refresh's key) calls Spotify and publishes the result; the others
// pick that result up. If the storage can't lock (or the holder vanished
// for longer than a refresh can take), this instance refreshes on its
// own rather than fail a session that can be saved. published says the
// result came from another instance (and so may be due again).
//
// A refresh that failed on another instance a moment ago is not tried
// again before its pause ends (N instances, one failing call) while the
// token still works (tokenExpires says until when); it is served meanwhile.
func (h *Handler) refreshAcrossInstances(ctx context.Context, key, id, refreshToken string, tokenExpires int64) (refreshResult, bool, error) {
	if tr, published, err := h.refreshedElsewhere(ctx, key, id, tokenExpires); published || err != nil {
		return tr, published, err
	}
	lockName := storagekeys.RefreshLock(key)
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
			// Another instance may have refreshed while this one waited.
			if tr, published, err := h.refreshedElsewhere(ctx, key, id, tokenExpires); published || err != nil {
				return tr, published, err
			}
			tr, err := h.callRefresh(ctx, id, refreshToken)
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

// refreshedElsewhere returns the result another instance published, or
// errRefreshPaused while another instance's pause holds. As with a pause
// of this instance's own (ensureFresh), a token expired or in its last
// seconds is tried again at once: nothing else can serve it.
func (h *Handler) refreshedElsewhere(ctx context.Context, key, id string, tokenExpires int64) (refreshResult, bool, error) {
	if tr, ok := h.publishedRefresh(ctx, key); ok {
		return tr, true, nil
	}
	now := time.Now()
	if tokenExpires-minTokenLeft > now.Unix() { // as tokenUsable
		if _, ok := h.refreshPausedElsewhere(ctx, id, now); ok {
			return refreshResult{}, false, errRefreshPaused
		}
	}
	return refreshResult{}, false, nil
}

// callRefresh asks Spotify for a new access token. A failure pauses the
// session's refreshes (id), here and on the other instances.
func (h *Handler) callRefresh(ctx context.Context, id, refreshToken string) (refreshResult, error) {
	now := time.Now()
	ctx = context.WithValue(ctx, oauth2.HTTPClient, h.httpClient)
	tok, err := h.oauth.TokenSource(ctx, &oauth2.Token{RefreshToken: refreshToken}).Token()
	if err != nil {
		ae := classifyTokenError(err, "refresh")
		h.noteRateLimit(ctx, ae, time.Now())
		if ae.Kind != kindRefreshRevoked {
			h.shared.pauseRefresh(id, time.Now(), refreshRetryPause)
			h.shared.noteRefreshFailure(id, time.Now())
			h.publishRefreshPause(ctx, id, ae, time.Now())
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
	if err := h.storeRecord(ctx, h.sealers().results, storagekeys.RefreshResults+key, tr); err != nil {
		h.warnCoordination(err)
	}
}

// publishedRefresh returns another instance's result for this refresh
// token while its access token lives (a browser that missed the refreshed
// cookie comes back with the old one); one that is due again is followed
// by the caller.
func (h *Handler) publishedRefresh(ctx context.Context, key string) (refreshResult, bool) {
	var tr refreshResult
	if err := h.loadRecord(ctx, h.sealers().results, storagekeys.RefreshResults+key, &tr); err != nil || tr.AccessToken == "" {
		if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, seal.ErrUnsealable) {
			h.warnCoordination(err)
		}
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
func (s *sharedState) pauseRefresh(id string, now time.Time, pause time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pauseIn(s.paused, id, now.Add(pause), now)
}

func (s *sharedState) refreshPaused(id string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	until, ok := s.paused[id]
	return ok && now.Before(until)
}

// pauseForced holds off refreshes the upstream asks for (its 401s) until
// until. Refreshes that fall due stay allowed: this is no failure.
func (s *sharedState) pauseForced(id string, until, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pauseIn(s.forced, id, until, now)
}

func (s *sharedState) forcedPaused(id string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	until, ok := s.forced[id]
	return ok && now.Before(until)
}

// pauseIn sets m[id] to until within maxRecentRefresh entries. Called
// with s.mu held.
func pauseIn(m map[string]time.Time, id string, until, now time.Time) {
	if len(m) >= maxRecentRefresh {
		pruneExpired(m, now, func(t time.Time) time.Time { return t })
	}
	if len(m) >= maxRecentRefresh {
		clear(m)
	}
	m[id] = until
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
	// Kept no longer than a token lives: a session that does not come
	// back must not keep the hot path on the lock (nRejected).
	s.rejected[token] = time.Now().Add(defaultTokenLifetime)
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

// Timing of refreshes shared across instances.
const (
	// resultPollInterval is how often an instance waiting for another's
	// refresh looks for its result: sooner than the lock would tell it
	// (file_system storage re-checks a held lock only every second).
	resultPollInterval = 50 * time.Millisecond
)
