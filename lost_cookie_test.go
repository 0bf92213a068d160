package spotifyauth

import (
	"net/http"
	"testing"
	"time"

	"github.com/caddyspotify/caddy-spotify-auth/internal/refresher"
)

// TestALostRefreshedCookieDoesNotEndTheSession: Spotify rotates refresh
// tokens, so a browser that never got the refreshed cookie comes back
// with a refresh token that is dead at Spotify. More than a minute later
// (the old window; on the coordinators' clock, moved ahead) it still gets
// in, on this instance and another, and Spotify saw one refresh.
func TestALostRefreshedCookieDoesNotEndTheSession(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, withLeeway(30*time.Second))
	hs.fake.SetRotateRefreshTokens(true)
	hs.fake.SetAccessTokenLifetime(2 * time.Minute)
	hs.addInstance()
	hs.login(hs.browser, "/")
	old := hs.dueNow(hs.browser)

	if resp, _ := apiGet(hs, hs.browser, "/app/"); resp.StatusCode != http.StatusOK || !setCookieNamed(resp, "spotify_auth") {
		t.Fatalf("refresh: %d", resp.StatusCode)
	}
	refreshed := hs.upstreamToken()
	// The answer, and its cookie, never reached the browser.
	setCookieIn(t, hs, hs.browser, "spotify_auth", old)
	if n := hs.fake.Counts().Refreshes; n != 1 {
		t.Fatalf("%d refreshes, want 1", n)
	}

	later := refresher.MinRemembered + time.Second
	hs.refreshClockAhead(later)
	for instance := range 2 {
		lost := newBrowser(t)
		setCookieIn(t, hs, lost, "spotify_auth", old)
		req, _ := http.NewRequest(http.MethodGet, hs.url("/app/"), nil)
		req.Header.Set("Accept", "application/json")
		if instance > 0 {
			req.Header.Set("X-Test-Instance", "1") // separate memory, same storage
		}
		resp, _ := hs.do(lost, req)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("the old cookie on instance %d after %s: %d, want 200", instance, later, resp.StatusCode)
		}
		if got := hs.upstreamToken(); got != refreshed {
			t.Fatalf("instance %d passed %q, want the refreshed token", instance, got)
		}
		if _, _, valid := hs.fake.AccessTokenInfo(refreshed); !valid {
			t.Fatal("the refreshed token is not valid at Spotify")
		}
	}
	if n := hs.fake.Counts().Refreshes; n != 1 {
		t.Fatalf("%d refreshes at Spotify, want 1", n)
	}
}

// TestALostCookieFollowsTheRefreshesItsCopyMadeSince: the browser that got
// the refreshed cookie refreshed again; the one that lost it comes back
// with the first refresh token and gets the newest session, with no call
// to Spotify.
func TestALostCookieFollowsTheRefreshesItsCopyMadeSince(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	hs.fake.SetRotateRefreshTokens(true)
	hs.login(hs.browser, "/")
	old := hs.dueNow(hs.browser)
	oldSess := hs.session(hs.browser)
	if resp, _ := apiGet(hs, hs.browser, "/app/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("first refresh: %d", resp.StatusCode)
	}
	// The first result is now due too, and the browser that kept the
	// cookie refreshes again.
	first := hs.session(hs.browser)
	first.TokenExpires = time.Now().Add(time.Minute).Unix()
	hs.h.refresh.Remember(tokensOf(oldSess), tokensOf(first))
	hs.dueNow(hs.browser)
	if resp, _ := apiGet(hs, hs.browser, "/app/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("second refresh: %d", resp.StatusCode)
	}
	newest := hs.upstreamToken()
	if hs.fake.Counts().Refreshes != 2 {
		t.Fatalf("%d refreshes, want 2", hs.fake.Counts().Refreshes)
	}

	lost := newBrowser(t)
	setCookieIn(t, hs, lost, "spotify_auth", old)
	resp, _ := apiGet(hs, lost, "/app/")
	if resp.StatusCode != http.StatusOK || hs.upstreamToken() != newest {
		t.Fatalf("the lost cookie: %d with %q, want 200 with the newest token", resp.StatusCode, hs.upstreamToken())
	}
	if n := hs.fake.Counts().Refreshes; n != 2 {
		t.Fatalf("%d refreshes, want 2", n)
	}
	if got := hs.session(lost); got.RefreshToken != hs.session(hs.browser).RefreshToken {
		t.Fatal("the lost browser did not get the newest session")
	}
}
