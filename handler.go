package spotifyauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"golang.org/x/oauth2"
)

const (
	// stateLifetime is how long a login may take from redirect to callback.
	stateLifetime = 10 * time.Minute
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
	// unavailableRetryAfter is what clients are told to wait when Spotify
	// fails without saying for how long.
	unavailableRetryAfter = 5 * time.Second
	// defaultTokenLifetime applies if Spotify omits expires_in.
	defaultTokenLifetime = time.Hour
	// Input bounds: anything longer is not Spotify's.
	maxStateLen = 256
	maxCodeLen  = 2048
)

// refreshRetryPause is how long a session whose refresh failed is served
// with its still-valid token before refresh is tried again, on every
// instance. A variable: the test of that pause across instances shortens it.
var refreshRetryPause = 10 * time.Second

// ServeHTTP answers the handler's own endpoints and lets through only
// requests with a valid session, carrying the user's access token.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	err := h.serve(w, r, next)
	if err == nil && h.errorRoutes {
		return handedOff(r)
	}
	return err
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if h.WebAPI {
		return h.serveWebAPI(w, r, next)
	}
	if p := r.URL.Path; !h.appMode && (p == h.callbackPath || strings.HasPrefix(p, EndpointPrefix)) {
		return h.serveEndpoint(w, r)
	}

	// Whatever happens next, the client's own versions of our headers
	// must never reach the upstream.
	stripManagedHeaders(r.Header, h.tokenHeader)
	scrubTrailers(r, h.tokenHeader)

	if h.appMode {
		return h.serveApp(w, r, next)
	}

	now := time.Now()
	sess, err := h.session(r, now)
	if err == errNoSession {
		return h.challenge(w, r)
	}
	if err != nil {
		h.logger.Error("loading the session from storage", zap.Error(err))
		h.fail(w, r, asAuthError(err), "")
		return nil
	}
	if h.storeSessions && sess.storeKey == "" {
		// A cookie session from before session_store storage: move it
		// to storage, so logout can end it everywhere.
		if err := h.migrateSession(w, r, &sess); err != nil {
			h.logger.Error("moving a session to storage", zap.Error(err))
			h.fail(w, r, asAuthError(err), "")
			return nil
		}
	}
	// Rules before refresh: a user who may not pass costs Spotify nothing.
	if !h.rules.allows(&sess) {
		h.deny(w, r, &sess)
		return nil
	}
	if missing := h.neededScopes(&sess); len(missing) > 0 {
		h.askForScopes(w, r, &sess, missing)
		return nil
	}
	var ok bool
	if sess, ok = h.ensureFresh(w, r, sess, now); !ok {
		return nil
	}

	h.passUpstream(r, &sess)
	return next.ServeHTTP(&upstreamWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, shared: h.shared, token: sess.AccessToken, cookies: &h.cookies}, r)
}

// ensureFresh refreshes the session's token if it is near expiry (or the
// upstream said it is dead). It returns false if it has answered the
// request itself (login again, or Spotify unavailable).
func (h *Handler) ensureFresh(w http.ResponseWriter, r *http.Request, sess session, now time.Time) (session, bool) {
	needsRefresh := sess.TokenExpires-h.leeway <= now.Unix()
	forced := !needsRefresh && h.shared.takeRejected(sess.AccessToken)
	if !needsRefresh && !forced {
		return sess, true
	}
	key := refreshKey(sess.RefreshToken)
	var fresh session
	var err error
	if tokenUsable(sess, now) && h.shared.refreshPaused(key, now) {
		err = errRefreshPaused
	} else {
		fresh, err = h.refresh(r.Context(), key, sess)
	}
	if err == nil {
		// A shared result may come from another copy of this session:
		// save it where this one lives.
		fresh.storeKey = sess.storeKey
		err = h.setSessionCookie(w, r, &fresh)
		if err == errNoSession {
			// Logged out (elsewhere) while the refresh ran.
			h.clearSessionCookie(w, r)
			_ = h.challenge(w, r)
			return sess, false
		}
		if err != nil {
			// The new token works; saving it failed. Serve with it.
			h.logger.Warn("saving the refreshed session", zap.String("user_id", sess.UserID), zap.Error(err))
			err = nil
		}
	}
	switch {
	case err == nil:
		if forced {
			// At most one refresh per session on the upstream's word
			// every few minutes, whatever the upstream keeps saying.
			h.shared.pauseRefresh(key, now, forcedRefreshInterval)
		}
		return fresh, true
	case kindOf(err) == kindRefreshRevoked:
		h.logger.Info("refresh token no longer valid; session ended",
			zap.String("user_id", sess.UserID), zap.Error(err))
		h.clearSessionCookie(w, r)
		_ = h.challenge(w, r)
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

// passUpstream puts the token and identity on the request and removes the
// handler's cookies from it.
func (h *Handler) passUpstream(r *http.Request, s *session) {
	up := s.up
	if !up.isFor(s) {
		up = h.upstreamValues(s)
	}
	// One allocation for all the header slices: this runs on every
	// authenticated request. The strings are shared with the cache (they
	// are immutable); the slice is not, as later handlers may edit it.
	n := 2
	if h.userHeaders {
		n = 2 + len(userHeaderNames)
	}
	vals := make([]string, n)
	vals[0], vals[1] = up.token, up.expiry
	r.Header[h.tokenHeader] = vals[0:1:1]
	r.Header["X-Spotify-Token-Expires"] = vals[1:2:2]
	if h.userHeaders {
		// Sessions made before profile fields were cleaned at login may
		// still hold control characters: headerSafe encodes those.
		vals[2], vals[3], vals[4], vals[5], vals[6] = headerSafe(s.UserID), up.name, up.email, headerSafe(s.Product), headerSafe(s.Scopes)
		for i, name := range userHeaderNames {
			if v := vals[2+i]; v != "" {
				r.Header[name] = vals[2+i : 3+i : 3+i]
			}
		}
	}
	stripOurCookies(r.Header, h.cookies)
	setPlaceholders(r, up.placeholders)
	markPassed(r, h.headerVar)
}

// userHeaderNames are the identity headers, in the order passUpstream
// fills them. All match the X-Spotify- prefix that is always stripped.
var userHeaderNames = [...]string{"X-Spotify-User-Id", "X-Spotify-User-Name", "X-Spotify-User-Email", "X-Spotify-Product", "X-Spotify-Scopes"}

// challenge answers a request that has no session: browsers are sent to
// log in, everything else gets 401 with the login URL.
func (h *Handler) challenge(w http.ResponseWriter, r *http.Request) error {
	if isNavigation(r) {
		h.startLogin(w, r, returnPath(r))
		return nil
	}
	h.metrics.unauthorized.Inc()
	// This answer is what every stranger and every tampered cookie gets:
	// built with appends, no JSON encoder. A query-escaped URL needs no
	// JSON or header escaping.
	login := loginURL(returnPath(r))
	const bodyStart = `{"error":"unauthenticated","error_description":"log in with Spotify first","login_url":"`
	const challengeStart = `Spotify realm="spotify_auth", login_url="`
	buf := make([]byte, 0, len(bodyStart)+len(challengeStart)+2*len(login)+5)
	buf = append(append(append(buf, bodyStart...), login...), "\"}\n"...)
	bodyLen := len(buf)
	buf = append(append(append(buf, challengeStart...), login...), '"')
	all := string(buf)

	hdr := w.Header()
	setPageHeaders(hdr)
	hdr["Www-Authenticate"] = []string{all[bodyLen:]}
	if h.handOff(r, http.StatusUnauthorized, "log in with Spotify first") {
		return nil
	}
	hdr["Content-Type"] = []string{"application/json"}
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = io.WriteString(w, all[:bodyLen])
	return nil
}

func loginURL(returnTo string) string {
	return EndpointPrefix + "login?rd=" + url.QueryEscape(returnTo)
}

// isNavigation tells a browser loading a page (which can follow a login
// redirect) from a script or API client (which can't).
func isNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead || answersJSON(r) {
		return false
	}
	if r.Header.Get("X-Requested-With") != "" {
		return false
	}
	switch r.Header.Get("Sec-Fetch-Mode") {
	case "navigate":
		return true
	case "":
		return strings.Contains(r.Header.Get("Accept"), "text/html")
	default:
		return false
	}
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
// result, and follows it if that is due again.
func (h *Handler) refresh(ctx context.Context, key string, sess session) (session, error) {
	if sess.RefreshToken == "" {
		return session{}, &authError{Kind: kindRefreshRevoked, Message: "session has no refresh token"}
	}
	// The shared call must not die with whichever request started it.
	ctx = context.WithoutCancel(ctx)
	first := key
	for hop := 0; ; hop++ {
		fresh, earlier, err := h.refreshOnce(ctx, key, sess)
		if err != nil {
			return session{}, err
		}
		if !earlier || hop == maxRefreshHops || fresh.TokenExpires-h.leeway > time.Now().Unix() {
			if key != first {
				h.shared.rememberRefresh(first, fresh, time.Now()) // one hop next time
			}
			return fresh, nil
		}
		sess, key = fresh, refreshKey(fresh.RefreshToken)
	}
}

// refreshOnce returns what refreshing this refresh token gives: a result
// remembered here or published by another instance (earlier), or a new
// one from Spotify.
func (h *Handler) refreshOnce(ctx context.Context, key string, sess session) (session, bool, error) {
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
			h.metrics.refreshFailures.WithLabelValues(kindRateLimited.String()).Inc()
			return nil, err
		}
		if !tokenUsable(sess, now) && h.shared.failedRecently(key, now) {
			return nil, &authError{Kind: kindSpotifyUnavailable, Message: "Spotify's accounts service failed a moment ago"}
		}
		tr, published, err := h.refreshAcrossInstances(ctx, key, sess.RefreshToken, sess.TokenExpires)
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

// refreshKey identifies a session across its requests without keeping
// the refresh token itself in memory maps.
func refreshKey(refreshToken string) string {
	sum := sha256.Sum256([]byte(refreshToken))
	return hex.EncodeToString(sum[:16])
}

// stripManagedHeaders removes every header the handler sets, compared
// case-insensitively and with '_' read as '-', since some proxies and
// apps treat the two alike.
func stripManagedHeaders(hdr http.Header, tokenHeader string) {
	for k := range hdr {
		if headerNameIs(k, tokenHeader) || headerNameHasPrefix(k, "x-spotify-") {
			delete(hdr, k)
		}
	}
}

func headerNameIs(name, want string) bool {
	return len(name) == len(want) && headerNameHasPrefix(name, want)
}

func headerNameHasPrefix(name, prefix string) bool {
	if len(name) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		if foldHeaderByte(name[i]) != foldHeaderByte(prefix[i]) {
			return false
		}
	}
	return true
}

func foldHeaderByte(c byte) byte {
	switch {
	case c >= 'A' && c <= 'Z':
		return c + ('a' - 'A')
	case c == '_':
		return '-'
	}
	return c
}

// stripOurCookies keeps the handler's cookies from the upstream.
func stripOurCookies(hdr http.Header, names cookieNames) {
	lines := hdr["Cookie"]
	if !hasOurCookie(lines, names) {
		return // the common case after the gate: nothing to rebuild
	}
	var kept []string
	for _, line := range lines {
		var b strings.Builder
		rest := line
		for len(rest) > 0 {
			var part string
			part, rest, _ = strings.Cut(rest, ";")
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			name, _, _ := strings.Cut(part, "=")
			if names.ours(name) {
				continue
			}
			if b.Len() > 0 {
				b.WriteString("; ")
			}
			b.WriteString(part)
		}
		if b.Len() > 0 {
			kept = append(kept, b.String())
		}
	}
	if len(kept) == 0 {
		delete(hdr, "Cookie")
		return
	}
	hdr["Cookie"] = kept
}

func hasOurCookie(lines []string, names cookieNames) bool {
	for _, line := range lines {
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			name, _, _ := strings.Cut(strings.TrimSpace(part), "=")
			if names.ours(name) {
				return true
			}
		}
	}
	return false
}
