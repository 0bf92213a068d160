package spotifyauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
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
	// refreshRetryPause is how long a session whose refresh failed is
	// served with its still-valid token before refresh is tried again.
	refreshRetryPause = 10 * time.Second
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

// ServeHTTP answers the handler's own endpoints and lets through only
// requests with a valid session, carrying the user's access token.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if p := r.URL.Path; !h.appMode && (p == h.callbackPath || strings.HasPrefix(p, EndpointPrefix)) {
		return h.serveEndpoint(w, r)
	}

	// Whatever happens next, the client's own versions of our headers
	// must never reach the upstream.
	stripManagedHeaders(r.Header, h.tokenHeader)

	if h.appMode {
		return h.serveApp(w, r, next)
	}

	now := time.Now()
	sess, ok := h.loadSession(r, now)
	if !ok {
		return h.challenge(w, r)
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
	if sess, ok = h.ensureFresh(w, r, sess, now); !ok {
		return nil
	}

	h.passUpstream(r, &sess)
	return next.ServeHTTP(&rejectWatcher{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, shared: h.shared, token: sess.AccessToken}, r)
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
	if sess.TokenExpires > now.Unix() && h.shared.refreshPaused(key, now) {
		err = errRefreshPaused
	} else {
		fresh, err = h.refresh(r.Context(), key, sess)
	}
	switch {
	case err == nil:
		h.setSessionCookie(w, r, &fresh)
		if forced {
			// At most one refresh per session on the upstream's word
			// every few minutes, whatever the upstream keeps saying.
			h.shared.pauseRefresh(key, now, forcedRefreshInterval)
		}
		return fresh, true
	case errKindOf(err) == errRefreshRevoked:
		h.logger.Info("refresh token no longer valid; session ended",
			zap.String("user_id", sess.UserID), zap.Error(err))
		h.clearSessionCookie(w, r)
		_ = h.challenge(w, r)
		return sess, false
	case err == errRefreshPaused:
	case sess.TokenExpires > now.Unix():
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

// rejectWatcher notices the upstream answering 401 with
// `WWW-Authenticate: Bearer error="invalid_token"`: its Spotify call found
// the token dead (e.g. access revoked), so the session's next request
// refreshes instead of passing the dead token on until it expires.
type rejectWatcher struct {
	caddyhttp.ResponseWriterWrapper
	shared *sharedState
	token  string
}

func (w *rejectWatcher) WriteHeader(status int) {
	if status == http.StatusUnauthorized && strings.Contains(w.Header().Get("WWW-Authenticate"), "invalid_token") {
		w.shared.markRejected(w.token)
	}
	w.ResponseWriterWrapper.WriteHeader(status)
}

// passUpstream puts the token and identity on the request and removes the
// handler's cookies from it.
func (h *Handler) passUpstream(r *http.Request, s *session) {
	// One allocation for the token and expiry values and one for all the
	// header slices: this runs on every authenticated request.
	var b strings.Builder
	b.Grow(len("Bearer ") + len(s.AccessToken) + len(time.RFC3339))
	if h.bearer {
		b.WriteString("Bearer ")
	}
	b.WriteString(s.AccessToken)
	tokenEnd := b.Len()
	var tbuf [len(time.RFC3339) + 8]byte
	b.Write(time.Unix(s.TokenExpires, 0).UTC().AppendFormat(tbuf[:0], time.RFC3339))
	built := b.String()

	n := 2
	if h.userHeaders {
		n = 2 + len(userHeaderNames)
	}
	vals := make([]string, n)
	vals[0], vals[1] = built[:tokenEnd], built[tokenEnd:]
	r.Header[h.tokenHeader] = vals[0:1:1]
	r.Header["X-Spotify-Token-Expires"] = vals[1:2:2]
	if h.userHeaders {
		vals[2], vals[3], vals[4], vals[5], vals[6] = s.UserID, encodeHeaderText(s.DisplayName), headerSafe(s.Email), s.Product, s.Scopes
		for i, name := range userHeaderNames {
			if v := vals[2+i]; v != "" {
				r.Header[name] = vals[2+i : 3+i : 3+i]
			}
		}
	}
	stripOurCookies(r.Header, h.cookies)
	setPlaceholders(r, s)
}

// userHeaderNames are the identity headers, in the order passUpstream
// fills them. All match the X-Spotify- prefix that is always stripped.
var userHeaderNames = [...]string{"X-Spotify-User-Id", "X-Spotify-User-Name", "X-Spotify-User-Email", "X-Spotify-Product", "X-Spotify-Scopes"}

func (h *Handler) serveEndpoint(w http.ResponseWriter, r *http.Request) error {
	switch r.URL.Path {
	case h.callbackPath:
		h.handleCallback(w, r)
	case EndpointPrefix + "login":
		h.handleLogin(w, r)
	case EndpointPrefix + "logout":
		h.handleLogout(w, r)
	case EndpointPrefix + "userinfo":
		h.handleUserinfo(w, r)
	case EndpointPrefix + "token":
		h.handleToken(w, r)
	default:
		writePage(w, http.StatusNotFound, page{Title: "Not found", Message: "There is no such login endpoint."})
	}
	return nil
}

// challenge answers a request that has no session: browsers are sent to
// log in, everything else gets 401 with the login URL.
func (h *Handler) challenge(w http.ResponseWriter, r *http.Request) error {
	if isNavigation(r) {
		h.startLogin(w, r, safeReturnPath(r.URL.RequestURI()))
		return nil
	}
	h.metrics.unauthorized.Inc()
	// This answer is what every stranger and every tampered cookie gets:
	// built with appends, no JSON encoder. A query-escaped URL needs no
	// JSON or header escaping.
	login := loginURL(safeReturnPath(r.URL.RequestURI()))
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
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
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

func (h *Handler) handleLogin(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writePage(w, http.StatusMethodNotAllowed, page{Title: "Method not allowed", Message: "Use GET to start a login."})
		return
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil || len(q["rd"]) > 1 {
		h.fail(w, r, &authError{Kind: errBadRequest, Message: "The login link is malformed."}, loginURL("/"))
		return
	}
	lr := h.defaultLoginRequest(r, safeReturnPath(q.Get("rd")))
	// "switch=1": let the user pick another account on Spotify's page.
	lr.showDialog = lr.showDialog || q.Get("switch") == "1"
	h.startLoginWith(w, r, lr)
}

// loginRequest is what a login asks Spotify for.
type loginRequest struct {
	returnTo   string
	scopes     []string // requested
	required   []string // must be granted, or consent is asked once more
	userHint   string   // for the log only
	reconsent  bool     // this is the second asking
	showDialog bool
}

// defaultLoginRequest asks for this route's scopes, plus those an
// existing session already asked for, so a new login never takes away
// what another route of the site needed.
func (h *Handler) defaultLoginRequest(r *http.Request, returnTo string) loginRequest {
	scopes := unionScopes(h.Scopes, h.RequiredScopes)
	if s, ok := h.loadSession(r, time.Now()); ok {
		scopes = unionScopes(strings.Fields(s.Requested), strings.Fields(s.Scopes), scopes)
	}
	return loginRequest{returnTo: returnTo, scopes: scopes, required: h.RequiredScopes, showDialog: h.ShowDialog}
}

// loginState travels in the per-login cookie from the redirect to the
// callback; sealed, so the browser can neither read nor change it.
type loginState struct {
	State       string `json:"s"`
	Verifier    string `json:"v"`
	ReturnTo    string `json:"r"`
	RedirectURI string `json:"u"`
	Created     int64  `json:"c"`
	Scopes      string `json:"sc,omitempty"` // requested
	Required    string `json:"rq,omitempty"`
	Reconsent   bool   `json:"rc,omitempty"`
}

// startLogin sends the browser to Spotify's consent page.
func (h *Handler) startLogin(w http.ResponseWriter, r *http.Request, returnTo string) {
	h.startLoginWith(w, r, h.defaultLoginRequest(r, returnTo))
}

func (h *Handler) startLoginWith(w http.ResponseWriter, r *http.Request, lr loginRequest) {
	redirectURI, err := h.redirectURIFor(r)
	if err != nil {
		h.fail(w, r, asAuthError(err), "")
		return
	}
	ls := loginState{
		State:       randomToken(32),
		Verifier:    oauth2.GenerateVerifier(),
		ReturnTo:    lr.returnTo,
		RedirectURI: redirectURI,
		Created:     time.Now().Unix(),
		Scopes:      strings.Join(lr.scopes, " "),
		Required:    strings.Join(lr.required, " "),
		Reconsent:   lr.reconsent,
	}
	plain, err := json.Marshal(ls)
	if err != nil {
		h.fail(w, r, &authError{Kind: errMisconfigured, Message: "Could not start the login.", Err: err}, "")
		return
	}
	name := h.cookies.state(r, stateID(ls.State))
	http.SetCookie(w, h.cookieTemplate(r, name, h.states.seal(plain, []byte(name)), h.callbackPath, stateLifetime))

	opts := []oauth2.AuthCodeOption{
		oauth2.S256ChallengeOption(ls.Verifier),
		oauth2.SetAuthURLParam("redirect_uri", redirectURI),
	}
	if ls.Scopes != "" {
		opts = append(opts, oauth2.SetAuthURLParam("scope", ls.Scopes))
	}
	if lr.showDialog || lr.reconsent {
		opts = append(opts, oauth2.SetAuthURLParam("show_dialog", "true"))
	}
	setPageHeaders(w.Header())
	h.metrics.redirects.Inc()
	http.Redirect(w, r, h.oauth.AuthCodeURL(ls.State, opts...), http.StatusFound)
}

// redirectURIFor returns the redirect URI for this request: the
// configured one, or the callback path on the request's scheme and host.
func (h *Handler) redirectURIFor(r *http.Request) (string, error) {
	if h.redirectURL != nil {
		return h.RedirectURI, nil
	}
	if !validHost(r.Host) {
		return "", &authError{Kind: errBadRequest, Message: "The request's Host header is not valid."}
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	uri := scheme + "://" + r.Host + h.callbackPath
	if scheme == "http" && !isLoopbackHost(hostOnly(r.Host)) {
		msg := "The redirect URI " + uri + " is plain http on a host that is not a loopback IP literal; " +
			"Spotify accepts only https redirect URIs, or http://127.0.0.1:PORT/... and http://[::1]:PORT/... " +
			"Serve this site over HTTPS or set redirect_uri."
		h.logger.Warn("derived redirect URI will be refused by Spotify", zap.String("redirect_uri", uri))
		if h.AuthorizeURL == DefaultAuthorizeURL {
			return "", &authError{Kind: errMisconfigured, Message: msg}
		}
	}
	return uri, nil
}

func (h *Handler) handleCallback(w http.ResponseWriter, r *http.Request) {
	// The callback's URL carries the authorization code, and Caddy's
	// access log records URLs as received: leave this request out of it.
	// The outcome is logged below, without the code.
	caddyhttp.SetVar(r.Context(), caddyhttp.LogSkipVar, true)
	setPageHeaders(w.Header())
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writePage(w, http.StatusMethodNotAllowed, page{Title: "Method not allowed", Message: "The login callback takes GET."})
		return
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil || len(q["state"]) > 1 || len(q["code"]) > 1 || len(q["error"]) > 1 {
		h.fail(w, r, &authError{Kind: errBadRequest, Message: "The login callback is malformed."}, loginURL("/"))
		return
	}
	now := time.Now()

	if e := q.Get("error"); e != "" {
		returnTo := "/"
		if ls, err := h.consumeState(w, r, q.Get("state"), now); err == nil {
			returnTo = ls.ReturnTo
		}
		if e == "access_denied" {
			h.metrics.loginFailures.WithLabelValues(errLoginDenied.String()).Inc()
			h.logger.Info("login declined at Spotify")
			h.fail(w, r, &authError{Kind: errLoginDenied, Message: "You declined to log in with Spotify, so this page stays closed."}, loginURL(returnTo))
			return
		}
		e = oauthErrorCode(e)
		h.metrics.loginFailures.WithLabelValues(errLoginRejected.String()).Inc()
		h.logger.Warn("Spotify returned an error to the callback", zap.String("error", e))
		h.fail(w, r, &authError{Kind: errLoginRejected, Message: "Spotify reported an error: " + e + "."}, loginURL(returnTo))
		return
	}

	ls, err := h.consumeState(w, r, q.Get("state"), now)
	if err != nil {
		h.metrics.loginFailures.WithLabelValues(errStateInvalid.String()).Inc()
		h.logger.Info("login callback refused", zap.String("reason", err.Error()))
		h.fail(w, r, &authError{Kind: errStateInvalid, Message: "This login link is invalid, was already used, has expired, or was started in another browser."}, loginURL("/"))
		return
	}
	code := q.Get("code")
	if code == "" || len(code) > maxCodeLen {
		h.metrics.loginFailures.WithLabelValues(errBadRequest.String()).Inc()
		h.fail(w, r, &authError{Kind: errBadRequest, Message: "The login callback carries no valid code."}, loginURL(ls.ReturnTo))
		return
	}

	sess, err := h.completeLogin(r.Context(), code, ls, now)
	if err != nil {
		ae := asAuthError(err)
		if ae.Kind == errRefreshRevoked {
			ae.Kind = errLoginRejected // invalid_grant on a code: expired or already used
		}
		h.metrics.loginFailures.WithLabelValues(ae.Kind.String()).Inc()
		h.logger.Warn("login failed", zap.Stringer("reason", ae.Kind), zap.String("detail", ae.Message), zap.Error(ae.Err))
		h.fail(w, r, ae, loginURL(ls.ReturnTo))
		return
	}
	h.setSessionCookie(w, r, &sess)
	h.metrics.logins.Inc()
	h.logger.Info("login", zap.String("user_id", sess.UserID), zap.String("scopes", sess.Scopes))

	var missing []string
	for _, sc := range strings.Fields(ls.Required) {
		if !hasScope(sess.Scopes, sc) {
			missing = append(missing, sc)
		}
	}
	if len(missing) > 0 {
		if !ls.Reconsent {
			// Ask once more, with the consent dialog shown.
			h.logger.Info("required scopes not granted; asking again", zap.String("user_id", sess.UserID), zap.Strings("missing", missing))
			h.startLoginWith(w, r, loginRequest{returnTo: ls.ReturnTo, scopes: strings.Fields(ls.Scopes),
				required: strings.Fields(ls.Required), reconsent: true})
			return
		}
		h.metrics.loginFailures.WithLabelValues("scope_not_granted").Inc()
		h.metrics.answered(http.StatusForbidden)
		writePage(w, http.StatusForbidden, page{
			Title:    "Permission missing",
			Message:  "This page needs the Spotify permission " + strings.Join(missing, ", ") + ", which was not granted.",
			LinkURL:  loginURL(ls.ReturnTo),
			LinkText: "Try again",
		})
		return
	}
	http.Redirect(w, r, ls.ReturnTo, http.StatusFound)
}

// completeLogin exchanges the code and learns who the user is.
func (h *Handler) completeLogin(ctx context.Context, code string, ls loginState, now time.Time) (session, error) {
	if err := h.shared.checkBackoff(now); err != nil {
		return session{}, err
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, h.httpClient)
	tok, err := h.oauth.Exchange(ctx, code,
		oauth2.VerifierOption(ls.Verifier),
		oauth2.SetAuthURLParam("redirect_uri", ls.RedirectURI))
	if err != nil {
		ae := classifyTokenError(err, "code exchange")
		h.shared.noteRateLimit(ae, time.Now())
		return session{}, ae
	}
	if tok.RefreshToken == "" {
		return session{}, &authError{Kind: errLoginRejected, Message: "Spotify issued no refresh token"}
	}
	prof, err := h.spotify.me(ctx, tok.AccessToken)
	if err != nil {
		h.shared.noteRateLimit(err, time.Now())
		return session{}, err
	}
	if !printableASCII(prof.ID) {
		return session{}, &authError{Kind: errLoginRejected, Message: "Spotify returned a malformed user id"}
	}
	return session{
		Created:      now.Unix(),
		Expires:      now.Add(time.Duration(h.SessionLifetime)).Unix(),
		TokenExpires: tokenExpiry(tok, now),
		AccessToken:  tok.AccessToken,
		RefreshToken: tok.RefreshToken,
		Scopes:       grantedScopes(tok, ""),
		UserID:       prof.ID,
		DisplayName:  truncate(prof.DisplayName, 256),
		Email:        truncate(prof.Email, 256),
		Product:      truncate(prof.Product, 32),
		Country:      truncate(prof.Country, 8),
		Requested:    ls.Scopes,
	}, nil
}

// consumeState checks the callback's state against this browser's login
// cookie, and uses it up: the cookie is expired and the state remembered.
func (h *Handler) consumeState(w http.ResponseWriter, r *http.Request, state string, now time.Time) (loginState, error) {
	var ls loginState
	if state == "" {
		return ls, errors.New("missing state")
	}
	if len(state) > maxStateLen {
		return ls, errors.New("oversized state")
	}
	id := stateID(state)
	name := h.cookies.state(r, id)
	raw, ok := cookieValue(r.Header, name)
	if !ok {
		return ls, errors.New("no login in progress in this browser for this state")
	}
	http.SetCookie(w, h.cookieTemplate(r, name, "", h.callbackPath, -1))
	plain, err := h.states.open(raw, []byte(name))
	if err != nil {
		return ls, errors.New("login cookie cannot be opened")
	}
	if err := json.Unmarshal(plain, &ls); err != nil {
		return ls, errors.New("login cookie is malformed")
	}
	if subtle.ConstantTimeCompare([]byte(ls.State), []byte(state)) != 1 {
		return ls, errors.New("state mismatch")
	}
	if now.Sub(time.Unix(ls.Created, 0)) > stateLifetime {
		return ls, errors.New("login took too long")
	}
	if !h.shared.useState(id, now) {
		return ls, errors.New("state already used")
	}
	ls.ReturnTo = safeReturnPath(ls.ReturnTo)
	return ls, nil
}

// errRefreshPaused: a refresh of this session failed a moment ago and its
// token still works, so it is not tried again yet.
var errRefreshPaused = errors.New("refresh paused after a failure")

// refresh renews the session's access token, once per session however
// many requests need it at the same moment.
func (h *Handler) refresh(ctx context.Context, key string, sess session) (session, error) {
	if sess.RefreshToken == "" {
		return session{}, &authError{Kind: errRefreshRevoked, Message: "session has no refresh token"}
	}
	if fresh, ok := h.shared.recentRefresh(key, time.Now(), h.leeway); ok {
		return fresh, nil
	}
	// The shared call must not die with whichever request started it.
	ctx = context.WithValue(context.WithoutCancel(ctx), oauth2.HTTPClient, h.httpClient)
	v, err, _ := h.shared.refreshes.Do(key, func() (any, error) {
		now := time.Now()
		if fresh, ok := h.shared.recentRefresh(key, now, h.leeway); ok {
			return fresh, nil
		}
		if err := h.shared.checkBackoff(now); err != nil {
			h.metrics.refreshFailures.WithLabelValues(errRateLimited.String()).Inc()
			return nil, err
		}
		tok, err := h.oauth.TokenSource(ctx, &oauth2.Token{RefreshToken: sess.RefreshToken}).Token()
		if err != nil {
			ae := classifyTokenError(err, "refresh")
			h.shared.noteRateLimit(ae, time.Now())
			if ae.Kind != errRefreshRevoked {
				h.shared.pauseRefresh(key, time.Now(), h.retryPause)
			}
			h.metrics.refreshFailures.WithLabelValues(ae.Kind.String()).Inc()
			return nil, ae
		}
		h.metrics.refreshes.Inc()
		fresh := sess
		fresh.AccessToken = tok.AccessToken
		if tok.RefreshToken != "" {
			fresh.RefreshToken = tok.RefreshToken
		}
		fresh.TokenExpires = tokenExpiry(tok, now)
		fresh.Scopes = grantedScopes(tok, sess.Scopes)
		h.shared.rememberRefresh(key, fresh, now)
		h.logger.Debug("refreshed access token", zap.String("user_id", sess.UserID))
		return fresh, nil
	})
	if err != nil {
		return session{}, err
	}
	return v.(session), nil
}

// handleLogout shows a logout button (GET) or ends the session (POST).
func (h *Handler) handleLogout(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		writePage(w, http.StatusOK, page{
			Title:      "Log out",
			Message:    "Log out of this site? You stay logged in to Spotify itself.",
			FormAction: EndpointPrefix + "logout",
			FormRD:     safeReturnPathOrEmpty(r.URL.Query().Get("rd")),
			ButtonText: "Log out",
		})
	case http.MethodPost:
		if !sameOrigin(r) {
			writePage(w, http.StatusForbidden, page{Title: "Forbidden", Message: "Logout must come from this site."})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 4096)
		rd := ""
		if err := r.ParseForm(); err == nil {
			rd = safeReturnPathOrEmpty(r.Form.Get("rd"))
		}
		if sess, ok := h.loadSession(r, time.Now()); ok {
			h.logger.Info("logout", zap.String("user_id", sess.UserID))
		}
		h.clearSessionCookie(w, r)
		if rd != "" {
			setPageHeaders(w.Header())
			http.Redirect(w, r, rd, http.StatusSeeOther)
			return
		}
		writePage(w, http.StatusOK, page{Title: "Logged out", Message: "You are logged out.", LinkURL: loginURL("/"), LinkText: "Log in again"})
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		writePage(w, http.StatusMethodNotAllowed, page{Title: "Method not allowed", Message: "Use POST to log out."})
	}
}

// oauthErrorCode passes on an OAuth error code only if it looks like one
// (RFC 6749 codes are short snake_case words); the callback's query is
// anybody's to write.
func oauthErrorCode(e string) string {
	if len(e) > 64 {
		return "unknown_error"
	}
	for i := 0; i < len(e); i++ {
		if c := e[i]; !(c >= 'a' && c <= 'z' || c == '_') {
			return "unknown_error"
		}
	}
	return e
}

func safeReturnPathOrEmpty(rd string) string {
	if rd == "" {
		return ""
	}
	return safeReturnPath(rd)
}

// sameOrigin refuses cross-site form posts (logout CSRF). Browsers send
// Sec-Fetch-Site or Origin with every POST; clients sending neither are
// not browsers and cannot be tricked.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}

// fail answers a failed auth step: the one place where failure kinds
// become statuses. Browsers get a page with a retry link, others JSON.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, ae *authError, retryURL string) {
	status, title, code := http.StatusInternalServerError, "Login failed", "internal_error"
	switch ae.Kind {
	case errStateInvalid:
		status, title, code = http.StatusBadRequest, "Login expired", "invalid_state"
	case errLoginDenied:
		status, title, code = http.StatusForbidden, "Login cancelled", "access_denied"
	case errLoginRejected:
		status, title, code = http.StatusForbidden, "Spotify refused the login", "login_rejected"
	case errSpotifyUnavailable:
		status, title, code = http.StatusServiceUnavailable, "Spotify is unreachable", "spotify_unavailable"
		setRetryAfter(w.Header(), max(ae.RetryAfter, unavailableRetryAfter))
	case errRateLimited:
		status, title, code = http.StatusServiceUnavailable, "Spotify is busy", "spotify_rate_limited"
		setRetryAfter(w.Header(), max(ae.RetryAfter, time.Second))
	case errBadRequest:
		status, title, code = http.StatusBadRequest, "Bad request", "bad_request"
	case errMisconfigured:
		status, title, code = http.StatusInternalServerError, "Login is misconfigured", "misconfigured"
	}
	h.metrics.answered(status)
	if retryURL == "" {
		retryURL = r.URL.RequestURI()
		if !isNavigation(r) {
			retryURL = loginURL(safeReturnPath(retryURL))
		}
	}
	if isNavigation(r) || r.URL.Path == h.callbackPath || strings.HasPrefix(r.URL.Path, EndpointPrefix) {
		msg := ae.Message
		if status == http.StatusServiceUnavailable {
			msg += ". Please try again in a moment."
		}
		writePage(w, status, page{Title: title, Message: msg, LinkURL: safeReturnPath(retryURL), LinkText: "Try again"})
		return
	}
	writeJSON(w, status, apiError{Error: code, Description: ae.Message})
}

func asAuthError(err error) *authError {
	var ae *authError
	if errors.As(err, &ae) {
		return ae
	}
	return &authError{Kind: errSpotifyUnavailable, Message: "Spotify could not be reached", Err: err}
}

func errKindOf(err error) errKind {
	var ae *authError
	if errors.As(err, &ae) {
		return ae.Kind
	}
	return 0
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
		return s
	}
	return previous
}

// randomToken returns n random bytes, base64url encoded.
func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// stateID names a login's cookie after a hash of its state, so the state
// itself never appears in a cookie name.
func stateID(state string) string {
	sum := sha256.Sum256([]byte(state))
	return base64.RawURLEncoding.EncodeToString(sum[:9])
}

// refreshKey identifies a session across its requests without keeping
// the refresh token itself in memory maps.
func refreshKey(refreshToken string) string {
	sum := sha256.Sum256([]byte(refreshToken))
	return hex.EncodeToString(sum[:16])
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return s != ""
}

func validHost(host string) bool {
	if host == "" || len(host) > 255 {
		return false
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == ':' || c == '[' || c == ']') {
			return false
		}
	}
	return true
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
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
	if len(lines) == 0 {
		return
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
