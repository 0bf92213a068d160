package spotifyauth_test

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/caddyspotify/caddy-spotify-auth/internal/testkit"
	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// The deployment behind a load balancer: Caddy trusts the proxy on
// loopback and takes each client's address from X-Forwarded-For. One
// block loops on junk login+callback pairs from all its addresses, then
// real users from other blocks log in. Before, 16 /64s of one /60 spent
// the overall budget and 8 of 8 real users got 429 at their callback.
func TestCaddyOneAddressBlockCannotLockOthersOutOfLogin(t *testing.T) {
	attacks := []struct {
		name    string
		address func(i int) string
		n       int
	}{
		{"16 /64s of one IPv6 /60", func(i int) string { return fmt.Sprintf("2001:db8:aa:%x::%x", 0x10+i%16, i) }, 16},
		{"16 addresses of one IPv4 /24", func(i int) string { return fmt.Sprintf("198.51.100.%d", i%16) }, 16},
	}
	const (
		perClient, overall = 5, 60 // each attacking address alone could spend overall/perClient = 12 addresses' worth
		pairsPerAddress    = 8
		realUsers          = 8
	)
	for k, attack := range attacks {
		t.Run(attack.name, func(t *testing.T) {
			fake := newFake(t)
			tc := caddytest.NewTester(t)
			tc.InitServer(globalOptions(caddyStorage(t), `servers {
		trusted_proxies static 127.0.0.1/32 ::1/128
	}`)+site+` {
	spotify_auth /app/* {
		`+fakeOptions(fake)+`
		cookie_secret 0123456789abcdef0123456789abcdef
		login_rate_limit `+fmt.Sprint(perClient, " ", overall)+`
	}
	respond /app/* "app for {http.auth.user.id}"
}`, "caddyfile")

			junk := map[int]int{}
			for i := range attack.n * pairsPerAddress {
				resp := junkPairThroughCaddy(t, freshBrowser(t, tc), attack.address(i))
				junk[resp]++
			}
			attackExchanges := fake.Counts().CodeExchanges

			admitted := 0
			for u := range realUsers {
				// Fresh addresses, each in a block of its own and not the
				// attacker's; IPv6 and IPv4 in turn.
				addr := fmt.Sprintf("2001:db8:%x::7", 0x100+16*k+u)
				if u%2 == 1 {
					addr = fmt.Sprintf("203.0.%d.7", 16*k+u)
				}
				if status := loginFromThroughCaddy(t, freshBrowser(t, tc), fake, addr); status == http.StatusOK {
					admitted++
				} else {
					t.Errorf("real user from %s: %d", addr, status)
				}
			}
			t.Logf("%d junk pairs from %d addresses: answers %v, %d reached Spotify; real users logged in during the attack: %d of %d",
				attack.n*pairsPerAddress, attack.n, junk, attackExchanges, admitted, realUsers)
			if junk[http.StatusTooManyRequests] == 0 || attackExchanges > 2*perClient {
				t.Errorf("the attacking block got %d exchanges, want at most its block's share, %d", attackExchanges, 2*perClient)
			}
		})
	}
}

// junkPairThroughCaddy starts a login from addr and sends the callback
// the real state with a made-up code; it returns the callback's status.
func junkPairThroughCaddy(t *testing.T, c *http.Client, addr string) int {
	t.Helper()
	resp, _ := fromAddress(t, c, site+"/app/", addr)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("starting a login: %d", resp.StatusCode)
	}
	authURL, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	resp, _ = fromAddress(t, c, site+"/oauth2/spotify/callback?code=junk&state="+url.QueryEscape(authURL.Query().Get("state")), addr)
	return resp.StatusCode
}

// loginFromThroughCaddy logs in from addr, approving at the fake, and
// returns the status of the app page it lands on.
func loginFromThroughCaddy(t *testing.T, c *http.Client, fake *spotifytest.Server, addr string) int {
	t.Helper()
	resp, _ := fromAddress(t, c, site+"/app/x", addr)
	callback, err := fake.Approve(resp.Header.Get("Location"), spotifytest.DefaultUserID)
	if err != nil {
		t.Fatal(err)
	}
	resp, _ = fromAddress(t, c, callback, addr)
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/app/x" {
		return resp.StatusCode
	}
	resp, _ = fromAddress(t, c, site+"/app/x", addr)
	return resp.StatusCode
}

// fromAddress is a page load that the load balancer says came from addr.
func fromAddress(t *testing.T, c *http.Client, rawURL, addr string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html")
	req.Header.Set("X-Forwarded-For", addr)
	return testkit.Do(t, c, req)
}
