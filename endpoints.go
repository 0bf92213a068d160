package spotifyauth

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"
)

// The endpoints under /oauth2/spotify/ other than login and callback:
// logout, userinfo and token, and the dispatch to all of them.

// serveEndpoint answers at the exact, unencoded path of each endpoint.
// Any other spelling Caddy's matcher would also take for it
// (/oauth2/spotify/%61uth, /oauth2%2Fspotify%2Fauth, ./, //, capitals)
// is 404: a front proxy that blocks the literal path must not be
// walked around.
func (h *Handler) serveEndpoint(w http.ResponseWriter, r *http.Request) error {
	switch r.URL.EscapedPath() {
	case h.callbackEscaped:
		h.login.handleCallback(w, r)
	case EndpointPrefix + "login":
		h.login.handleLogin(w, r)
	case EndpointPrefix + "logout":
		h.handleLogout(w, r)
	case EndpointPrefix + "userinfo":
		h.handleUserinfo(w, r)
	case EndpointPrefix + "token":
		h.handleToken(w, r)
	case EndpointPrefix + "auth":
		h.handleAuth(w, r)
	default:
		writePage(w, http.StatusNotFound, page{Title: "Not found", Message: "There is no such login endpoint."})
	}
	return nil
}

// handleLogout shows a logout button (GET) or ends the session (POST).
// With everywhere=1 it ends all of the user's sessions, in every browser.
func (h *Handler) handleLogout(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		writeLogoutForm(w, r.URL.Query())
	case http.MethodPost:
		if !sameOrigin(r, true) {
			writePage(w, http.StatusForbidden, page{Title: "Forbidden", Message: "Logout must come from this site."})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 4096)
		rd := ""
		if err := r.ParseForm(); err == nil {
			rd = safeReturnPathOrEmpty(r.Form.Get("rd"))
		}
		everywhere := r.Form.Get("everywhere") == "1"
		ended, err := endSession(h, r, everywhere)
		if err != nil {
			h.fail(w, r, asAuthError(err), "")
			return
		}
		h.sessions.clear(w, r)
		if rd != "" {
			setPageHeaders(w.Header())
			http.Redirect(w, r, rd, http.StatusSeeOther)
			return
		}
		msg := "You are logged out."
		if ended && everywhere {
			msg = "You are logged out everywhere."
		}
		writePage(w, http.StatusOK, page{Title: "Logged out", Message: msg, LinkURL: loginURL("/"), LinkText: "Log in again"})
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		writePage(w, http.StatusMethodNotAllowed, page{Title: "Method not allowed", Message: "Use POST to log out."})
	}
}

// writeLogoutForm asks before logging out: a GET must not end a session.
func writeLogoutForm(w http.ResponseWriter, q url.Values) {
	p := page{
		Title:      "Log out",
		Message:    "Log out of this site? You stay logged in to Spotify itself.",
		FormAction: EndpointPrefix + "logout",
		FormRD:     safeReturnPathOrEmpty(q.Get("rd")),
		ButtonText: "Log out",
	}
	if q.Get("everywhere") == "1" {
		p.Message = "Log out of this site in every browser and device? You stay logged in to Spotify itself."
		p.FormAction += "?everywhere=1"
		p.ButtonText = "Log out everywhere"
	}
	writePage(w, http.StatusOK, p)
}

// endSession ends the request's session (everywhere: all of its user's)
// where it is stored, and reports whether there was one. On an error the
// user must learn that the session may live on: fail closed.
func endSession(h *Handler, r *http.Request, everywhere bool) (bool, error) {
	sess, err := h.sessions.load(r, time.Now())
	if err == errNoSession {
		return false, nil
	}
	if err != nil {
		h.logger.Error("logout: loading the session from storage", zap.Error(err))
		return false, err
	}
	unreachable := func(err error) error {
		return &authError{Kind: kindStoreUnavailable, Message: "Logout could not reach the session store", Err: err}
	}
	if everywhere {
		// The mark ends copies of the session that storage does not
		// hold: cookie sessions, and cookie sessions from before
		// session_store storage that would otherwise move in again.
		if err := h.sessions.revoke(r.Context(), sess.UserID, time.Now()); err != nil {
			h.logger.Error("logout everywhere: recording the revocation", zap.String("user_id", sess.UserID), zap.Error(err))
			return false, unreachable(err)
		}
	}
	n, err := h.sessions.delete(r.Context(), sess, everywhere)
	if err != nil {
		h.logger.Error("logout: deleting stored sessions", zap.String("user_id", sess.UserID), zap.Error(err))
		return false, unreachable(err)
	}
	h.logger.Info("logout", zap.String("user_id", sess.UserID), zap.Bool("everywhere", everywhere), zap.Int("stored_sessions_ended", n))
	return true, nil
}

// sameOrigin reports whether a request came from a page of this site,
// from the browser's fetch metadata (Sec-Fetch-Site) or else its Origin.
// nonBrowserOK admits what no page can forge: a request carrying neither
// header (not a browser) or one the user typed (Sec-Fetch-Site: none).
// Logout admits those; the token endpoint, which hands out a token, does not.
func sameOrigin(r *http.Request, nonBrowserOK bool) bool {
	site := r.Header.Get("Sec-Fetch-Site")
	switch {
	case site == "same-origin", site == "none" && nonBrowserOK:
	case site != "":
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return site != "" || nonBrowserOK
	}
	return origin == requestOrigin(r)
}

// requestOrigin is the request's own origin as a browser spells it in
// Origin: scheme, host and the port unless it is the scheme's default.
func requestOrigin(r *http.Request) string {
	scheme, defaultPort := "http", ":80"
	if r.TLS != nil {
		scheme, defaultPort = "https", ":443"
	}
	return scheme + "://" + strings.TrimSuffix(strings.ToLower(r.Host), defaultPort)
}

// userinfo is what /oauth2/spotify/userinfo tells: who, never tokens.
type userinfo struct {
	ID          string   `json:"id"`
	AccountID   string   `json:"account_id,omitempty"`
	DisplayName string   `json:"display_name,omitempty"`
	Email       string   `json:"email,omitempty"`
	Product     string   `json:"product,omitempty"`
	Country     string   `json:"country,omitempty"`
	Scopes      []string `json:"scopes"`
	ExpiresAt   string   `json:"expires_at"`
	SessionEnds string   `json:"session_ends"`
}

func (h *Handler) handleUserinfo(w http.ResponseWriter, r *http.Request) {
	s, err := h.sessions.load(r, time.Now())
	if err == errNoSession {
		h.metrics.unauthorized.Inc()
		writeJSON(w, http.StatusUnauthorized, apiError{Error: "unauthenticated", LoginURL: loginURL("/")})
		return
	}
	if err != nil { // the session store is out: not a reason to log in again
		answerScript(r)
		h.fail(w, r, asAuthError(err), "")
		return
	}
	writeJSON(w, http.StatusOK, userinfo{
		ID: s.UserID, AccountID: s.AccountID, DisplayName: s.DisplayName, Email: s.Email, Product: s.Product, Country: s.Country,
		Scopes:      strings.Fields(s.Scopes),
		ExpiresAt:   time.Unix(s.TokenExpires, 0).UTC().Format(time.RFC3339),
		SessionEnds: time.Unix(s.Expires, 0).UTC().Format(time.RFC3339),
	})
}

// tokenResponse is what /oauth2/spotify/token gives a same-origin script.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresAt   string `json:"expires_at"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope"`
}

// handleToken hands a fresh access token to the page's own scripts (the
// Web Playback SDK wants one in JavaScript). Off unless token_endpoint is
// set: a token readable by script is one XSS away from being stolen.
func (h *Handler) handleToken(w http.ResponseWriter, r *http.Request) {
	if !h.TokenEndpoint {
		writePage(w, http.StatusNotFound, page{Title: "Not found", Message: "The token endpoint is not enabled."})
		return
	}
	if r.Method != http.MethodGet || !sameOrigin(r, false) {
		writeJSON(w, http.StatusForbidden, apiError{Error: "forbidden", Description: "same-origin GET only"})
		return
	}
	answerScript(r)
	s, ok := h.admit(w, r) // as every gated request: rules, scopes, a fresh token
	if !ok {
		return
	}
	now := time.Now()
	writeJSON(w, http.StatusOK, tokenResponse{
		AccessToken: s.AccessToken, TokenType: "Bearer",
		ExpiresAt: time.Unix(s.TokenExpires, 0).UTC().Format(time.RFC3339),
		ExpiresIn: s.TokenExpires - now.Unix(), Scope: s.Scopes,
	})
}
