package spotifyauth_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"
)

// A cross-site page can start logins in a user's browser at will. Each
// used to leave a 3 KB state cookie, and eight of them pushed the next
// callback past Caddy's 16 KiB header limit: 431, locked out.
func TestCaddyTenPlantedLoginsThenANormalLoginCompletes(t *testing.T) {
	fake := newFake(t)
	tc := caddytest.NewTester(t)
	tc.InitServer(globalOptions(caddyStorage(t))+site+` {
	spotify_auth /app/* {
		`+fakeOptions(fake)+`
		cookie_secret 0123456789abcdef0123456789abcdef
	}
	respond /app/* "app for {http.auth.user.id}"
	respond "public"
}`, "caddyfile")

	c := caddyBrowser(tc)
	long := "/app/" + strings.Repeat("a", 2000)
	for range 10 {
		resp, _ := navigate(t, c, site+"/oauth2/spotify/login?rd="+url.QueryEscape(long))
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("planting a login: %d", resp.StatusCode)
		}
	}
	u, _ := url.Parse(site + "/oauth2/spotify/callback")
	n, size := 0, 0
	for _, ck := range c.Jar.Cookies(u) {
		if strings.Contains(ck.Name, "_state_") {
			n++
			size += len(ck.Name) + 1 + len(ck.Value) + 2
		}
	}
	t.Logf("after ten planted logins the browser sends %d state cookies, %d bytes, with the callback", n, size)
	if size > 8*1024 {
		t.Fatalf("state cookies take %d bytes, want well under the 16 KiB header limit", size)
	}
	if body := loginThroughCaddy(t, c, fake, "/app/x"); body != "app for testuser" {
		t.Fatalf("app page %q", body)
	}
	if resp, body := navigate(t, c, site+"/app/x"); resp.StatusCode != http.StatusOK {
		t.Fatalf("after login: %d %s", resp.StatusCode, body)
	}
}
