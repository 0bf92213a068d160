package spotifyauth

import (
	"net/http"
	"testing"
	"time"

	"github.com/caddyspotify/caddy-spotify-auth/internal/storedsession"
	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

func TestReplayingACookieSessionMigratesItOnce(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	hs.login(hs.browser, "/")
	old := cookieIn(t, hs, hs.browser, "spotify_auth")
	hs.h, _ = hs.sameConfig(func(h *Handler) { h.SessionStore = sessionStoreStorage })

	// A client that ignores Set-Cookie sends the cookie-mode session
	// again and again.
	var moved string
	for i := range 30 {
		setCookieIn(t, hs, hs.browser, "spotify_auth", old)
		if resp, _ := hs.get(hs.browser, "/app/"); resp.StatusCode != http.StatusOK {
			t.Fatalf("replay %d: status %d", i, resp.StatusCode)
		}
		now := cookieIn(t, hs, hs.browser, "spotify_auth")
		if now == old {
			t.Fatalf("replay %d: the cookie was not moved to storage", i)
		}
		moved = now
	}
	n := countStoredSessions(t, hs.h.storage)
	t.Logf("stored sessions after 30 replays of one cookie-mode session: %d", n)
	if n != 1 {
		t.Fatalf("%d stored sessions after 30 replays, want 1", n)
	}
	// The stored session is the one in use: a refresh through the moved
	// cookie is what a later replay gets.
	setCookieIn(t, hs, hs.browser, "spotify_auth", moved)
	forgetRefreshes(t, hs.h)
	hs.nearlyExpire(hs.browser)
	if resp, _ := hs.get(hs.browser, "/app/"); resp.StatusCode != http.StatusOK {
		t.Fatal("moved session refused")
	}
	fresh := hs.session(hs.browser).AccessToken
	setCookieIn(t, hs, hs.browser, "spotify_auth", old)
	if resp, _ := hs.get(hs.browser, "/app/"); resp.StatusCode != http.StatusOK {
		t.Fatal("replay after refresh refused")
	}
	if got := hs.lastUpstream().Header.Get("Authorization"); got != "Bearer "+fresh {
		t.Fatal("a replay of the cookie-mode session overwrote the refreshed stored session")
	}
	if n := countStoredSessions(t, hs.h.storage); n != 1 {
		t.Fatalf("%d stored sessions, want 1", n)
	}
}

func TestAUsersStoredSessionsAreCappedOldestFirst(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, withStoredSessions(), func(h *Handler, _ *spotifytest.Client) {
		h.LoginRateLimit = &LoginRateLimit{PerClient: 100}
	})
	browsers := make([]*http.Client, storedsession.MaxPerUser)
	for i := range browsers {
		browsers[i] = newBrowser(t)
		hs.login(browsers[i], "/")
	}
	// Make browsers 3 and 7 the oldest logins.
	for age, i := range []int{3, 7} {
		s := hs.session(browsers[i])
		s.Created = time.Now().Add(-time.Duration(2-age) * time.Hour).Unix()
		hs.setSession(browsers[i], s)
	}
	for range 2 {
		hs.login(newBrowser(t), "/")
	}
	n := countStoredSessions(t, hs.h.storage)
	t.Logf("stored sessions of one user after %d logins: %d", storedsession.MaxPerUser+2, n)
	if n != storedsession.MaxPerUser {
		t.Fatalf("%d stored sessions for one user, want the cap %d", n, storedsession.MaxPerUser)
	}
	for i, c := range browsers {
		want := http.StatusOK
		if i == 3 || i == 7 {
			want = http.StatusFound // ended: sent to log in
		}
		if resp, _ := hs.get(c, "/app/"); resp.StatusCode != want {
			t.Fatalf("browser %d: %d, want %d", i, resp.StatusCode, want)
		}
	}
}
