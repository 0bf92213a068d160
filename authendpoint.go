package spotifyauth

import (
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// auth_endpoint: the gate for servers that ask an auth service about each
// request, as nginx's auth_request and Traefik's forwardAuth do (the
// model is oauth2-proxy's /oauth2/auth). GET /oauth2/spotify/auth answers
// 200 with what the upstream would have been given as response headers,
// 401 with the login URL, 403 for a refused user, 503 when Spotify is out.

// LoginURLHeader carries the login URL on the auth endpoint's 401, for
// nginx's auth_request_set (a response body is out of its reach).
const LoginURLHeader = "X-Spotify-Login-Url"

// Request variables that make the shared answers (challenge, fail, deny,
// askForScopes) fit a caller that is not the browser's navigation.
const (
	varAnswerJSON = "spotify_auth.json"   // always JSON, never a redirect or page
	varReturnPath = "spotify_auth.return" // where login returns to
)

// answerScript marks a request from a page's script: the answers of the
// plugin are JSON, never a redirect or a page, and a login returns to
// the site's start (a call has no page of its own to return to).
func answerScript(r *http.Request) {
	caddyhttp.SetVar(r.Context(), varAnswerJSON, true)
	caddyhttp.SetVar(r.Context(), varReturnPath, "/")
}

// answersJSON reports whether answers to r must be JSON whatever it
// looks like (auth endpoint, web_api).
func answersJSON(r *http.Request) bool {
	return caddyhttp.GetVar(r.Context(), varAnswerJSON) != nil
}

// returnPath is where a login started from r returns to.
func returnPath(r *http.Request) string {
	if p, ok := caddyhttp.GetVar(r.Context(), varReturnPath).(string); ok {
		return p
	}
	return safeReturnPath(r.URL.RequestURI())
}

// forwardedReturnPath is the original request's URI as the proxy reports
// it: X-Forwarded-Uri (Traefik) or X-Original-URI (the nginx convention),
// checked like every rd.
func forwardedReturnPath(r *http.Request) string {
	for _, name := range []string{"X-Forwarded-Uri", "X-Original-Uri"} {
		if v := r.Header.Get(name); v != "" {
			return safeReturnPath(v)
		}
	}
	return "/"
}

// handleAuth answers whether the request the proxy is about to pass on
// may go, and with which headers. Any method: nginx's subrequest keeps
// the original one. The body is never read.
func (h *Handler) handleAuth(w http.ResponseWriter, r *http.Request) {
	if !h.AuthEndpoint {
		writePage(w, http.StatusNotFound, page{Title: "Not found", Message: "The auth endpoint is not enabled."})
		return
	}
	ctx := r.Context()
	caddyhttp.SetVar(ctx, varAnswerJSON, true)
	rd := forwardedReturnPath(r)
	caddyhttp.SetVar(ctx, varReturnPath, rd)
	// Any answer but 200 sends the user to log in, if anything.
	w.Header().Set(LoginURLHeader, loginURL(rd))

	sess, ok := h.admit(w, r)
	if !ok {
		return
	}
	// What passUpstream would put on the request goes on the answer.
	view := r.WithContext(ctx)
	view.Header = http.Header{}
	h.passUpstream(view, &sess, new(headerValues))
	hdr := w.Header()
	delete(hdr, LoginURLHeader)
	for k, v := range view.Header {
		hdr[k] = v
	}
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Content-Length", "0")
	// Caddy's access log records response headers and redacts only
	// Authorization and cookies: with another token_header, the token
	// would be in it. The proxy logs the request it asked about.
	caddyhttp.SetVar(ctx, caddyhttp.LogSkipVar, true)
	w.WriteHeader(http.StatusOK)
}
