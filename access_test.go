package spotifyauth

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

var ruleUsers = []spotifytest.User{
	{ID: "alice", DisplayName: "Alice", Email: "Alice@Example.COM", Country: "SE", Product: "premium"},
	{ID: "bob", DisplayName: "Bob", Email: "bob@example.com", Country: "US", Product: "free"},
	{ID: "carol", DisplayName: "Carol", Email: "carol@example.org", Country: "SE", Product: "free"},
}

func TestAccessRulesAllowAndDeny(t *testing.T) {
	t.Parallel()
	scopes := []string{"user-read-email", "user-read-private"}
	for _, tc := range []struct {
		name    string
		rules   func(*Handler)
		allowed map[string]bool
	}{
		{"allow_users", func(h *Handler) { h.AllowUsers = []string{"alice", "carol"} }, map[string]bool{"alice": true, "carol": true}},
		{"allow_emails, compared case-insensitively", func(h *Handler) { h.AllowEmails = []string{"alice@example.com", "BOB@EXAMPLE.COM"} }, map[string]bool{"alice": true, "bob": true}},
		{"allow_products", func(h *Handler) { h.AllowProducts = []string{"premium"} }, map[string]bool{"alice": true}},
		{"allow_countries", func(h *Handler) { h.AllowCountries = []string{"se"} }, map[string]bool{"alice": true, "carol": true}},
		{"every kind must match", func(h *Handler) {
			h.AllowCountries = []string{"SE"}
			h.AllowProducts = []string{"free"}
		}, map[string]bool{"carol": true}},
		{"no rules admit everybody", func(*Handler) {}, map[string]bool{"alice": true, "bob": true, "carol": true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs := newHarness(t, func(h *Handler, _ *spotifytest.Client) {
				h.Scopes = scopes
				tc.rules(h)
			})
			for _, u := range ruleUsers {
				hs.fake.AddUser(u)
			}
			for _, u := range ruleUsers {
				c := newBrowser(t)
				if resp := hs.loginAs(c, "/app/", u.ID); resp.StatusCode != http.StatusFound {
					t.Fatalf("%s: login %d", u.ID, resp.StatusCode)
				}
				resp, body := hs.get(c, "/app/")
				if tc.allowed[u.ID] {
					if resp.StatusCode != http.StatusOK {
						t.Errorf("%s: status %d, want 200", u.ID, resp.StatusCode)
					}
					continue
				}
				if resp.StatusCode != http.StatusForbidden {
					t.Fatalf("%s: status %d, want 403", u.ID, resp.StatusCode)
				}
				if !strings.Contains(body, "logged in with Spotify as "+u.DisplayName+" ("+u.ID+")") ||
					!strings.Contains(body, "/oauth2/spotify/logout") || !strings.Contains(body, "switch=1") {
					t.Errorf("%s: the page does not name the user or offer a way out: %s", u.ID, body)
				}
				resp, body = apiGet(hs, c, "/api/x")
				if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, `"forbidden"`) {
					t.Errorf("%s: API call %d %s", u.ID, resp.StatusCode, body)
				}
			}
		})
	}
}

func TestADeniedUserCausesNoRefresh(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, func(h *Handler, _ *spotifytest.Client) { h.AllowUsers = []string{"somebody-else"} })
	hs.login(hs.browser, "/")
	s := hs.session(hs.browser)
	s.TokenExpires = time.Now().Add(-time.Minute).Unix()
	hs.setSession(hs.browser, s)
	for range 5 {
		if resp, _ := hs.get(hs.browser, "/app/"); resp.StatusCode != http.StatusForbidden {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	if n := hs.fake.Counts().Refreshes; n != 0 {
		t.Fatalf("%d refreshes for a denied user", n)
	}
}

func TestAReloadWithNewRulesAppliesToExistingSessions(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	hs.login(hs.browser, "/")
	if resp, _ := hs.get(hs.browser, "/app/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("before: %d", resp.StatusCode)
	}
	// What a reload does: a new handler from the new config, same keys.
	reloaded := provision(t, &Handler{ClientID: testClientID, CookieSecrets: []string{secretA},
		AuthorizeURL: hs.fake.AuthorizeURL(), TokenURL: hs.fake.TokenURL(), APIURL: hs.fake.APIURL(),
		Scopes: hs.h.Scopes, AllowUsers: []string{"someone-else"}})
	hs.mu.Lock()
	hs.h = reloaded
	hs.mu.Unlock()
	if resp, _ := hs.get(hs.browser, "/app/"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("after reload: %d, want 403", resp.StatusCode)
	}
}

func TestRequiredScopesAreAskedForOnceMoreThenRefused(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, func(h *Handler, _ *spotifytest.Client) {
		h.Scopes = []string{"user-read-email"}
		h.RequiredScopes = []string{"streaming"}
	})
	hs.fake.AddUser(spotifytest.User{ID: "stingy", DisplayName: "Stingy", GrantScopes: []string{"user-read-email"}})

	authURL := hs.startLogin(hs.browser, "/player/")
	if sc := mustQuery(t, authURL).Get("scope"); !strings.Contains(sc, "streaming") || !strings.Contains(sc, "user-read-email") {
		t.Fatalf("first consent asked for %q", sc)
	}
	cb, _ := hs.fake.Approve(authURL, "stingy")
	resp, _ := hs.get(hs.browser, cb)
	second := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(second, hs.fake.AuthorizeURL()) || mustQuery(t, second).Get("show_dialog") != "true" {
		t.Fatalf("after a grant without the required scope: %d to %q, want consent again with the dialog", resp.StatusCode, second)
	}
	cb, _ = hs.fake.Approve(second, "stingy")
	resp, body := hs.get(hs.browser, cb)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "streaming") {
		t.Fatalf("after the second refusal: %d %s", resp.StatusCode, body)
	}
	if n := hs.fake.Counts().Authorize; n != 2 {
		t.Fatalf("%d consent pages, want exactly 2", n)
	}
	// A user who grants it gets in.
	c := newBrowser(t)
	if loc := hs.login(c, "/player/"); loc != "/player/" {
		t.Fatalf("granting user landed on %q", loc)
	}
	if resp, _ := hs.get(c, "/player/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("granting user: %d", resp.StatusCode)
	}
}

func TestTwoRoutesShareOneLoginAndAskOnlyForTheMissingScopes(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, func(h *Handler, _ *spotifytest.Client) { h.Scopes = []string{"user-read-email"} })
	player := provision(t, &Handler{ClientID: testClientID, CookieSecrets: []string{secretA},
		AuthorizeURL: hs.fake.AuthorizeURL(), TokenURL: hs.fake.TokenURL(), APIURL: hs.fake.APIURL(),
		Scopes: []string{"streaming", "user-modify-playback-state"}})
	hs.routes = map[string]*Handler{"/player/": player}

	hs.login(hs.browser, "/app/")
	if resp, _ := hs.get(hs.browser, "/app/"); resp.StatusCode != http.StatusOK {
		t.Fatal("app route not open after login")
	}
	// The player route needs more: consent for the union.
	resp, _ := hs.get(hs.browser, "/player/")
	authURL := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(authURL, hs.fake.AuthorizeURL()) {
		t.Fatalf("player route: %d to %q", resp.StatusCode, authURL)
	}
	sc := strings.Fields(mustQuery(t, authURL).Get("scope"))
	for _, want := range []string{"user-read-email", "streaming", "user-modify-playback-state"} {
		if !strings.Contains(" "+strings.Join(sc, " ")+" ", " "+want+" ") {
			t.Errorf("incremental consent asked for %v, missing %s", sc, want)
		}
	}
	cb, _ := hs.fake.Approve(authURL, spotifytest.DefaultUserID)
	if resp, _ := hs.get(hs.browser, cb); resp.Header.Get("Location") != "/player/" {
		t.Fatalf("callback sent to %q", resp.Header.Get("Location"))
	}
	for _, path := range []string{"/player/", "/app/", "/player/again"} {
		if resp, _ := hs.get(hs.browser, path); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s after incremental consent: %d", path, resp.StatusCode)
		}
	}
	if n := hs.fake.Counts().Authorize; n != 2 {
		t.Fatalf("%d consent pages, want 2 (login, then the extra scopes once)", n)
	}
}

func TestUpstreamLearnsWhoTheUserIsFromPlaceholdersAndHeaders(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, func(h *Handler, _ *spotifytest.Client) {
		h.Scopes = []string{"user-read-email", "user-read-private"}
	})
	name := "Åsa Öberg 🎧 \"quoted\"\r\nX-Injected: 1"
	clean := "Åsa Öberg 🎧 \"quoted\"X-Injected: 1" // control characters are dropped at login
	hs.fake.AddUser(spotifytest.User{ID: "asa", DisplayName: name, Email: "asa@example.se", Country: "SE", Product: "premium"})
	hs.loginAs(hs.browser, "/", "asa")
	resp, _ := hs.get(hs.browser, "/app/", "X-Spotify-User-Name", "spoofed", "X_Spotify_Scopes", "spoofed")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	up := hs.lastUpstream()
	got, err := url.PathUnescape(up.Header.Get("X-Spotify-User-Name"))
	if err != nil || got != clean {
		t.Errorf("X-Spotify-User-Name %q decodes to %q (%v), want the name intact", up.Header.Get("X-Spotify-User-Name"), got, err)
	}
	if up.Header.Get("X-Injected") != "" {
		t.Error("a display name injected a header")
	}
	for h, want := range map[string]string{
		"X-Spotify-User-Id": "asa", "X-Spotify-User-Email": "asa@example.se", "X-Spotify-Product": "premium",
		"X-Spotify-Scopes": "user-read-email user-read-private",
	} {
		if up.Header.Get(h) != want {
			t.Errorf("%s = %q, want %q", h, up.Header.Get(h), want)
		}
	}
	hs.mu.Lock()
	repl := hs.repl[len(hs.repl)-1]
	hs.mu.Unlock()
	for ph, want := range map[string]string{
		"http.auth.user.id": "asa", "http.auth.user.display_name": clean, "http.auth.user.email": "asa@example.se",
		"http.auth.user.product": "premium", "http.auth.user.country": "SE",
		"http.auth.spotify.scopes": "user-read-email user-read-private",
	} {
		if got, _ := repl.GetString(ph); got != want {
			t.Errorf("{%s} = %q, want %q", ph, got, want)
		}
	}
	exp, _ := repl.GetString("http.auth.spotify.expires_at")
	if _, err := time.Parse(time.RFC3339, exp); err != nil {
		t.Errorf("{http.auth.spotify.expires_at} = %q", exp)
	}
	// {http.auth.user.id} in a downstream handler's text, as respond uses it.
	if out := repl.ReplaceAll("hello {http.auth.user.id}", ""); out != "hello asa" {
		t.Errorf("replaced %q", out)
	}
}

func TestUserHeadersOffStillStripsThem(t *testing.T) {
	t.Parallel()
	off := false
	hs := newHarness(t, func(h *Handler, _ *spotifytest.Client) { h.UserHeaders = &off })
	hs.login(hs.browser, "/")
	hs.get(hs.browser, "/app/", "X-Spotify-User-Id", "spoofed", "x-spotify-user-name", "spoofed")
	up := hs.lastUpstream()
	for k := range up.Header {
		if strings.HasPrefix(strings.ToLower(k), "x-spotify-user") {
			t.Errorf("%s reached the upstream with user_headers off", k)
		}
	}
	if up.Header.Get("Authorization") == "" {
		t.Error("token missing")
	}
}

func TestUserinfoEndpoint(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	resp, body := apiGet(hs, hs.browser, "/oauth2/spotify/userinfo")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without a session: %d %s", resp.StatusCode, body)
	}
	hs.login(hs.browser, "/")
	s := hs.session(hs.browser)
	resp, body = apiGet(hs, hs.browser, "/oauth2/spotify/userinfo")
	var ui userinfo
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &ui) != nil || ui.ID != "testuser" || ui.Email != "test@example.com" || len(ui.Scopes) != 2 {
		t.Fatalf("userinfo: %d %s", resp.StatusCode, body)
	}
	if strings.Contains(body, s.AccessToken) || strings.Contains(body, s.RefreshToken) {
		t.Fatal("userinfo reveals a token")
	}
}

func TestTokenEndpoint(t *testing.T) {
	t.Parallel()
	t.Run("is off by default", func(t *testing.T) {
		hs := newHarness(t)
		hs.login(hs.browser, "/")
		if resp, _ := apiGet(hs, hs.browser, "/oauth2/spotify/token"); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("status %d, want 404", resp.StatusCode)
		}
	})
	hs := newHarness(t, func(h *Handler, _ *spotifytest.Client) { h.TokenEndpoint = true })
	hs.login(hs.browser, "/")
	get := func(headers ...string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodGet, hs.url("/oauth2/spotify/token"), nil)
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		return hs.do(hs.browser, req)
	}
	for _, tc := range []struct {
		name    string
		headers []string
		want    int
	}{
		{"a same-origin fetch gets it", []string{"Sec-Fetch-Site", "same-origin"}, 200},
		{"an old browser's same-origin fetch gets it", []string{"Origin", hs.srv.URL}, 200},
		{"a cross-site fetch is refused", []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}, 403},
		{"a same-site (other subdomain) fetch is refused", []string{"Sec-Fetch-Site", "same-site"}, 403},
		{"another origin without fetch metadata is refused", []string{"Origin", "https://evil.example"}, 403},
		{"the same host over another scheme is refused", []string{"Origin", strings.Replace(hs.srv.URL, "http://", "https://", 1)}, 403},
		{"the same host on another port is refused", []string{"Origin", strings.TrimSuffix(hs.srv.URL, hs.srv.URL[strings.LastIndex(hs.srv.URL, ":"):]) + ":1"}, 403},
		{"the same host on no port is refused", []string{"Origin", hs.srv.URL[:strings.LastIndex(hs.srv.URL, ":")]}, 403},
		{"a request with no origin at all is refused", nil, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := get(tc.headers...)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, body)
			}
			if resp.Header.Get("Cache-Control") != "no-store" {
				t.Error("token answer may be cached")
			}
			if tc.want == 200 {
				var tr tokenResponse
				if json.Unmarshal([]byte(body), &tr) != nil || tr.ExpiresIn <= 0 {
					t.Fatalf("body %s", body)
				}
				if _, _, valid := hs.fake.AccessTokenInfo(tr.AccessToken); !valid {
					t.Fatal("not a valid token")
				}
			}
		})
	}
	t.Run("a token near expiry is refreshed first", func(t *testing.T) {
		s := hs.session(hs.browser)
		s.TokenExpires = time.Now().Add(time.Minute).Unix()
		hs.setSession(hs.browser, s)
		resp, body := get("Sec-Fetch-Site", "same-origin")
		var tr tokenResponse
		if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &tr) != nil || tr.AccessToken == s.AccessToken || tr.ExpiresIn < 3000 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
}

func TestAppModeFetchesOneTokenForManyRequests(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, withSecret("app-secret-value"), func(h *Handler, _ *spotifytest.Client) { h.Mode = modeApp })
	for range 20 {
		resp, _ := apiGet(hs, newBrowser(t), "/search?q=x")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		tok := strings.TrimPrefix(hs.lastUpstream().Header.Get("Authorization"), "Bearer ")
		if _, _, valid := hs.fake.AccessTokenInfo(tok); !valid {
			t.Fatal("upstream got no valid app token")
		}
	}
	if c := hs.fake.Counts(); c.ClientCredentials != 1 || c.Authorize != 0 {
		t.Fatalf("counts %+v, want one client-credentials call and no login", c)
	}
	// Its login endpoints are not there: app mode has no users.
	if resp, _ := hs.get(newBrowser(t), "/oauth2/spotify/login"); resp.StatusCode != http.StatusOK {
		t.Fatalf("/oauth2/spotify/login in app mode: %d, want it passed through", resp.StatusCode)
	}
}

// TestAppModeServesTheCurrentTokenWhileRenewalFails: the app token is in
// its last minutes (inside refresh_leeway) and Spotify's token endpoint
// fails. Requests are served with the token that still works, and
// Spotify is asked again only after a pause, not on every request.
func TestAppModeServesTheCurrentTokenWhileRenewalFails(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, withSecret("app-secret-value"), func(h *Handler, _ *spotifytest.Client) { h.Mode = modeApp })
	if resp, _ := apiGet(hs, newBrowser(t), "/search?q=x"); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	cur := *hs.h.shared.app.Load()
	cur.expires = time.Now().Add(3 * time.Minute).Unix()
	hs.h.shared.app.Store(&cur)
	hs.fake.InjectFault(spotifytest.EndpointToken, spotifytest.Fault{Status: http.StatusServiceUnavailable, Times: 100})
	hs.fake.ResetCounts()
	for range 10 {
		if resp, _ := apiGet(hs, newBrowser(t), "/search?q=x"); resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d while the current token still works", resp.StatusCode)
		}
		if got := hs.lastUpstream().Header.Get("Authorization"); got != cur.bearer {
			t.Fatal("the upstream did not get the current app token")
		}
	}
	if n := hs.fake.Counts().ClientCredentials; n != 1 {
		t.Errorf("%d token requests for 10 requests while renewal fails, want 1 (then a pause)", n)
	}
}

// TestAppModeRoutesWithDifferentTokenHeadersGetTheirOwnFormat: two app-mode
// routes of one client share the cached token, not its formatting.
func TestAppModeRoutesWithDifferentTokenHeadersGetTheirOwnFormat(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, withSecret("app-secret-value"), func(h *Handler, _ *spotifytest.Client) { h.Mode = modeApp })
	custom, _ := hs.sameConfig(func(h *Handler) { h.TokenHeader = "X-Music-Token" })
	hs.routes = map[string]*Handler{"/custom/": custom}
	for range 2 { // whichever route fetches the token first
		for _, path := range []string{"/custom/x", "/bearer/x"} {
			if resp, _ := apiGet(hs, newBrowser(t), path); resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: %d", path, resp.StatusCode)
			}
			up := hs.lastUpstream()
			if path == "/custom/x" {
				if tok := up.Header.Get("X-Music-Token"); strings.HasPrefix(tok, "Bearer ") || tok == "" {
					t.Fatalf("X-Music-Token: %q, want the bare token", tok)
				}
			} else if !strings.HasPrefix(up.Header.Get("Authorization"), "Bearer ") {
				t.Fatalf("Authorization: %q, want a Bearer token", up.Header.Get("Authorization"))
			}
		}
	}
	if n := hs.fake.Counts().ClientCredentials; n != 1 {
		t.Fatalf("%d client-credentials calls, want 1 (shared)", n)
	}
}

func TestAccessConfigErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ block, want string }{
		{"client_id a\nallow_emails a@b.c", "allow_emails needs the user-read-email scope"},
		{"client_id a\nscopes user-read-email\nallow_products premium", "user-read-private"},
		{"client_id a\nscopes user-read-private\nallow_countries Sweden", "allow_countries"},
		{"client_id a\nmode app", "mode app (client credentials) needs client_secret"},
		{"client_id a\nmode robot", "mode"},
		{"client_id a\nrequired_scopes user-read-mind", "unknown Spotify scope"},
		{"client_id a\nuser_headers maybe", "user_headers"},
	} {
		_, err := adapt(t, ":8080 {\n\tspotify_auth {\n"+tc.block+"\n\t}\n}")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.block, err, tc.want)
		}
	}
}

// A user admitted by account_id whose email Spotify did not send is told
// that the email was not shared, as one admitted by user id is.
func TestAUserAdmittedByAccountIDIsToldTheFieldWasNotShared(t *testing.T) {
	t.Parallel()
	a := accessRules{users: []string{"acct-1"}, emails: []string{"a@example.com"}}
	s := session{UserID: "user-1", AccountID: "acct-1"}
	if rule, _ := a.unsharedField(&s); rule != "allow_emails" {
		t.Fatalf("unsharedField says %q, want allow_emails", rule)
	}
}
