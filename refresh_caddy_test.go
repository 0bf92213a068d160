package spotifyauth_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyspotify/caddy-spotify-auth/internal/testkit"
	"github.com/caddyspotify/caddy-spotify-auth/spotifyauthtest"
	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// TestAnEndedGrantCostsTheUserOneClick: Spotify ends refresh tokens 6
// months after consent (invalid_grant). Through a real Caddy, the session
// then ends on every route of the plugin: a page load goes straight to
// Spotify's consent and, once approved, back to the page it asked for; a
// script, a web_api call and the auth endpoint get 401 with a login_url.
func TestAnEndedGrantCostsTheUserOneClick(t *testing.T) {
	fake := testkit.NewFake(t)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("app " + r.URL.RequestURI()))
	}))
	t.Cleanup(app.Close)
	site := spotifyauthtest.Start(t, fake, app.URL,
		spotifyauthtest.WithDirectives("web_api /spotify-api", "auth_endpoint"))
	// Tokens due at once (the default leeway is 5 minutes): the next
	// request of a session refreshes, 6 months after the consent on
	// Spotify's clock, in vain.
	fake.SetAccessTokenLifetime(time.Minute)
	endedGrant := func(t *testing.T) *http.Client {
		c := site.Client(t, spotifytest.DefaultUserID)
		fake.Advance(spotifytest.DefaultRefreshTokenLifetime + time.Hour)
		noFollow := *c
		noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		return &noFollow
	}
	get := func(t *testing.T, c *http.Client, path string, hdr ...string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, site.URL+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		return testkit.Do(t, c, req)
	}
	cleared := func(resp *http.Response) bool {
		for _, sc := range resp.Header.Values("Set-Cookie") {
			if strings.HasPrefix(sc, "spotify_auth=;") && strings.Contains(sc, "Max-Age=0") {
				return true
			}
		}
		return false
	}

	t.Run("a page load", func(t *testing.T) {
		c := endedGrant(t)
		resp, body := get(t, c, "/deep/page?tab=2", "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
		if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), fake.AuthorizeURL()) {
			t.Fatalf("%d to %q (%s), want 302 straight to Spotify's consent", resp.StatusCode, resp.Header.Get("Location"), body)
		}
		if !cleared(resp) {
			t.Error("the ended session's cookie is not cleared")
		}
		req, _ := http.NewRequest(http.MethodGet, site.URL+"/deep/page?tab=2", nil)
		req.Header.Set("Accept", "text/html")
		back, err := fake.LogIn(c, req, spotifytest.DefaultUserID)
		if err != nil {
			t.Fatal(err)
		}
		back.Body.Close()
		if back.StatusCode != http.StatusFound || back.Header.Get("Location") != "/deep/page?tab=2" {
			t.Fatalf("after consent: %d to %q, want back to /deep/page?tab=2", back.StatusCode, back.Header.Get("Location"))
		}
	})

	for _, tc := range []struct {
		name, path string
		hdr        []string
	}{
		{"a script", "/deep/data", []string{"Accept", "application/json"}},
		{"a web_api call", "/spotify-api/v1/me", []string{"Accept", "application/json", "Sec-Fetch-Site", "same-origin"}},
		{"the auth endpoint", "/oauth2/spotify/auth", []string{"X-Original-URI", "/deep/page"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := endedGrant(t)
			before := fake.Counts().Refreshes
			resp, body := get(t, c, tc.path, tc.hdr...)
			if resp.StatusCode != http.StatusUnauthorized || !cleared(resp) {
				t.Fatalf("%d %s (cookie cleared: %v), want 401 and the session ended", resp.StatusCode, body, cleared(resp))
			}
			if fake.Counts().Refreshes != before+1 {
				t.Fatal("no refresh was tried")
			}
			var answer struct {
				LoginURL string `json:"login_url"`
			}
			if tc.path != "/oauth2/spotify/auth" {
				if err := json.Unmarshal([]byte(body), &answer); err != nil || !strings.Contains(answer.LoginURL, "/oauth2/spotify/login") {
					t.Fatalf("body %s: want JSON with a login_url", body)
				}
			}
			if !strings.Contains(resp.Header.Get("WWW-Authenticate"), "login_url=") {
				t.Errorf("WWW-Authenticate %q, want the login_url", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
}
