package spotifytest

import (
	"bytes"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"
)

// scopeDescriptions lists every scope Spotify knows, with a consent screen
// wording: the 19 documented user scopes and the Open Access ones (for
// approved partners; the fake grants them to any app). /authorize shows
// an "Illegal scope" page for any other, user-personalized included (only
// Spotify's own clients get that one).
var scopeDescriptions = map[string]string{
	"ugc-image-upload":            "Upload images to Spotify on your behalf",
	"user-read-playback-state":    "Read your currently playing content and Spotify Connect devices information",
	"user-modify-playback-state":  "Control Spotify on your devices",
	"user-read-currently-playing": "Read your currently playing content",
	"app-remote-control":          "Communicate with the Spotify app on your device",
	"streaming":                   "Play content and control playback on your other devices",
	"playlist-read-private":       "Access your private playlists",
	"playlist-read-collaborative": "Access your collaborative playlists",
	"playlist-modify-private":     "Manage your private playlists",
	"playlist-modify-public":      "Manage your public playlists",
	"user-follow-modify":          "Manage who you are following",
	"user-follow-read":            "Access your followers and who you are following",
	"user-read-playback-position": "Read your position in content you have played",
	"user-top-read":               "Read your top artists and content",
	"user-read-recently-played":   "Access your recently played items",
	"user-library-modify":         "Manage your saved content",
	"user-library-read":           "Access your saved content",
	"user-read-email":             "Get your real email address",
	"user-read-private":           "Access your subscription details",
	"user-soa-link":               "Link your Spotify account to a partner's",
	"user-soa-unlink":             "Unlink your Spotify account from a partner's",
	"soa-manage-entitlements":     "Manage your entitlements with a partner",
	"soa-manage-partner":          "Manage a partner's settings",
	"soa-create-partner":          "Create a partner",
}

// authRequest is a validated authorization request.
type authRequest struct {
	clientID    string
	redirectURI string
	state       string
	hasState    bool
	scopes      []string // requested, deduplicated, in order
	challenge   string
}

// authFailure is why an authorization request was refused: either an error
// page (page != "", never a redirect) or a redirect with error=code.
type authFailure struct {
	page string
	code string
}

// validateAuthorize checks authorization parameters as Spotify does.
func (s *Server) validateAuthorize(q url.Values) (*authRequest, *authFailure) {
	s.mu.Lock()
	c, ok := s.clients[q.Get("client_id")]
	var registered []string
	var public bool
	if ok {
		registered = slices.Clone(c.redirectURIs)
		public = c.secret == ""
	}
	s.mu.Unlock()

	// Until the redirect URI is known to be the app's, errors must never
	// redirect: show a page instead.
	if !ok {
		return nil, &authFailure{page: "INVALID_CLIENT: Invalid client"}
	}
	ar := &authRequest{clientID: c.id, redirectURI: q.Get("redirect_uri")}
	if ar.redirectURI == "" || !slices.Contains(registered, ar.redirectURI) {
		return nil, &authFailure{page: "INVALID_CLIENT: Invalid redirect URI"}
	}
	_, ar.hasState = q["state"]
	ar.state = q.Get("state")

	switch rt := q.Get("response_type"); rt {
	case "code":
	case "":
		return ar, &authFailure{code: "invalid_request"}
	default: // "token" (implicit grant) is deliberately unsupported
		return ar, &authFailure{code: "unsupported_response_type"}
	}
	ar.challenge = q.Get("code_challenge")
	method := q.Get("code_challenge_method")
	switch {
	case ar.challenge == "" && method != "":
		return ar, &authFailure{code: "invalid_request"}
	case ar.challenge != "" && method != "S256":
		return ar, &authFailure{code: "invalid_request"}
	case ar.challenge != "" && !isPKCEString(ar.challenge):
		return ar, &authFailure{code: "invalid_request"}
	case ar.challenge == "" && public:
		return ar, &authFailure{code: "invalid_request"} // public clients must use PKCE
	}
	for _, sc := range strings.Fields(q.Get("scope")) {
		if _, known := scopeDescriptions[sc]; !known {
			// Spotify's own page, with no way back to the site.
			return ar, &authFailure{page: "INVALID_SCOPE: Illegal scope"}
		}
		if !slices.Contains(ar.scopes, sc) {
			ar.scopes = append(ar.scopes, sc)
		}
	}
	return ar, nil
}

// isPKCEString reports whether v is a valid code_verifier or
// code_challenge: 43 to 128 characters from [A-Za-z0-9-._~] (RFC 7636).
func isPKCEString(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for _, c := range []byte(v) {
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9',
			c == '-', c == '.', c == '_', c == '~':
		default:
			return false
		}
	}
	return true
}

// callbackURL appends params to the redirect URI, keeping the registered
// URI byte for byte.
func callbackURL(redirectURI string, params ...string) string {
	var q strings.Builder
	for i := 0; i+1 < len(params); i += 2 {
		if q.Len() > 0 {
			q.WriteByte('&')
		}
		q.WriteString(url.QueryEscape(params[i]))
		q.WriteByte('=')
		q.WriteString(url.QueryEscape(params[i+1]))
	}
	base, frag, hasFrag := strings.Cut(redirectURI, "#")
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
		if strings.HasSuffix(base, "?") || strings.HasSuffix(base, "&") {
			sep = ""
		}
	}
	out := base + sep + q.String()
	if hasFrag {
		out += "#" + frag
	}
	return out
}

func (ar *authRequest) errorCallback(code string) string {
	if ar.hasState {
		return callbackURL(ar.redirectURI, "error", code, "state", ar.state)
	}
	return callbackURL(ar.redirectURI, "error", code)
}

// approve issues a code for the user and returns the callback URL.
func (s *Server) approve(ar *authRequest, userID string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if userID == "" {
		userID = s.defaultUserID
	}
	u, ok := s.users[userID]
	if !ok {
		return "", errors.New("spotifytest: unknown user " + userID)
	}
	granted := slices.Clone(ar.scopes)
	if u.GrantScopes != nil {
		granted = slices.DeleteFunc(granted, func(sc string) bool { return !slices.Contains(u.GrantScopes, sc) })
	}
	code := randomString("AQ", codeLength)
	s.codes[code] = &authCode{
		clientID:    ar.clientID,
		redirectURI: ar.redirectURI,
		userID:      u.ID,
		scopes:      granted,
		challenge:   ar.challenge,
		expires:     time.Now().Add(s.codeLifetime),
	}
	s.counts.Approvals++
	if ar.hasState {
		return callbackURL(ar.redirectURI, "code", code, "state", ar.state), nil
	}
	return callbackURL(ar.redirectURI, "code", code), nil
}

func (s *Server) deny(ar *authRequest) string {
	s.mu.Lock()
	s.counts.Denials++
	s.mu.Unlock()
	return ar.errorCallback("access_denied")
}

func (s *Server) recordAuthorize(q url.Values) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts.Authorize++
	s.authRequests = append(s.authRequests, cloneValues(q))
}

// Approve does what a user pressing Approve on the consent page does,
// without HTTP: it validates authURL's query exactly as GET /authorize
// would and returns the callback URL, redirect_uri?code=...&state=...
// userID "" means DefaultUser. If /authorize would show an error page
// instead of redirecting (unknown client, redirect URI mismatch, illegal
// scope), or the user is unknown, it returns an error. If /authorize would
// redirect with an error (missing PKCE, ...), it returns that callback URL
// and a nil error. Auto-approve and auto-deny do not apply. It counts as
// one Authorize and one Approval.
func (s *Server) Approve(authURL, userID string) (callbackURL string, err error) {
	ar, err := s.programmaticConsent(authURL)
	if err != nil {
		return redirectOrError(err)
	}
	return s.approve(ar, userID)
}

// Deny does what a user pressing Deny on the consent page does, without
// HTTP: it validates authURL like Approve and returns
// redirect_uri?error=access_denied&state=... It counts as one Authorize
// and one Denial.
func (s *Server) Deny(authURL string) (callbackURL string, err error) {
	ar, err := s.programmaticConsent(authURL)
	if err != nil {
		return redirectOrError(err)
	}
	return s.deny(ar), nil
}

// errRedirect carries the callback URL of a request that fails with a
// redirect.
type errRedirect struct{ url string }

func (e *errRedirect) Error() string { return "redirect" }

// redirectOrError turns an *errRedirect into its callback URL.
func redirectOrError(err error) (string, error) {
	var er *errRedirect
	if errors.As(err, &er) {
		return er.url, nil
	}
	return "", err
}

// programmaticConsent validates authURL for Approve and Deny. A request
// failing with a redirect gives an *errRedirect.
func (s *Server) programmaticConsent(authURL string) (*authRequest, error) {
	u, err := url.Parse(authURL)
	if err != nil {
		return nil, errors.New("spotifytest: bad authorization URL: " + err.Error())
	}
	if u.Path != "/authorize" {
		return nil, errors.New("spotifytest: not an authorization URL (path " + u.Path + ", want /authorize)")
	}
	q := u.Query()
	s.recordAuthorize(q)
	ar, fail := s.validateAuthorize(q)
	switch {
	case fail == nil:
		return ar, nil
	case fail.page != "":
		return nil, errors.New("spotifytest: authorization refused: " + fail.page)
	default:
		return nil, &errRedirect{ar.errorCallback(fail.code)}
	}
}

// handleAuthorize serves GET /authorize (validation, then consent page or
// auto decision) and POST /authorize (the consent form).
func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	var params url.Values
	switch r.Method {
	case http.MethodGet:
		params = r.URL.Query()
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		_ = r.ParseForm() // a bad form leaves params empty: validation refuses it
		params = r.PostForm
	default:
		params = r.URL.Query()
	}
	s.recordAuthorize(params)
	if s.applyFault(w, r, EndpointAuthorize, nil) {
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		writeErrorPage(w, http.StatusMethodNotAllowed, "Method not allowed")
		return
	}

	var action, userID string
	if r.Method == http.MethodPost {
		action, userID = params.Get("action"), params.Get("user")
		params = cloneValues(params)
		params.Del("action")
		params.Del("user")
	}
	ar, fail := s.validateAuthorize(params)
	if fail != nil {
		if fail.page != "" {
			writeErrorPage(w, http.StatusBadRequest, fail.page)
			return
		}
		http.Redirect(w, r, ar.errorCallback(fail.code), http.StatusFound)
		return
	}

	if r.Method == http.MethodPost {
		switch action {
		case "approve":
			cb, err := s.approve(ar, userID)
			if err != nil {
				writeErrorPage(w, http.StatusBadRequest, "INVALID_REQUEST: Unknown user")
				return
			}
			http.Redirect(w, r, cb, http.StatusFound)
		case "deny":
			http.Redirect(w, r, s.deny(ar), http.StatusFound)
		default:
			writeErrorPage(w, http.StatusBadRequest, "INVALID_REQUEST: action must be approve or deny")
		}
		return
	}

	s.mu.Lock()
	autoDeny, autoApprove := s.autoDeny, s.autoApprove
	s.mu.Unlock()
	switch {
	case autoDeny:
		http.Redirect(w, r, s.deny(ar), http.StatusFound)
	case autoApprove != "":
		cb, err := s.approve(ar, autoApprove)
		if err != nil {
			writeErrorPage(w, http.StatusInternalServerError, "spotifytest: auto-approve user "+autoApprove+" is unknown")
			return
		}
		http.Redirect(w, r, cb, http.StatusFound)
	default:
		s.writeConsentPage(w, params, ar)
	}
}

var consentTemplate = template.Must(template.New("consent").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Authorize {{.ClientID}} – Spotify (spotifytest)</title>
<style>
body{font-family:system-ui,sans-serif;background:#121212;color:#fff;display:flex;justify-content:center;margin:0;padding:2rem}
main{max-width:32rem;width:100%}
h1{font-size:1.4rem}.fake{color:#b3b3b3;font-size:.9rem}
ul{padding-left:1.2rem}li{margin:.3rem 0}code{color:#1ed760}
fieldset{border:1px solid #333;border-radius:6px;margin:1rem 0}label{display:block;margin:.3rem 0}
button{border:0;border-radius:500px;padding:.8rem 2rem;font-weight:bold;font-size:1rem;margin-right:.5rem;cursor:pointer}
.approve{background:#1ed760;color:#000}.deny{background:transparent;color:#fff;border:1px solid #b3b3b3}
</style>
</head>
<body>
<main>
<p class="fake">Fake Spotify (spotifytest) – no real account is involved.</p>
<h1><strong>{{.ClientID}}</strong> wants to connect to your Spotify account</h1>
{{if .Scopes}}<p>It asks to:</p>
<ul>
{{range .Scopes}}<li><code>{{.Name}}</code> – {{.Description}}</li>
{{end}}</ul>
{{else}}<p>It asks only for your public profile (no scopes).</p>
{{end}}<form method="post" action="/authorize">
{{range .Hidden}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{end}}<fieldset>
<legend>Log in as</legend>
{{range .Users}}<label><input type="radio" name="user" value="{{.ID}}"{{if .Checked}} checked{{end}}> {{.Name}} <span class="fake">({{.ID}})</span></label>
{{end}}</fieldset>
<button class="approve" type="submit" name="action" value="approve">Approve</button>
<button class="deny" type="submit" name="action" value="deny">Deny</button>
</form>
<p class="fake">You will be sent back to {{.RedirectURI}}</p>
</main>
</body>
</html>
`))

var errorTemplate = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Error – Spotify (spotifytest)</title></head>
<body>
<h1>Oops! Something went wrong</h1>
<p>{{.}}</p>
</body>
</html>
`))

type consentPage struct {
	ClientID    string
	RedirectURI string
	Scopes      []struct{ Name, Description string }
	Hidden      []struct{ Name, Value string }
	Users       []struct {
		ID, Name string
		Checked  bool
	}
}

func (s *Server) writeConsentPage(w http.ResponseWriter, params url.Values, ar *authRequest) {
	p := consentPage{ClientID: ar.clientID, RedirectURI: ar.redirectURI}
	for _, sc := range ar.scopes {
		p.Scopes = append(p.Scopes, struct{ Name, Description string }{sc, scopeDescriptions[sc]})
	}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range params[k] {
			p.Hidden = append(p.Hidden, struct{ Name, Value string }{k, v})
		}
	}
	s.mu.Lock()
	checked := s.defaultUserID
	if _, ok := s.users[checked]; !ok && len(s.userOrder) > 0 {
		checked = s.userOrder[0]
	}
	for _, id := range s.userOrder {
		u := s.users[id]
		name := u.DisplayName
		if name == "" {
			name = u.ID
		}
		p.Users = append(p.Users, struct {
			ID, Name string
			Checked  bool
		}{u.ID, name, u.ID == checked})
	}
	s.mu.Unlock()

	var buf bytes.Buffer
	if err := consentTemplate.Execute(&buf, p); err != nil {
		writeErrorPage(w, http.StatusInternalServerError, "spotifytest: "+err.Error())
		return
	}
	setPageHeaders(w)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
}

func setPageHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
}

func errorPageHTML(message string) string {
	var buf bytes.Buffer
	_ = errorTemplate.Execute(&buf, message)
	return buf.String()
}

func writeErrorPage(w http.ResponseWriter, status int, message string) {
	setPageHeaders(w)
	w.WriteHeader(status)
	_, _ = w.Write([]byte(errorPageHTML(message)))
}
