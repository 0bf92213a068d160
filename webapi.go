package spotifyauth

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/headers"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/rewrite"
	"go.uber.org/zap"

	"github.com/caddyspotify/caddy-spotify-auth/internal/refresher"
)

// web_api: the page's scripts call the Spotify Web API through the site
// (the "backend for frontend" pattern), so the token never reaches
// JavaScript. The gate in web_api mode checks the request came from the
// site's own pages, puts the user's token on it and removes everything
// else; Caddy's reverse_proxy takes it to api_url.

const (
	// maxReplayBody bounds the request body kept to send again after a
	// refresh; Spotify's PUT/POST bodies (player, playlists) are small.
	maxReplayBody = 64 << 10
	// maxHeldBody bounds the 401 answer held back while the token is
	// refreshed: Spotify's error bodies are a few dozen bytes.
	maxHeldBody = 16 << 10
)

// webAPIRequestHeaders are the request headers that go on to Spotify:
// what its Web API reads. Everything else (cookies, the client's
// Authorization, managed and custom headers) stays here.
var webAPIRequestHeaders = []string{"Accept", "Accept-Language", "Content-Type", "If-None-Match", "If-Modified-Since", "User-Agent"}

// webAPIResponseHeaders are the headers of Spotify's answer that reach the
// page: what describes the answer. Everything else is Spotify's own
// business and would apply to this site (cookies, Strict-Transport-Security,
// Alt-Svc, Access-Control-*).
var webAPIResponseHeaders = map[string]bool{
	"Cache-Control": true, "Content-Language": true, "Content-Length": true, "Content-Type": true,
	"Etag": true, "Expires": true, "Last-Modified": true, "Retry-After": true, "Vary": true, "Www-Authenticate": true,
}

// forwardedHeaders are what reverse_proxy adds about the client; Spotify
// has no use for the user's address.
var forwardedHeaders = []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded", "Via"}

// serveWebAPI is the gate of a web_api route: every request it sees is a
// Web API call of the page's scripts. Answers of its own are always JSON.
func (h *Handler) serveWebAPI(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	// Set first and last as well, for what Caddy writes itself: a
	// reverse_proxy error, handle_errors after a hand-off (which drops
	// the pages' CSP; sandbox still lets the operator's page load styles).
	setSandbox(w.Header())
	defer setSandbox(w.Header())
	w = &sandboxWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w}}
	answerScript(r)
	if !slices.Contains(webAPIMethods, r.Method) {
		h.metrics.answered(http.StatusMethodNotAllowed)
		w.Header().Set("Allow", strings.Join(webAPIMethods, ", "))
		writeJSON(w, http.StatusMethodNotAllowed, apiError{Error: "method_not_allowed", Description: "the Web API proxy takes " + strings.Join(webAPIMethods, ", ")})
		return nil
	}
	if !isWebAPIPath(h, r) {
		h.metrics.answered(http.StatusNotFound)
		writeJSON(w, http.StatusNotFound, apiError{Error: "not_found", Description: "the Web API proxy serves " + h.WebAPIPrefix + "/v1/... only"})
		return nil
	}
	if !webAPISameOrigin(r) {
		h.metrics.answered(http.StatusForbidden)
		writeJSON(w, http.StatusForbidden, apiError{Error: "forbidden", Description: "the Web API proxy takes requests from this site's own pages only"})
		return nil
	}
	sess, ok := h.admit(w, r)
	if !ok {
		return nil
	}
	// The owner's lapsed Premium fails every call: none is made while
	// that pause lasts (as this instance knows it; no storage read here).
	if err := mayCallSpotify(r.Context(), h.refresh, refresher.WebAPI, time.Now()); err != nil {
		h.fail(w, r, asAuthError(err), "")
		return nil
	}
	replay, err := replayableBody(r)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{Error: "bad_request", Description: "the request body could not be read"})
		return nil
	}
	return h.callWebAPI(w, r, forSpotify(r), next, sess, replay)
}

// callWebAPI passes the call on with the session's token and, if Spotify
// finds the token dead, refreshes and sends it once more. The retry is a
// hook on the answer, not reverse_proxy's own retries: those re-send only
// after a failed dial (or for requests retry_match selects), never on the
// upstream's status, and handle_response cannot send the request again
// with another token.
//
// out is the call as Spotify gets it; r stays the browser's request, with
// the cookies a refresh reads, replaces or clears.
func (h *Handler) callWebAPI(w http.ResponseWriter, r, out *http.Request, next caddyhttp.Handler, sess session, replay func() io.ReadCloser) error {
	for first := true; ; first = false {
		out.Header["Authorization"] = []string{"Bearer " + sess.AccessToken}
		if replay != nil {
			out.Body = replay()
		}
		aw := &webAPIWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w},
			hdr: http.Header{}, hold: first && replay != nil, token: sess.AccessToken, h: h}
		err := next.ServeHTTP(aw, out)
		if aw.forbidden {
			return answerForbidden(h, w, r, aw, sess.UserID)
		}
		if !aw.held {
			return err
		}
		// Spotify found the token dead (revoked, or expired early): one
		// refresh, at most every few minutes per session, then once more.
		dead := sess.AccessToken
		h.shared.markRejected(dead)
		var ok bool
		if sess, ok = h.ensureFresh(w, r, sess, time.Now()); !ok {
			return nil
		}
		if sess.AccessToken == dead {
			if sess, ok = refreshedMeanwhile(h, w, r, sess); !ok {
				return aw.release()
			}
		}
	}
}

// refreshedMeanwhile takes the result of a refresh another call of the
// session made a moment ago (calls fired together all find the token
// dead; one refreshes), saving it where the session lives.
func refreshedMeanwhile(h *Handler, w http.ResponseWriter, r *http.Request, sess session) (session, bool) {
	t, ok := h.refresh.Remembered(tokensOf(sess))
	if !ok || t.AccessToken == sess.AccessToken {
		return sess, false
	}
	fresh := withTokens(sess, t)
	fresh, err := h.sessions.save(w, r, fresh)
	if err == errNoSession {
		return sess, false // logged out meanwhile
	} else if err != nil {
		h.logger.Warn("web_api: saving the refreshed session", zap.String("user_id", sess.UserID), zap.Error(err))
	}
	return fresh, true
}

// answerForbidden passes Spotify's 403 on as it came, unless its text
// says the app owner's Premium has lapsed: then every call fails, for
// every user, so it is the outage answer and the shared pause. A user
// taken off a development-mode app's list keeps refreshing, and only
// these 403s tell: the operator reads it once per user.
func answerForbidden(h *Handler, w http.ResponseWriter, r *http.Request, aw *webAPIWriter, userID string) error {
	said := spotifyMessage(aw.heldBody.Bytes())
	if !ownerPremiumLapsed(said) {
		if userNotRegistered(said) && h.shared.firstLog("web_api user list", userID, time.Now()) {
			h.logger.Warn("web_api: Spotify refuses this user's calls: the account is not on the user list of this "+
				"development-mode app (any more); add it under User Management in Spotify's developer dashboard, "+
				"or end its sessions with the admin revoke", zap.String("user_id", userID), zap.String("spotify_said", said))
		}
		return aw.release()
	}
	ae := ownerPremiumError(said, spotifyDetail("web_api "+r.Method, http.StatusForbidden, said))
	noteSpotify(r.Context(), h.refresh, refresher.Calls, ae)
	h.fail(w, r, ae, "")
	return nil
}

// webAPIMethods are the methods Spotify's Web API uses. Anything else
// (TRACE, CONNECT, WebDAV's) is not a Web API call and is refused.
var webAPIMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete}

// isWebAPIPath admits <prefix>/v1/... as the client spelled it (the
// escaped path: no percent-encoded letter or slash, no other case of the
// prefix, though Caddy's matcher takes them all), with no dot segment,
// empty segment or backslash once decoded: strip_path_prefix cleans the
// path, and Spotify may, into one outside /v1/.
func isWebAPIPath(h *Handler, r *http.Request) bool {
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), h.WebAPIPrefix)
	if !ok || !strings.HasPrefix(rest, "/v1/") {
		return false
	}
	p := r.URL.Path // decoded: %2e%2e and %2F.. show here
	if strings.ContainsRune(p, '\\') {
		return false
	}
	clean := path.Clean(p)
	return p == clean || len(p) == len(clean)+1 && strings.HasPrefix(p, clean) && p[len(p)-1] == '/'
}

// setSandbox marks an answer of the web_api route: served from the
// site's origin, Spotify's JSON must never be sniffed into a page or run
// script there.
func setSandbox(hdr http.Header) {
	hdr["X-Content-Type-Options"] = []string{"nosniff"}
	hdr["Content-Security-Policy"] = []string{"sandbox"}
}

// sandboxWriter puts setSandbox's headers on every answer of the web_api
// route, whoever writes it: the gate's own JSON (which carries the pages'
// CSP) or Spotify's through reverse_proxy.
type sandboxWriter struct {
	caddyhttp.ResponseWriterWrapper
	wroteHeader bool
}

func (w *sandboxWriter) WriteHeader(status int) {
	if !w.wroteHeader && status >= http.StatusOK {
		w.wroteHeader = true
		setSandbox(w.Header())
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *sandboxWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// ReadFrom goes through Write, so the headers are set first.
func (w *sandboxWriter) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(struct{ io.Writer }{w}, r)
}

// FlushError is what reverse_proxy's streaming calls.
func (w *sandboxWriter) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// webAPISameOrigin admits requests from the site's own pages: a
// Sec-Fetch-Site of same-origin (or none: typed by the user), an Origin
// of this site. A state-changing method must show one of the two, as
// every browser's fetch does, so no cross-site form or client that hides
// both can use the session.
func webAPISameOrigin(r *http.Request) bool {
	if !sameOrigin(r, true) {
		return false
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	return r.Header.Get("Sec-Fetch-Site") != "" || r.Header.Get("Origin") != ""
}

// forSpotify is the call as Spotify gets it: the browser's request with
// only the headers Spotify's Web API reads. The site's cookies, the
// client's Authorization, managed headers and trailers never cross.
func forSpotify(r *http.Request) *http.Request {
	kept := make(http.Header, len(webAPIRequestHeaders)+1)
	for _, name := range webAPIRequestHeaders {
		if v, ok := r.Header[name]; ok {
			kept[name] = v
		}
	}
	out := r.WithContext(r.Context())
	out.Header = kept
	out.Trailer = nil
	return out
}

// replayableBody reads a small body into memory so the call can be sent
// again after a refresh. It returns nil (no replay) for a body too large
// to keep, which then streams through once.
func replayableBody(r *http.Request) (func() io.ReadCloser, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return func() io.ReadCloser { return http.NoBody }, nil
	}
	if r.ContentLength > maxReplayBody {
		return nil, nil
	}
	head, err := io.ReadAll(io.LimitReader(r.Body, maxReplayBody+1))
	if err != nil {
		return nil, err
	}
	if len(head) > maxReplayBody {
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(head), r.Body), r.Body}
		return nil, nil
	}
	_ = r.Body.Close()
	r.ContentLength = int64(len(head))
	return func() io.ReadCloser { return io.NopCloser(bytes.NewReader(head)) }, nil
}

// webAPIWriter takes Spotify's answer: status, body and its headers
// unchanged except that nothing of the session can come back (cookies,
// managed headers, any header holding the token), and it stays out of
// shared caches. While hold is set, a 401 invalid_token answer is kept
// back so the call can be made again with a fresh token.
type webAPIWriter struct {
	caddyhttp.ResponseWriterWrapper
	hdr         http.Header // Spotify's headers, until the status is known
	h           *Handler
	token       string
	hold        bool
	held        bool
	forbidden   bool // a 403 held to read its text (the owner's Premium?)
	wroteHeader bool
	heldStatus  int
	heldBody    bytes.Buffer
}

func (w *webAPIWriter) Header() http.Header { return w.hdr }

func (w *webAPIWriter) WriteHeader(status int) {
	if status < http.StatusOK || w.wroteHeader {
		return // 1xx are not the answer; Spotify sends none anyway
	}
	w.wroteHeader = true
	if status == http.StatusUnauthorized && strings.Contains(w.hdr.Get("WWW-Authenticate"), "invalid_token") {
		if w.hold {
			w.held, w.heldStatus = true, status
			return
		}
		w.h.shared.markRejected(w.token) // the next call refreshes
	}
	if status == http.StatusForbidden {
		w.held, w.forbidden, w.heldStatus = true, true, status
		return
	}
	w.sendHeader(status)
}

func (w *webAPIWriter) sendHeader(status int) {
	out := w.ResponseWriter.Header()
	for k, v := range w.hdr {
		if webAPIResponseHeaders[http.CanonicalHeaderKey(k)] && !slices.ContainsFunc(v, w.holdsToken) {
			out[k] = v
		}
	}
	// Made with the user's token: never for a shared cache, whatever
	// Spotify says about its own domain.
	makePrivate(out, new([2]string))
	w.ResponseWriter.WriteHeader(status)
}

func (w *webAPIWriter) holdsToken(v string) bool {
	return w.token != "" && strings.Contains(v, w.token)
}

func (w *webAPIWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.held {
		if room := maxHeldBody - w.heldBody.Len(); room > 0 {
			w.heldBody.Write(b[:min(len(b), room)])
		}
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// ReadFrom goes through Write, so a held answer stays held.
func (w *webAPIWriter) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(struct{ io.Writer }{w}, r)
}

// FlushError is what reverse_proxy's streaming calls.
func (w *webAPIWriter) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.held {
		return nil
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// release sends the held answer as it came, when no fresh token can be had.
func (w *webAPIWriter) release() error {
	w.held, w.forbidden = false, false
	// The body held may be cut at maxHeldBody: its length is what is sent.
	w.hdr["Content-Length"] = []string{strconv.Itoa(w.heldBody.Len())}
	w.sendHeader(w.heldStatus)
	_, err := w.ResponseWriter.Write(w.heldBody.Bytes())
	return err
}

// hasPathPrefix reports whether path is prefix or below it.
func hasPathPrefix(path, prefix string) bool {
	return strings.HasPrefix(path, prefix) && (len(path) == len(prefix) || path[len(prefix)] == '/')
}

// webAPIRoute is the route `web_api <prefix>` adds to the site: for
// <prefix>/*, the gate in web_api mode, then reverse_proxy to api_url
// with the prefix stripped, the upstream's Host and no X-Forwarded-*.
func webAPIRoute(h httpcaddyfile.Helper, gate Handler, prefix string) (caddyhttp.Route, error) {
	apiURL := gate.APIURL
	if apiURL == "" {
		apiURL = DefaultAPIURL
	}
	if hasPlaceholder(apiURL) {
		return caddyhttp.Route{}, h.Errf("web_api: api_url must be a literal URL (it becomes reverse_proxy's upstream), not %q", apiURL)
	}
	u, err := url.Parse(apiURL)
	if err != nil || u.Host == "" || u.Scheme != "http" && u.Scheme != "https" {
		return caddyhttp.Route{}, h.Errf("web_api: api_url %q is not an http(s) URL", apiURL)
	}
	if strings.Trim(u.Path, "/") != "" || u.RawQuery != "" {
		return caddyhttp.Route{}, h.Errf("web_api: api_url %q must have no path (Spotify's is https://api.spotify.com)", apiURL)
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	proxy := reverseproxy.Handler{
		Upstreams: reverseproxy.UpstreamPool{{Dial: net.JoinHostPort(u.Hostname(), port)}},
		Rewrite:   &rewrite.Rewrite{StripPathPrefix: prefix},
		Headers: &headers.Handler{Request: &headers.HeaderOps{
			Set:    http.Header{"Host": []string{u.Host}},
			Delete: forwardedHeaders,
		}},
	}
	// The block's timeout bounds a call as it bounds the plugin's own
	// calls to Spotify: reverse_proxy waits for an answer without end.
	timeout := gate.Timeout
	if timeout == 0 {
		timeout = caddy.Duration(DefaultTimeout)
	}
	transport := reverseproxy.HTTPTransport{ResponseHeaderTimeout: timeout}
	if u.Scheme == "https" {
		transport.TLS = &reverseproxy.TLSConfig{}
	}
	proxy.TransportRaw = caddyconfig.JSONModuleObject(transport, "protocol", "http", nil)
	gate.WebAPI, gate.WebAPIPrefix = true, prefix
	gate.AuthEndpoint = false
	gate.TokenEndpoint = false
	return caddyhttp.Route{
		MatcherSetsRaw: []caddy.ModuleMap{{"path": h.JSON(caddyhttp.MatchPath{prefix + "/*"})}},
		HandlersRaw: []json.RawMessage{
			caddyconfig.JSONModuleObject(gate, "handler", "spotify_auth", nil),
			caddyconfig.JSONModuleObject(proxy, "handler", "reverse_proxy", nil),
		},
	}, nil
}
