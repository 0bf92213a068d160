package spotifyauth

import (
	"net/http"
	"testing"
	"time"

	"github.com/caddyspotify/caddy-spotify-auth/internal/refresher"
	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

func TestAnOutageWithAnExpiredTokenCallsSpotifyAtMostOncePerRetryInterval(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	hs.login(hs.browser, "/")
	s := hs.session(hs.browser)
	s.TokenExpires = time.Now().Add(-time.Minute).Unix()
	hs.setSession(hs.browser, s)
	hs.fake.InjectFault(spotifytest.EndpointToken, spotifytest.Fault{Status: http.StatusInternalServerError})

	// A client retrying without pause during the outage.
	for i := range 20 {
		if resp, _ := apiGet(hs, hs.browser, "/api/x"); resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("request %d during the outage: %d, want 503", i, resp.StatusCode)
		}
	}
	if n := hs.fake.Counts().Refreshes; n != 1 {
		t.Fatalf("%d refresh calls for 20 requests within %s, want 1", n, refresher.ExpiredRetryInterval)
	}

	// Spotify is back: after the interval the session refreshes and works.
	hs.fake.ClearFaults()
	time.Sleep(refresher.ExpiredRetryInterval)
	if resp, _ := apiGet(hs, hs.browser, "/api/x"); resp.StatusCode != http.StatusOK {
		t.Fatalf("after the outage: %d, want 200", resp.StatusCode)
	}
	if n := hs.fake.Counts().Refreshes; n != 2 {
		t.Fatalf("%d refresh calls, want 2", n)
	}
}

func TestATokenInItsLastSecondsIsNotPassedOnWhenItsRefreshFails(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	hs.login(hs.browser, "/")
	s := hs.session(hs.browser)
	s.TokenExpires = time.Now().Unix() + 1 // alive, but not for an upstream's call
	hs.setSession(hs.browser, s)
	hs.fake.InjectFault(spotifytest.EndpointToken, spotifytest.Fault{Status: http.StatusInternalServerError})

	if resp, _ := apiGet(hs, hs.browser, "/api/x"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", resp.StatusCode)
	}
	if n := hs.upstreamCount(); n != 0 {
		t.Fatalf("%d requests reached the upstream with a token about to die", n)
	}
}
