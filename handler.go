package spotifyauth

import (
	"io"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// ServeHTTP answers the handler's own endpoints and lets through only
// requests with a valid session, carrying the user's access token.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	err := h.serve(w, r, next)
	if err == nil && h.errorRoutes {
		err = handedOff(r)
	}
	if err != nil {
		// The site's handle_errors gets this request, and the strip route
		// does not run there: nothing a client sent may pass for ours.
		// Only what a gate that let this request through (another
		// block's) set stays, and this gate's cookies go regardless.
		stripWhatNoGateSet(r, h.tokenHeader, h.cookies)
	}
	return err
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if h.WebAPI {
		return h.serveWebAPI(w, r, next)
	}
	if !h.appMode && isEndpointPath(h, r.URL.Path) {
		return h.serveEndpoint(w, r)
	}

	// Whatever happens next, the client's own versions of our headers
	// must never reach the upstream.
	stripManagedHeaders(r.Header, h.tokenHeader)
	scrubTrailers(r, h.tokenHeader)

	if h.appMode {
		return h.serveApp(w, r, next)
	}

	sess, ok := h.admit(w, r)
	if !ok {
		return nil
	}
	uw := &upstreamWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, shared: h.shared, token: sess.AccessToken, cookies: &h.cookies}
	h.passUpstream(r, &sess, &uw.headerValues)
	return next.ServeHTTP(uw, r)
}

// isEndpointPath reports whether p (decoded) is the callback or under
// the endpoint prefix as Caddy's path matcher sees it: cleaned, in any
// case. serveEndpoint answers such a request at an endpoint's exact path
// only, and with 404 at any other spelling of it.
func isEndpointPath(h *Handler, p string) bool {
	p = path.Clean(p) // no allocation for a path that is clean already
	dir := EndpointPrefix[:len(EndpointPrefix)-1]
	return strings.EqualFold(p, h.callbackPath) ||
		len(p) >= len(dir) && strings.EqualFold(p[:len(dir)], dir) && (len(p) == len(dir) || p[len(dir)] == '/')
}

// admit loads the request's session and takes it through what every
// gated request passes: moving it to storage if it predates session_store
// storage, the block's rules and scopes (before any refresh: a user who
// may not pass costs Spotify nothing), and a fresh token. It returns false
// if it has answered the request itself.
func (h *Handler) admit(w http.ResponseWriter, r *http.Request) (session, bool) {
	now := time.Now()
	sess, err := h.sessions.load(r, now)
	if err == errNoSession {
		h.challenge(w, r)
		return sess, false
	}
	if err != nil {
		h.logger.Error("loading the session from storage", zap.Error(err))
		h.fail(w, r, asAuthError(err), "")
		return sess, false
	}
	if sess, err = h.sessions.adopt(w, r, sess); err != nil {
		h.logger.Error("moving a session to storage", zap.Error(err))
		h.fail(w, r, asAuthError(err), "")
		return sess, false
	}
	if !h.rules.allows(&sess) {
		denyAccess(h, w, r, &sess)
		return sess, false
	}
	if missing := neededScopes(h, &sess); len(missing) > 0 {
		askForScopes(h, w, r, &sess, missing)
		return sess, false
	}
	return h.ensureFresh(w, r, sess, now)
}

// passUpstream puts the token and identity on the request and removes the
// handler's cookies from it. The header slices share vals, the request's
// own array (part of its upstreamWriter, so no allocation of their own):
// the strings are the cache's (immutable), the slices are not, as later
// handlers may edit them.
func (h *Handler) passUpstream(r *http.Request, s *session, vals *headerValues) {
	up := s.up
	if !up.isFor(s) {
		up = newUpstreamValues(s, h.bearer, h.userHeaders)
	}
	*vals = up.values
	r.Header[h.tokenHeader] = vals[0:1:1]
	r.Header["X-Spotify-Token-Expires"] = vals[1:2:2]
	if h.userHeaders {
		for i, name := range userHeaderNames {
			if vals[2+i] != "" {
				r.Header[name] = vals[2+i : 3+i : 3+i]
			}
		}
	}
	stripOurCookies(r.Header, h.cookies)
	setPlaceholders(r, up.placeholders)
	markPassed(r, h.passMark)
}

// userHeaderNames are the identity headers, in the order passUpstream
// fills them. All match the X-Spotify- prefix that is always stripped.
var userHeaderNames = [...]string{"X-Spotify-User-Id", "X-Spotify-Account-Id", "X-Spotify-User-Name", "X-Spotify-User-Email", "X-Spotify-Product", "X-Spotify-Scopes"}

// challenge answers a request that has no session: browsers are sent to
// log in, everything else gets 401 with the login URL.
func (h *Handler) challenge(w http.ResponseWriter, r *http.Request) {
	if isNavigation(r) {
		h.login.startLogin(w, r, returnPath(r))
		return
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
	if h.handOff(w, r, http.StatusUnauthorized, "log in with Spotify first") {
		return
	}
	hdr["Content-Type"] = []string{"application/json"}
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = io.WriteString(w, all[:bodyLen])
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
			} else {
				b.Grow(len(part) + len(rest)) // one allocation for the line
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
