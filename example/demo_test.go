package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// The tests that start a demo load Caddy's process-global config: none of
// them may call t.Parallel.

// startDemo runs the offline demo on a free port until the test ends.
func startDemo(t *testing.T, autoApprove bool) *demo {
	t.Helper()
	d, err := start(t.Context(), options{Addr: "127.0.0.1:0", AutoApprove: autoApprove})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Stop)
	return d
}

// newBrowser is an HTTP client with a cookie jar that, like a browser,
// follows redirects and asks for HTML, so spotify_auth sends it to log in
// rather than answering 401.
func newBrowser(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar}
}

func get(t *testing.T, c *http.Client, rawURL string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html")
	return do(t, c, req)
}

func do(t *testing.T, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func TestDemoLogsInShowsSpotifyDataAndLogsOut(t *testing.T) {
	d := startDemo(t, true)
	browser := newBrowser(t)
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
	for _, want := range []string{
		"Hello, Test User!",
		"<code>testuser</code>", // from X-Spotify-User-Id
		"test@example.com",      // /v1/me with user-read-email
		"The Loopbacks",         // /v1/me/top/artists
		"Ada &amp; the Lovelaces",
		`action="/oauth2/spotify/logout"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("app page lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "Bearer") {
		t.Errorf("app page shows the token:\n%s", body)
	}
	if c := d.fake.Counts(); c.CodeExchanges != 1 || c.Me < 1 {
		t.Errorf("fake saw %d code exchanges and %d /v1/me calls, want 1 and at least 1", c.CodeExchanges, c.Me)
	}

	// Spotify dropping the token (a revoked app) is explained, with a way
	// to log in again, instead of failing the page.
	d.fake.ExpireAccessTokens()
	resp, body = get(t, browser, d.AppURL)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Spotify no longer accepts your login") ||
		!strings.Contains(body, "Log in again") {
		t.Errorf("after the token expired at Spotify: %d\n%s", resp.StatusCode, body)
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

func TestDemoShowsTheConsentPageWithoutAutoApprove(t *testing.T) {
	d := startDemo(t, false)
	browser := newBrowser(t)

	resp, body := get(t, browser, d.AppURL)
	authURL := resp.Request.URL.String()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(authURL, d.fake.AuthorizeURL()+"?") {
		t.Fatalf("GET /app/ ended at %d %s, want the fake's consent page\n%s", resp.StatusCode, authURL, body)
	}
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

func TestDemoRefusesUnusableAddresses(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	tests := []struct {
		name, addr, wantErr string
	}{
		{"a busy port is named with a way out", busy.Addr().String(), "already in use"},
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

func TestDemoCaddyfilesAdaptWithoutWarnings(t *testing.T) {
	fake := spotifytest.NewServer()
	defer fake.Close()
	for name, cfg := range map[string]caddyConfig{
		"fake Spotify": {Fake: fake},
		"real Spotify": {},
	} {
		t.Run(name, func(t *testing.T) {
			cfg.Host, cfg.SiteURL, cfg.Upstream, cfg.Storage = "127.0.0.1", "http://127.0.0.1:8080", "127.0.0.1:3000", t.TempDir()
			cfg.RedirectURI = cfg.SiteURL + "/oauth2/spotify/callback"
			_, warnings, err := adaptCaddyfile(cfg.caddyfile())
			if err != nil || len(warnings) > 0 {
				t.Errorf("adapt: %v, warnings %v\n%s", err, warnings, cfg.caddyfile())
			}
		})
	}
}

// secretToken stands for an access token: it must never reach a page.
const secretToken = "BQDsecret-access-token"

func TestUpstreamExplainsWebAPIFailuresWithoutShowingTheToken(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		body       string
		wantInPage string
	}{
		{"a rejected token offers a new login", 401, `{"error":{"status":401,"message":"The access token expired"}}`, `<button type="submit">Log in again</button>`},
		{"a missing scope or allowlist is explained", 403, `{"error":{"status":403,"message":"Insufficient client scope"}}`, "not on the app&#39;s user list"},
		{"rate limiting asks for patience", 429, `{"error":{"status":429,"message":"API rate limit exceeded"}}`, "rate limiting"},
		{"a non-JSON failure shows the status", 502, `<html>Bad gateway</html>`, "Spotify answered 502 Bad Gateway"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Authorization") != "Bearer "+secretToken {
					t.Errorf("API got Authorization %q", r.Header.Get("Authorization"))
				}
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}))
			defer api.Close()

			req := httptest.NewRequest(http.MethodGet, "/app/", nil)
			req.Header.Set("Authorization", "Bearer "+secretToken)
			req.Header.Set("X-Spotify-User-Id", "someone")
			rec := httptest.NewRecorder()
			newUpstream(api.URL).ServeHTTP(rec, req)

			page := rec.Body.String()
			if rec.Code != http.StatusOK || !strings.Contains(page, tt.wantInPage) || !strings.Contains(page, "someone") {
				t.Errorf("%d, want 200 mentioning %q and the user id:\n%s", rec.Code, tt.wantInPage, page)
			}
			if strings.Contains(page, secretToken) {
				t.Errorf("page shows the token:\n%s", page)
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
