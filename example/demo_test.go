package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyspotify/caddy-spotify-auth/internal/testkit"
	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// The tests that start a demo load Caddy's process-global config: none of
// them may call t.Parallel.

// startDemo runs the offline demo on a free port until the test ends,
// in development mode as `go run ./example` does.
func startDemo(t *testing.T, autoApprove bool) *demo {
	t.Helper()
	return startDemoWith(t, options{AutoApprove: autoApprove})
}

// startDemoWith runs the offline demo with opts on a free port until the
// test ends.
func startDemoWith(t *testing.T, opts options) *demo {
	t.Helper()
	opts.Addr = "127.0.0.1:0"
	d, err := start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Stop)
	return d
}

// get loads a page and returns the answer and its body; do sends any
// request so.
var get, do = testkit.Get, testkit.Do

var newFake = testkit.NewFake

func wantInPage(t *testing.T, body string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}
}

func TestDemoLogsInShowsSpotifyDataAndLogsOut(t *testing.T) {
	d := startDemo(t, true)
	browser := d.site.NewBrowser()
	var hops []string
	browser.CheckRedirect = func(req *http.Request, _ []*http.Request) error {
		hops = append(hops, req.URL.Scheme+"://"+req.URL.Host+req.URL.Path)
		return nil
	}

	resp, body := get(t, browser, d.AppURL)
	if resp.StatusCode != http.StatusOK || resp.Request.URL.String() != d.AppURL {
		t.Fatalf("login ended at %d %s, want 200 %s\n%s", resp.StatusCode, resp.Request.URL, d.AppURL, body)
	}
	wantHops := []string{d.fake.AuthorizeURL(), d.RedirectURI, d.AppURL}
	if fmt.Sprint(hops) != fmt.Sprint(wantHops) {
		t.Errorf("redirects went through %q, want %q", hops, wantHops)
	}
	wantInPage(t, body, "Hello, Test User!", "<code>testuser</code>",
		"The Loopbacks", "Ada &amp; the Lovelaces", `action="/oauth2/spotify/logout"`)
	if strings.Contains(body, "Bearer") {
		t.Errorf("app page shows the token:\n%s", body)
	}
	// Development mode: Spotify shares no email, whatever the scopes.
	if strings.Contains(body, "test@example.com") {
		t.Errorf("the page shows an email Spotify does not give development-mode apps:\n%s", body)
	}

	// Spotify dropping the token: the app answers 401 with the hint and a
	// page to try again (no automatic reload); trying again gets a
	// refreshed token and the data.
	d.fake.ExpireAccessTokens()
	resp, body = get(t, browser, d.AppURL)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("after the token expired at Spotify: %d %q, want 401 with the invalid_token hint", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	wantInPage(t, body, "Try again", "Log in again")
	if strings.Contains(body, "http-equiv") {
		t.Errorf("the 401 page reloads itself:\n%s", body)
	}
	resp, body = get(t, browser, d.AppURL)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "The Loopbacks") || d.fake.Counts().Refreshes != 1 {
		t.Errorf("trying again: %d after %d refreshes\n%s", resp.StatusCode, d.fake.Counts().Refreshes, body)
	}

	// Log out as the page's form does; the browser lands on the public page.
	req, err := http.NewRequest(http.MethodPost, d.SiteURL+"/oauth2/spotify/logout", strings.NewReader("rd=%2F"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", d.SiteURL)
	resp, body = do(t, browser, req)
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/" || !strings.Contains(body, "Public page") {
		t.Fatalf("logout ended at %d %s\n%s", resp.StatusCode, resp.Request.URL, body)
	}

	browser.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, _ = get(t, browser, d.AppURL)
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, d.fake.AuthorizeURL()+"?") {
		t.Errorf("/app/ after logout: %d to %q, want a redirect to the fake's /authorize", resp.StatusCode, loc)
	}
}

func TestDemoShowsEachUserTheirOwnData(t *testing.T) {
	d := startDemo(t, false)
	d.fake.AddUser(spotifytest.User{ID: "alice", DisplayName: "Alice Ø", Email: "alice@example.com",
		TopArtists: []spotifytest.Artist{{Name: "Alice and the Channels", Genres: []string{"go-pop"}}}})
	// What the app's owner does in Spotify's dashboard.
	if err := d.fake.AddDevelopmentUser("alice"); err != nil {
		t.Fatal(err)
	}

	_, body := get(t, d.site.Client(t, "alice"), d.AppURL)
	wantInPage(t, body, "Hello, Alice Ø!", "Alice and the Channels", "go-pop")
	if strings.Contains(body, "The Loopbacks") {
		t.Errorf("alice's page shows the default user's artists:\n%s", body)
	}
	_, body = get(t, d.site.Client(t, spotifytest.DefaultUserID), d.AppURL)
	wantInPage(t, body, "Hello, Test User!", "The Loopbacks")
}

func TestDemoShowsTheConsentPageWithoutAutoApprove(t *testing.T) {
	d := startDemo(t, false)
	browser := d.site.NewBrowser()

	resp, body := get(t, browser, d.AppURL)
	authURL := resp.Request.URL.String()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(authURL, d.fake.AuthorizeURL()+"?") {
		t.Fatalf("GET /app/ ended at %d %s, want the fake's consent page\n%s", resp.StatusCode, authURL, body)
	}
	// The picker offers the demo user, checked, and the friend who is not
	// on the development-mode app's list.
	wantInPage(t, body, `value="testuser" checked`, `value="`+unlistedUserID+`"`, "not on the app&#39;s user list")
	// What the user's click on Approve does.
	callback, err := d.fake.Approve(authURL, "")
	if err != nil {
		t.Fatal(err)
	}
	resp, body = get(t, browser, callback)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Hello, Test User!") {
		t.Errorf("after approving: %d %s\n%s", resp.StatusCode, resp.Request.URL, body)
	}
}

func TestDemoRefusesAUserNotOnTheDevelopmentModeList(t *testing.T) {
	d := startDemo(t, false)
	browser := d.site.NewBrowser()
	resp, body := get(t, browser, d.AppURL)
	if !strings.HasPrefix(resp.Request.URL.String(), d.fake.AuthorizeURL()+"?") {
		t.Fatalf("GET /app/ ended at %d %s, want the fake's consent page\n%s", resp.StatusCode, resp.Request.URL, body)
	}
	// The click on Approve with the friend picked: Spotify lets the
	// consent and the code exchange through, then refuses the profile.
	callback, err := d.fake.Approve(resp.Request.URL.String(), unlistedUserID)
	if err != nil {
		t.Fatal(err)
	}
	resp, body = get(t, browser, callback)
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("the unlisted user's login ended at %d %s, want 403\n%s", resp.StatusCode, resp.Request.URL, body)
	}
	if c := d.fake.Counts(); c.CodeExchanges != 1 || c.TokenErrors != 0 {
		t.Errorf("the fake saw %d code exchanges and %d token errors, want one that succeeded", c.CodeExchanges, c.TokenErrors)
	}
	// The sample app calls the Web API for every page it serves: only the
	// plugin's own /v1/me went to Spotify, so the app was never reached.
	for _, r := range d.fake.APIRequests() {
		if r.Path != "/v1/me" {
			t.Errorf("Spotify got %s %s as %q: the upstream app was reached", r.Method, r.Path, r.UserID)
		}
	}
	if strings.Contains(body, "Hello,") {
		t.Errorf("the upstream's page was shown:\n%s", body)
	}
	// The plugin's development-mode page, with a way to pick another account.
	wantInPage(t, body, "not on the app&#39;s user list", "development mode", "Use another Spotify account")
	// The listed demo user still gets in.
	_, body = get(t, d.site.Client(t, spotifytest.DefaultUserID), d.AppURL)
	wantInPage(t, body, "Hello, Test User!")
}

func TestDemoWithExtendedQuotaAdmitsEveryoneWithTheirEmail(t *testing.T) {
	d := startDemoWith(t, options{ExtendedQuota: true})
	for _, tc := range []struct{ userID, greeting, email string }{
		{spotifytest.DefaultUserID, "Hello, Test User!", "test@example.com"},
		{unlistedUserID, "Hello, Friend!", "friend@example.com"},
	} {
		resp, body := get(t, d.site.Client(t, tc.userID), d.AppURL)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d\n%s", tc.userID, resp.StatusCode, body)
		}
		wantInPage(t, body, tc.greeting, tc.email)
	}
}

func TestDemoWithRealSpotifySendsUsersToSpotify(t *testing.T) {
	t.Setenv("SPOTIFY_CLIENT_ID", "demo-client-id")
	t.Setenv("SPOTIFY_CLIENT_SECRET", "")
	d, err := start(t.Context(), options{Addr: "127.0.0.1:0", RealSpotify: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Stop)
	if !strings.Contains(d.site.Caddyfile, "client_id {env.SPOTIFY_CLIENT_ID}") || strings.Contains(d.site.Caddyfile, "authorize_url") {
		t.Errorf("real Spotify config:\n%s", d.site.Caddyfile)
	}
	browser := d.site.NewBrowser()
	browser.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, _ := get(t, browser, d.AppURL)
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound ||
		!strings.HasPrefix(loc, "https://accounts.spotify.com/authorize?") || !strings.Contains(loc, "client_id=demo-client-id") {
		t.Errorf("/app/ with real Spotify: %d to %q", resp.StatusCode, loc)
	}
}

func TestDemoRefusesUnusableAddresses(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	tests := []struct {
		name, addr, wantErr string
	}{
		{"a busy port is named", busy.Addr().String(), "already in use"},
		{"localhost is refused as Spotify refuses it", "localhost:8080", "loopback IP literal"},
		{"all interfaces are refused", "0.0.0.0:8080", "loopback IP literal"},
		{"an address without port is refused", "127.0.0.1", "missing port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := start(t.Context(), options{Addr: tt.addr})
			if err == nil {
				d.Stop()
				t.Fatalf("start(%q) succeeded", tt.addr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("start(%q): %v, want it to mention %q", tt.addr, err, tt.wantErr)
			}
		})
	}
}

// The sample app's own unit tests: no Caddy, the request as spotify_auth
// forwards it, the fake's Web API.

func serveApp(fake *spotifytest.Server, req *http.Request) (*httptest.ResponseRecorder, string) {
	rec := httptest.NewRecorder()
	newUpstream(fake.APIURL()).ServeHTTP(rec, req)
	return rec, rec.Body.String()
}

func TestUpstreamShowsTheForwardedUsersTopArtists(t *testing.T) {
	fake := newFake(t)
	fake.AddUser(spotifytest.User{ID: "zoe", DisplayName: "Zoë & Co", TopArtists: []spotifytest.Artist{{Name: "Zed Leppelin"}}})

	req := fake.NewForwardedRequest("GET", "/app/", "zoe", "user-top-read")
	rec, page := serveApp(fake, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("%d\n%s", rec.Code, page)
	}
	wantInPage(t, page, "Hello, Zoë &amp; Co!", "<code>zoe</code>", "Zed Leppelin")
	if strings.Contains(page, "The Loopbacks") || strings.Contains(page, strings.TrimPrefix(req.Header.Get("Authorization"), "Bearer ")) {
		t.Errorf("page shows another user's data or the token:\n%s", page)
	}
}

func TestUpstreamExplainsWebAPIFailuresWithoutShowingTheToken(t *testing.T) {
	tests := []struct {
		name       string
		scopes     []string
		spoil      func(fake *spotifytest.Server, token string)
		wantStatus int
		wantInPage string
	}{
		{"a rejected token asks to try again, with the hint", []string{"user-top-read"},
			func(fake *spotifytest.Server, token string) { fake.ExpireAccessToken(token) },
			http.StatusUnauthorized, `Try again</a>`},
		{"a missing scope is explained", nil, nil, http.StatusOK, "not on the app&#39;s user list"},
		{"rate limiting asks for patience", []string{"user-top-read"},
			func(fake *spotifytest.Server, _ string) {
				fake.InjectFault(spotifytest.EndpointAPI, spotifytest.Fault{Path: "/v1/me/top/artists", Status: 429, RetryAfter: "5"})
			}, http.StatusOK, "rate limiting"},
		{"a non-JSON failure shows the status", []string{"user-top-read"},
			func(fake *spotifytest.Server, _ string) {
				fake.InjectFault(spotifytest.EndpointAPI, spotifytest.Fault{Path: "/v1/me/top/artists", Status: 502, Body: "<html>Bad gateway</html>"})
			}, http.StatusOK, "Spotify answered 502 Bad Gateway"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := newFake(t)
			f := fake.Forward(spotifytest.DefaultUserID, tt.scopes...)
			if tt.spoil != nil {
				tt.spoil(fake, f.AccessToken)
			}
			req := httptest.NewRequest("GET", "/app/", nil)
			f.Apply(req)
			rec, page := serveApp(fake, req)
			if rec.Code != tt.wantStatus || !strings.Contains(page, tt.wantInPage) || !strings.Contains(page, "testuser") {
				t.Errorf("%d, want %d mentioning %q and the user id:\n%s", rec.Code, tt.wantStatus, tt.wantInPage, page)
			}
			hint := strings.Contains(rec.Header().Get("WWW-Authenticate"), `error="invalid_token"`)
			if hint != (tt.wantStatus == http.StatusUnauthorized) {
				t.Errorf("WWW-Authenticate %q", rec.Header().Get("WWW-Authenticate"))
			}
			if strings.Contains(page, f.AccessToken) {
				t.Errorf("page shows the token:\n%s", page)
			}
			if got := fake.APIRequests(); len(got) != 1 || got[0].Path != "/v1/me/top/artists" || got[0].UserID != spotifytest.DefaultUserID {
				t.Errorf("Web API calls %+v, want one /v1/me/top/artists as the user", got)
			}
		})
	}
}

func TestUpstreamRefusesRequestsThatBypassedCaddy(t *testing.T) {
	rec := httptest.NewRecorder()
	newUpstream("http://127.0.0.1:1").ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/app/", nil))
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("/app/ without a token: %d, want 401", rec.Code)
	}
}
