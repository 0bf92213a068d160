package spotifyauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/caddyspotify/caddy-spotify-auth/internal/refresher"
)

// The login flow: starting it and the callback.

// Login bounds.
const (
	// stateLifetime is how long a login may take from redirect to callback.
	stateLifetime = 10 * time.Minute
	// Input bounds: anything longer is not Spotify's.
	maxStateLen = 256
	maxCodeLen  = 2048
)

// loginFlow is the login: its start, the callback, the code exchange,
// the profile, the state cookies and the login limiter's admission. It is
// built once in Provision from the options and clients it reads. What a
// reload or a test may replace on the handler after Provision (its logger,
// the shared state, the session store), and the handler's answer path
// (fail), it reaches through h at request time, so both always agree.
type loginFlow struct {
	h *Handler

	oauth      *oauth2.Config
	httpClient *http.Client
	spotify    *spotifyClient
	cookies    cookieNames
	keys       *atomic.Pointer[keyring]
	metrics    *metrics

	scopes          []string // the route's
	required        []string
	showDialog      bool
	sessionLifetime time.Duration
	redirectURI     string   // the option as given
	redirectURL     *url.URL // set if redirect_uri is absolute: used as is
	callbackPath    string
	authorizeURL    string
	limit           *LoginRateLimit

	warnedPlainHTTP atomic.Int64 // unix seconds of the last warning of a plain-http redirect URI
}

// newLoginFlow takes what the login needs from a provisioned handler.
func newLoginFlow(h *Handler) *loginFlow {
	return &loginFlow{
		h:               h,
		oauth:           h.oauth,
		httpClient:      h.httpClient,
		spotify:         h.spotify,
		cookies:         h.cookies,
		keys:            h.keys,
		metrics:         h.metrics,
		scopes:          h.Scopes,
		required:        h.RequiredScopes,
		showDialog:      h.ShowDialog,
		sessionLifetime: time.Duration(h.SessionLifetime),
		redirectURI:     h.RedirectURI,
		redirectURL:     h.redirectURL,
		callbackPath:    h.callbackPath,
		authorizeURL:    h.AuthorizeURL,
		limit:           h.LoginRateLimit,
	}
}

func (f *loginFlow) handleLogin(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writePage(w, http.StatusMethodNotAllowed, page{Title: "Method not allowed", Message: "Use GET to start a login."})
		return
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil || len(q["rd"]) > 1 {
		f.h.fail(w, r, &authError{Kind: kindBadRequest, Message: "The login link is malformed."}, loginURL("/"))
		return
	}
	lr := f.defaultLoginRequest(r, safeReturnPath(q.Get("rd")))
	// "switch=1": let the user pick another account on Spotify's page.
	lr.showDialog = lr.showDialog || q.Get("switch") == "1"
	f.startLoginWith(w, r, lr)
}

// loginRequest is what a login asks Spotify for.
type loginRequest struct {
	returnTo   string
	scopes     []string // requested
	required   []string // must be granted, or consent is asked once more
	reconsent  bool     // this is the second asking
	showDialog bool
}

// defaultLoginRequest asks for this route's scopes, plus those an
// existing session already asked for, so a new login never takes away
// what another route of the site needed.
func (f *loginFlow) defaultLoginRequest(r *http.Request, returnTo string) loginRequest {
	scopes := unionScopes(f.scopes, f.required)
	if s, err := f.h.sessions.load(r, time.Now()); err == nil {
		scopes = unionScopes(strings.Fields(s.Requested), strings.Fields(s.Scopes), scopes)
	}
	return loginRequest{returnTo: returnTo, scopes: scopes, required: f.required, showDialog: f.showDialog}
}

// loginState travels in the per-login cookie from the redirect to the
// callback; sealed, so the browser can neither read nor change it.
type loginState struct {
	State       string `json:"s"`
	Verifier    string `json:"v"`
	ReturnTo    string `json:"r"`
	RedirectURI string `json:"u"`
	Created     int64  `json:"c"`
	StartedMs   int64  `json:"m,omitempty"`  // unix milliseconds: orders logins for eviction
	Scopes      string `json:"sc,omitempty"` // requested
	Required    string `json:"rq,omitempty"`
	Reconsent   bool   `json:"rc,omitempty"`
}

// startLogin sends the browser to Spotify's consent page.
func (f *loginFlow) startLogin(w http.ResponseWriter, r *http.Request, returnTo string) {
	f.startLoginWith(w, r, f.defaultLoginRequest(r, returnTo))
}

func (f *loginFlow) startLoginWith(w http.ResponseWriter, r *http.Request, lr loginRequest) {
	// r may be the callback (a login again for more scopes): the retry
	// goes to where the login was for, never to r's own URL.
	retry := loginURL(stateReturnPath(lr.returnTo))
	redirectURI, err := f.redirectURIFor(r)
	if err != nil {
		f.h.fail(w, r, asAuthError(err), retry)
		return
	}
	now := time.Now()
	ls := loginState{
		State:       randomToken(32),
		Verifier:    oauth2.GenerateVerifier(),
		ReturnTo:    stateReturnPath(lr.returnTo),
		RedirectURI: redirectURI,
		Created:     now.Unix(),
		StartedMs:   now.UnixMilli(),
		Scopes:      f.stateScopes(lr.scopes),
		Required:    strings.Join(lr.required, " "),
		Reconsent:   lr.reconsent,
	}
	name := f.cookies.state(r, stateID(ls.State))
	sealed, err := f.sealState(name, &ls)
	if err != nil {
		f.h.fail(w, r, &authError{Kind: kindMisconfigured, Message: "Could not start the login.", Err: err}, retry)
		return
	}
	f.evictOldLogins(w, r, now)
	http.SetCookie(w, f.stateCookie(r, name, sealed, stateLifetime))

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
	f.metrics.redirects.Inc()
	http.Redirect(w, r, f.oauth.AuthCodeURL(ls.State, opts...), http.StatusFound)
}

// redirectURIFor returns the redirect URI for this request: the
// configured one, or the callback path on the request's scheme and host.
func (f *loginFlow) redirectURIFor(r *http.Request) (string, error) {
	if f.redirectURL != nil {
		return f.redirectURI, nil
	}
	if !validHost(r.Host) {
		return "", &authError{Kind: kindBadRequest, Message: "The request's Host header is not valid."}
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	uri := scheme + "://" + r.Host + f.callbackPath
	if scheme == "http" && !isLoopbackHost(hostOnly(r.Host)) {
		msg := "The redirect URI " + uri + " is plain http on a host that is not a loopback IP literal; " +
			"Spotify accepts only https redirect URIs, or http://127.0.0.1:PORT/... and http://[::1]:PORT/... " +
			"Serve this site over HTTPS or set redirect_uri."
		// At most once a minute: the client picks the Host of a
		// catch-all site, and each login start would log.
		if now, last := time.Now().Unix(), f.warnedPlainHTTP.Load(); now-last >= 60 && f.warnedPlainHTTP.CompareAndSwap(last, now) {
			f.h.logger.Warn("derived redirect URI will be refused by Spotify", zap.String("redirect_uri", uri))
		}
		if f.authorizeURL == DefaultAuthorizeURL {
			return "", &authError{Kind: kindMisconfigured, Message: msg}
		}
	}
	return uri, nil
}

func (f *loginFlow) handleCallback(w http.ResponseWriter, r *http.Request) {
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
		f.h.fail(w, r, &authError{Kind: kindBadRequest, Message: "The login callback is malformed."}, loginURL("/"))
		return
	}
	now := time.Now()
	if e := q.Get("error"); e != "" {
		f.loginNotApproved(w, r, e, q.Get("state"), now)
		return
	}
	ls, ok := f.admitCallback(w, r, q, now)
	if !ok {
		return
	}
	sess, err := f.completeLogin(r.Context(), q.Get("code"), ls, now)
	if err != nil {
		ae := asAuthError(err)
		switch {
		case ae.Kind == kindRefreshRevoked:
			ae.Kind = kindLoginRejected // invalid_grant on a code: expired, already used or made up
			f.exchangeFailed(r, now)
		case ae.AccountRefused:
			// An account Spotify refuses (not on a development-mode
			// app's list, in whatever words) can never log in, yet each
			// try makes a real exchange and a profile call: it costs its
			// client what a refused code does, or one free account could
			// spend every user's login budget.
			f.exchangeFailed(r, now)
		}
		f.logLoginFailure(ae)
		f.refuseLogin(w, r, ae, ls.ReturnTo)
		return
	}
	if sess, err = f.h.sessions.save(w, r, sess); err != nil {
		f.h.logger.Error("login failed: saving the session", zap.Error(err))
		f.refuseLogin(w, r, asAuthError(err), ls.ReturnTo)
		return
	}
	f.metrics.logins.Inc()
	f.h.logger.Info("login", zap.String("user_id", sess.UserID), zap.String("account_id", sess.AccountID), zap.String("scopes", sess.Scopes))
	f.afterLogin(w, r, &ls, &sess)
}

// admitCallback checks the callback's state and code, then Spotify's
// back-off and the login limiter, and only then uses the state up: a
// callback refused for now (503, 429) leaves its login to be completed
// once Retry-After has passed. It answers itself and returns false if the
// login stops here.
func (f *loginFlow) admitCallback(w http.ResponseWriter, r *http.Request, q url.Values, now time.Time) (loginState, bool) {
	ls, err := f.openState(w, r, q.Get("state"), now)
	if err == nil {
		if code := q.Get("code"); code == "" || len(code) > maxCodeLen {
			f.spendState(w, r, &ls, now)
			f.refuseLogin(w, r, &authError{Kind: kindBadRequest, Message: "The login callback carries no valid code."}, ls.ReturnTo)
			return ls, false
		}
		if err := mayCallSpotify(r.Context(), f.h.refresh, refresher.Logins, now); err != nil {
			ae := asAuthError(err)
			f.metrics.loginFailures.WithLabelValues(ae.Kind.String()).Inc()
			// The login stays unspent: reloading this callback completes it.
			// The link starts a new one: a page never carries the code.
			f.h.fail(w, r, ae, loginURL(ls.ReturnTo))
			return ls, false
		}
		if !f.admitExchange(w, r, ls.ReturnTo, now) {
			return ls, false
		}
		if !f.spendState(w, r, &ls, now) {
			err = errors.New("state already used")
		}
	}
	if err != nil {
		f.h.logger.Info("login callback refused", zap.String("reason", err.Error()))
		f.refuseLogin(w, r, &authError{Kind: kindStateInvalid, Message: "This login link is invalid, was already used, has expired, or was started in another browser."}, "/")
		return ls, false
	}
	return ls, true
}

// loginNotApproved answers a callback that carries Spotify's error
// instead of a code: the user declined, or Spotify refused the request.
func (f *loginFlow) loginNotApproved(w http.ResponseWriter, r *http.Request, spotifyError, state string, now time.Time) {
	returnTo := "/"
	if ls, err := f.consumeState(w, r, state, now); err == nil {
		returnTo = ls.ReturnTo
	}
	if spotifyError == "access_denied" {
		f.h.logger.Info("login declined at Spotify")
		f.refuseLogin(w, r, &authError{Kind: kindLoginDenied, Message: "You declined to log in with Spotify, so this page stays closed."}, returnTo)
		return
	}
	e := oauthErrorCode(spotifyError)
	f.h.logger.Warn("Spotify returned an error to the callback", zap.String("error", e))
	f.refuseLogin(w, r, &authError{Kind: kindLoginRejected, Message: "Spotify reported an error: " + e + "."}, returnTo)
}

// afterLogin sends the user back where the login started, or asks once
// more, with the consent dialog shown, for required scopes not granted.
func (f *loginFlow) afterLogin(w http.ResponseWriter, r *http.Request, ls *loginState, sess *session) {
	var missing []string
	for _, sc := range strings.Fields(ls.Required) {
		if !hasScope(sess.Scopes, sc) {
			missing = append(missing, sc)
		}
	}
	switch {
	case len(missing) == 0:
		http.Redirect(w, r, ls.ReturnTo, http.StatusFound)
	case !ls.Reconsent:
		f.h.logger.Info("required scopes not granted; asking again", zap.String("user_id", sess.UserID), zap.Strings("missing", missing))
		f.startLoginWith(w, r, loginRequest{returnTo: ls.ReturnTo, scopes: strings.Fields(ls.Scopes),
			required: strings.Fields(ls.Required), reconsent: true})
	default:
		f.refuseLogin(w, r, &authError{Kind: kindScopeNotGranted,
			Message: "This page needs the Spotify permission " + strings.Join(missing, ", ") + ", which was not granted."}, ls.ReturnTo)
	}
}

// logLoginFailure logs a failed code exchange or profile call with
// Spotify's own words. A user refused by a development-mode app is named
// as such: the operator can add them in Spotify's dashboard.
func (f *loginFlow) logLoginFailure(ae *authError) {
	fields := spotifyFields(ae)
	if ae.Kind == kindNotRegistered {
		f.h.logger.Warn("login refused by Spotify: the account is not on the user list of this development-mode app "+
			"(add it under User Management in Spotify's developer dashboard)", fields...)
		return
	}
	f.h.logger.Warn("login failed", append(fields, zap.String("detail", ae.Message))...)
}

// spotifyFields are the log fields of a failure: its kind, the error, what
// Spotify said and, for a 429 beyond the plugin's cap, how long it asked.
func spotifyFields(ae *authError) []zap.Field {
	fields := []zap.Field{zap.Stringer("reason", ae.Kind), zap.Error(ae.Err)}
	if ae.Said != "" {
		fields = append(fields, zap.String("spotify_said", ae.Said))
	}
	if ae.Asked > ae.RetryAfter {
		fields = append(fields, zap.String("spotify_asks_to_wait", aboutDuration(ae.Asked)),
			zap.Duration("waiting", ae.RetryAfter))
	}
	return fields
}

// refuseLogin counts a failed login and answers it. Refused by a
// development-mode app, the user is offered Spotify's account picker.
func (f *loginFlow) refuseLogin(w http.ResponseWriter, r *http.Request, ae *authError, returnTo string) {
	f.metrics.loginFailures.WithLabelValues(ae.Kind.String()).Inc()
	retry := loginURL(returnTo)
	if ae.AccountRefused {
		retry = switchAccountURL(returnTo)
	}
	f.h.fail(w, r, ae, retry)
}

// switchAccountURL starts a login that shows Spotify's consent dialog
// (show_dialog=true), where the user can pick another account.
func switchAccountURL(returnTo string) string {
	return loginURL(returnTo) + "&switch=1"
}

// completeLogin exchanges the code and learns who the user is.
func (f *loginFlow) completeLogin(ctx context.Context, code string, ls loginState, now time.Time) (session, error) {
	ctx = context.WithValue(ctx, oauth2.HTTPClient, f.httpClient)
	tok, err := f.oauth.Exchange(ctx, code,
		oauth2.VerifierOption(ls.Verifier),
		oauth2.SetAuthURLParam("redirect_uri", ls.RedirectURI))
	if err != nil {
		ae := classifyTokenError(err, "code exchange")
		noteSpotify(ctx, f.h.refresh, refresher.Logins, ae) // a 429 pauses logins only
		return session{}, ae
	}
	if tok.RefreshToken == "" {
		return session{}, &authError{Kind: kindLoginRejected, Message: "Spotify issued no refresh token"}
	}
	prof, err := f.spotify.me(ctx, tok.AccessToken)
	if err != nil {
		// Nothing of this user is kept: no session, no cookie. A user
		// Spotify refused has a token, but it opens nothing.
		noteSpotify(ctx, f.h.refresh, refresher.Logins, err)
		return session{}, err
	}
	if !validUserID(prof.ID) {
		return session{}, &authError{Kind: kindLoginRejected, Message: "Spotify returned a user id this site cannot accept " +
			"(Spotify user ids are ASCII letters, digits, '.', '_' and '-')"}
	}
	return session{
		Created:      now.UnixNano(),
		Expires:      now.Add(f.sessionLifetime).Unix(),
		TokenExpires: tokenExpiry(tok, now),
		AccessToken:  tok.AccessToken,
		RefreshToken: tok.RefreshToken,
		// No "scope" in the answer means what was asked for was granted
		// (RFC 6749 section 5.1).
		Scopes:      grantedScopes(tok, ls.Scopes),
		UserID:      prof.ID,
		AccountID:   f.accountID(prof),
		DisplayName: profileText(prof.DisplayName, maxDisplayNameLen),
		Email:       profileEmail(prof.Email),
		Product:     profileWord(prof.Product, maxProductLen),
		Country:     profileWord(prof.Country, 2),
		Requested:   ls.Scopes,
	}, nil
}

// consumeState checks the callback's state against this browser's login
// cookie, and uses it up.
func (f *loginFlow) consumeState(w http.ResponseWriter, r *http.Request, state string, now time.Time) (loginState, error) {
	ls, err := f.openState(w, r, state, now)
	if err == nil && !f.spendState(w, r, &ls, now) {
		err = errors.New("state already used")
	}
	return ls, err
}

// openState checks the callback's state against this browser's login
// cookie without using it up (see spendState). A cookie that fails a
// check is expired.
func (f *loginFlow) openState(w http.ResponseWriter, r *http.Request, state string, now time.Time) (loginState, error) {
	var ls loginState
	if state == "" {
		return ls, errors.New("missing state")
	}
	if len(state) > maxStateLen {
		return ls, errors.New("oversized state")
	}
	id := stateID(state)
	name := f.cookies.state(r, id)
	raw, ok := cookieValue(r.Header, name)
	if !ok {
		return ls, errors.New("no login in progress in this browser for this state")
	}
	ls, err := f.readState(name, raw, state, now)
	if err == nil && f.h.shared.stateUsed(id, now) {
		err = errors.New("state already used")
	}
	if err != nil {
		http.SetCookie(w, f.stateCookie(r, name, "", -1))
		return ls, err
	}
	ls.ReturnTo = safeReturnPath(ls.ReturnTo)
	return ls, nil
}

// readState opens the state cookie called name and checks it holds state.
func (f *loginFlow) readState(name, raw, state string, now time.Time) (loginState, error) {
	var ls loginState
	if len(raw) > maxStateCookieLen {
		return ls, errors.New("login cookie is oversized")
	}
	plain, err := f.keys.Load().states.Open(raw, []byte(name))
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
	return ls, nil
}

// spendState uses an opened login state up: its cookie is expired and the
// state remembered, so a replay is refused even if the browser kept the
// cookie. False: another callback spent it first.
func (f *loginFlow) spendState(w http.ResponseWriter, r *http.Request, ls *loginState, now time.Time) bool {
	id := stateID(ls.State)
	http.SetCookie(w, f.stateCookie(r, f.cookies.state(r, id), "", -1))
	return f.h.shared.useState(id, now)
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

func loginURL(returnTo string) string {
	return EndpointPrefix + "login?rd=" + url.QueryEscape(returnTo)
}
