package spotifytest_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

const (
	confID      = "conf-app"
	confSecret  = "conf-secret"
	pubID       = "pub-app"
	redirectURI = "http://127.0.0.1:8080/oauth2/spotify/callback"
	verifier    = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk_long_enough_verifier"
)

func challengeOf(v string) string {
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// harness wraps a Server with helpers speaking HTTP to it.
type harness struct {
	t    *testing.T
	s    *spotifytest.Server
	http *http.Client // does not follow redirects
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	s := spotifytest.NewServer()
	t.Cleanup(s.Close)
	s.AddClient(spotifytest.Client{ID: confID, Secret: confSecret, RedirectURIs: []string{redirectURI}})
	s.AddClient(spotifytest.Client{ID: pubID, RedirectURIs: []string{redirectURI}})
	tr := &http.Transport{DisableKeepAlives: true} // no replays of dropped requests
	t.Cleanup(tr.CloseIdleConnections)
	return &harness{t: t, s: s, http: &http.Client{
		Transport:     tr,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// authQuery builds authorization parameters; empty values are left out.
func authQuery(clientID, scope, state, challenge string) url.Values {
	q := url.Values{"client_id": {clientID}, "response_type": {"code"}, "redirect_uri": {redirectURI}}
	if scope != "" {
		q.Set("scope", scope)
	}
	if state != "" {
		q.Set("state", state)
	}
	if challenge != "" {
		q.Set("code_challenge_method", "S256")
		q.Set("code_challenge", challenge)
	}
	return q
}

func (h *harness) authURL(q url.Values) string { return h.s.AuthorizeURL() + "?" + q.Encode() }

func (h *harness) get(rawURL string) (*http.Response, string) {
	h.t.Helper()
	resp, err := h.http.Get(rawURL)
	if err != nil {
		h.t.Fatalf("GET: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (h *harness) postForm(rawURL string, form url.Values) (*http.Response, string) {
	h.t.Helper()
	resp, err := h.http.PostForm(rawURL, form)
	if err != nil {
		h.t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

type tokenResult struct {
	status int
	header http.Header
	body   map[string]any
}

func (r tokenResult) str(k string) string { s, _ := r.body[k].(string); return s }

// token posts form to the token endpoint, with HTTP Basic if basicID != "".
func (h *harness) token(form url.Values, basicID, basicSecret string) tokenResult {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, h.s.TokenURL(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basicID != "" {
		req.SetBasicAuth(basicID, basicSecret)
	}
	return h.do(req)
}

func (h *harness) do(req *http.Request) tokenResult {
	h.t.Helper()
	resp, err := h.http.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	res := tokenResult{status: resp.StatusCode, header: resp.Header}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &res.body); err != nil {
		h.t.Fatalf("%s %s: answer is not JSON (%v): %q", req.Method, req.URL.Path, err, b)
	}
	return res
}

func (h *harness) api(path, accessToken string) tokenResult {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, h.s.APIURL()+path, nil)
	if accessToken != "" {
		req.Header.Set("Authorization", "Bearer "+accessToken)
	}
	return h.do(req)
}

// codeFor approves q as userID with the helper and returns the code.
func (h *harness) codeFor(q url.Values, userID string) string {
	h.t.Helper()
	cb, err := h.s.Approve(h.authURL(q), userID)
	if err != nil {
		h.t.Fatalf("Approve: %v", err)
	}
	u, _ := url.Parse(cb)
	code := u.Query().Get("code")
	if code == "" {
		h.t.Fatalf("Approve gave no code: %s", cb)
	}
	return code
}

// loginConf logs in with the confidential client (Basic auth, PKCE).
func (h *harness) loginConf(scope string) tokenResult {
	h.t.Helper()
	code := h.codeFor(authQuery(confID, scope, "st", challengeOf(verifier)), "")
	res := h.token(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI}, "code_verifier": {verifier}}, confID, confSecret)
	if res.status != http.StatusOK {
		h.t.Fatalf("code exchange: %d %v", res.status, res.body)
	}
	return res
}

// loginPublic logs in with the public client (client_id only, PKCE).
func (h *harness) loginPublic(scope string) tokenResult {
	h.t.Helper()
	code := h.codeFor(authQuery(pubID, scope, "st", challengeOf(verifier)), "")
	res := h.token(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI}, "code_verifier": {verifier}, "client_id": {pubID}}, "", "")
	if res.status != http.StatusOK {
		h.t.Fatalf("code exchange: %d %v", res.status, res.body)
	}
	return res
}

func wantOAuthError(t *testing.T, res tokenResult, status int, code string) {
	t.Helper()
	if res.status != status || res.str("error") != code {
		t.Fatalf("got %d %v, want %d error=%s", res.status, res.body, status, code)
	}
	if res.str("error_description") == "" {
		t.Errorf("error without error_description: %v", res.body)
	}
	if ct := res.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}
}

// wantAPIError checks Spotify's nested Web API error shape.
func wantAPIError(t *testing.T, res tokenResult, status int, message string) {
	t.Helper()
	e, _ := res.body["error"].(map[string]any)
	if res.status != status || e == nil || e["status"] != float64(status) || e["message"] != message {
		t.Fatalf("got %d %v, want %d {error:{status:%d,message:%q}}", res.status, res.body, status, status, message)
	}
}

func TestAuthorizeNeverRedirectsOnClientOrRedirectURIErrors(t *testing.T) {
	h := newHarness(t)
	cases := []struct {
		name    string
		mutate  func(q url.Values)
		message string
	}{
		{"an unknown client shows an error page", func(q url.Values) { q.Set("client_id", "nope") }, "INVALID_CLIENT: Invalid client"},
		{"a missing client_id shows an error page", func(q url.Values) { q.Del("client_id") }, "INVALID_CLIENT: Invalid client"},
		{"a missing redirect URI shows an error page", func(q url.Values) { q.Del("redirect_uri") }, "INVALID_CLIENT: Invalid redirect URI"},
		{"another port is a mismatch", func(q url.Values) { q.Set("redirect_uri", "http://127.0.0.1:8081/oauth2/spotify/callback") }, "INVALID_CLIENT: Invalid redirect URI"},
		{"localhost instead of 127.0.0.1 is a mismatch", func(q url.Values) { q.Set("redirect_uri", "http://localhost:8080/oauth2/spotify/callback") }, "INVALID_CLIENT: Invalid redirect URI"},
		{"a trailing slash is a mismatch", func(q url.Values) { q.Set("redirect_uri", redirectURI+"/") }, "INVALID_CLIENT: Invalid redirect URI"},
		{"a prefix is a mismatch", func(q url.Values) { q.Set("redirect_uri", "http://127.0.0.1:8080/oauth2/spotify/") }, "INVALID_CLIENT: Invalid redirect URI"},
		{"a different case is a mismatch", func(q url.Values) { q.Set("redirect_uri", strings.ToUpper(redirectURI)) }, "INVALID_CLIENT: Invalid redirect URI"},
		{"an extra query is a mismatch", func(q url.Values) { q.Set("redirect_uri", redirectURI+"?x=1") }, "INVALID_CLIENT: Invalid redirect URI"},
		{"an unknown scope shows Spotify's Illegal scope page", func(q url.Values) { q.Set("scope", "user-read-email bogus-scope") }, "INVALID_SCOPE: Illegal scope"},
		{"user-personalized is unknown outside Spotify's own clients", func(q url.Values) { q.Set("scope", "user-personalized") }, "INVALID_SCOPE: Illegal scope"},
		{"another app's URI is a mismatch even with an invalid scope", func(q url.Values) {
			q.Set("redirect_uri", "https://evil.example/cb")
			q.Set("scope", "bogus")
		}, "INVALID_CLIENT: Invalid redirect URI"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := authQuery(confID, "user-read-email", "xyz", challengeOf(verifier))
			tc.mutate(q)
			h.s.SetAutoApprove(spotifytest.DefaultUserID) // must not matter
			defer h.s.SetAutoApprove("")
			resp, body := h.get(h.authURL(q))
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("status %d, want 400", resp.StatusCode)
			}
			if loc := resp.Header.Get("Location"); loc != "" {
				t.Errorf("redirected to %q", loc)
			}
			if !strings.Contains(body, tc.message) {
				t.Errorf("page does not say %q:\n%s", tc.message, body)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
				t.Errorf("Content-Type %q", ct)
			}
			for name, call := range map[string]func() (string, error){
				"Approve": func() (string, error) { return h.s.Approve(h.authURL(q), "") },
				"Deny":    func() (string, error) { return h.s.Deny(h.authURL(q)) },
			} {
				if cb, err := call(); err == nil || cb != "" {
					t.Errorf("%s = %q, %v; want an error and no callback", name, cb, err)
				}
			}
		})
	}
}

func TestAuthorizeRedirectsOtherErrorsWithState(t *testing.T) {
	h := newHarness(t)
	cases := []struct {
		name   string
		q      url.Values
		mutate func(q url.Values)
		want   string
	}{
		{"the implicit grant is unsupported", authQuery(confID, "", "s1", ""), func(q url.Values) { q.Set("response_type", "token") }, "unsupported_response_type"},
		{"a missing response_type is invalid_request", authQuery(confID, "", "s1", ""), func(q url.Values) { q.Del("response_type") }, "invalid_request"},
		{"the plain PKCE method is refused", authQuery(confID, "", "s1", verifier), func(q url.Values) { q.Set("code_challenge_method", "plain") }, "invalid_request"},
		{"a challenge without method is refused", authQuery(confID, "", "s1", challengeOf(verifier)), func(q url.Values) { q.Del("code_challenge_method") }, "invalid_request"},
		{"a method without challenge is refused", authQuery(confID, "", "s1", ""), func(q url.Values) { q.Set("code_challenge_method", "S256") }, "invalid_request"},
		{"a malformed challenge is refused", authQuery(confID, "", "s1", "short"), nil, "invalid_request"},
		{"a public client without PKCE is refused", authQuery(pubID, "", "s1", ""), nil, "invalid_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.mutate != nil {
				tc.mutate(tc.q)
			}
			resp, _ := h.get(h.authURL(tc.q))
			if resp.StatusCode != http.StatusFound {
				t.Fatalf("status %d, want 302", resp.StatusCode)
			}
			want := redirectURI + "?error=" + tc.want + "&state=s1"
			if loc := resp.Header.Get("Location"); loc != want {
				t.Errorf("Location %q, want %q", loc, want)
			}
			if cb, err := h.s.Approve(h.authURL(tc.q), ""); err != nil || cb != want {
				t.Errorf("Approve = %q, %v; want %q, nil", cb, err, want)
			}
		})
	}
}

var (
	hiddenRE = regexp.MustCompile(`<input type="hidden" name="([^"]*)" value="([^"]*)">`)
	radioRE  = regexp.MustCompile(`<input type="radio" name="user" value="([^"]*)"( checked)?>`)
)

// submitConsent does what a browser does with the consent page: it posts
// the hidden fields with the chosen user and button.
func (h *harness) submitConsent(page, userID, action string) *http.Response {
	h.t.Helper()
	form := url.Values{}
	for _, m := range hiddenRE.FindAllStringSubmatch(page, -1) {
		form.Add(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
	}
	if userID != "" {
		form.Set("user", userID)
	}
	form.Set("action", action)
	resp, _ := h.postForm(h.s.AuthorizeURL(), form)
	return resp
}

func TestConsentPageShowsScopesUsersAndEscapesEverything(t *testing.T) {
	h := newHarness(t)
	h.s.AddUser(spotifytest.User{ID: "mallory", DisplayName: `<b>Mallory</b>`})
	state := `"><script>alert(1)</script>`
	resp, page := h.get(h.authURL(authQuery(confID, "user-read-email user-top-read", state, challengeOf(verifier))))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for _, want := range []string{"user-read-email", "user-top-read", "Approve", "Deny", `value="approve"`, `value="deny"`, "&lt;b&gt;Mallory&lt;/b&gt;"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, "<script>alert") || strings.Contains(page, "<b>Mallory") {
		t.Errorf("page is not escaped:\n%s", page)
	}
	users := radioRE.FindAllStringSubmatch(page, -1)
	if len(users) != 2 || users[0][1] != spotifytest.DefaultUserID || users[0][2] == "" || users[1][2] != "" {
		t.Errorf("user picker %q: want DefaultUser first and checked, then mallory", users)
	}
	hidden := map[string]string{}
	for _, m := range hiddenRE.FindAllStringSubmatch(page, -1) {
		hidden[html.UnescapeString(m[1])] = html.UnescapeString(m[2])
	}
	if hidden["state"] != state || hidden["redirect_uri"] != redirectURI || hidden["code_challenge"] != challengeOf(verifier) {
		t.Errorf("hidden fields do not carry the request: %v", hidden)
	}
	if c := h.s.Counts(); c.Approvals != 0 || c.Denials != 0 || c.Authorize != 1 {
		t.Errorf("counts after showing the page: %+v", c)
	}
}

func TestConsentFormApprovesAndDenies(t *testing.T) {
	cases := []struct {
		name     string
		userID   string // "" leaves the preselected user
		action   string
		wantUser string
	}{
		{"approving with the preselected user logs in DefaultUser", "", "approve", spotifytest.DefaultUserID},
		{"approving as another user logs in that user", "alice", "approve", "alice"},
		{"denying redirects with access_denied", "", "deny", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.s.AddUser(spotifytest.User{ID: "alice", DisplayName: "Alice"})
			_, page := h.get(h.authURL(authQuery(confID, "user-read-email", "a+b c/é&=", challengeOf(verifier))))
			resp := h.submitConsent(page, tc.userID, tc.action)
			if resp.StatusCode != http.StatusFound {
				t.Fatalf("status %d, want 302", resp.StatusCode)
			}
			loc, err := url.Parse(resp.Header.Get("Location"))
			if err != nil || !strings.HasPrefix(loc.String(), redirectURI+"?") {
				t.Fatalf("Location %v", loc)
			}
			q := loc.Query()
			if q.Get("state") != "a+b c/é&=" {
				t.Errorf("state %q not echoed exactly", q.Get("state"))
			}
			c := h.s.Counts()
			if tc.action == "deny" {
				if q.Get("error") != "access_denied" || q.Has("code") || c.Denials != 1 || c.Approvals != 0 {
					t.Errorf("deny gave %v, counts %+v", q, c)
				}
				return
			}
			if c.Approvals != 1 || c.Denials != 0 || c.Authorize != 2 {
				t.Errorf("counts %+v", c)
			}
			res := h.token(url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "redirect_uri": {redirectURI}, "code_verifier": {verifier}}, confID, confSecret)
			if res.status != http.StatusOK {
				t.Fatalf("exchange: %d %v", res.status, res.body)
			}
			if user, scopes, valid := h.s.AccessTokenInfo(res.str("access_token")); user != tc.wantUser || !valid || !slices.Equal(scopes, []string{"user-read-email"}) {
				t.Errorf("token of %q %v valid=%v, want %q", user, scopes, valid, tc.wantUser)
			}
		})
	}
}

func TestConsentFormIsValidatedAgain(t *testing.T) {
	h := newHarness(t)
	base := authQuery(confID, "user-read-email", "s", challengeOf(verifier))
	cases := []struct {
		name   string
		mutate func(f url.Values)
		status int
	}{
		{"a tampered redirect URI gets an error page", func(f url.Values) { f.Set("redirect_uri", "https://evil.example/cb") }, http.StatusBadRequest},
		{"an unknown client gets an error page", func(f url.Values) { f.Set("client_id", "nope") }, http.StatusBadRequest},
		{"an unknown user gets an error page", func(f url.Values) { f.Set("user", "nobody") }, http.StatusBadRequest},
		{"an unknown action gets an error page", func(f url.Values) { f.Set("action", "maybe") }, http.StatusBadRequest},
		{"a tampered scope gets the Illegal scope page", func(f url.Values) { f.Set("scope", "bogus") }, http.StatusBadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			form := url.Values{}
			for k, v := range base {
				form[k] = slices.Clone(v)
			}
			form.Set("action", "approve")
			tc.mutate(form)
			resp, _ := h.postForm(h.s.AuthorizeURL(), form)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			loc := resp.Header.Get("Location")
			if tc.status == http.StatusBadRequest && loc != "" {
				t.Errorf("redirected to %q", loc)
			}
		})
	}
	if c := h.s.Counts(); c.Approvals != 0 {
		t.Errorf("a refused form counted as approval: %+v", c)
	}
}

func TestApproveAndDenyHelpers(t *testing.T) {
	h := newHarness(t)
	h.s.AddUser(spotifytest.User{ID: "bob"})
	q := authQuery(confID, "user-read-email", "st8", challengeOf(verifier))

	cb, err := h.s.Approve(h.authURL(q), "bob")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(cb)
	if !strings.HasPrefix(cb, redirectURI+"?code=") || u.Query().Get("state") != "st8" || len(u.Query().Get("code")) < 40 {
		t.Errorf("Approve = %q", cb)
	}

	cb, err = h.s.Deny(h.authURL(q))
	if err != nil || cb != redirectURI+"?error=access_denied&state=st8" {
		t.Errorf("Deny = %q, %v", cb, err)
	}

	if _, err := h.s.Approve(h.authURL(q), "nobody"); err == nil {
		t.Error("Approve with an unknown user succeeded")
	}
	if _, err := h.s.Approve("http://127.0.0.1/elsewhere?"+q.Encode(), ""); err == nil {
		t.Error("Approve with a non-authorize URL succeeded")
	}

	noState := authQuery(confID, "", "", challengeOf(verifier))
	if cb, _ := h.s.Approve(h.authURL(noState), ""); strings.Contains(cb, "state") {
		t.Errorf("state added though absent: %q", cb)
	}
	if cb, _ := h.s.Deny(h.authURL(noState)); cb != redirectURI+"?error=access_denied" {
		t.Errorf("Deny without state = %q", cb)
	}

	c := h.s.Counts()
	// Five authorize requests: the URL that is not /authorize does not count.
	if c.Approvals != 2 || c.Denials != 2 || c.Authorize != 5 {
		t.Errorf("counts %+v, want 2 approvals, 2 denials, 5 authorize", c)
	}
	reqs := h.s.AuthorizeRequests()
	if len(reqs) != 5 || reqs[0].Get("code_challenge") != challengeOf(verifier) || reqs[0].Get("state") != "st8" {
		t.Errorf("AuthorizeRequests %v", reqs)
	}
}

func TestAutoApproveAndAutoDeny(t *testing.T) {
	h := newHarness(t)
	h.s.AddUser(spotifytest.User{ID: "carol"})
	q := authQuery(confID, "user-read-private", "s", challengeOf(verifier))

	h.s.SetAutoApprove("carol")
	resp, _ := h.get(h.authURL(q))
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || loc.Query().Get("code") == "" {
		t.Fatalf("auto-approve: %d %v", resp.StatusCode, loc)
	}
	res := h.token(url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "redirect_uri": {redirectURI}, "code_verifier": {verifier}}, confID, confSecret)
	if user, _, _ := h.s.AccessTokenInfo(res.str("access_token")); user != "carol" {
		t.Errorf("auto-approved as %q, want carol", user)
	}

	h.s.SetAutoDeny(true) // takes precedence
	resp, _ = h.get(h.authURL(q))
	if got := resp.Header.Get("Location"); got != redirectURI+"?error=access_denied&state=s" {
		t.Errorf("auto-deny Location %q", got)
	}

	h.s.SetAutoDeny(false)
	h.s.SetAutoApprove("")
	resp, _ = h.get(h.authURL(q))
	if resp.StatusCode != http.StatusOK {
		t.Errorf("consent page expected again, got %d", resp.StatusCode)
	}
	if c := h.s.Counts(); c.Approvals != 1 || c.Denials != 1 || c.Authorize != 3 {
		t.Errorf("counts %+v", c)
	}
}

func TestRedirectURIWithQueryIsKept(t *testing.T) {
	h := newHarness(t)
	const withQuery = "https://app.example/cb?tenant=a%20b"
	h.s.AddRedirectURI(confID, withQuery)
	q := authQuery(confID, "", "s", challengeOf(verifier))
	q.Set("redirect_uri", withQuery)
	cb, err := h.s.Approve(h.authURL(q), "")
	if err != nil || !strings.HasPrefix(cb, withQuery+"&code=") || !strings.HasSuffix(cb, "&state=s") {
		t.Errorf("Approve = %q, %v", cb, err)
	}
}

func TestPKCE(t *testing.T) {
	cases := []struct {
		name      string
		clientID  string
		basic     bool
		challenge string // "" = none in /authorize
		verifier  string // "" = none in the token request
		wantCode  string // "" = success
	}{
		{"a public client with the right verifier gets tokens", pubID, false, challengeOf(verifier), verifier, ""},
		{"a confidential client with the right verifier gets tokens", confID, true, challengeOf(verifier), verifier, ""},
		{"a confidential client without PKCE gets tokens", confID, true, "", "", ""},
		{"a wrong verifier is invalid_grant", pubID, false, challengeOf(verifier), verifier + "x", "invalid_grant"},
		// "short" is no valid verifier, though its challenge is well formed.
		{"a malformed verifier is invalid_grant", pubID, false, challengeOf("short"), "short", "invalid_grant"},
		{"the challenge as verifier is invalid_grant", confID, true, challengeOf(verifier), challengeOf(verifier), "invalid_grant"},
		{"a missing verifier is invalid_request", pubID, false, challengeOf(verifier), "", "invalid_request"},
		{"a verifier without challenge is invalid_request", confID, true, "", verifier, "invalid_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			code := h.codeFor(authQuery(tc.clientID, "", "s", tc.challenge), "")
			form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI}}
			if tc.verifier != "" {
				form.Set("code_verifier", tc.verifier)
			}
			var res tokenResult
			if tc.basic {
				res = h.token(form, confID, confSecret)
			} else {
				form.Set("client_id", tc.clientID)
				res = h.token(form, "", "")
			}
			if tc.wantCode == "" {
				if res.status != http.StatusOK || res.str("access_token") == "" {
					t.Fatalf("got %d %v", res.status, res.body)
				}
				return
			}
			wantOAuthError(t, res, http.StatusBadRequest, tc.wantCode)
		})
	}
}

func TestCodesAreSingleUseShortLivedAndBound(t *testing.T) {
	exchange := func(h *harness, code string, mutate func(url.Values)) tokenResult {
		form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI}, "code_verifier": {verifier}}
		if mutate != nil {
			mutate(form)
		}
		return h.token(form, confID, confSecret)
	}
	t.Run("a code works once and is invalid_grant the second time", func(t *testing.T) {
		h := newHarness(t)
		code := h.codeFor(authQuery(confID, "", "s", challengeOf(verifier)), "")
		if res := exchange(h, code, nil); res.status != http.StatusOK {
			t.Fatalf("first use: %d %v", res.status, res.body)
		}
		wantOAuthError(t, exchange(h, code, nil), http.StatusBadRequest, "invalid_grant")
	})
	t.Run("a failed exchange consumes the code", func(t *testing.T) {
		h := newHarness(t)
		code := h.codeFor(authQuery(confID, "", "s", challengeOf(verifier)), "")
		wantOAuthError(t, exchange(h, code, func(f url.Values) { f.Set("code_verifier", verifier+"x") }), http.StatusBadRequest, "invalid_grant")
		wantOAuthError(t, exchange(h, code, nil), http.StatusBadRequest, "invalid_grant")
	})
	t.Run("an unknown code is invalid_grant", func(t *testing.T) {
		h := newHarness(t)
		wantOAuthError(t, exchange(h, "AQnotacode", nil), http.StatusBadRequest, "invalid_grant")
	})
	t.Run("a missing code is invalid_request", func(t *testing.T) {
		h := newHarness(t)
		wantOAuthError(t, exchange(h, "", func(f url.Values) { f.Del("code") }), http.StatusBadRequest, "invalid_request")
	})
	t.Run("another redirect URI is invalid_grant", func(t *testing.T) {
		h := newHarness(t)
		h.s.AddRedirectURI(confID, "http://127.0.0.1:9/other")
		code := h.codeFor(authQuery(confID, "", "s", challengeOf(verifier)), "")
		wantOAuthError(t, exchange(h, code, func(f url.Values) { f.Set("redirect_uri", "http://127.0.0.1:9/other") }), http.StatusBadRequest, "invalid_grant")
	})
	t.Run("a missing redirect URI is invalid_grant", func(t *testing.T) {
		h := newHarness(t)
		code := h.codeFor(authQuery(confID, "", "s", challengeOf(verifier)), "")
		wantOAuthError(t, exchange(h, code, func(f url.Values) { f.Del("redirect_uri") }), http.StatusBadRequest, "invalid_grant")
	})
	t.Run("another client's code is invalid_grant", func(t *testing.T) {
		h := newHarness(t)
		code := h.codeFor(authQuery(pubID, "", "s", challengeOf(verifier)), "")
		wantOAuthError(t, exchange(h, code, nil), http.StatusBadRequest, "invalid_grant")
	})
	t.Run("an expired code is invalid_grant", func(t *testing.T) {
		h := newHarness(t)
		h.s.SetCodeLifetime(50 * time.Millisecond)
		code := h.codeFor(authQuery(confID, "", "s", challengeOf(verifier)), "")
		time.Sleep(100 * time.Millisecond)
		wantOAuthError(t, exchange(h, code, nil), http.StatusBadRequest, "invalid_grant")
	})
}

func TestClientAuthentication(t *testing.T) {
	cases := []struct {
		name       string
		clientID   string // authorize as
		challenge  bool
		basicID    string
		basicPass  string
		form       url.Values
		wantStatus int
		wantError  string
		wantAuth   string
	}{
		{"HTTP Basic with the right secret works", confID, true, confID, confSecret, nil, 200, "", "basic"},
		{"the secret in the body works", confID, true, "", "", url.Values{"client_id": {confID}, "client_secret": {confSecret}}, 200, "", "body"},
		{"a public client with client_id alone works", pubID, true, "", "", url.Values{"client_id": {pubID}}, 200, "", "none"},
		{"a confidential client with client_id alone and PKCE works", confID, true, "", "", url.Values{"client_id": {confID}}, 200, "", "none"},
		{"a wrong Basic secret is 400 invalid_client", confID, true, confID, "wrong", nil, 400, "invalid_client", "basic"},
		{"a wrong body secret is 400 invalid_client", confID, true, "", "", url.Values{"client_id": {confID}, "client_secret": {"wrong"}}, 400, "invalid_client", "body"},
		{"an unknown client is 400 invalid_client", confID, true, "stranger", "x", nil, 400, "invalid_client", "basic"},
		{"no client at all is 400 invalid_client", confID, true, "", "", nil, 400, "invalid_client", "none"},
		{"a public client sending a secret is 400 invalid_client", pubID, true, "", "", url.Values{"client_id": {pubID}, "client_secret": {"made-up"}}, 400, "invalid_client", "body"},
		{"client_id alone without PKCE is 400 invalid_client", confID, false, "", "", url.Values{"client_id": {confID}}, 400, "invalid_client", "none"},
		{"Basic plus a body secret is invalid_request", confID, true, confID, confSecret, url.Values{"client_secret": {confSecret}}, 400, "invalid_request", "basic"},
		{"Basic for one client and client_id of another is invalid_client", confID, true, confID, confSecret, url.Values{"client_id": {pubID}}, 400, "invalid_client", "basic"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			challenge := ""
			form := url.Values{"grant_type": {"authorization_code"}, "redirect_uri": {redirectURI}}
			if tc.challenge {
				challenge = challengeOf(verifier)
				form.Set("code_verifier", verifier)
			}
			form.Set("code", h.codeFor(authQuery(tc.clientID, "", "s", challenge), ""))
			for k, v := range tc.form {
				form[k] = v
			}
			res := h.token(form, tc.basicID, tc.basicPass)
			if tc.wantError == "" {
				if res.status != 200 || res.str("access_token") == "" {
					t.Fatalf("got %d %v", res.status, res.body)
				}
			} else {
				wantOAuthError(t, res, tc.wantStatus, tc.wantError)
			}
			reqs := h.s.TokenRequests()
			if len(reqs) != 1 || reqs[0].ClientAuth != tc.wantAuth || reqs[0].GrantType != "authorization_code" {
				t.Errorf("TokenRequests %+v, want one with ClientAuth %q", reqs, tc.wantAuth)
			}
		})
	}
}

func TestBasicCredentialsAreFormDecoded(t *testing.T) {
	h := newHarness(t)
	const id, secret = "app with:colon", "s3cr3t/+&="
	h.s.AddClient(spotifytest.Client{ID: id, Secret: secret, RedirectURIs: []string{redirectURI}})
	res := h.token(url.Values{"grant_type": {"client_credentials"}}, url.QueryEscape(id), url.QueryEscape(secret))
	if res.status != 200 {
		t.Fatalf("got %d %v", res.status, res.body)
	}
}

func TestTokenEndpointAcceptsOnlyWellFormedForms(t *testing.T) {
	h := newHarness(t)
	cases := []struct {
		name       string
		req        func() *http.Request
		wantStatus int
		wantError  string
	}{
		{"GET is 405", func() *http.Request {
			r, _ := http.NewRequest(http.MethodGet, h.s.TokenURL()+"?grant_type=client_credentials", nil)
			r.SetBasicAuth(confID, confSecret)
			return r
		}, 405, "invalid_request"},
		{"a JSON body is invalid_request", func() *http.Request {
			r, _ := http.NewRequest(http.MethodPost, h.s.TokenURL(), strings.NewReader(`{"grant_type":"client_credentials"}`))
			r.Header.Set("Content-Type", "application/json")
			r.SetBasicAuth(confID, confSecret)
			return r
		}, 400, "invalid_request"},
		{"no Content-Type is invalid_request", func() *http.Request {
			r, _ := http.NewRequest(http.MethodPost, h.s.TokenURL(), strings.NewReader("grant_type=client_credentials"))
			r.SetBasicAuth(confID, confSecret)
			return r
		}, 400, "invalid_request"},
		{"parameters in the query are ignored", func() *http.Request {
			r, _ := http.NewRequest(http.MethodPost, h.s.TokenURL()+"?grant_type=client_credentials", strings.NewReader(""))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.SetBasicAuth(confID, confSecret)
			return r
		}, 400, "unsupported_grant_type"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantOAuthError(t, h.do(tc.req()), tc.wantStatus, tc.wantError)
		})
	}
	t.Run("an unknown grant type is unsupported_grant_type", func(t *testing.T) {
		wantOAuthError(t, h.token(url.Values{"grant_type": {"password"}}, confID, confSecret), 400, "unsupported_grant_type")
	})
	t.Run("a repeated parameter is invalid_request", func(t *testing.T) {
		wantOAuthError(t, h.token(url.Values{"grant_type": {"client_credentials", "client_credentials"}}, confID, confSecret), 400, "invalid_request")
	})
	t.Run("a charset parameter in the Content-Type is fine", func(t *testing.T) {
		r, _ := http.NewRequest(http.MethodPost, h.s.TokenURL(), strings.NewReader("grant_type=client_credentials"))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		r.SetBasicAuth(confID, confSecret)
		if res := h.do(r); res.status != 200 {
			t.Errorf("got %d %v", res.status, res.body)
		}
	})
}

var urlSafe = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func TestTokenResponseLooksLikeSpotifys(t *testing.T) {
	h := newHarness(t)
	res := h.loginConf("user-read-email user-top-read")
	if res.str("token_type") != "Bearer" || res.str("scope") != "user-read-email user-top-read" || res.body["expires_in"] != float64(3600) {
		t.Errorf("response %v", res.body)
	}
	at, rt := res.str("access_token"), res.str("refresh_token")
	if len(at) != 200 || len(rt) != 131 || !urlSafe.MatchString(at) || !urlSafe.MatchString(rt) || at == rt {
		t.Errorf("token lengths %d/%d or alphabet wrong: %q %q", len(at), len(rt), at, rt)
	}
	if cc := res.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q", cc)
	}

	h.s.SetTokenLength(4000)
	h.s.SetAccessTokenLifetime(90 * time.Second)
	res = h.loginConf("")
	if n := len(res.str("access_token")); n != 4000 || res.body["expires_in"] != float64(90) || res.str("scope") != "" {
		t.Errorf("long token: length %d, response %v", n, res.body)
	}
	if _, ok := res.body["scope"]; !ok {
		t.Error("scope missing when no scope was granted")
	}
}

func TestUserGrantScopesCapTheGrant(t *testing.T) {
	h := newHarness(t)
	h.s.AddUser(spotifytest.User{ID: "stingy", GrantScopes: []string{"user-read-email", "streaming"}})
	code := h.codeFor(authQuery(confID, "user-top-read user-read-email user-read-private", "s", challengeOf(verifier)), "stingy")
	res := h.token(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI}, "code_verifier": {verifier}}, confID, confSecret)
	if res.str("scope") != "user-read-email" {
		t.Errorf("granted %q, want user-read-email", res.str("scope"))
	}
	wantAPIError(t, h.api("/v1/me/top/artists", res.str("access_token")), 403, "Insufficient client scope")
}

func TestRefresh(t *testing.T) {
	refresh := func(h *harness, rt string) tokenResult {
		return h.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, confID, confSecret)
	}
	t.Run("without rotation the answer omits refresh_token and the old one keeps working", func(t *testing.T) {
		h := newHarness(t)
		rt := h.loginConf("user-read-email").str("refresh_token")
		for i := range 3 {
			res := refresh(h, rt)
			if res.status != 200 || res.str("access_token") == "" || res.str("scope") != "user-read-email" {
				t.Fatalf("refresh %d: %d %v", i, res.status, res.body)
			}
			if _, ok := res.body["refresh_token"]; ok {
				t.Fatalf("refresh %d returned a refresh_token", i)
			}
			if me := h.api("/v1/me", res.str("access_token")); me.status != 200 {
				t.Fatalf("new access token refused: %v", me.body)
			}
		}
		if c := h.s.Counts(); c.Refreshes != 3 || c.TokenErrors != 0 {
			t.Errorf("counts %+v", c)
		}
	})
	t.Run("with rotation a new refresh token comes back and the old one is invalid_grant at once", func(t *testing.T) {
		h := newHarness(t)
		h.s.SetRotateRefreshTokens(true)
		old := h.loginConf("user-read-email").str("refresh_token")
		res := refresh(h, old)
		rotated := res.str("refresh_token")
		if res.status != 200 || rotated == "" || rotated == old || len(rotated) != 131 {
			t.Fatalf("rotation: %d %v", res.status, res.body)
		}
		wantOAuthError(t, refresh(h, old), 400, "invalid_grant")
		if res := refresh(h, rotated); res.status != 200 || res.str("refresh_token") == "" {
			t.Fatalf("rotated token refused: %v", res.body)
		}
		if c := h.s.Counts(); c.Refreshes != 3 || c.TokenErrors != 1 {
			t.Errorf("counts %+v", c)
		}
	})
	t.Run("a public client refreshes with client_id alone", func(t *testing.T) {
		h := newHarness(t)
		rt := h.loginPublic("").str("refresh_token")
		res := h.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {pubID}}, "", "")
		if res.status != 200 {
			t.Fatalf("got %d %v", res.status, res.body)
		}
	})
	t.Run("a token issued with a secret needs the secret to refresh", func(t *testing.T) {
		h := newHarness(t)
		rt := h.loginConf("").str("refresh_token")
		wantOAuthError(t, h.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {confID}}, "", ""), 400, "invalid_client")
	})
	t.Run("another client's refresh token is invalid_grant", func(t *testing.T) {
		h := newHarness(t)
		rt := h.loginPublic("").str("refresh_token")
		wantOAuthError(t, refresh(h, rt), 400, "invalid_grant")
	})
	t.Run("an unknown refresh token is invalid_grant", func(t *testing.T) {
		h := newHarness(t)
		wantOAuthError(t, refresh(h, "AQbogus"), 400, "invalid_grant")
	})
	t.Run("a missing refresh token is invalid_request", func(t *testing.T) {
		h := newHarness(t)
		wantOAuthError(t, h.token(url.Values{"grant_type": {"refresh_token"}}, confID, confSecret), 400, "invalid_request")
	})
	t.Run("an expired refresh token is invalid_grant", func(t *testing.T) {
		h := newHarness(t)
		h.s.SetRefreshTokenLifetime(150 * time.Millisecond)
		rt := h.loginConf("").str("refresh_token")
		if res := refresh(h, rt); res.status != 200 {
			t.Fatalf("fresh token refused: %v", res.body)
		}
		time.Sleep(200 * time.Millisecond)
		wantOAuthError(t, refresh(h, rt), 400, "invalid_grant")
		h.s.SetRefreshTokenLifetime(-1) // never expire again
		if res := refresh(h, rt); res.status != 200 {
			t.Fatalf("a negative lifetime should not expire: %v", res.body)
		}
	})
	t.Run("a revoked refresh token is invalid_grant and other users are untouched", func(t *testing.T) {
		h := newHarness(t)
		h.s.AddUser(spotifytest.User{ID: "other"})
		rt := h.loginConf("user-read-email").str("refresh_token")
		code := h.codeFor(authQuery(confID, "", "s", challengeOf(verifier)), "other")
		otherRes := h.token(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI}, "code_verifier": {verifier}}, confID, confSecret)
		h.s.RevokeRefreshTokens(spotifytest.DefaultUserID)
		wantOAuthError(t, refresh(h, rt), 400, "invalid_grant")
		if res := refresh(h, otherRes.str("refresh_token")); res.status != 200 {
			t.Fatalf("other user's token refused: %v", res.body)
		}
	})
}

func TestClientCredentials(t *testing.T) {
	h := newHarness(t)
	res := h.token(url.Values{"grant_type": {"client_credentials"}}, confID, confSecret)
	if res.status != 200 || res.str("token_type") != "Bearer" || res.body["expires_in"] != float64(3600) {
		t.Fatalf("got %d %v", res.status, res.body)
	}
	for _, k := range []string{"refresh_token", "scope"} {
		if _, ok := res.body[k]; ok {
			t.Errorf("app token answer has %s", k)
		}
	}
	user, scopes, valid := h.s.AccessTokenInfo(res.str("access_token"))
	if user != "" || len(scopes) != 0 || !valid {
		t.Errorf("AccessTokenInfo = %q %v %v", user, scopes, valid)
	}
	me := h.api("/v1/me", res.str("access_token"))
	wantAPIError(t, me, 401, "Unauthorized.")
	if wa := me.header.Get("WWW-Authenticate"); wa == "" || strings.Contains(wa, "invalid_token") {
		t.Errorf("WWW-Authenticate %q", wa)
	}

	body := h.token(url.Values{"grant_type": {"client_credentials"}, "client_id": {confID}, "client_secret": {confSecret}}, "", "")
	if body.status != 200 {
		t.Errorf("secret in body: %d %v", body.status, body.body)
	}
	wantOAuthError(t, h.token(url.Values{"grant_type": {"client_credentials"}, "client_id": {pubID}}, "", ""), 400, "invalid_client")
	wantOAuthError(t, h.token(url.Values{"grant_type": {"client_credentials"}, "client_id": {confID}}, "", ""), 400, "invalid_client")
	if c := h.s.Counts(); c.ClientCredentials != 4 || c.TokenErrors != 2 {
		t.Errorf("counts %+v", c)
	}
}

func TestMeShowsWhatTheScopesAllow(t *testing.T) {
	cases := []struct {
		name    string
		scope   string
		present []string
		absent  []string
	}{
		{"no scope shows the public profile only", "", nil, []string{"email", "country", "product", "explicit_content"}},
		{"user-read-email adds the email", "user-read-email", []string{"email"}, []string{"country", "product", "explicit_content"}},
		{"user-read-private adds country, product and explicit_content", "user-read-private", []string{"country", "product", "explicit_content"}, []string{"email"}},
		{"both show everything", "user-read-email user-read-private", []string{"email", "country", "product", "explicit_content"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			me := h.api("/v1/me", h.loginConf(tc.scope).str("access_token"))
			if me.status != 200 {
				t.Fatalf("got %d %v", me.status, me.body)
			}
			d := spotifytest.DefaultUser()
			want := map[string]any{
				"id": d.ID, "display_name": d.DisplayName, "type": "user", "uri": "spotify:user:" + d.ID,
				"href": h.s.APIURL() + "/v1/users/" + d.ID, "email": d.Email, "country": d.Country, "product": d.Product,
			}
			for _, k := range append([]string{"id", "display_name", "type", "uri", "href", "external_urls", "followers", "images"}, tc.present...) {
				v, ok := me.body[k]
				if !ok {
					t.Errorf("%s missing", k)
				} else if w, check := want[k]; check && v != w {
					t.Errorf("%s = %v, want %v", k, v, w)
				}
			}
			for _, k := range tc.absent {
				if _, ok := me.body[k]; ok {
					t.Errorf("%s present without its scope", k)
				}
			}
		})
	}
	t.Run("an empty display name is null", func(t *testing.T) {
		h := newHarness(t)
		h.s.AddUser(spotifytest.User{ID: "anon"})
		code := h.codeFor(authQuery(confID, "", "s", challengeOf(verifier)), "anon")
		res := h.token(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI}, "code_verifier": {verifier}}, confID, confSecret)
		me := h.api("/v1/me", res.str("access_token"))
		if v, ok := me.body["display_name"]; !ok || v != nil || me.body["id"] != "anon" {
			t.Errorf("profile %v", me.body)
		}
	})
}

func TestWebAPIAuthenticationErrors(t *testing.T) {
	const wwwAuth = `Bearer realm="spotify", error="invalid_token"`
	h := newHarness(t)
	good := h.loginConf("user-read-email").str("access_token")

	cases := []struct {
		name    string
		header  string
		status  int
		message string
	}{
		{"no token is 401", "", 401, "Missing/invalid/expired access token"},
		{"an unknown token is 401", "Bearer BQnope", 401, "Missing/invalid/expired access token"},
		{"Basic credentials are 400", "Basic Zm9vOmJhcg==", 400, "Only valid bearer authentication supported"},
		{"an empty bearer token is 400", "Bearer ", 400, "Only valid bearer authentication supported"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, h.s.APIURL()+"/v1/me", nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			res := h.do(req)
			wantAPIError(t, res, tc.status, tc.message)
			// RFC 6750 §3.1: no credentials, no error code.
			want := wwwAuth
			if tc.header == "" {
				want = `Bearer realm="spotify"`
			}
			if tc.status == 401 && res.header.Get("WWW-Authenticate") != want {
				t.Errorf("WWW-Authenticate %q, want %q", res.header.Get("WWW-Authenticate"), want)
			}
		})
	}

	t.Run("ExpireAccessTokens makes every issued token 401 expired", func(t *testing.T) {
		if res := h.api("/v1/me", good); res.status != 200 {
			t.Fatalf("before: %v", res.body)
		}
		h.s.ExpireAccessTokens()
		res := h.api("/v1/me", good)
		wantAPIError(t, res, 401, "Missing/invalid/expired access token")
		if res.header.Get("WWW-Authenticate") != wwwAuth {
			t.Errorf("WWW-Authenticate %q", res.header.Get("WWW-Authenticate"))
		}
		if _, _, valid := h.s.AccessTokenInfo(good); valid {
			t.Error("AccessTokenInfo still says valid")
		}
		if res := h.api("/v1/me", h.loginConf("").str("access_token")); res.status != 200 {
			t.Errorf("a token issued afterwards is refused: %v", res.body)
		}
	})
	t.Run("a token past its lifetime is 401 expired", func(t *testing.T) {
		h.s.SetAccessTokenLifetime(50 * time.Millisecond)
		defer h.s.SetAccessTokenLifetime(0)
		res := h.loginConf("")
		if res.body["expires_in"] != float64(1) {
			t.Errorf("expires_in %v, want 1", res.body["expires_in"])
		}
		time.Sleep(100 * time.Millisecond)
		wantAPIError(t, h.api("/v1/me", res.str("access_token")), 401, "Missing/invalid/expired access token")
	})
	t.Run("AccessTokenInfo of an unknown token is empty", func(t *testing.T) {
		if u, s, v := h.s.AccessTokenInfo("nope"); u != "" || s != nil || v {
			t.Errorf("got %q %v %v", u, s, v)
		}
	})
}

func TestTopItems(t *testing.T) {
	h := newHarness(t)
	withScope := h.loginConf("user-top-read").str("access_token")
	without := h.loginConf("user-read-email").str("access_token")

	for _, kind := range []string{"artists", "tracks"} {
		t.Run(kind+" need user-top-read", func(t *testing.T) {
			wantAPIError(t, h.api("/v1/me/top/"+kind, without), 403, "Insufficient client scope")
		})
		t.Run(kind+" come in Spotify's paging shape", func(t *testing.T) {
			res := h.api("/v1/me/top/"+kind, withScope)
			if res.status != 200 {
				t.Fatalf("got %d %v", res.status, res.body)
			}
			items, _ := res.body["items"].([]any)
			total, _ := res.body["total"].(float64)
			if len(items) < 3 || int(total) != len(items) || res.body["limit"] != float64(20) || res.body["offset"] != float64(0) || res.body["next"] != nil || res.body["previous"] != nil {
				t.Fatalf("paging %v", res.body)
			}
			for _, it := range items {
				m := it.(map[string]any)
				id, _ := m["id"].(string)
				if len(id) != 22 || m["name"] == "" || m["uri"] != "spotify:"+strings.TrimSuffix(kind, "s")+":"+id {
					t.Errorf("item %v", m)
				}
				switch kind {
				case "artists":
					if g, _ := m["genres"].([]any); len(g) == 0 || m["popularity"] == nil {
						t.Errorf("artist without genres or popularity: %v", m)
					}
				case "tracks":
					album, _ := m["album"].(map[string]any)
					artists, _ := m["artists"].([]any)
					if album == nil || album["name"] == "" || len(artists) == 0 {
						t.Errorf("track without album or artists: %v", m)
					}
				}
			}
		})
		t.Run(kind+" honour limit and offset", func(t *testing.T) {
			res := h.api("/v1/me/top/"+kind+"?limit=2&offset=1&time_range=short_term", withScope)
			items, _ := res.body["items"].([]any)
			next, _ := res.body["next"].(string)
			prev, _ := res.body["previous"].(string)
			if res.status != 200 || len(items) != 2 || !strings.Contains(next, "offset=3") || !strings.Contains(prev, "offset=0") {
				t.Errorf("page %v", res.body)
			}
		})
	}
	t.Run("a bad limit is 400", func(t *testing.T) {
		wantAPIError(t, h.api("/v1/me/top/artists?limit=51", withScope), 400, "Invalid limit")
	})
	t.Run("a bad time range is 400", func(t *testing.T) {
		wantAPIError(t, h.api("/v1/me/top/artists?time_range=forever", withScope), 400, "Invalid time range")
	})
	t.Run("an unknown path is 404 nested", func(t *testing.T) {
		wantAPIError(t, h.api("/v1/me/playlists/nope", withScope), 404, "Service not found")
	})
	t.Run("POST to /v1/me is 405 nested", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, h.s.APIURL()+"/v1/me", nil)
		req.Header.Set("Authorization", "Bearer "+withScope)
		wantAPIError(t, h.do(req), 405, "Method not allowed")
	})
}

func TestFaultStatuses(t *testing.T) {
	cases := []struct {
		name        string
		ep          spotifytest.Endpoint
		fault       spotifytest.Fault
		wantBody    string // substring
		wantCT      string // prefix
		wantRetryAt string
	}{
		{"a token 500 answers server_error JSON", spotifytest.EndpointToken, spotifytest.Fault{Status: 500, Times: 1}, `"error":"server_error"`, "application/json", ""},
		{"a token 503 answers temporarily_unavailable", spotifytest.EndpointToken, spotifytest.Fault{Status: 503, Times: 1}, `"error":"temporarily_unavailable"`, "application/json", ""},
		{"a token 429 answers with Retry-After", spotifytest.EndpointToken, spotifytest.Fault{Status: 429, RetryAfter: "7", Times: 1}, `"message":"API rate limit exceeded"`, "application/json", "7"},
		{"an API 500 answers the nested shape", spotifytest.EndpointAPI, spotifytest.Fault{Status: 500, Times: 1}, `{"error":{"status":500,"message":"Server error."}}`, "application/json", ""},
		{"an API 429 answers rate limit exceeded with Retry-After", spotifytest.EndpointAPI, spotifytest.Fault{Status: 429, RetryAfter: "3600", Times: 1}, `{"error":{"status":429,"message":"API rate limit exceeded"}}`, "application/json", "3600"},
		{"an authorize 503 answers an HTML page", spotifytest.EndpointAuthorize, spotifytest.Fault{Status: 503, Times: 1}, "503 Service Unavailable", "text/html", ""},
		{"a custom body is sent as is", spotifytest.EndpointAPI, spotifytest.Fault{Status: 502, Body: "upstream hiccup", Times: 1}, "upstream hiccup", "text/plain", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			access := h.loginConf("").str("access_token")
			rt := ""
			if tc.ep == spotifytest.EndpointToken {
				rt = h.loginConf("").str("refresh_token")
			}
			h.s.ResetCounts()
			h.s.InjectFault(tc.ep, tc.fault)
			send := func() *http.Response {
				var req *http.Request
				switch tc.ep {
				case spotifytest.EndpointToken:
					req, _ = http.NewRequest(http.MethodPost, h.s.TokenURL(), strings.NewReader(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}.Encode()))
					req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
					req.SetBasicAuth(confID, confSecret)
				case spotifytest.EndpointAPI:
					req, _ = http.NewRequest(http.MethodGet, h.s.APIURL()+"/v1/me", nil)
					req.Header.Set("Authorization", "Bearer "+access)
				default:
					req, _ = http.NewRequest(http.MethodGet, h.authURL(authQuery(confID, "", "s", challengeOf(verifier))), nil)
				}
				resp, err := h.http.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				return resp
			}
			resp := send()
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.fault.Status || !strings.Contains(string(b), tc.wantBody) || !strings.HasPrefix(resp.Header.Get("Content-Type"), tc.wantCT) {
				t.Errorf("got %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), b)
			}
			if ra := resp.Header.Get("Retry-After"); ra != tc.wantRetryAt {
				t.Errorf("Retry-After %q, want %q", ra, tc.wantRetryAt)
			}
			// Times 1: the next request is handled normally.
			resp = send()
			resp.Body.Close()
			if resp.StatusCode >= 400 {
				t.Errorf("second request got %d", resp.StatusCode)
			}
			c := h.s.Counts()
			switch tc.ep {
			case spotifytest.EndpointToken:
				if c.Refreshes != 2 || c.TokenErrors != 1 || len(h.s.TokenRequests()) != 2 {
					t.Errorf("counts %+v", c)
				}
			case spotifytest.EndpointAPI:
				if c.Me != 2 || c.APICalls != 2 {
					t.Errorf("counts %+v", c)
				}
			default:
				if c.Authorize != 2 {
					t.Errorf("counts %+v", c)
				}
			}
		})
	}
}

func TestFaultTimesAndQueue(t *testing.T) {
	h := newHarness(t)
	access := h.loginConf("").str("access_token")
	statuses := func(n int) []int {
		var out []int
		for range n {
			out = append(out, h.api("/v1/me", access).status)
		}
		return out
	}
	t.Run("Times counts requests, then the next fault takes over", func(t *testing.T) {
		h.s.InjectFault(spotifytest.EndpointAPI, spotifytest.Fault{Status: 503, Times: 2})
		h.s.InjectFault(spotifytest.EndpointAPI, spotifytest.Fault{Status: 429, Times: 1})
		if got, want := statuses(4), []int{503, 503, 429, 200}; !slices.Equal(got, want) {
			t.Errorf("statuses %v, want %v", got, want)
		}
	})
	t.Run("Times 0 lasts until ClearFaults", func(t *testing.T) {
		h.s.InjectFault(spotifytest.EndpointAPI, spotifytest.Fault{Status: 500})
		if got := statuses(5); !slices.Equal(got, []int{500, 500, 500, 500, 500}) {
			t.Errorf("statuses %v", got)
		}
		h.s.ClearFaults()
		if got := statuses(1); got[0] != 200 {
			t.Errorf("after ClearFaults: %v", got)
		}
	})
	t.Run("a fault on one endpoint leaves the others alone", func(t *testing.T) {
		h.s.InjectFault(spotifytest.EndpointToken, spotifytest.Fault{Status: 500})
		defer h.s.ClearFaults()
		if got := statuses(1); got[0] != 200 {
			t.Errorf("API affected by a token fault: %v", got)
		}
	})
}

func TestFaultDrop(t *testing.T) {
	t.Run("a dropped token request gets no answer and still counts", func(t *testing.T) {
		h := newHarness(t)
		h.s.InjectFault(spotifytest.EndpointToken, spotifytest.Fault{Drop: true, Times: 1})
		req, _ := http.NewRequest(http.MethodPost, h.s.TokenURL(), strings.NewReader("grant_type=client_credentials"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(confID, confSecret)
		if resp, err := h.http.Do(req); err == nil {
			resp.Body.Close()
			t.Fatalf("got an answer: %d", resp.StatusCode)
		}
		if res := h.token(url.Values{"grant_type": {"client_credentials"}}, confID, confSecret); res.status != 200 {
			t.Errorf("second request: %d", res.status)
		}
		if c := h.s.Counts(); c.ClientCredentials != 2 || c.TokenErrors != 1 {
			t.Errorf("counts %+v", c)
		}
	})
	t.Run("a dropped API request gets no answer", func(t *testing.T) {
		h := newHarness(t)
		access := h.loginConf("").str("access_token")
		h.s.InjectFault(spotifytest.EndpointAPI, spotifytest.Fault{Drop: true, Times: 1})
		req, _ := http.NewRequest(http.MethodGet, h.s.APIURL()+"/v1/me", nil)
		req.Header.Set("Authorization", "Bearer "+access)
		if resp, err := h.http.Do(req); err == nil {
			resp.Body.Close()
			t.Fatalf("got an answer: %d", resp.StatusCode)
		}
		if res := h.api("/v1/me", access); res.status != 200 {
			t.Errorf("second request: %d", res.status)
		}
		if c := h.s.Counts(); c.Me != 2 {
			t.Errorf("counts %+v", c)
		}
	})
	t.Run("a dropped authorize request gets no answer", func(t *testing.T) {
		h := newHarness(t)
		h.s.InjectFault(spotifytest.EndpointAuthorize, spotifytest.Fault{Drop: true})
		if resp, err := h.http.Get(h.authURL(authQuery(confID, "", "s", ""))); err == nil {
			resp.Body.Close()
			t.Fatalf("got an answer: %d", resp.StatusCode)
		}
	})
}

func TestFaultDelay(t *testing.T) {
	t.Run("a delay slows the answer down, then it is handled normally", func(t *testing.T) {
		h := newHarness(t)
		h.s.InjectFault(spotifytest.EndpointToken, spotifytest.Fault{Delay: 150 * time.Millisecond, Times: 1})
		start := time.Now()
		res := h.token(url.Values{"grant_type": {"client_credentials"}}, confID, confSecret)
		if d := time.Since(start); d < 150*time.Millisecond || res.status != 200 {
			t.Errorf("took %v, status %d", d, res.status)
		}
	})
	t.Run("a delay followed by a status answers that status late", func(t *testing.T) {
		h := newHarness(t)
		h.s.InjectFault(spotifytest.EndpointAPI, spotifytest.Fault{Delay: 100 * time.Millisecond, Status: 504, Times: 1})
		start := time.Now()
		res := h.api("/v1/me", "x")
		if d := time.Since(start); d < 100*time.Millisecond || res.status != 504 {
			t.Errorf("took %v, status %d", d, res.status)
		}
	})
	t.Run("a client timeout ends the delay", func(t *testing.T) {
		h := newHarness(t)
		h.s.InjectFault(spotifytest.EndpointAPI, spotifytest.Fault{Delay: time.Minute})
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.s.APIURL()+"/v1/me", nil)
		start := time.Now()
		_, err := h.http.Do(req)
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
			t.Errorf("err %v after %v", err, time.Since(start))
		}
		// Cleanup's Close must not wait a minute for the handler.
	})
	t.Run("Close ends delays at once", func(t *testing.T) {
		s := spotifytest.NewServer()
		s.InjectFault(spotifytest.EndpointAPI, spotifytest.Fault{Delay: time.Minute})
		errc := make(chan error, 1)
		go func() {
			resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Get(s.APIURL() + "/v1/me")
			if err == nil {
				resp.Body.Close()
			}
			errc <- err
		}()
		for s.Counts().APICalls == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		start := time.Now()
		s.Close()
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Close took %v", d)
		}
		if err := <-errc; err == nil {
			t.Error("the delayed request got an answer")
		}
		s.Close() // twice is fine
	})
}

func TestCountsAndRecords(t *testing.T) {
	h := newHarness(t)
	_, page := h.get(h.authURL(authQuery(confID, "user-read-email", "s", challengeOf(verifier))))
	resp := h.submitConsent(page, "", "approve")
	loc, _ := url.Parse(resp.Header.Get("Location"))
	tok := h.token(url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "redirect_uri": {redirectURI}, "code_verifier": {verifier}}, confID, confSecret)
	h.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.str("refresh_token")}}, confID, confSecret)
	h.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"bogus"}}, confID, confSecret)
	h.token(url.Values{"grant_type": {"client_credentials"}}, confID, confSecret)
	h.api("/v1/me", tok.str("access_token"))
	h.api("/v1/me/top/tracks", tok.str("access_token"))
	h.api("/v1/nope", tok.str("access_token"))

	want := spotifytest.Counts{Authorize: 2, Approvals: 1, CodeExchanges: 1, Refreshes: 2, ClientCredentials: 1, TokenErrors: 1, Me: 1, APICalls: 3}
	if c := h.s.Counts(); c != want {
		t.Errorf("counts %+v, want %+v", c, want)
	}
	reqs := h.s.TokenRequests()
	if len(reqs) != 4 || reqs[0].GrantType != "authorization_code" || reqs[0].Form.Get("code_verifier") != verifier || reqs[0].ClientAuth != "basic" {
		t.Errorf("TokenRequests %+v", reqs)
	}
	reqs[0].Form.Set("code_verifier", "mutated")
	if h.s.TokenRequests()[0].Form.Get("code_verifier") != verifier {
		t.Error("TokenRequests shares its maps with the caller")
	}
	ar := h.s.AuthorizeRequests()
	if len(ar) != 2 || ar[0].Get("scope") != "user-read-email" || ar[1].Get("action") != "approve" {
		t.Errorf("AuthorizeRequests %v", ar)
	}

	h.s.ResetCounts()
	if c := h.s.Counts(); c != (spotifytest.Counts{}) || len(h.s.TokenRequests()) != 0 || len(h.s.AuthorizeRequests()) != 0 {
		t.Errorf("after ResetCounts: %+v", c)
	}
}

// TestWorksWithOAuth2Library runs the flows the plugin uses through
// golang.org/x/oauth2.
func TestWorksWithOAuth2Library(t *testing.T) {
	cases := []struct {
		name      string
		clientID  string
		secret    string
		authStyle oauth2.AuthStyle
		rotate    bool
	}{
		{"a confidential client with Basic auth and rotation", confID, confSecret, oauth2.AuthStyleInHeader, true},
		{"a confidential client with Basic auth without rotation", confID, confSecret, oauth2.AuthStyleInHeader, false},
		{"a confidential client with the secret in the body", confID, confSecret, oauth2.AuthStyleInParams, false},
		{"a public client with PKCE only and rotation", pubID, "", oauth2.AuthStyleInParams, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.s.SetRotateRefreshTokens(tc.rotate)
			h.s.SetAccessTokenLifetime(time.Second) // below x/oauth2's expiry delta: every Token() refreshes
			conf := &oauth2.Config{
				ClientID: tc.clientID, ClientSecret: tc.secret, RedirectURL: redirectURI,
				Scopes:   []string{"user-read-email", "user-top-read"},
				Endpoint: oauth2.Endpoint{AuthURL: h.s.AuthorizeURL(), TokenURL: h.s.TokenURL(), AuthStyle: tc.authStyle},
			}
			v := oauth2.GenerateVerifier()
			cb, err := h.s.Approve(conf.AuthCodeURL("state-1", oauth2.S256ChallengeOption(v)), "")
			if err != nil {
				t.Fatal(err)
			}
			u, _ := url.Parse(cb)
			ctx := context.WithValue(context.Background(), oauth2.HTTPClient, h.http)
			tok, err := conf.Exchange(ctx, u.Query().Get("code"), oauth2.VerifierOption(v))
			if err != nil {
				t.Fatal(err)
			}
			if tok.Extra("scope") != "user-read-email user-top-read" {
				t.Errorf("scope %v", tok.Extra("scope"))
			}
			ts := conf.TokenSource(ctx, tok)
			for range 3 {
				if _, err := ts.Token(); err != nil {
					t.Fatalf("refresh: %v", err)
				}
			}
			resp, err := oauth2.NewClient(ctx, ts).Get(h.s.APIURL() + "/v1/me")
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("/v1/me: %v %v", resp, err)
			}
			resp.Body.Close()
			if c := h.s.Counts(); c.Refreshes != 4 || c.TokenErrors != 0 {
				t.Errorf("counts %+v", c)
			}

			h.s.RevokeRefreshTokens(spotifytest.DefaultUserID)
			_, err = ts.Token()
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
				t.Errorf("after revocation: %v", err)
			}
		})
	}
}

func TestConcurrentUse(t *testing.T) {
	h := newHarness(t)
	h.s.SetRotateRefreshTokens(true)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				h.s.InjectFault(spotifytest.EndpointAPI, spotifytest.Fault{Status: 503, Times: 1})
			}
			res := h.loginPublic("user-top-read")
			rt := res.str("refresh_token")
			for range 3 {
				r := h.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {pubID}}, "", "")
				if r.status != 200 {
					t.Errorf("refresh: %d %v", r.status, r.body)
					return
				}
				rt = r.str("refresh_token")
			}
			h.api("/v1/me/top/artists", res.str("access_token"))
			_ = h.s.Counts()
			_ = h.s.TokenRequests()
		}()
	}
	wg.Wait()
	if c := h.s.Counts(); c.CodeExchanges != 8 || c.Refreshes != 24 || c.APICalls != 8 || c.TokenErrors != 0 {
		t.Errorf("counts %+v", c)
	}
}
