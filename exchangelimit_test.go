package spotifyauth

import (
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// junkCallback starts a login in a fresh browser and sends the callback
// the real state with a made-up code, as a stranger looping on the two
// endpoints would.
func (hs *harness) junkCallback(t *testing.T) *http.Response {
	t.Helper()
	c := newBrowser(t)
	authURL := hs.startLogin(c, "/")
	state := mustQuery(t, authURL).Get("state")
	resp, _ := hs.get(c, DefaultCallbackPath+"?code=junk-code&state="+url.QueryEscape(state))
	return resp
}

func TestAJunkCallbackFloodCostsABoundedNumberOfTokenCalls(t *testing.T) {
	const perClient = 5
	hs := newHarness(t, func(h *Handler, _ *spotifytest.Client) {
		h.LoginRateLimit = &LoginRateLimit{PerClient: perClient, Overall: 100}
	})
	user := newBrowser(t)
	hs.login(user, "/")
	refreshes := hs.fake.Counts().Refreshes

	const flood = 200
	status := map[int]int{}
	for i := range flood {
		resp := hs.junkCallback(t)
		status[resp.StatusCode]++
		if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
			t.Fatal("429 without Retry-After")
		}
		if i%50 == 49 {
			// The logged-in user keeps working and refreshing meanwhile.
			forgetRefreshes(t, hs.h)
			hs.nearlyExpire(user)
			if resp, body := hs.get(user, "/app/"); resp.StatusCode != http.StatusOK {
				t.Fatalf("logged-in user during the flood: %d %s", resp.StatusCode, body)
			}
		}
	}
	calls := hs.fake.Counts().CodeExchanges
	t.Logf("%d junk callbacks: %d code exchanges at Spotify (1 of them the user's login); answers %v", flood, calls, status)
	if calls > perClient+1 {
		t.Fatalf("%d code exchanges, want at most %d", calls, perClient+1)
	}
	if status[http.StatusTooManyRequests] < flood-perClient-1 {
		t.Fatalf("answers %v, want the flood refused with 429", status)
	}
	if n := hs.fake.Counts().Refreshes - refreshes; n != flood/50 {
		t.Fatalf("the logged-in user refreshed %d times during the flood, want %d", n, flood/50)
	}
}

func TestATooManyLoginsPageSaysWhy(t *testing.T) {
	hs := newHarness(t, func(h *Handler, _ *spotifytest.Client) {
		h.LoginRateLimit = &LoginRateLimit{PerClient: 1}
	})
	hs.junkCallback(t)
	c := newBrowser(t)
	state := mustQuery(t, hs.startLogin(c, "/x")).Get("state")
	resp, body := hs.get(c, DefaultCallbackPath+"?code=junk&state="+url.QueryEscape(state))
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "Too many logins") ||
		resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("%d %v %s", resp.StatusCode, resp.Header, body)
	}
	// The junk code cost its client failedExchangeWeight exchanges: at 1
	// a minute, that many minutes.
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s < 1 || s > failedExchangeWeight*60 {
		t.Fatalf("Retry-After %q", resp.Header.Get("Retry-After"))
	}
}

func TestARateLimitedCodeExchangeDoesNotPauseRefreshes(t *testing.T) {
	hs := newHarness(t)
	user := newBrowser(t)
	hs.login(user, "/")
	hs.fake.InjectFault(spotifytest.EndpointToken, spotifytest.Fault{Status: http.StatusTooManyRequests, RetryAfter: "600", Times: 1})
	if resp := hs.junkCallback(t); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("junk callback meeting a 429: %d, want 503", resp.StatusCode)
	}
	before := hs.fake.Counts()
	hs.nearlyExpire(user)
	if resp, body := hs.get(user, "/app/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("logged-in user after a login's 429: %d %s", resp.StatusCode, body)
	}
	if n := hs.fake.Counts().Refreshes - before.Refreshes; n != 1 {
		t.Fatalf("%d refreshes after a code exchange met 429, want 1: the user's refresh was paused", n)
	}
	// Logins wait as Spotify asked: no further code exchange goes out.
	if resp := hs.junkCallback(t); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("login during the back-off: %d, want 503", resp.StatusCode)
	}
	if n := hs.fake.Counts().CodeExchanges - before.CodeExchanges; n != 0 {
		t.Fatalf("%d code exchanges during the back-off, want 0", n)
	}
}

func TestExchangeLimitsHoldPerClientAndOverall(t *testing.T) {
	var e exchangeLimiter
	cfg := &LoginRateLimit{PerClient: 3, Overall: 10}
	now := time.Now()
	allowed := 0
	for i := range 100 {
		// 50 addresses in 50 different /24s, so no block's share binds.
		if ok, _ := e.allow(netip.AddrFrom4([4]byte{198, 51, byte(i % 50), 1}), cfg, now); ok {
			allowed++
		}
	}
	if allowed != 10 {
		t.Fatalf("%d exchanges allowed from 50 addresses at once, want the overall 10", allowed)
	}
	var f exchangeLimiter
	one, other := netip.MustParseAddr("203.0.113.9"), netip.MustParseAddr("203.0.113.10")
	for i := range 3 {
		if ok, _ := f.allow(one, cfg, now); !ok {
			t.Fatalf("exchange %d refused", i)
		}
	}
	ok, wait := f.allow(one, cfg, now)
	if ok || wait <= 0 || wait > 20*time.Second {
		t.Fatalf("fourth exchange from one address: allowed %v, wait %s", ok, wait)
	}
	if ok, _ := f.allow(other, cfg, now); !ok {
		t.Fatal("another address was refused")
	}
	// A minute later the bucket is full again.
	if ok, _ := f.allow(one, cfg, now.Add(time.Minute)); !ok {
		t.Fatal("still refused a minute later")
	}
	// IPv6 addresses count by their /64.
	var g exchangeLimiter
	single := &LoginRateLimit{PerClient: 1, Overall: 10}
	r := &http.Request{RemoteAddr: "[2001:db8:1:2:3:4:5:6]:443"}
	r2 := &http.Request{RemoteAddr: "[2001:db8:1:2:ffff::1]:443"}
	if ok, _ := g.allow(clientAddress(r.WithContext(t.Context())), single, now); !ok {
		t.Fatal("the first exchange of a /64 was refused")
	}
	if ok, _ := g.allow(clientAddress(r2.WithContext(t.Context())), single, now); ok {
		t.Fatal("another address of the same /64 got a budget of its own")
	}
}

func TestLoginRateLimitReachesTheJSONConfig(t *testing.T) {
	out, err := adapt(t, `
:8080 {
	spotify_auth {
		client_id id
		login_rate_limit 10 200
	}
}`)
	if err != nil {
		t.Fatal(err)
	}
	hs, _ := handlersIn(t, out)
	if l := hs[0].LoginRateLimit; l == nil || l.PerClient != 10 || l.Overall != 200 {
		t.Fatalf("login_rate_limit adapted to %+v", l)
	}
	for _, bad := range []string{"login_rate_limit", "login_rate_limit 0", "login_rate_limit ten", "login_rate_limit 1 2 3"} {
		if _, err := adapt(t, ":8080 {\n\tspotify_auth {\n\t\tclient_id id\n\t\t"+bad+"\n\t}\n}"); err == nil || !strings.Contains(err.Error(), "login_rate_limit") {
			t.Errorf("%q: error %v, want one naming login_rate_limit", bad, err)
		}
	}
}

// Two blocks of one app share the limiter with different limits (or a
// reload changes them): a client alternating its callbacks between them
// gets no fresh bucket from the change.
func TestDifferentLimitsOnOneLimiterRefillNothing(t *testing.T) {
	var e exchangeLimiter
	a := &LoginRateLimit{PerClient: 2, Overall: 300}
	b := &LoginRateLimit{PerClient: 2, Overall: 299}
	now := time.Now()
	allowed := 0
	for i := range 100 {
		cfg := a
		if i%2 == 1 {
			cfg = b
		}
		if ok, _ := e.allow(netip.MustParseAddr("192.0.2.1"), cfg, now); ok {
			allowed++
		}
	}
	if allowed != 2 {
		t.Fatalf("%d of 100 exchanges admitted at once for one client, want its 2", allowed)
	}
	// A per-client limit lowered by a reload applies to a bucket that
	// already exists: half a minute refills half an exchange at 1 a
	// minute (a whole one at the old 2).
	later := now.Add(time.Minute)
	one := &LoginRateLimit{PerClient: 1, Overall: 300}
	c2 := netip.MustParseAddr("192.0.2.2")
	e.allow(c2, a, later)
	e.allow(c2, a, later)
	if ok, _ := e.allow(c2, one, later); ok { // the reload
		t.Fatal("an empty bucket admitted an exchange after a reload")
	}
	if ok, _ := e.allow(c2, one, later.Add(30*time.Second)); ok {
		t.Error("the bucket still refills at the old per_client rate")
	}
}
