package spotifyauth

import (
	"encoding/binary"
	"net/http"
	"net/netip"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"

	"github.com/caddyspotify/caddy-spotify-auth/internal/refresher"
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
	t.Parallel()
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
	t.Parallel()
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
	t.Parallel()
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
	t.Parallel()
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
	t.Parallel()
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
	t.Parallel()
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

// The login limiter refuses a callback (429) before the login state is
// spent: once Retry-After has passed, the same callback completes the
// login, and only then is the state used up.
func TestARefusedCallbackLeavesItsLoginToRetryAfterRetryAfter(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, func(h *Handler, _ *spotifytest.Client) {
		h.LoginRateLimit = &LoginRateLimit{PerClient: 1, Overall: 100}
	})
	hs.junkCallback(t) // a refused code: this address owes failedExchangeWeight exchanges

	user := newBrowser(t)
	callback, err := hs.fake.Approve(hs.startLogin(user, "/app/x"), spotifytest.DefaultUserID)
	if err != nil {
		t.Fatal(err)
	}
	exchanges := hs.fake.Counts().CodeExchanges
	resp, body := hs.get(user, callback)
	retryAfter, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	if resp.StatusCode != http.StatusTooManyRequests || retryAfter < 1 {
		t.Fatalf("callback after a junk code: %d, Retry-After %q, want 429", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	for _, c := range resp.Cookies() {
		if strings.Contains(c.Name, "_state_") {
			t.Fatalf("the refused callback touched the login state cookie: %s max-age %d", c.Name, c.MaxAge)
		}
	}
	if code := mustQuery(t, callback).Get("code"); strings.Contains(body, code) || !strings.Contains(body, "/oauth2/spotify/login?rd=") {
		t.Errorf("the 429 page carries the code, or no link to log in again:\n%s", body)
	}

	// Just before Retry-After the limiter still refuses: the header is honest.
	loginLimitWaited(hs.h, time.Duration(retryAfter)*time.Second-5*time.Second)
	if resp, _ := hs.get(user, callback); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("callback 5 s before Retry-After: %d, want 429", resp.StatusCode)
	}
	loginLimitWaited(hs.h, 5*time.Second)
	resp, body = hs.get(user, callback)
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/app/x" {
		t.Fatalf("the same callback after Retry-After: %d to %q, want the login completed: %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	if n := hs.fake.Counts().CodeExchanges - exchanges; n != 1 {
		t.Fatalf("%d code exchanges for the user's login, want 1 (none while refused)", n)
	}
	if resp, _ := hs.get(user, "/app/x"); resp.StatusCode != http.StatusOK {
		t.Fatalf("after the login: %d", resp.StatusCode)
	}
	// Completed, the login state is spent as always.
	loginLimitWaited(hs.h, time.Hour)
	if resp, _ := hs.get(user, callback); resp.StatusCode == http.StatusFound {
		t.Fatal("the callback was accepted a second time")
	}
}

// attackScenario is one block looping on junk login+callback pairs.
type attackScenario struct {
	name     string
	attacker []netip.Addr
}

func attackScenarios() []attackScenario {
	var v6, v4 []netip.Addr
	for i := range 16 { // the 16 /64s of 2001:db8:aa:10::/60
		v6 = append(v6, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0xaa, 0, 0x10 + byte(i), 15: 1}))
	}
	for i := range 256 { // every address of 198.51.100.0/24
		v4 = append(v4, netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}))
	}
	return []attackScenario{
		{"16 /64s of one IPv6 /60", v6},
		{"256 addresses of one IPv4 /24", v4},
	}
}

// realUser is the i-th real user's fresh address, each in a block of its
// own, IPv6 and IPv4 in turn.
func realUser(i int) netip.Addr {
	if i%2 == 0 {
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0x10, byte(i), 15: 7})
	}
	return netip.AddrFrom4([4]byte{203, byte(i), 113, 7})
}

// The attack at the default limits, on the limiter's own clock:
// one block sends a junk callback from every one of its addresses every
// 50 ms for 24 s, while real users arrive from other blocks. Before,
// 16 /64s spent the overall budget at once and 8 of 8 real users got 429.
func TestOneBlockCannotSpendTheOverallLoginBudget(t *testing.T) {
	t.Parallel()
	const (
		attackFor = 24 * time.Second
		step      = 50 * time.Millisecond
		users     = 40
	)
	for _, sc := range attackScenarios() {
		t.Run(sc.name, func(t *testing.T) {
			var e exchangeLimiter
			start := time.Now()
			junk, attackExchanges, admitted := 0, 0, 0
			nextUser := 0
			for at := time.Duration(0); at < attackFor; at += step {
				now := start.Add(at)
				for _, a := range sc.attacker {
					junk++
					if ok, _ := e.allow(a, nil, now); ok {
						attackExchanges++
						e.failed(a, nil, now) // Spotify: invalid_grant
					}
				}
				if nextUser < users && at >= time.Duration(nextUser)*attackFor/users {
					if ok, wait := e.allow(realUser(nextUser), nil, now); ok {
						admitted++
					} else {
						t.Errorf("real user %d (%s) at %s: refused, Retry-After %s", nextUser, realUser(nextUser), at, wait)
					}
					nextUser++
				}
			}
			t.Logf("%d junk callbacks in %s from %d addresses: %d reached Spotify; real users admitted during the attack: %d of %d",
				junk, attackFor, len(sc.attacker), attackExchanges, admitted, users)
			// The block's share: 2×20 at once and 40 a minute, each junk
			// code costing failedExchangeWeight.
			if limit := (40 + 40*int(attackFor/time.Second)/60) / failedExchangeWeight; attackExchanges > limit+1 {
				t.Errorf("the attacking block got %d exchanges, want at most its share, %d", attackExchanges, limit+1)
			}
			if admitted != users {
				t.Errorf("%d of %d real users admitted", admitted, users)
			}
		})
	}
}

// Memory and work per new address are bounded: 100,000 addresses, each
// in a block of its own at every level (the worst case), fill each table
// to its bound and no further, and a new address is still admitted
// (before, 10,000 addresses in a minute refused every new one for 60 s).
func TestTheLoginLimiterStaysBoundedFor100000Addresses(t *testing.T) {
	t.Parallel()
	const addresses = 100_000
	cfg := &LoginRateLimit{PerClient: 20, Overall: 10 * addresses}
	now := time.Now()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	e := new(exchangeLimiter)
	for i := range addresses {
		var v6 [16]byte
		binary.BigEndian.PutUint32(v6[:], 0x20010db8)
		binary.BigEndian.PutUint32(v6[4:], uint32(i)<<16) // a /48 of its own
		if ok, _ := e.allow(netip.AddrFrom16(v6), cfg, now); !ok {
			t.Fatalf("IPv6 address %d refused", i)
		}
		var v4 [4]byte
		binary.BigEndian.PutUint32(v4[:], 0x40000001+uint32(i)<<8) // a /24 of its own
		if ok, _ := e.allow(netip.AddrFrom4(v4), cfg, now); !ok {
			t.Fatalf("IPv4 address %d refused", i)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	entries := 0
	for _, tb := range append(e.v4[:], e.v6[:]...) {
		if tb.len() > maxBlocksPerLevel || len(tb.slots) > maxBlocksPerLevel {
			t.Fatalf("a table holds %d blocks in %d slots, want at most %d", tb.len(), len(tb.slots), maxBlocksPerLevel)
		}
		entries += tb.len()
	}
	heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d IPv6 and %d IPv4 addresses, each a new block at every level: %d buckets in %d tables, %.1f MiB of heap (%d bytes a bucket)",
		addresses, addresses, entries, len(e.v4)+len(e.v6), float64(heap)/(1<<20), heap/int64(max(entries, 1)))
	runtime.KeepAlive(e)
}

// BenchmarkLoginLimiterNewAddress is the work of a callback from an
// address never seen, with every table full: one lookup, insert and
// eviction per level.
func BenchmarkLoginLimiterNewAddress(b *testing.B) {
	cfg := &LoginRateLimit{PerClient: 20, Overall: 1 << 30}
	e := new(exchangeLimiter)
	now := time.Now()
	addr := func(i int) netip.Addr {
		var v6 [16]byte
		binary.BigEndian.PutUint64(v6[:], 0x20010db8_00000000|uint64(uint32(i))<<16)
		return netip.AddrFrom16(v6)
	}
	for i := range maxBlocksPerLevel {
		e.allow(addr(i), cfg, now)
	}
	b.ReportAllocs()
	i := maxBlocksPerLevel
	for b.Loop() {
		e.allow(addr(i), cfg, now)
		i++
	}
}

// A working login costs its client one exchange; a code Spotify refuses
// costs failedExchangeWeight, so a junk loop gets a quarter of what real
// logins from the same address would.
func TestARefusedCodeCostsItsBlocksMoreThanAWorkingLogin(t *testing.T) {
	t.Parallel()
	cfg := &LoginRateLimit{PerClient: failedExchangeWeight, Overall: 100}
	now := time.Now()
	addr := netip.MustParseAddr("192.0.2.1")

	var working exchangeLimiter
	for i := range failedExchangeWeight {
		if ok, _ := working.allow(addr, cfg, now); !ok {
			t.Fatalf("working login %d of %d refused", i+1, failedExchangeWeight)
		}
	}

	var junk exchangeLimiter
	if ok, _ := junk.allow(addr, cfg, now); !ok {
		t.Fatal("the first exchange was refused")
	}
	junk.failed(addr, cfg, now)
	ok, wait := junk.allow(addr, cfg, now)
	if ok {
		t.Fatal("an exchange was admitted right after a refused code had used up the budget")
	}
	// The debt is paid off at per_client a minute: one exchange's worth
	// after a quarter of a minute.
	if wait != 15*time.Second {
		t.Errorf("Retry-After %s after one refused code, want 15s", wait)
	}
	if ok, _ := junk.allow(addr, cfg, now.Add(wait)); !ok {
		t.Error("still refused after the wait it gave")
	}
	// Another /24 is untouched.
	if ok, _ := junk.allow(netip.MustParseAddr("192.0.3.1"), cfg, now); !ok {
		t.Error("another block paid for the refused code")
	}
}

// Spotify's 429 back-off refuses a callback before its state is spent
// too: the same callback completes the login once the back-off is over.
func TestACallbackDuringSpotifysBackOffLeavesItsLoginToRetry(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	user := newBrowser(t)
	callback, err := hs.fake.Approve(hs.startLogin(user, "/app/x"), spotifytest.DefaultUserID)
	if err != nil {
		t.Fatal(err)
	}
	hs.fake.InjectFault(spotifytest.EndpointToken, spotifytest.Fault{Status: http.StatusTooManyRequests, RetryAfter: "600", Times: 1})
	if resp := hs.junkCallback(t); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("junk callback meeting a 429: %d, want 503", resp.StatusCode)
	}
	exchanges := hs.fake.Counts().CodeExchanges
	resp, body := hs.get(user, callback)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("callback during the back-off: %d, Retry-After %q, want 503 with one", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	for _, c := range resp.Cookies() {
		if strings.Contains(c.Name, "_state_") {
			t.Fatalf("the refused callback touched the login state cookie: %s max-age %d", c.Name, c.MaxAge)
		}
	}
	if code := mustQuery(t, callback).Get("code"); strings.Contains(body, code) || !strings.Contains(body, "/oauth2/spotify/login?rd=") {
		t.Errorf("the 503 page carries the code, or no link to log in again:\n%s", body)
	}
	retryAfterPassed(t, hs.h)
	hs.h.shared.refresh.EndPause(refresher.Logins) // the logins' own back-off
	resp, body = hs.get(user, callback)
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/app/x" {
		t.Fatalf("the same callback after the back-off: %d to %q: %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	if n := hs.fake.Counts().CodeExchanges - exchanges; n != 1 {
		t.Fatalf("%d code exchanges for the user's login, want 1 (none during the back-off)", n)
	}
}

// An account not on a development-mode app's user list gets a real code
// and a 403 from /v1/me on every try: each try costs its client what a
// refused code does, so one such account cannot spend the logins of
// everyone else.
func TestAnUnlistedAccountsLoginCostsWhatARefusedCodeDoes(t *testing.T) {
	t.Parallel()
	// Spotify's known words, and words it has not used yet.
	for _, said := range []string{"User not registered in the Developer Dashboard", "Forbidden for this app"} {
		t.Run(said, func(t *testing.T) {
			t.Parallel()
			hs := newHarness(t, func(h *Handler, _ *spotifytest.Client) {
				h.LoginRateLimit = &LoginRateLimit{PerClient: failedExchangeWeight, Overall: 100}
			})
			c := newBrowser(t)
			callback, err := hs.fake.Approve(hs.startLogin(c, "/x"), spotifytest.DefaultUserID)
			if err != nil {
				t.Fatal(err)
			}
			hs.fake.InjectFault(spotifytest.EndpointAPI, spotifytest.Fault{Status: http.StatusForbidden, Body: said, Path: "/v1/me", Times: 1})
			if resp, body := hs.get(c, callback); resp.StatusCode != http.StatusForbidden {
				t.Fatalf("unlisted account's callback: %d %s, want 403", resp.StatusCode, body)
			}
			// per_client is failedExchangeWeight: a working login would leave room
			// for three more; the refused account left none.
			other := newBrowser(t)
			next, err := hs.fake.Approve(hs.startLogin(other, "/y"), spotifytest.DefaultUserID)
			if err != nil {
				t.Fatal(err)
			}
			if resp, _ := hs.get(other, next); resp.StatusCode != http.StatusTooManyRequests {
				t.Fatalf("the next login from the same address: %d, want 429 (the unlisted account's tries cost %d each)", resp.StatusCode, failedExchangeWeight)
			}
		})
	}
}
