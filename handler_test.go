package spotifyauth

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"

	"github.com/caddyspotify/caddy-spotify-auth/internal/refresher"
)

func TestLoginFlowHandsTheUpstreamAWorkingToken(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		opts       []harnessOpt
		clientAuth string
	}{
		{"as a public PKCE client", nil, "none"},
		{"as a confidential client with a secret", []harnessOpt{withSecret("s3cret-client-secret")}, "basic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs := newHarness(t, tc.opts...)
			authURL := hs.startLogin(hs.browser, "/app/page?x=1")
			q := mustQuery(t, authURL)
			if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" {
				t.Errorf("authorize request without S256 PKCE: %v", q)
			}
			if len(q.Get("state")) < 22 {
				t.Errorf("state %q is shorter than 128 bits", q.Get("state"))
			}
			if q.Get("redirect_uri") != hs.srv.URL+DefaultCallbackPath {
				t.Errorf("redirect_uri = %q", q.Get("redirect_uri"))
			}

			callback, err := hs.fake.Approve(authURL, spotifytest.DefaultUserID)
			if err != nil {
				t.Fatal(err)
			}
			resp, _ := hs.get(hs.browser, callback)
			if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/app/page?x=1" {
				t.Fatalf("callback: %d to %q, want 302 to the page first asked for", resp.StatusCode, resp.Header.Get("Location"))
			}
			if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Referrer-Policy") != "no-referrer" {
				t.Errorf("callback headers: %v", resp.Header)
			}

			reqs := hs.fake.TokenRequests()
			if len(reqs) != 1 || reqs[0].ClientAuth != tc.clientAuth || reqs[0].Form.Get("code_verifier") == "" {
				t.Fatalf("token requests: %+v", reqs)
			}
			if tc.clientAuth == "basic" && reqs[0].Form.Get("client_secret") != "" {
				t.Error("secret sent in the body as well as in Basic auth")
			}

			resp, body := hs.get(hs.browser, "/app/page?x=1")
			if resp.StatusCode != http.StatusOK || body != "upstream:/app/page?x=1" {
				t.Fatalf("after login: %d %q", resp.StatusCode, body)
			}
			up := hs.lastUpstream()
			token, ok := strings.CutPrefix(up.Header.Get("Authorization"), "Bearer ")
			if !ok {
				t.Fatalf("upstream Authorization = %q", up.Header.Get("Authorization"))
			}
			if user, _, valid := hs.fake.AccessTokenInfo(token); !valid || user != spotifytest.DefaultUserID {
				t.Errorf("upstream token is not a valid token of the user (user %q, valid %v)", user, valid)
			}
			if got := up.Header.Get("X-Spotify-User-Id"); got != spotifytest.DefaultUserID {
				t.Errorf("X-Spotify-User-Id = %q", got)
			}
			hs.mu.Lock()
			id, _ := hs.repl[len(hs.repl)-1].GetString("http.auth.user.id")
			hs.mu.Unlock()
			if id != spotifytest.DefaultUserID {
				t.Errorf("{http.auth.user.id} = %q", id)
			}
			if c := hs.fake.Counts(); c.Me != 1 || c.CodeExchanges != 1 {
				t.Errorf("fake counts after one login and one request: %+v", c)
			}
		})
	}
}

func TestSessionCookieAttributes(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	callback, _ := hs.fake.Approve(hs.startLogin(hs.browser, "/"), spotifytest.DefaultUserID)
	resp, _ := hs.get(hs.browser, callback)
	var found bool
	for _, c := range resp.Cookies() {
		if c.Name == "spotify_auth" {
			found = true
			if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.MaxAge <= 0 {
				t.Errorf("session cookie attributes: %+v", c)
			}
		}
	}
	if !found {
		t.Fatal("no session cookie set")
	}
}

func TestSeveralTabsLoggingInAtOnceAllSucceed(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	var authURLs []string
	for i := range 3 {
		authURLs = append(authURLs, hs.startLogin(hs.browser, fmt.Sprintf("/tab/%d", i)))
	}
	// Approve in another order than they were started.
	for _, i := range []int{2, 0, 1} {
		callback, err := hs.fake.Approve(authURLs[i], spotifytest.DefaultUserID)
		if err != nil {
			t.Fatal(err)
		}
		resp, body := hs.get(hs.browser, callback)
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != fmt.Sprintf("/tab/%d", i) {
			t.Fatalf("tab %d: %d %q %s", i, resp.StatusCode, resp.Header.Get("Location"), body)
		}
	}
}

func TestCallbacksWithoutAMatchingLoginAreRefusedBeforeAnyTokenExchange(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	other := newBrowser(t)

	// A login started in the victim's browser, and one in the attacker's.
	victimAuth := hs.startLogin(hs.browser, "/")
	attackerAuth := hs.startLogin(other, "/")
	attackerCallback, _ := hs.fake.Approve(attackerAuth, spotifytest.DefaultUserID)
	victimCallback, _ := hs.fake.Approve(victimAuth, spotifytest.DefaultUserID)
	code := mustQuery(t, attackerCallback).Get("code")
	victimState := mustQuery(t, victimCallback).Get("state")

	for _, tc := range []struct {
		name, url string
		browser   *http.Client
	}{
		{"with no state", DefaultCallbackPath + "?code=" + code, hs.browser},
		{"with a state made up by the caller", DefaultCallbackPath + "?code=" + code + "&state=forged-state-value-1234567890", hs.browser},
		{"with another browser's state and code (login CSRF)", attackerCallback, hs.browser},
		{"with a valid state but another browser's code", DefaultCallbackPath + "?code=" + code + "&state=" + url.QueryEscape(victimState), other},
		{"with the state given twice", DefaultCallbackPath + "?code=" + code + "&state=a&state=b", hs.browser},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := hs.get(tc.browser, tc.url)
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400; body %s", resp.StatusCode, body)
			}
			if !strings.Contains(body, "Try again") {
				t.Errorf("error page has no retry link: %s", body)
			}
		})
	}
	if n := hs.fake.Counts().CodeExchanges; n != 0 {
		t.Fatalf("%d token exchanges for refused callbacks, want 0", n)
	}
}

func TestACallbackCannotBeReplayed(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	authURL := hs.startLogin(hs.browser, "/")
	callback, _ := hs.fake.Approve(authURL, spotifytest.DefaultUserID)

	// Keep a copy of the state cookie, as an attacker replaying it would.
	req, _ := http.NewRequest(http.MethodGet, hs.url(callback), nil)
	u, _ := url.Parse(hs.url(callback))
	for _, c := range hs.browser.Jar.Cookies(u) {
		req.AddCookie(c)
	}
	req.Header.Set("Accept", "text/html")

	if resp, _ := hs.get(hs.browser, callback); resp.StatusCode != http.StatusFound {
		t.Fatalf("first callback: %d", resp.StatusCode)
	}
	resp, _ := hs.do(&http.Client{CheckRedirect: hs.browser.CheckRedirect}, req)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("replayed callback: %d, want 400", resp.StatusCode)
	}
	if n := hs.fake.Counts().CodeExchanges; n != 1 {
		t.Fatalf("%d code exchanges, want 1", n)
	}
}

func TestAnExpiredLoginStateIsRefused(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	// Seal a login state as the handler would have 11 minutes ago.
	state := "expired-state-0123456789abcdefghij"
	name := "spotify_auth_state_" + stateID(state)
	ls, _ := json.Marshal(loginState{State: state, Verifier: "v", ReturnTo: "/", RedirectURI: hs.srv.URL + DefaultCallbackPath,
		Created: time.Now().Add(-stateLifetime - time.Minute).Unix()})
	resp, _ := hs.get(newBrowser(t), DefaultCallbackPath+"?code=x&state="+state,
		"Cookie", name+"="+hs.h.sealers().states.Seal(ls, []byte(name)))
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", resp.StatusCode)
	}
	if n := hs.fake.Counts().CodeExchanges; n != 0 {
		t.Fatalf("%d code exchanges, want 0", n)
	}
}

func TestDecliningAtSpotifyShowsAPageNotALoop(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	callback, err := hs.fake.Deny(hs.startLogin(hs.browser, "/app/"))
	if err != nil {
		t.Fatal(err)
	}
	resp, body := hs.get(hs.browser, callback)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("status %d, want 403", resp.StatusCode)
	}
	if !strings.Contains(body, "declined") || !strings.Contains(body, "/oauth2/spotify/login?rd=%2Fapp%2F") {
		t.Errorf("page lacks the explanation or the try-again link: %s", body)
	}
	for _, h := range []string{"Content-Security-Policy", "X-Frame-Options", "Cache-Control"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("denied page without %s", h)
		}
	}
	if c := hs.fake.Counts(); c.CodeExchanges != 0 {
		t.Errorf("token exchange after a denial: %+v", c)
	}
}

func TestUnauthenticatedRequestsAreRedirectedOrRefusedByKind(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	for _, tc := range []struct {
		name    string
		method  string
		headers map[string]string
		want    int
	}{
		{"a browser navigation is sent to Spotify", "GET", map[string]string{"Sec-Fetch-Mode": "navigate", "Accept": "text/html"}, 302},
		{"an old browser asking for HTML is sent to Spotify", "GET", map[string]string{"Accept": "text/html,*/*"}, 302},
		{"a HEAD navigation is sent to Spotify", "HEAD", map[string]string{"Accept": "text/html"}, 302},
		{"a fetch call gets 401", "GET", map[string]string{"Sec-Fetch-Mode": "cors", "Accept": "*/*"}, 401},
		{"a JSON API call gets 401", "GET", map[string]string{"Accept": "application/json"}, 401},
		{"an XHR asking for HTML gets 401", "GET", map[string]string{"Accept": "text/html", "X-Requested-With": "XMLHttpRequest"}, 401},
		{"a POST gets 401", "POST", map[string]string{"Accept": "text/html"}, 401},
		{"curl gets 401", "GET", map[string]string{"Accept": "*/*"}, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, hs.url("/app/data?id=7"), nil)
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			resp, body := hs.do(hs.browser, req)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.want == 401 {
				var e apiError
				if err := json.Unmarshal([]byte(body), &e); err != nil || e.LoginURL != "/oauth2/spotify/login?rd=%2Fapp%2Fdata%3Fid%3D7" {
					t.Errorf("401 body %q (%v)", body, err)
				}
				if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Spotify ") {
					t.Errorf("WWW-Authenticate = %q", resp.Header.Get("WWW-Authenticate"))
				}
			}
		})
	}
	if n := hs.upstreamCount(); n != 0 {
		t.Fatalf("%d unauthenticated requests reached the upstream", n)
	}
}

func TestTamperedOrForeignCookiesMeanNoSession(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	hs.login(hs.browser, "/")
	u, _ := url.Parse(hs.srv.URL)
	var good string
	for _, c := range hs.browser.Jar.Cookies(u) {
		if c.Name == "spotify_auth" {
			good = c.Value
		}
	}
	if good == "" {
		t.Fatal("no session cookie after login")
	}
	flipped := []byte(good)
	flipped[len(flipped)/2] ^= 0x04
	otherKey := provision(t, &Handler{ClientID: "x", CookieSecrets: []string{secretB}})
	sess := sampleSession()
	expired := sampleSession()
	expired.Expires = time.Now().Add(-time.Minute).Unix()

	for name, value := range map[string]string{
		"bit flip":                  string(flipped),
		"truncated":                 good[:len(good)-5],
		"empty":                     "",
		"garbage":                   "not-a-session",
		"sealed under another key":  otherKey.sealers().sessions.Seal(sess.marshal(), []byte("spotify_auth")),
		"sealed for another cookie": hs.h.sealers().sessions.Seal(sess.marshal(), []byte("other_cookie")),
		"a state cookie's sealing":  hs.h.sealers().states.Seal(sess.marshal(), []byte("spotify_auth")),
		"expired session":           hs.h.sealers().sessions.Seal(expired.marshal(), []byte("spotify_auth")),
		"chunk count without parts": "3." + good,
	} {
		t.Run(name, func(t *testing.T) {
			resp, _ := hs.get(newBrowser(t), "/app/", "Cookie", "spotify_auth="+value)
			if resp.StatusCode != http.StatusFound {
				t.Fatalf("status %d, want 302 to login", resp.StatusCode)
			}
		})
	}
	if n := hs.upstreamCount(); n != 0 {
		t.Fatalf("%d requests with bad cookies reached the upstream", n)
	}
}

func TestSpoofedHeadersAndOurCookiesNeverReachTheUpstream(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		tokenHeader string
	}{
		{"with the default Authorization header", ""},
		{"with a custom token header", "X-Spotify-Token"},
		{"with a custom token header outside the X-Spotify family", "Music-Token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs := newHarness(t, func(h *Handler, _ *spotifytest.Client) { h.TokenHeader = tc.tokenHeader })
			hs.login(hs.browser, "/")
			header := hs.h.tokenHeader
			spoofed := []string{
				"X-Spotify-User-Id", "x-spotify-user-id", "X_Spotify_User_Id", "x_SPOTIFY-user_ID",
				"X-Spotify-Anything", header, strings.ToLower(header), strings.ReplaceAll(header, "-", "_"),
			}
			req, _ := http.NewRequest(http.MethodGet, hs.url("/app/"), nil)
			for _, h := range spoofed {
				req.Header[h] = []string{"spoofed"}
			}
			req.Header.Set("Accept", "text/html")
			u, _ := url.Parse(hs.srv.URL)
			for _, c := range hs.browser.Jar.Cookies(u) {
				req.AddCookie(c)
			}
			req.AddCookie(&http.Cookie{Name: "app_pref", Value: "dark"})
			req.AddCookie(&http.Cookie{Name: "spotify_auth_state_x", Value: "y"})
			resp, _ := hs.do(&http.Client{}, req)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			up := hs.lastUpstream()
			for k, vs := range up.Header {
				for _, v := range vs {
					if v == "spoofed" {
						t.Errorf("spoofed header %s reached the upstream", k)
					}
				}
			}
			if got := up.Header.Get(header); got == "" || strings.Contains(got, "spoofed") {
				t.Errorf("token header %s = %q", header, got)
			}
			if tc.tokenHeader != "" && up.Header.Get(header) != "" && strings.HasPrefix(up.Header.Get(header), "Bearer ") {
				t.Errorf("custom header got a Bearer prefix")
			}
			if cookie := up.Header.Get("Cookie"); cookie != "app_pref=dark" {
				t.Errorf("upstream Cookie = %q, want only the app's own cookie", cookie)
			}
		})
	}
}

func TestLogout(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	hs.login(hs.browser, "/app/")

	resp, body := hs.get(hs.browser, "/oauth2/spotify/logout?rd=/bye")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `method="post"`) || !strings.Contains(body, `value="/bye"`) {
		t.Fatalf("GET logout: %d %s", resp.StatusCode, body)
	}

	post := func(origin string, rd string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, hs.url("/oauth2/spotify/logout"), strings.NewReader("rd="+url.QueryEscape(rd)))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, _ := hs.do(hs.browser, req)
		return resp
	}
	if resp := post("https://evil.example", "/"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin logout: %d, want 403", resp.StatusCode)
	}
	if resp, _ := hs.get(hs.browser, "/app/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("session lost after a refused logout: %d", resp.StatusCode)
	}
	resp = post(hs.srv.URL, "//evil.example")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("logout: %d to %q, want 303 to /", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := hs.get(hs.browser, "/app/"); resp.StatusCode != http.StatusFound {
		t.Fatalf("after logout: %d, want 302 to login", resp.StatusCode)
	}
}

func TestRefreshHappensOnceForConcurrentRequestsAndReachesThemAll(t *testing.T) {
	t.Parallel()
	for _, rotate := range []bool{false, true} {
		t.Run(fmt.Sprintf("rotate=%v", rotate), func(t *testing.T) {
			hs := newHarness(t)
			hs.fake.SetRotateRefreshTokens(rotate)
			// Tokens that live less than the leeway need a refresh at once.
			hs.fake.SetAccessTokenLifetime(DefaultRefreshLeeway - time.Minute)
			hs.login(hs.browser, "/")
			hs.fake.SetAccessTokenLifetime(time.Hour)

			const n = 50
			var wg sync.WaitGroup
			statuses := make(chan int, n)
			for range n {
				wg.Go(func() {
					req, _ := http.NewRequest(http.MethodGet, hs.url("/app/"), nil)
					req.Header.Set("Accept", "application/json")
					resp, err := hs.browser.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					resp.Body.Close()
					statuses <- resp.StatusCode
				})
			}
			wg.Wait()
			close(statuses)
			for s := range statuses {
				if s != http.StatusOK {
					t.Fatalf("a concurrent request got %d", s)
				}
			}
			if c := hs.fake.Counts(); c.Refreshes != 1 {
				t.Fatalf("%d refreshes, want 1", c.Refreshes)
			}
			hs.mu.Lock()
			tokens := map[string]bool{}
			for _, r := range hs.upstream {
				tokens[r.Header.Get("Authorization")] = true
			}
			hs.mu.Unlock()
			if len(tokens) != 1 {
				t.Fatalf("upstream saw %d distinct tokens, want the one fresh token", len(tokens))
			}
			for tok := range tokens {
				_, _, valid := hs.fake.AccessTokenInfo(strings.TrimPrefix(tok, "Bearer "))
				if !valid {
					t.Fatal("upstream token is not valid at the fake")
				}
			}
			// The refreshed session keeps working without another refresh.
			if resp, _ := hs.get(hs.browser, "/app/"); resp.StatusCode != http.StatusOK {
				t.Fatalf("after refresh: %d", resp.StatusCode)
			}
			if c := hs.fake.Counts(); c.Refreshes != 1 {
				t.Fatalf("%d refreshes after the new cookie was used, want 1", c.Refreshes)
			}
		})
	}
}

func TestRevokedRefreshTokenEndsTheSession(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	hs.fake.SetAccessTokenLifetime(time.Minute)
	hs.login(hs.browser, "/")
	hs.fake.RevokeRefreshTokens(spotifytest.DefaultUserID)
	resp, _ := hs.get(hs.browser, "/app/")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), hs.fake.AuthorizeURL()) {
		t.Fatalf("status %d to %q, want 302 to Spotify", resp.StatusCode, resp.Header.Get("Location"))
	}
	cleared := false
	for _, c := range resp.Cookies() {
		if c.Name == "spotify_auth" && c.MaxAge < 0 {
			cleared = true
		}
	}
	if !cleared {
		t.Error("session cookie not cleared")
	}
}

func TestLoginFailuresShowAPageWithARetryLink(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		ep     spotifytest.Endpoint
		fault  spotifytest.Fault
		status int
	}{
		{"token endpoint down", spotifytest.EndpointToken, spotifytest.Fault{Status: 502}, 503},
		{"token endpoint drops the connection", spotifytest.EndpointToken, spotifytest.Fault{Drop: true}, 503},
		{"profile endpoint rate limited", spotifytest.EndpointAPI, spotifytest.Fault{Status: 429, RetryAfter: "7"}, 503},
		{"profile endpoint refuses the user", spotifytest.EndpointAPI, spotifytest.Fault{Status: 403}, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs := newHarness(t)
			callback, _ := hs.fake.Approve(hs.startLogin(hs.browser, "/app/"), spotifytest.DefaultUserID)
			hs.fake.InjectFault(tc.ep, tc.fault)
			resp, body := hs.get(hs.browser, callback)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if !strings.Contains(body, "/oauth2/spotify/login?rd=%2Fapp%2F") {
				t.Errorf("no retry link: %s", body)
			}
			if tc.fault.RetryAfter != "" && resp.Header.Get("Retry-After") != tc.fault.RetryAfter {
				t.Errorf("Retry-After = %q", resp.Header.Get("Retry-After"))
			}
			// Starting again works cleanly once Spotify is back (and, after
			// a 429, once its Retry-After has passed).
			hs.fake.ClearFaults()
			retryAfterPassed(t, hs.h)
			hs.h.shared.refresh.EndPause(refresher.Logins)
			if loc := hs.login(hs.browser, "/app/"); loc != "/app/" {
				t.Fatalf("second login landed on %q", loc)
			}
		})
	}
}

func TestLargeSessionsAreSplitIntoChunks(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	hs.fake.SetTokenLength(5000)
	hs.login(hs.browser, "/")
	u, _ := url.Parse(hs.srv.URL)
	names := map[string]bool{}
	for _, c := range hs.browser.Jar.Cookies(u) {
		names[c.Name] = true
		if len(c.Name)+len(c.Value) > 4000 {
			t.Errorf("cookie %s is %d bytes", c.Name, len(c.Value))
		}
	}
	if !names["spotify_auth"] || !names["spotify_auth_1"] {
		t.Fatalf("cookies %v, want chunks", names)
	}
	resp, _ := hs.get(hs.browser, "/app/")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := hs.lastUpstream().Header.Get("Authorization"); len(got) != len("Bearer ")+5000 {
		t.Fatalf("upstream token of %d bytes", len(got))
	}
}

func TestKeyRotationKeepsSessions(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	hs.login(hs.browser, "/")
	// Put a new secret first, keep the old one: existing cookies still open.
	rotated := provision(t, &Handler{ClientID: testClientID, CookieSecrets: []string{secretB, secretA},
		AuthorizeURL: hs.fake.AuthorizeURL(), TokenURL: hs.fake.TokenURL(), APIURL: hs.fake.APIURL()})
	hs.h = rotated
	if resp, _ := hs.get(hs.browser, "/app/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("after rotation: %d", resp.StatusCode)
	}
}

func TestPlainHTTPRedirectOnAPublicHostIsExplained(t *testing.T) {
	t.Parallel()
	h := provision(t, &Handler{ClientID: testClientID, CookieSecrets: []string{secretA}})
	r := httptest.NewRequest(http.MethodGet, "http://music.example.com/app/", nil)
	r.Header.Set("Accept", "text/html")
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		t.Fatal("reached the upstream")
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	if w.Code != http.StatusInternalServerError || !strings.Contains(w.Body.String(), "https") {
		t.Fatalf("status %d: %s", w.Code, w.Body.String())
	}
}
