package spotifyauth

import (
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// TestRefreshAfterRefreshWithoutRotation: Spotify's refresh answers carry
// no refresh_token (since June 2026), so every refresh of a session sends
// the same refresh token. Each refresh must still reach Spotify and its
// new token the upstream; a result remembered for the first refresh must
// not answer the second.
func TestRefreshAfterRefreshWithoutRotation(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	hs.login(hs.browser, "/")
	var tokens []string
	for i := range 3 {
		hs.dueNow(hs.browser)
		if resp, body := apiGet(hs, hs.browser, "/app/"); resp.StatusCode != http.StatusOK {
			t.Fatalf("refresh %d: %d %s", i+1, resp.StatusCode, body)
		}
		tokens = append(tokens, hs.upstreamToken())
		if n := hs.fake.Counts().Refreshes; n != i+1 {
			t.Fatalf("after %d due tokens Spotify saw %d refreshes", i+1, n)
		}
	}
	if tokens[0] == tokens[1] || tokens[1] == tokens[2] {
		t.Fatal("a refresh passed on the token of the refresh before")
	}
	if hs.session(hs.browser).RefreshToken == "" {
		t.Fatal("the session lost its refresh token")
	}
}

// TestRefreshAfterRefreshThroughCaddy runs real Caddy processes (one, or
// two sharing storage) over at least four token lifetimes, with Spotify
// rotating refresh tokens, not rotating them (its default today), and
// switching between the two. Every token that reaches the upstream is
// alive at Spotify, and each token is refreshed exactly once.
func TestRefreshAfterRefreshThroughCaddy(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about 20 s; not in -short")
	}
	t.Parallel()
	bin := buildTestCaddy(t)
	const (
		lifetime = 4 * time.Second
		leeway   = 2 * time.Second
		runFor   = 4*lifetime + time.Second
	)
	type run struct {
		rotation  string
		instances int
	}
	var runs []run
	for _, rotation := range []string{"never", "always", "alternating"} {
		for _, instances := range []int{1, 2} {
			runs = append(runs, run{rotation, instances})
		}
	}
	runAtOnce(t, runs, func(r run) string { return fmt.Sprintf("rotation %s, %d instances", r.rotation, r.instances) }, func(t *testing.T, r run) {
		rotation, instances := r.rotation, r.instances
		fake := spotifytest.NewServer()
		t.Cleanup(fake.Close)
		fake.SetRotateRefreshTokensEvery(map[string]int{"never": 0, "always": 1, "alternating": 2}[rotation])
		procs := startInstances(t, bin, instances, fake, leeway, func(name string) string {
			return fmt.Sprintf(`respond /app/* "%s {http.request.header.Authorization}"`, name)
		})
		browser := processBrowser(t)
		fake.SetAccessTokenLifetime(lifetime)
		multiLogin(t, browser, fake, procs[0])

		seen := map[string]bool{}
		var mu sync.Mutex
		refreshes := 0
		check := func(p *caddyProcess) {
			status, body := p.get(t, browser, "/app/")
			_, tok, ok := strings.Cut(body, " Bearer ")
			if status != http.StatusOK || !ok {
				t.Errorf("%s: %d %q", p.name, status, body)
				return
			}
			if _, _, valid := fake.AccessTokenInfo(tok); !valid {
				t.Errorf("%s passed on a token Spotify no longer accepts (refresh %d)", p.name, refreshes)
			}
			mu.Lock()
			seen[tok] = true
			mu.Unlock()
		}
		for end := time.Now().Add(runFor); time.Now().Before(end); {
			// Each instance at once: the refresh that falls due is
			// raced for, as behind a load balancer.
			var wg sync.WaitGroup
			for _, p := range procs {
				wg.Add(1)
				go func() { defer wg.Done(); check(p) }()
			}
			wg.Wait()
			refreshes = fake.Counts().Refreshes
			time.Sleep(100 * time.Millisecond)
		}
		if t.Failed() {
			return
		}
		refreshes = fake.Counts().Refreshes
		if refreshes < int(runFor/lifetime) {
			t.Fatalf("%d refreshes at Spotify over %s of %s tokens, want at least %d", refreshes, runFor, lifetime, int(runFor/lifetime))
		}
		// The login's token and one per refresh, each refresh's
		// token used: no refresh was made twice or thrown away.
		if len(seen) != refreshes+1 {
			t.Fatalf("%d refreshes at Spotify but %d distinct tokens upstream, want one more token than refreshes", refreshes, len(seen))
		}
		t.Logf("%d refreshes over %s, %d tokens upstream, all alive at Spotify", refreshes, runFor, len(seen))
	})
}

// TestUpstreamRejectionsRefreshOnceEveryFewMinutesWithRotation: an
// upstream that answers 401 invalid_token to every request gets one
// refresh of the session, not one per request, though each refresh
// rotates the refresh token; on one instance and across two sharing
// storage.
func TestUpstreamRejectionsRefreshOnceEveryFewMinutesWithRotation(t *testing.T) {
	bin := buildTestCaddy(t)
	for _, instances := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d instances", instances), func(t *testing.T) {
			t.Parallel()
			fake := spotifytest.NewServer()
			t.Cleanup(fake.Close)
			fake.SetRotateRefreshTokens(true)
			procs := startInstances(t, bin, instances, fake, time.Minute, func(string) string {
				return "header /app/* WWW-Authenticate `Bearer realm=\"spotify\", error=\"invalid_token\"`\n\trespond /app/* 401"
			})
			browser := processBrowser(t)
			multiLogin(t, browser, fake, procs[0])
			fake.ResetCounts()
			for i := range 50 {
				if status, body := procs[i%instances].get(t, browser, "/app/"); status != http.StatusUnauthorized {
					t.Fatalf("request %d: %d %q, want the upstream's 401", i, status, body)
				}
			}
			if n := fake.Counts().Refreshes; n != 1 {
				t.Fatalf("50 requests the upstream refused caused %d refreshes, want 1", n)
			}
		})
	}
}

// TestAnEndedGrantIsCountedOnItsOwn: invalid_grant on refresh ends the
// session and counts it under sessions_ended_total, not as a failure.
func TestAnEndedGrantIsCountedOnItsOwn(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	hs.login(hs.browser, "/")
	hs.fake.RevokeRefreshTokens(spotifytest.DefaultUserID)
	hs.dueNow(hs.browser)
	if resp, _ := apiGet(hs, hs.browser, "/app/"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("%d, want 401", resp.StatusCode)
	}
	if n := hs.metric("caddy_spotify_auth_sessions_ended_total", "reason", endedRefreshRevoked); n != 1 {
		t.Fatalf("sessions_ended_total{reason=%q} = %v, want 1", endedRefreshRevoked, n)
	}
}

// TestSessionsLongerThanSpotifysGrantsWarn: Spotify ends refresh tokens 6
// months after consent, so a longer session_lifetime cannot hold.
func TestSessionsLongerThanSpotifysGrantsWarn(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		lifetime time.Duration
		appMode  bool
		warn     bool
	}{
		{30 * 24 * time.Hour, false, false},
		{spotifyGrantLife, false, false},
		{365 * 24 * time.Hour, false, true},
		{365 * 24 * time.Hour, true, false}, // no users, no refresh tokens
	} {
		core, logs := observer.New(zap.WarnLevel)
		h := &Handler{SessionLifetime: caddy.Duration(tc.lifetime),
			requestSettings: requestSettings{appMode: tc.appMode}, lifecycle: lifecycle{logger: zap.New(core)}}
		warnPastSpotifyLimits(h)
		if got := logs.FilterMessageSnippet("6 months").Len() == 1; got != tc.warn {
			t.Errorf("session_lifetime %s (app mode %v): warned %v, want %v", tc.lifetime, tc.appMode, got, tc.warn)
		}
	}
}

// processBrowser is a browser for Caddy processes: cookies ignore ports,
// so instances on one host are one site to it; redirects are left to the
// test. Its own transport: parallel tests closing the default
// transport's idle connections must not break its requests.
func processBrowser(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Jar: jar, Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// startInstances starts n Caddy processes (A, B, ...) sharing one
// file_system storage, registered at the fake, and waits until they serve.
func startInstances(t *testing.T, bin string, n int, fake *spotifytest.Server, leeway time.Duration, upstream func(name string) string) []*caddyProcess {
	t.Helper()
	ports := freePorts(t, n)
	var redirects []string
	for _, p := range ports {
		redirects = append(redirects, fmt.Sprintf("http://127.0.0.1:%d%s", p, DefaultCallbackPath))
	}
	fake.AddClient(spotifytest.Client{ID: testClientID, RedirectURIs: redirects})
	storage := "file_system " + filepath.Join(t.TempDir(), "storage")
	var procs []*caddyProcess
	for i, port := range ports {
		name := string(rune('A' + i))
		procs = append(procs, startCaddyWith(t, bin, name, port, storage, fake, leeway, "", upstream(name)))
	}
	for _, p := range procs {
		p.waitReady(t)
	}
	return procs
}
