package spotifyauth_test

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddyspotify/caddy-spotify-auth"
	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// These tests run a real Caddy in this process through caddytest, which
// drives it over its admin API on fixed ports (2999, 9080); they must not
// run in parallel with each other.

const site = "http://127.0.0.1:9080"

func globalOptions(storage string) string {
	return fmt.Sprintf(`{
	admin localhost:2999
	http_port 9080
	https_port 9443
	grace_period 1ns
	skip_install_trust
	storage file_system %s
}
`, storage)
}

func newFake(t *testing.T) *spotifytest.Server {
	fake := spotifytest.NewServer()
	t.Cleanup(fake.Close)
	fake.AddClient(spotifytest.Client{ID: "it-client", RedirectURIs: []string{site + "/oauth2/spotify/callback"}})
	return fake
}

func fakeOptions(fake *spotifytest.Server) string {
	return fmt.Sprintf(`client_id it-client
		authorize_url %s
		token_url %s
		api_url %s`, fake.AuthorizeURL(), fake.TokenURL(), fake.APIURL())
}

// caddyBrowser is the tester's client (it dials Caddy on loopback) with a
// fresh cookie jar and redirects left to the test.
func caddyBrowser(t *testing.T, tc *caddytest.Tester) *http.Client {
	c := *tc.Client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

func navigate(t *testing.T, c *http.Client, rawURL string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// loginThroughCaddy follows the whole flow for path and returns the page.
func loginThroughCaddy(t *testing.T, c *http.Client, fake *spotifytest.Server, path string) string {
	t.Helper()
	resp, body := navigate(t, c, site+path)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	callback, err := fake.Approve(resp.Header.Get("Location"), spotifytest.DefaultUser.ID)
	if err != nil {
		t.Fatal(err)
	}
	resp, body = navigate(t, c, callback)
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != path {
		t.Fatalf("callback: %d to %q: %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	resp, body = navigate(t, c, site+path)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s after login: %d %s", path, resp.StatusCode, body)
	}
	return body
}

func TestCaddyKeepsRespondFileServerAndHandleBehindTheGate(t *testing.T) {
	fake := newFake(t)
	storage := t.TempDir()
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "secret.txt"), []byte("file secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	tc := caddytest.NewTester(t)
	// No cookie_secret: the key is generated into Caddy's storage.
	tc.InitServer(globalOptions(storage)+site+` {
	root * `+root+`
	file_server /secret.txt
	handle /handled/* {
		respond "handled secret"
	}
	respond /app/* "app secret for {http.auth.user.id}"
	spotify_auth {
		`+fakeOptions(fake)+`
	}
}`, "caddyfile")

	c := caddyBrowser(t, tc)
	for _, path := range []string{"/secret.txt", "/handled/x", "/app/", "/anything"} {
		resp, body := navigate(t, c, site+path)
		if resp.StatusCode != http.StatusFound || strings.Contains(body, "secret") {
			t.Fatalf("GET %s without a session: %d %q", path, resp.StatusCode, body)
		}
		req, _ := http.NewRequest(http.MethodGet, site+path, nil)
		req.Header.Set("Accept", "application/json")
		r2, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r2.Body.Close()
		if r2.StatusCode != http.StatusUnauthorized {
			t.Fatalf("API GET %s without a session: %d", path, r2.StatusCode)
		}
	}

	if body := loginThroughCaddy(t, c, fake, "/app/"); body != "app secret for testuser" {
		t.Fatalf("app page %q", body)
	}
	for path, want := range map[string]string{"/secret.txt": "file secret", "/handled/x": "handled secret"} {
		if resp, body := navigate(t, c, site+path); resp.StatusCode != http.StatusOK || body != want {
			t.Fatalf("GET %s with a session: %d %q", path, resp.StatusCode, body)
		}
	}
	if _, err := os.Stat(filepath.Join(storage, "spotify_auth", "session_keys.json")); err != nil {
		t.Fatalf("generated key not in storage: %v", err)
	}
}

func TestCaddyMatcherProtectsOnlyItsPathsAndEndpointsStillWork(t *testing.T) {
	fake := newFake(t)
	tc := caddytest.NewTester(t)
	tc.InitServer(globalOptions(t.TempDir())+site+` {
	spotify_auth /app/* {
		`+fakeOptions(fake)+`
		cookie_secret 0123456789abcdef0123456789abcdef
	}
	respond /app/* "app for {http.auth.user.id}"
	respond "public"
}`, "caddyfile")

	c := caddyBrowser(t, tc)
	if resp, body := navigate(t, c, site+"/"); resp.StatusCode != http.StatusOK || body != "public" {
		t.Fatalf("public page: %d %q", resp.StatusCode, body)
	}
	// The login endpoint answers although /oauth2/ is outside /app/*.
	resp, _ := navigate(t, c, site+"/oauth2/spotify/login?rd="+url.QueryEscape("/app/x"))
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), fake.AuthorizeURL()) {
		t.Fatalf("login endpoint: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if body := loginThroughCaddy(t, c, fake, "/app/x"); body != "app for testuser" {
		t.Fatalf("app page %q", body)
	}
	resp, body := navigate(t, c, site+"/oauth2/spotify/logout")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Log out") {
		t.Fatalf("logout page: %d %s", resp.StatusCode, body)
	}
}

func TestCaddyJSONConfig(t *testing.T) {
	fake := newFake(t)
	tc := caddytest.NewTester(t)
	tc.InitServer(fmt.Sprintf(`{
	"admin": {"listen": "localhost:2999"},
	"apps": {"http": {"http_port": 9080, "grace_period": 1, "servers": {"srv0": {
		"listen": [":9080"],
		"routes": [
			{"match": [{"path": ["/app/*"]}, {"path": ["/oauth2/spotify/*"]}],
			 "handle": [{"handler": "spotify_auth", "client_id": "it-client",
				"cookie_secret": ["0123456789abcdef0123456789abcdef"],
				"scopes": ["user-read-email"], "token_header": "X-Spotify-Token",
				"authorize_url": %q, "token_url": %q, "api_url": %q}]},
			{"match": [{"path": ["/app/*"]}],
			 "handle": [{"handler": "static_response", "body": "token {http.request.header.X-Spotify-Token}"}]}
		]
	}}}}
}`, fake.AuthorizeURL(), fake.TokenURL(), fake.APIURL()), "json")

	c := caddyBrowser(t, tc)
	body := loginThroughCaddy(t, c, fake, "/app/")
	token := strings.TrimPrefix(body, "token ")
	if _, _, valid := fake.AccessTokenInfo(token); !valid {
		t.Fatalf("custom token header carried %q, not a valid token", body)
	}
}
