package spotifyauth_test

// Helpers of the tests that run a real Caddy: in this process through
// caddytest (fixed ports 2999 and 9080, so these tests never run in
// parallel), or on free ports through caddy.Load. The in-process
// harness of the handler alone is harness_test.go (package spotifyauth:
// it reaches the handler's internals, which these tests must not).

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/caddyspotify/caddy-spotify-auth/internal/testkit"
	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

const site = "http://127.0.0.1:9080"

// caddyStorage is a storage directory for an in-process Caddy. That Caddy
// runs on after the test (until the next test loads its config) and may
// still write there, so removal is best effort, not t.TempDir's check.
func caddyStorage(t *testing.T) string {
	dir, err := os.MkdirTemp("", "spotify-auth-caddy-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func newFake(t *testing.T) *spotifytest.Server {
	fake := testkit.NewFake(t)
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
func caddyBrowser(tc *caddytest.Tester) *http.Client {
	c := *tc.Client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// freshBrowser is caddyBrowser with a cookie jar of its own.
func freshBrowser(t *testing.T, tc *caddytest.Tester) *http.Client {
	t.Helper()
	c := caddyBrowser(tc)
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Jar = jar
	return c
}

func navigate(t *testing.T, c *http.Client, rawURL string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html")
	return testkit.Do(t, c, req)
}

// loginThroughCaddy follows the whole flow for path and returns the page.
func loginThroughCaddy(t *testing.T, c *http.Client, fake *spotifytest.Server, path string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, site+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html")
	resp, err := fake.LogIn(c, req, spotifytest.DefaultUserID)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != path {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("callback: %d to %q: %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	resp, body := navigate(t, c, site+path)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s after login: %d %s", path, resp.StatusCode, body)
	}
	return body
}

// freePort returns a loopback port free at this moment.
func freePort(t *testing.T) int {
	t.Helper()
	return freePorts(t, 1)[0]
}

// freePorts returns n ports free for a Caddy to bind later
// (testkit.FreePorts: below the ephemeral range, each handed out once).
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	return testkit.FreePorts(t, n)
}

// runCaddy runs a Caddyfile in this process until the test ends. Tests
// using it must not run in parallel: Caddy's config is process-wide.
func runCaddy(t *testing.T, caddyfile string) {
	t.Helper()
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		t.Fatalf("adapting:\n%s\n%v", caddyfile, err)
	}
	if len(warnings) > 0 {
		t.Fatalf("adapter warnings %v", warnings)
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("starting Caddy: %v", err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
}

func sessionCookie(jar http.CookieJar, site string) string {
	u, _ := url.Parse(site)
	for _, c := range jar.Cookies(u) {
		if c.Name == "spotify_auth" {
			return c.Value
		}
	}
	return ""
}

func globalOptions(storage string, extra ...string) string {
	return fmt.Sprintf(`{
	admin localhost:2999
	http_port 9080
	https_port 9443
	grace_period 1ns
	skip_install_trust
	storage file_system %s
	%s
}
`, storage, strings.Join(extra, "\n"))
}
