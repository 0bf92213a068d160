package spotifyauth_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyspotify/caddy-spotify-auth/internal/testkit"
	"github.com/caddyspotify/caddy-spotify-auth/spotifyauthtest"
	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// webAPISite runs a real Caddy with `web_api /spotify-api` against a fake
// Spotify, and an app that remembers the token the gate gave it (to look
// for it in web_api answers).
type webAPISite struct {
	*spotifyauthtest.Site
	fake  *spotifytest.Server
	mu    sync.Mutex
	token string
}

func startWebAPISite(t *testing.T, directives ...string) *webAPISite {
	t.Helper()
	fake := testkit.NewFake(t)
	ws := &webAPISite{fake: fake}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws.mu.Lock()
		ws.token = strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		ws.mu.Unlock()
		_, _ = io.WriteString(w, "app page")
	}))
	t.Cleanup(app.Close)
	ws.Site = spotifyauthtest.Start(t, fake, app.URL,
		spotifyauthtest.WithScopes("user-top-read", "user-read-playback-state", "user-modify-playback-state"),
		spotifyauthtest.WithDirectives(append([]string{"web_api /spotify-api"}, directives...)...))
	return ws
}

// currentToken loads a page of the app and returns the token it was given.
func (ws *webAPISite) currentToken(t *testing.T, c *http.Client) string {
	t.Helper()
	resp, err := c.Get(ws.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if resp.StatusCode != http.StatusOK || ws.token == "" {
		t.Fatalf("app page: %d, token given: %v", resp.StatusCode, ws.token != "")
	}
	return ws.token
}

type apiCall struct {
	method, path, body string
	header             map[string]string
}

func (ws *webAPISite) call(t *testing.T, c *http.Client, ac apiCall) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if ac.body != "" {
		body = strings.NewReader(ac.body)
	}
	req, err := http.NewRequest(ac.method, ws.URL+ac.path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range ac.header {
		req.Header.Set(k, v)
	}
	return testkit.Do(t, c, req)
}

// assertNoToken fails if the answer carries the token anywhere.
func assertNoToken(t *testing.T, resp *http.Response, body, token string) {
	t.Helper()
	if strings.Contains(body, token) {
		t.Errorf("%s %s: the body carries the access token", resp.Request.Method, resp.Request.URL.Path)
	}
	for k, vs := range resp.Header {
		for _, v := range vs {
			if strings.Contains(v, token) {
				t.Errorf("%s %s: header %s carries the access token", resp.Request.Method, resp.Request.URL.Path, k)
			}
		}
	}
}

var sameOriginFetch = map[string]string{"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors", "Accept": "application/json"}

// TestWebAPIForwardsSameOriginCallsWithTheTokenOnly: a same-origin call
// reaches the fake's /v1/... with the user's token and nothing else of
// the session (cookies, managed headers, the client's Authorization,
// X-Forwarded-*); the answer comes back unchanged and carries no token.
func TestWebAPIForwardsSameOriginCallsWithTheTokenOnly(t *testing.T) {
	ws := startWebAPISite(t)
	c := ws.Client(t, spotifytest.DefaultUserID)
	token := ws.currentToken(t, c)

	hdr := map[string]string{
		"Sec-Fetch-Site": "same-origin", "Accept": "application/json",
		"Authorization":     "Bearer the-clients-own",
		"X-Spotify-User-Id": "mallory",
		"X-Custom":          "from the page",
		"Cookie":            "theme=dark",
	}
	resp, body := ws.call(t, c, apiCall{method: "GET", path: "/spotify-api/v1/me/top/artists?limit=2", header: hdr})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("top artists: %d %s", resp.StatusCode, body)
	}
	var page struct {
		Items []struct{ Name string } `json:"items"`
		Limit int                     `json:"limit"`
	}
	if err := json.Unmarshal([]byte(body), &page); err != nil || len(page.Items) != 2 || page.Limit != 2 {
		t.Fatalf("top artists body %q (err %v): want 2 items, Spotify's JSON unchanged", body, err)
	}
	if got := resp.Header.Get("Set-Cookie"); got != "" {
		t.Errorf("answer sets a cookie: %q", got)
	}
	assertNoToken(t, resp, body, token)

	reqs := ws.fake.APIRequests()
	last := reqs[len(reqs)-1]
	if last.Path != "/v1/me/top/artists" || last.Query.Get("limit") != "2" {
		t.Fatalf("the fake got %s %s?%s, want /v1/me/top/artists?limit=2", last.Method, last.Path, last.Query.Encode())
	}
	if last.UserID != spotifytest.DefaultUserID {
		t.Errorf("the fake's request carried a token of %q, want the user's", last.UserID)
	}
	for name := range last.Header {
		switch name {
		case "Accept", "Accept-Encoding", "User-Agent", "Content-Length":
		default:
			t.Errorf("header %s crossed to Spotify: %q", name, last.Header.Values(name))
		}
	}

	// Spotify's 429 comes back with its Retry-After.
	ws.fake.InjectFault(spotifytest.EndpointAPI, spotifytest.Fault{Status: http.StatusTooManyRequests, RetryAfter: "7", Times: 1, Path: "/v1/me/top/tracks"})
	resp, body = ws.call(t, c, apiCall{method: "GET", path: "/spotify-api/v1/me/top/tracks", header: sameOriginFetch})
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "7" || !strings.Contains(body, `"status":429`) {
		t.Errorf("rate limited: %d Retry-After %q body %q; want Spotify's 429 as it came", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}

	// A player command (PUT with a body) from a page of the site.
	resp, body = ws.call(t, c, apiCall{method: "PUT", path: "/spotify-api/v1/me/player/play", body: `{}`,
		header: map[string]string{"Origin": ws.URL, "Content-Type": "application/json"}})
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusForbidden && strings.Contains(body, "own pages") {
		t.Errorf("same-origin PUT: %d %s; want it to reach Spotify", resp.StatusCode, body)
	}
	if n := ws.fake.APIRequestCount("/v1/me/player/play"); n != 1 {
		t.Errorf("the fake saw %d play commands, want 1", n)
	}
}

// TestWebAPIRefusesCrossSiteAndAnonymousCalls: other sites, state changes
// without Origin or Sec-Fetch-Site, and requests without a session never
// reach Spotify.
func TestWebAPIRefusesCrossSiteAndAnonymousCalls(t *testing.T) {
	ws := startWebAPISite(t)
	c := ws.Client(t, spotifytest.DefaultUserID)
	ws.fake.ResetCounts()

	for _, tc := range []struct {
		name string
		call apiCall
	}{
		{"cross-site fetch", apiCall{method: "GET", path: "/spotify-api/v1/me", header: map[string]string{"Sec-Fetch-Site": "cross-site"}}},
		{"same-site but other origin", apiCall{method: "GET", path: "/spotify-api/v1/me", header: map[string]string{"Sec-Fetch-Site": "same-site"}}},
		{"Origin of another site", apiCall{method: "GET", path: "/spotify-api/v1/me", header: map[string]string{"Origin": "https://evil.example"}}},
		{"PUT without Origin or Sec-Fetch-Site", apiCall{method: "PUT", path: "/spotify-api/v1/me/player/pause"}},
		{"POST from another origin", apiCall{method: "POST", path: "/spotify-api/v1/me/player/pause", body: "x",
			header: map[string]string{"Origin": "null", "Content-Type": "text/plain"}}},
	} {
		resp, body := ws.call(t, c, tc.call)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, `"error":"forbidden"`) {
			t.Errorf("%s: %d %s; want 403 JSON", tc.name, resp.StatusCode, body)
		}
	}

	// No session: the usual 401 JSON, even for what looks like a navigation.
	anon := ws.NewBrowser()
	resp, body := ws.call(t, anon, apiCall{method: "GET", path: "/spotify-api/v1/me",
		header: map[string]string{"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate", "Accept": "text/html"}})
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, `"login_url":"/oauth2/spotify/login?rd=%2F"`) {
		t.Errorf("no session: %d %s; want 401 JSON with login_url", resp.StatusCode, body)
	}
	if n := ws.fake.Counts().APICalls; n != 0 {
		t.Errorf("refused calls reached Spotify %d times", n)
	}
}

// TestWebAPIRetriesOnceWithAFreshToken: Spotify answering 401
// invalid_token (the token was revoked) makes the gate refresh and send
// the call again, body included; the browser gets the answer and the
// refreshed session cookie, never the token.
func TestWebAPIRetriesOnceWithAFreshToken(t *testing.T) {
	ws := startWebAPISite(t)
	c := ws.Client(t, spotifytest.DefaultUserID)
	token := ws.currentToken(t, c)
	ws.fake.ResetCounts()
	if !ws.fake.RevokeAccessToken(token) {
		t.Fatal("the fake does not know the token")
	}

	resp, body := ws.call(t, c, apiCall{method: "PUT", path: "/spotify-api/v1/me/player/play",
		body:   `{"uris":["spotify:track:` + spotifytest.DefaultTopTracks()[0].ID() + `"]}`,
		header: map[string]string{"Sec-Fetch-Site": "same-origin", "Content-Type": "application/json"}})
	counts := ws.fake.Counts()
	if counts.Refreshes != 1 || ws.fake.APIRequestCount("/v1/me/player/play") != 2 {
		t.Fatalf("refreshes %d, play requests %d; want one refresh and the call sent again", counts.Refreshes, ws.fake.APIRequestCount("/v1/me/player/play"))
	}
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusBadRequest {
		t.Fatalf("after the refresh: %d %s; want the call to succeed with its body", resp.StatusCode, body)
	}
	if !strings.Contains(resp.Header.Get("Set-Cookie"), "spotify_auth=") {
		t.Error("the refreshed session cookie is not on the answer")
	}
	assertNoToken(t, resp, body, token)
	fresh := ws.currentToken(t, c)
	if fresh == token {
		t.Fatal("the app still gets the revoked token")
	}
	assertNoToken(t, resp, body, fresh)

	// Refused again within minutes: no second forced refresh of the
	// session (bounded), Spotify's own 401 comes back as it was.
	ws.fake.RevokeAccessToken(fresh)
	ws.fake.ResetCounts()
	resp, body = ws.call(t, c, apiCall{method: "GET", path: "/spotify-api/v1/me/top/artists", header: sameOriginFetch})
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "invalid/expired access token") ||
		!strings.Contains(resp.Header.Get("WWW-Authenticate"), "invalid_token") {
		t.Errorf("refused again: %d %s; want Spotify's 401 as it came", resp.StatusCode, body)
	}
	if n, r := ws.fake.APIRequestCount("/v1/me/top/artists"), ws.fake.Counts().Refreshes; n != 1 || r != 0 {
		t.Errorf("the call went %d times to Spotify with %d refreshes, want once and none", n, r)
	}
}

// TestWebAPIEndsASessionWhoseGrantIsRevoked: Spotify refuses the token,
// and the refresh token too (the user removed the app's access). The call
// ends the session as the gate does: its cookie is cleared, so the page's
// next call costs Spotify nothing.
func TestWebAPIEndsASessionWhoseGrantIsRevoked(t *testing.T) {
	ws := startWebAPISite(t)
	c := ws.Client(t, spotifytest.DefaultUserID)
	ws.fake.RevokeAccessToken(ws.currentToken(t, c))
	ws.fake.RevokeRefreshTokens(spotifytest.DefaultUserID)
	ws.fake.ResetCounts()

	resp, _ := ws.call(t, c, apiCall{method: "GET", path: "/spotify-api/v1/me/top/artists", header: sameOriginFetch})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401", resp.StatusCode)
	}
	cleared := false
	for _, sc := range resp.Header.Values("Set-Cookie") {
		cleared = cleared || strings.HasPrefix(sc, "spotify_auth=;") && strings.Contains(sc, "Max-Age=0")
	}
	if !cleared {
		t.Fatalf("the session cookie is not cleared: %q", resp.Header.Values("Set-Cookie"))
	}
	ws.fake.ResetCounts()
	if resp, _ := ws.call(t, c, apiCall{method: "GET", path: "/spotify-api/v1/me/top/artists", header: sameOriginFetch}); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the next call: %d, want 401", resp.StatusCode)
	}
	if n, r := ws.fake.Counts().APICalls, ws.fake.Counts().Refreshes; n != 0 || r != 0 {
		t.Errorf("the next call cost Spotify %d API calls and %d refreshes, want none", n, r)
	}
}

// TestWebAPIHonoursLogoutEverywhereAtOnce: the web_api route has a gate
// of its own; a revocation made through the site's gate (logout
// everywhere) ends the session there at once too.
func TestWebAPIHonoursLogoutEverywhereAtOnce(t *testing.T) {
	ws := startWebAPISite(t)
	laptop := ws.Client(t, spotifytest.DefaultUserID)
	phone := ws.Client(t, spotifytest.DefaultUserID)
	if resp, body := ws.call(t, laptop, apiCall{method: "GET", path: "/spotify-api/v1/me", header: sameOriginFetch}); resp.StatusCode != http.StatusOK {
		t.Fatalf("before: %d %s", resp.StatusCode, body)
	}
	resp, _ := ws.call(t, phone, apiCall{method: "POST", path: "/oauth2/spotify/logout", body: "everywhere=1",
		header: map[string]string{"Origin": ws.URL, "Content-Type": "application/x-www-form-urlencoded"}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("logout everywhere: %d", resp.StatusCode)
	}
	if resp, body := ws.call(t, laptop, apiCall{method: "GET", path: "/spotify-api/v1/me", header: sameOriginFetch}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("web_api after logout everywhere: %d %s; want 401 at once", resp.StatusCode, body)
	}
}

// TestWebAPIConcurrentCallsWithARevokedTokenAllRecover: a page firing
// several calls at once with a token Spotify has just revoked gets every
// answer with the fresh token, from one refresh.
func TestWebAPIConcurrentCallsWithARevokedTokenAllRecover(t *testing.T) {
	ws := startWebAPISite(t)
	c := ws.Client(t, spotifytest.DefaultUserID)
	token := ws.currentToken(t, c)
	ws.fake.ResetCounts()
	ws.fake.RevokeAccessToken(token)
	// Each call takes a moment, so all hold their 401 at once.
	ws.fake.InjectFault(spotifytest.EndpointAPI, spotifytest.Fault{Delay: 100 * time.Millisecond, Times: 4, Path: "/v1/me/top/*"})
	var wg sync.WaitGroup
	statuses := make([]int, 4)
	for i := range statuses {
		wg.Go(func() {
			req, _ := http.NewRequest("GET", ws.URL+"/spotify-api/v1/me/top/artists", nil)
			req.Header.Set("Sec-Fetch-Site", "same-origin")
			resp, err := c.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		})
	}
	wg.Wait()
	for i, s := range statuses {
		if s != http.StatusOK {
			t.Errorf("call %d: %d, want 200 with the fresh token", i, s)
		}
	}
	if n := ws.fake.Counts().Refreshes; n != 1 {
		t.Errorf("%d refreshes, want 1", n)
	}
}

// TestWebAPIRefusalsRefreshOnceEveryFewMinutesWithRotation: Spotify
// refuses every token the calls carry, and rotates refresh tokens. The
// session is refreshed once, not once or twice per call.
func TestWebAPIRefusalsRefreshOnceEveryFewMinutesWithRotation(t *testing.T) {
	ws := startWebAPISite(t)
	ws.fake.SetRotateRefreshTokens(true)
	c := ws.Client(t, spotifytest.DefaultUserID)
	ws.fake.ResetCounts()
	for i := range 50 {
		ws.fake.ExpireAccessTokens() // whatever token the call carries is dead
		resp, body := ws.call(t, c, apiCall{method: "GET", path: "/spotify-api/v1/me/top/artists", header: sameOriginFetch})
		if want := map[bool]int{true: http.StatusOK, false: http.StatusUnauthorized}[i == 0]; resp.StatusCode != want {
			t.Fatalf("call %d: %d %s, want %d", i, resp.StatusCode, body, want)
		}
	}
	if n := ws.fake.Counts().Refreshes; n != 1 {
		t.Fatalf("50 calls with refused tokens caused %d refreshes, want 1", n)
	}
}

// TestWebAPIAnswersOnlyTheWebAPI: through a real Caddy, with a recorder
// in front of the fake as api_url, only <prefix>/v1/... spelled as such
// reaches Spotify; every other path under the prefix (other versions,
// Spotify's token endpoint, dot segments, encoded slashes, another
// spelling of the prefix) is 404, and TRACE and CONNECT are refused,
// all without a call to api_url. Every answer, proxied or the gate's
// own, carries nosniff and a sandboxing CSP.
func TestWebAPIAnswersOnlyTheWebAPI(t *testing.T) {
	fake := testkit.NewFake(t)
	port := freePort(t)
	site := "http://127.0.0.1:" + strconv.Itoa(port)
	fake.AddClient(spotifytest.Client{ID: "it-client", RedirectURIs: []string{site + "/oauth2/spotify/callback"}})
	var mu sync.Mutex
	var calls []string
	toFake, err := url.Parse(fake.APIURL())
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(toFake)
	recorder := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls = append(calls, r.Method+" "+r.URL.EscapedPath())
		mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	defer recorder.Close()
	runCaddy(t, fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
	storage file_system %s
	log {
		level ERROR
	}
}

%s {
	bind 127.0.0.1
	spotify_auth {
		client_id it-client
		authorize_url %s
		token_url %s
		api_url %s
		web_api /spotify-api
	}
	respond "app"
}
`, t.TempDir(), site, fake.AuthorizeURL(), fake.TokenURL(), recorder.URL))
	c := newJarClient()
	start, _ := http.NewRequest(http.MethodGet, site+"/oauth2/spotify/login?rd=%2F", nil)
	if resp, err := fake.LogIn(c, start, spotifytest.DefaultUserID); err != nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("login: %v %v", err, resp)
	}
	takeCalls := func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := calls
		calls = nil
		return out
	}
	takeCalls() // the login's /v1/me
	assertSandboxed := func(what string, resp *http.Response) {
		t.Helper()
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s: X-Content-Type-Options %q, want nosniff", what, got)
		}
		if got := resp.Header.Values("Content-Security-Policy"); len(got) != 1 || got[0] != "sandbox" {
			t.Errorf("%s: Content-Security-Policy %q, want sandbox", what, got)
		}
	}

	resp, body := doWith(t, c, "GET", site+"/spotify-api/v1/me", sameOriginFetch)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, spotifytest.DefaultUserID) {
		t.Fatalf("/spotify-api/v1/me: %d %s", resp.StatusCode, body)
	}
	assertSandboxed("a proxied answer", resp)
	if got := takeCalls(); len(got) != 1 || got[0] != "GET /v1/me" {
		t.Fatalf("Spotify got %q, want GET /v1/me", got)
	}

	for _, p := range []string{
		"/spotify-api/me", "/spotify-api/", "/spotify-api/v1", "/spotify-api/v2/me", "/spotify-api/api/token",
		"/spotify-api/authorize", "/spotify-api/v1/../api/token", "/spotify-api/v1/%2e%2e/api/token",
		"/spotify-api/v1/me%2F..%2F..%2Fapi%2Ftoken", "/spotify-api/v1/./me", "/spotify-api/v1//me",
		"/spotify-api/v1/me%5C..%5C..%5Capi", "/spotify-api/%761/me", "/spotify%2Dapi/v1/me",
		"/SPOTIFY-API/v1/me", "/Spotify-Api/v1/me", "/spotify-api/V1/me",
	} {
		resp, body := doWith(t, c, "GET", site+p, sameOriginFetch)
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, `"error":"not_found"`) {
			t.Errorf("GET %s: %d %s, want 404 JSON", p, resp.StatusCode, body)
		}
		assertSandboxed("GET "+p, resp)
	}
	for _, m := range []string{"TRACE", "CONNECT", "PROPFIND"} {
		resp, _ := doWith(t, c, m, site+"/spotify-api/v1/me", sameOriginFetch)
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s: %d, want 405", m, resp.StatusCode)
		}
		assertSandboxed(m, resp)
	}
	crossSite, _ := doWith(t, c, "GET", site+"/spotify-api/v1/me", map[string]string{"Sec-Fetch-Site": "cross-site"})
	assertSandboxed("a cross-site call's 403", crossSite)
	anon, _ := doWith(t, newJarClient(), "GET", site+"/spotify-api/v1/me", sameOriginFetch)
	assertSandboxed("a call without a session", anon)
	if anon.StatusCode != http.StatusUnauthorized {
		t.Errorf("a call without a session: %d, want 401", anon.StatusCode)
	}
	if got := takeCalls(); len(got) != 0 {
		t.Errorf("refused calls reached api_url: %q", got)
	}
}

// newJarClient is a browser for a Caddy started with runCaddy: a cookie
// jar, redirects left to the test.
func newJarClient() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// TestWebAPIEndsAStoredSessionAtOnceOnLogout: with session_store
// storage, the web_api route's gate keeps stored sessions it read for a
// moment, as the site's gate does. A logout served by the site's gate
// ends the session on the web_api route of the same instance at once: a
// copy of the cookie that had just called the Web API gets 401 on its
// next call, not Spotify's answer.
func TestWebAPIEndsAStoredSessionAtOnceOnLogout(t *testing.T) {
	ws := startWebAPISite(t, "session_store storage")
	c := ws.Client(t, spotifytest.DefaultUserID)
	site, _ := url.Parse(ws.URL)
	copyJar, _ := cookiejar.New(nil)
	copyJar.SetCookies(site, c.Jar.Cookies(site))
	thief := &http.Client{Jar: copyJar}
	for _, who := range []*http.Client{c, thief} {
		if resp, body := ws.call(t, who, apiCall{method: "GET", path: "/spotify-api/v1/me", header: sameOriginFetch}); resp.StatusCode != http.StatusOK {
			t.Fatalf("before the logout: %d %s", resp.StatusCode, body)
		}
	}
	resp, _ := ws.call(t, c, apiCall{method: "POST", path: "/oauth2/spotify/logout", body: "x=1",
		header: map[string]string{"Origin": ws.URL, "Content-Type": "application/x-www-form-urlencoded"}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	ws.fake.ResetCounts()
	if resp, body := ws.call(t, thief, apiCall{method: "GET", path: "/spotify-api/v1/me", header: sameOriginFetch}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the copied cookie on web_api after the logout: %d %s; want 401 at once", resp.StatusCode, body)
	}
	if resp, _ := ws.call(t, thief, apiCall{method: "GET", path: "/", header: sameOriginFetch}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the copied cookie at the site's gate after the logout: %d; want 401", resp.StatusCode)
	}
	if n := ws.fake.Counts().APICalls; n != 0 {
		t.Errorf("the ended session reached Spotify %d times", n)
	}
}
