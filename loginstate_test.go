package spotifyauth

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

func TestATokenResponseWithoutScopeGrantsWhatWasRequested(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, func(h *Handler, _ *spotifytest.Client) {
		h.Scopes = []string{"user-read-email"}
		h.RequiredScopes = []string{"streaming"}
	})
	hs.fake.SetOmitScope(true)
	if loc := hs.login(hs.browser, "/player/"); loc != "/player/" {
		t.Fatalf("login without scope in the token response landed on %q, want /player/", loc)
	}
	if resp, body := hs.get(hs.browser, "/player/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("after login: %d %s", resp.StatusCode, body)
	}
	if n := hs.fake.Counts().Authorize; n != 1 {
		t.Fatalf("%d consent pages, want 1 (no re-consent loop)", n)
	}
	if got := hs.session(hs.browser).Scopes; !hasScope(got, "streaming") || !hasScope(got, "user-read-email") {
		t.Fatalf("session scopes %q, want the requested ones", got)
	}
}

func TestTheUsedStateMemoryForgetsOnlyItsOldestEntriesWhenFull(t *testing.T) {
	t.Parallel()
	s := newSharedState()
	now := time.Now()
	for i := 0; i < maxUsedStates; i++ {
		if !s.useState("state-"+strconv.Itoa(i), now) {
			t.Fatalf("state %d refused on first use", i)
		}
	}
	// One more than the cap: the oldest goes, the rest stay remembered.
	if !s.useState("one-more", now) {
		t.Fatal("a new state was refused")
	}
	for _, i := range []int{1, maxUsedStates / 2, maxUsedStates - 1} {
		if s.useState("state-"+strconv.Itoa(i), now) {
			t.Fatalf("state %d was forgotten at the cap and could be replayed", i)
		}
	}
	if !s.useState("state-0", now) {
		t.Fatal("the oldest state should have been evicted")
	}
	if n := s.usedStateCount(); n > maxUsedStates {
		t.Fatalf("%d used states remembered, cap %d", n, maxUsedStates)
	}
	// Expired entries are dropped as time passes.
	later := now.Add(usedStateLifetime + time.Second)
	if !s.useState("state-1", later) {
		t.Fatal("an expired used state still blocks")
	}
}

// stateCookiesIn returns the browser's login state cookies for the site
// and their total size as sent (name=value; ).
func stateCookiesIn(t *testing.T, hs *harness, c *http.Client) (n, bytes int) {
	t.Helper()
	u, _ := url.Parse(hs.srv.URL + DefaultCallbackPath)
	for _, ck := range c.Jar.Cookies(u) {
		if strings.Contains(ck.Name, "_state_") {
			n++
			bytes += len(ck.Name) + 1 + len(ck.Value) + 2
		}
	}
	return n, bytes
}

func TestPlantedLoginsCannotLockAUserOut(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	long := "/" + strings.Repeat("a", 2000)
	for range 10 {
		resp, _ := hs.get(hs.browser, EndpointPrefix+"login?rd="+url.QueryEscape(long))
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("planting a login: %d", resp.StatusCode)
		}
	}
	n, size := stateCookiesIn(t, hs, hs.browser)
	t.Logf("after ten planted logins: %d state cookies, %d bytes", n, size)
	if n > maxConcurrentLogins {
		t.Fatalf("%d state cookies, want at most %d", n, maxConcurrentLogins)
	}
	if size > 4096 {
		t.Fatalf("state cookies take %d bytes of every request, want at most 4096", size)
	}
	if loc := hs.login(hs.browser, "/app/"); loc != "/app/" {
		t.Fatalf("normal login after the planted ones landed on %q", loc)
	}
	if resp, _ := hs.get(hs.browser, "/app/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("after login: %d", resp.StatusCode)
	}
}

func TestALongReturnPathIsCutToItsPathOrTheRoot(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"/short?x=1", "/short?x=1"},
		{"/p?" + strings.Repeat("q", 2000), "/p"},
		{"/" + strings.Repeat("p", 2000), "/"},
	} {
		if got := stateReturnPath(tc.in); got != tc.want {
			t.Errorf("stateReturnPath(%.20q...) = %.20q, want %.20q", tc.in, got, tc.want)
		}
	}
	hs := newHarness(t)
	if loc := hs.login(hs.browser, "/p?"+strings.Repeat("q", 1000)); loc != "/p" {
		t.Fatalf("login with a long query landed on %.40q, want /p", loc)
	}
}

func TestFourTabsLoggingInAtOnceAllSucceedAndAFifthEvictsTheOldest(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	var authURLs []string
	for i := range maxConcurrentLogins + 1 {
		authURLs = append(authURLs, hs.startLogin(hs.browser, fmt.Sprintf("/tab/%d", i)))
		time.Sleep(2 * time.Millisecond) // distinct start times
	}
	for i := maxConcurrentLogins; i >= 0; i-- {
		callback, err := hs.fake.Approve(authURLs[i], spotifytest.DefaultUserID)
		if err != nil {
			t.Fatal(err)
		}
		resp, _ := hs.get(hs.browser, callback)
		want := http.StatusFound
		if i == 0 {
			want = http.StatusBadRequest // the oldest made room for the fifth
		}
		if resp.StatusCode != want {
			t.Fatalf("tab %d: %d, want %d", i, resp.StatusCode, want)
		}
	}
}

// tlsRequest is a request as Caddy hands it over HTTPS.
func tlsRequest(target string, cookies ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "https://site.example"+target, nil)
	r.TLS = &tls.ConnectionState{}
	r.Header.Set("Accept", "text/html")
	for _, c := range cookies {
		r.Header.Add("Cookie", c)
	}
	return r
}

func TestOverHTTPSTheStateCookieIsHostOnlySoASiblingCannotPlantOne(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, func(h *Handler, c *spotifytest.Client) {
		h.CookieDomain = "site.example"
		c.RedirectURIs = append(c.RedirectURIs, "https://site.example"+DefaultCallbackPath)
	})
	// The attacker starts a login in their own browser.
	w := httptest.NewRecorder()
	hs.serve(w, tlsRequest("/"))
	if w.Code != http.StatusFound {
		t.Fatalf("login start: %d", w.Code)
	}
	cookies := w.Result().Cookies()
	if len(cookies) != 1 {
		t.Fatalf("login start set %d cookies, want 1", len(cookies))
	}
	sc := cookies[0]
	if !strings.HasPrefix(sc.Name, "__Host-") || !sc.Secure || sc.Path != "/" || sc.Domain != "" || !sc.HttpOnly {
		t.Fatalf("state cookie %q: Secure=%v Path=%q Domain=%q HttpOnly=%v, want __Host-, Secure, Path=/, no Domain",
			sc.Name, sc.Secure, sc.Path, sc.Domain, sc.HttpOnly)
	}
	callback, err := hs.fake.Approve(w.Header().Get("Location"), spotifytest.DefaultUserID)
	if err != nil {
		t.Fatal(err)
	}
	cb, _ := url.Parse(callback)
	// A sibling subdomain can set cookies with Domain=site.example, but
	// not __Host- ones: it plants the state under every other name.
	id := strings.TrimPrefix(sc.Name, "__Host-spotify_auth_state_")
	for _, name := range []string{"__Secure-spotify_auth_state_" + id, "spotify_auth_state_" + id} {
		w := httptest.NewRecorder()
		hs.serve(w, tlsRequest(cb.RequestURI(), name+"="+sc.Value))
		if w.Code != http.StatusBadRequest {
			t.Fatalf("callback with a state planted as %s: %d, want 400", name, w.Code)
		}
	}
	if n := hs.fake.Counts().CodeExchanges; n != 0 {
		t.Fatalf("%d code exchanges for planted states, want 0", n)
	}
	// The real cookie, set by this host, completes the login.
	w = httptest.NewRecorder()
	hs.serve(w, tlsRequest(cb.RequestURI(), sc.Name+"="+sc.Value))
	if w.Code != http.StatusFound || w.Header().Get("Location") != "/" {
		t.Fatalf("callback with the host's own state cookie: %d to %q", w.Code, w.Header().Get("Location"))
	}
}

func TestAStateCookieStaysSmallWithEveryScopeAndAnAwkwardReturnPath(t *testing.T) {
	t.Parallel()
	var all []string
	for _, scopes := range []map[string]bool{userScopes, partnerScopes} {
		for sc := range scopes {
			all = append(all, sc)
		}
	}
	hs := newHarness(t, func(h *Handler, _ *spotifytest.Client) {
		h.Scopes = all
		h.RequiredScopes = all
	})
	for _, rd := range []string{
		"/p?" + strings.Repeat("&", maxStateReturnLen-3), // HTML-escaped by encoding/json it would be 6 bytes each
		"/p?" + strings.Repeat("%22", 170),
		"/" + strings.Repeat("a", 2000),
	} {
		resp, _ := hs.get(hs.browser, EndpointPrefix+"login?rd="+url.QueryEscape(rd))
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("login start: %d", resp.StatusCode)
		}
		for _, c := range resp.Cookies() {
			if strings.Contains(c.Name, "_state_") && len(c.Value) > maxStateCookieLen {
				t.Fatalf("state cookie of %d bytes, want at most %d", len(c.Value), maxStateCookieLen)
			}
		}
	}
	n, size := stateCookiesIn(t, hs, hs.browser)
	t.Logf("worst case with every scope: %d state cookies, %d bytes", n, size)
	if size > maxConcurrentLogins*(maxStateCookieLen+64) {
		t.Fatalf("%d bytes of state cookies", size)
	}
}
