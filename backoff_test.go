package spotifyauth

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/caddyspotify/caddy-spotify-auth/internal/refresher"
	"github.com/caddyspotify/caddy-spotify-auth/internal/teststorage"
	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// Three instances sharing a storage: what one learns from Spotify (a 429
// and its Retry-After, a refresh that failed), the others honour without
// calling Spotify themselves.

func TestARateLimitIsHonouredByEveryInstance(t *testing.T) {
	t.Parallel()
	runAtOnce(t, storageKinds, storageKindName, func(t *testing.T, kind storageKind) {
		hs := newHarness(t, withStorage(kind.new(t)))
		hs.addInstance()
		hs.addInstance()
		browsers := []*http.Client{hs.browser, newBrowser(t), newBrowser(t), newBrowser(t)}
		for _, b := range browsers {
			hs.login(b, "/")
			hs.nearlyExpire(b)
		}
		fourth := browsers[3]
		hs.fake.InjectFault(spotifytest.EndpointToken, spotifytest.Fault{Status: http.StatusTooManyRequests, RetryAfter: "30"})
		before := hs.fake.Counts()

		// Each instance has a session due for refresh: the first asks
		// Spotify and is told to wait; the other two wait without asking.
		for i, b := range browsers[:3] {
			if resp, body := hs.get(b, "/app/", onInstance(i)...); resp.StatusCode != http.StatusOK {
				t.Fatalf("instance %d: status %d %s; the token still works, so it should be served", i, resp.StatusCode, body)
			}
		}
		// And a burst of 30 over the three, with a fourth due session.
		for i, r := range hs.burst(fourth, "/app/", 30, 3) {
			if r.status != http.StatusOK {
				t.Fatalf("burst request %d: status %d", i, r.status)
			}
		}
		// A login on the third instance does not exchange its code either.
		late := newBrowser(t)
		callback, err := hs.fake.Approve(hs.startLogin(late, "/", onInstance(2)...), spotifytest.DefaultUserID)
		if err != nil {
			t.Fatal(err)
		}
		if resp, body := hs.get(late, callback, onInstance(2)...); resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("callback during the back-off: status %d, Retry-After %q: %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
		after := hs.fake.Counts()
		calls := after.Refreshes - before.Refreshes + after.CodeExchanges - before.CodeExchanges
		if calls != 1 {
			t.Fatalf("%d token calls at Spotify during a 429 back-off (refreshes %d, code exchanges %d), want 1: the one that learnt it",
				calls, after.Refreshes-before.Refreshes, after.CodeExchanges-before.CodeExchanges)
		}
		t.Logf("3 instances, 4 due sessions (3 single requests + a burst of 30) and a login during a 429 back-off: %d token call at the fake (per-instance back-off: at least 3 refreshes and 1 code exchange)", calls)
	})
}

func TestAFailedRefreshPausesEveryInstance(t *testing.T) {
	t.Parallel()
	runAtOnce(t, storageKinds, storageKindName, func(t *testing.T, kind storageKind) {
		hs := newHarness(t, withStorage(kind.new(t)))
		hs.addInstance()
		hs.addInstance()
		// Long enough that nine in-process requests fit in it.
		const pause = 2 * time.Second
		for _, h := range append([]*Handler{hs.h}, hs.instances...) {
			cfg := refresherConfig(h)
			cfg.RetryPause = pause
			h.refresh = refresher.New(h.shared.refresh, cfg)
		}
		hs.login(hs.browser, "/")
		old := hs.nearlyExpire(hs.browser)
		hs.fake.InjectFault(spotifytest.EndpointToken, spotifytest.Fault{Status: http.StatusBadGateway})
		before := hs.fake.Counts().Refreshes
		var failedBy time.Time // the failed call (and its pause) began before this
		for i := range 3 {
			for range 3 {
				if resp, body := hs.get(hs.browser, "/app/", onInstance(i)...); resp.StatusCode != http.StatusOK {
					t.Fatalf("instance %d: status %d %s", i, resp.StatusCode, body)
				}
				if failedBy.IsZero() {
					failedBy = time.Now()
				}
			}
		}
		if n := hs.fake.Counts().Refreshes - before; n != 1 {
			t.Fatalf("%d refresh calls at Spotify from 3 instances within the pause after a failure, want 1 (took %v, pause %v)", n, time.Since(failedBy), pause)
		}
		// After the pause, with Spotify back, another instance refreshes.
		hs.fake.ClearFaults()
		time.Sleep(time.Until(failedBy.Add(pause + 100*time.Millisecond)))
		results := hs.burst(hs.browser, "/app/", 6, 3)
		for i, r := range results {
			if r.status != http.StatusOK || r.token == old.AccessToken || r.token != results[0].token {
				t.Fatalf("after the pause, request %d: status %d, token %.8s…", i, r.status, r.token)
			}
		}
		if n := hs.fake.Counts().Refreshes - before; n != 2 {
			t.Fatalf("%d refresh calls in all, want 2 (the failure, then one after the pause)", n)
		}
		t.Logf("3 instances, 9 requests within the pause after a failed refresh: 1 call at the fake; after it, 1 refresh for 6 requests")
	})
}

// TestOneInstanceSweepsPerInterval: sweeping published results costs in
// proportion to the active sessions, so of the instances sharing a
// storage one sweeps per sweepTurnInterval, not each of them every minute.
func TestOneInstanceSweepsPerInterval(t *testing.T) {
	t.Parallel()
	storage := teststorage.New(t.TempDir())
	hs := newHarness(t, withStorage(storage))
	b, _ := hs.addInstance()
	c, _ := hs.addInstance()
	ctx := context.Background()
	now := time.Now()
	lists := func() int { return storage.Calls()["List"] }
	swept := 0
	before := lists()
	for i, h := range []*Handler{hs.h, b, c, hs.h, b, c} {
		if h.maintenance.maintainOnce(ctx, now.Add(time.Duration(i)*time.Minute)) {
			swept++
		}
	}
	// Results, pauses, back-offs and the key sets' sweep records: 4 prefixes.
	if swept != 1 || lists()-before != 4 {
		t.Fatalf("6 maintenance rounds of 3 instances within %v: %d swept (%d List calls), want 1 (4 prefixes listed once)", sweepTurnInterval, swept, lists()-before)
	}
	if !c.maintenance.maintainOnce(ctx, now.Add(sweepTurnInterval+6*time.Minute)) {
		t.Fatal("no sweep once the interval had passed")
	}
}
