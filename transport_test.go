package spotifyauth

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// spotifyFront is a reverse proxy in front of the fake Spotify that
// counts the connections clients hold open to it.
type spotifyFront struct {
	*httptest.Server
	proxy atomic.Pointer[httputil.ReverseProxy]
	mu    sync.Mutex
	open  map[net.Conn]bool
}

// newFrontHarness is a harness whose handler reaches the fake's token
// endpoint and Web API only through a counting front.
func newFrontHarness(t *testing.T) (*harness, *spotifyFront) {
	t.Helper()
	f := &spotifyFront{open: map[net.Conn]bool{}}
	f.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.proxy.Load().ServeHTTP(w, r)
	}))
	f.Config.ConnState = func(c net.Conn, s http.ConnState) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if s == http.StateClosed || s == http.StateHijacked {
			delete(f.open, c)
		} else {
			f.open[c] = true
		}
	}
	f.Start()
	t.Cleanup(f.Close)
	hs := newHarness(t, func(h *Handler, _ *spotifytest.Client) {
		h.TokenURL = f.URL + "/api/token"
		h.APIURL = f.URL
	})
	target, err := url.Parse(hs.fake.URL)
	if err != nil {
		t.Fatal(err)
	}
	f.proxy.Store(httputil.NewSingleHostReverseProxy(target))
	return hs, f
}

func (f *spotifyFront) openConns() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.open)
}

// waitOpenConns waits (briefly: on loopback a closed connection reaches
// the server at once) for the count to come down to want.
func (f *spotifyFront) waitOpenConns(want int) int {
	deadline := time.Now().Add(3 * time.Second)
	for f.openConns() > want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	return f.openConns()
}

func TestAReloadLeavesNoConnectionOfTheOldConfigToSpotify(t *testing.T) {
	t.Parallel()
	hs, front := newFrontHarness(t)
	hs.login(hs.browser, "/") // code exchange and /v1/me: connections kept alive
	if n := front.openConns(); n == 0 {
		t.Fatal("no connection to Spotify after a login: the front counts nothing")
	}

	// A reload: the new config is provisioned, then the old cleaned up.
	old := hs.h
	hs.h = provision(t, &Handler{ClientID: testClientID, CookieSecrets: []string{secretA},
		AuthorizeURL: hs.fake.AuthorizeURL(), TokenURL: front.URL + "/api/token", APIURL: front.URL,
		Timeout: caddy.Duration(7 * time.Second)})
	if err := old.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if n := front.waitOpenConns(0); n != 0 {
		t.Fatalf("%d connections of the old config to Spotify still open after its Cleanup", n)
	}

	// The new config calls Spotify on its own connections.
	s := hs.session(hs.browser)
	s.TokenExpires = time.Now().Add(-time.Minute).Unix()
	hs.setSession(hs.browser, s)
	if resp, _ := hs.get(hs.browser, "/app/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("after the reload: %d", resp.StatusCode)
	}
	if n := hs.fake.Counts().Refreshes; n != 1 {
		t.Fatalf("%d refreshes, want 1", n)
	}
	if n := front.openConns(); n == 0 {
		t.Fatal("the new config kept no connection to Spotify")
	}
}

func TestCallsToSpotifyAfterCleanupLeaveNoConnectionOpen(t *testing.T) {
	t.Parallel()
	hs, front := newFrontHarness(t)
	hs.login(hs.browser, "/")
	if err := hs.h.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if n := front.waitOpenConns(0); n != 0 {
		t.Fatalf("%d connections open after Cleanup", n)
	}

	// A request the old server was still finishing when its config was
	// cleaned up needs a refresh: it is served, and its connection goes.
	s := hs.session(hs.browser)
	s.TokenExpires = time.Now().Add(-time.Minute).Unix()
	hs.setSession(hs.browser, s)
	if resp, _ := hs.get(hs.browser, "/app/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("request after Cleanup: %d, want 200", resp.StatusCode)
	}
	if n := hs.fake.Counts().Refreshes; n != 1 {
		t.Fatalf("%d refreshes, want 1", n)
	}
	// Without closing again, the refresh's connection would stay in the
	// idle pool until it timed out (90 s).
	if n := front.waitOpenConns(0); n != 0 {
		t.Fatalf("%d connections to Spotify open after a call of a cleaned-up config ended", n)
	}
}
