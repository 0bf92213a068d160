package spotifyauth

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/caddyspotify/caddy-spotify-auth/internal/refresher"
	"github.com/caddyspotify/caddy-spotify-auth/internal/seal"
	"github.com/caddyspotify/caddy-spotify-auth/internal/storagekeys"
	"go.uber.org/zap"
	"golang.org/x/oauth2"
)

// The request side of refreshing access tokens: when a request needs it,
// and what to answer. Coordinating the refresh itself (single flight,
// results shared across instances, pauses) is internal/refresher's.

// Refresh timing.
const (
	// defaultTokenLifetime applies if Spotify omits expires_in.
	defaultTokenLifetime = time.Hour
	// refreshResultKeep is when the sweep deletes a published result: its
	// access token (an hour with Spotify) has expired by then.
	refreshResultKeep = 2 * time.Hour
	// maxRejected bounds the tokens the upstream said are dead.
	maxRejected = 100_000
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
	fresh, err := h.refreshSession(r.Context(), sess, forced)
	if err == nil {
		err = h.saveRefreshed(w, r, sess, &fresh)
	}
	switch {
	case err == nil:
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
	case tokensOf(sess).Usable(now):
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

// refreshSession renews the session's tokens through the coordinator
// (once per session, here and across the instances sharing the storage;
// a lost cookie follows its copies' refreshes; pauses after failures and
// after a refresh on the upstream's word) and turns what it says into
// this package's failures.
func (h *Handler) refreshSession(ctx context.Context, sess session, forced bool) (session, error) {
	if sess.RefreshToken == "" {
		return session{}, &authError{Kind: kindRefreshRevoked, Message: "session has no refresh token"}
	}
	t, err := h.refresh.Refresh(ctx, refresher.Session{ID: sessionID(h, sess), Tokens: tokensOf(sess), Forced: forced})
	if err != nil {
		return session{}, refreshError(err)
	}
	return withTokens(sess, t), nil
}

// refreshError is the failure a coordinator's error stands for.
func refreshError(err error) error {
	var p *refresher.Pause
	switch {
	case errors.As(err, &p):
		return pauseError(p)
	case err == refresher.ErrFailedRecently:
		return &authError{Kind: kindSpotifyUnavailable, Message: "Spotify's accounts service failed a moment ago"}
	}
	return err
}

func tokensOf(sess session) refresher.Tokens {
	return refresher.Tokens{AccessToken: sess.AccessToken, RefreshToken: sess.RefreshToken, Expires: sess.TokenExpires, Scopes: sess.Scopes}
}

// withTokens is sess with t's tokens (a result may come from another copy
// of the session: everything else stays sess's).
func withTokens(sess session, t refresher.Tokens) session {
	sess.AccessToken, sess.RefreshToken, sess.TokenExpires, sess.Scopes = t.AccessToken, t.RefreshToken, t.Expires, t.Scopes
	return sess
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

// errRefreshPaused: a refresh of this session failed a moment ago (or
// one on the upstream's word was made lately) and its token still works,
// so it is not tried again yet.
var errRefreshPaused = refresher.ErrPaused

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

// sessionID names the session itself, across its refreshes and its
// copies (a lost cookie): the app, the user and when they logged in.
// Pauses are keyed by it, so no rotation of tokens can reset them.
func sessionID(h *Handler, sess session) string {
	return storagekeys.SessionID(h.app, sess.UserID, sess.Created)
}

// tokenClient redeems refresh tokens at Spotify for the coordinator.
type tokenClient struct {
	oauth *oauth2.Config
	http  *http.Client
}

func (c tokenClient) Refresh(ctx context.Context, refreshToken string) (refresher.Tokens, error) {
	now := time.Now()
	ctx = context.WithValue(ctx, oauth2.HTTPClient, c.http)
	tok, err := c.oauth.TokenSource(ctx, &oauth2.Token{RefreshToken: refreshToken}).Token()
	if err != nil {
		return refresher.Tokens{}, classifyTokenError(err, "refresh")
	}
	return refresher.Tokens{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken,
		Expires: tokenExpiry(tok, now), Scopes: grantedScopes(tok, "")}, nil
}

// Judge: a grant Spotify ended is not retried; a 429 or the owner's
// lapsed Premium pauses calls.
func (tokenClient) Judge(err error) (revoked bool, pause *refresher.Pause) {
	ae := asAuthError(err)
	return ae.Kind == kindRefreshRevoked, pauseOf(ae)
}

// refreshEvents counts what the coordinator did and tells the operator
// what it met (through the handler's logger and metrics of the moment).
type refreshEvents struct{ h *Handler }

func (e refreshEvents) Refreshed() { e.h.metrics.refreshes.Inc() }
func (e refreshEvents) Reused()    { e.h.metrics.refreshesShared.Inc() }
func (e refreshEvents) Failed(err error) {
	e.h.metrics.refreshFailures.WithLabelValues(kindOf(refreshError(err)).String()).Inc()
}

func (e refreshEvents) Paused(p refresher.Pause) {
	switch {
	case p.Premium:
		// The operator's problem, not the user's: every call fails.
		e.h.logger.Error("Spotify refuses this app because its owner has no active Premium subscription; "+
			"every login, refresh and Web API call fails until the owner of the Spotify app renews Premium. "+
			"No instance calls Spotify until the pause ends, then it is tried again",
			zap.Duration("pause", p.Wait), zap.String("spotify_said", p.Said))
	case p.Asked > p.Wait:
		e.h.logger.Warn("Spotify asks this app to wait longer than the plugin's cap; pausing calls for the cap, then trying again",
			zap.Duration("spotify_asked", p.Asked), zap.String("spotify_asks", aboutDuration(p.Asked)),
			zap.Duration("pause", p.Wait), zap.String("spotify_said", p.Said))
	}
}

func (e refreshEvents) Uncoordinated(err error) {
	e.h.logger.Warn("Caddy's storage failed to coordinate a token refresh between instances; "+
		"this instance refreshes on its own, so another may refresh the same session",
		zap.Error(err))
}

// provisionRefresh builds this config's refresh coordinator around the
// app's state that outlives reloads (provisionShared).
func provisionRefresh(h *Handler) {
	h.refresh = refresher.New(h.shared.refresh, refresherConfig(h))
	h.appTokens = newAppTokens(h) // over the same coordinator and shared state
}

func refresherConfig(h *Handler) refresher.Config {
	keys := h.keys // rotation swaps the keyring in place
	return refresher.Config{
		Storage:  h.storage,
		Sealer:   func() *seal.Sealer { return keys.Load().results },
		Client:   tokenClient{oauth: h.oauth, http: h.httpClient},
		TokenURL: h.TokenURL, ClientID: h.ClientID,
		Leeway:   time.Duration(h.RefreshLeeway),
		LockWait: time.Duration(h.Timeout) + 2*time.Second,
		MaxPause: maxRetryAfter,
		Observer: refreshEvents{h},
	}
}

// markRejected records that the upstream found this access token invalid.
func (s *sharedState) markRejected(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.rejected) >= maxRejected {
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
