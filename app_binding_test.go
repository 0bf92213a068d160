package spotifyauth

import (
	"net/http"
	"strings"
	"testing"

	"github.com/caddyspotify/caddy-spotify-auth/internal/seal"
	"github.com/caddyspotify/caddy-spotify-auth/internal/testkit"
	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// TestASessionBelongsToOneApp: a staging site sharing production's
// storage (and so its generated key) or its cookie_secret, but pointed at
// another client or another Spotify, can neither be entered with
// production's cookies nor mint cookies production accepts.
func TestASessionBelongsToOneApp(t *testing.T) {
	t.Parallel()
	other := testkit.NewFake(t)
	for _, keys := range []struct {
		name string
		opts []harnessOpt
	}{
		{"with a shared cookie_secret", nil},
		{"with the key generated into shared storage", []harnessOpt{withGeneratedKeys()}},
	} {
		for _, app := range []struct {
			name   string
			change func(*Handler)
		}{
			{"another client_id", func(h *Handler) { h.ClientID = "staging-client" }},
			{"another Spotify (token, authorize and API URLs)", func(h *Handler) {
				h.TokenURL, h.AuthorizeURL, h.APIURL = other.TokenURL(), other.AuthorizeURL(), other.APIURL()
			}},
			{"another API URL only", func(h *Handler) { h.APIURL = other.APIURL() }},
		} {
			t.Run(keys.name+", "+app.name, func(t *testing.T) {
				hs := newHarness(t, keys.opts...)
				staging, _ := hs.sameConfig(app.change)
				hs.instances = append(hs.instances, staging)

				// A production session is no session for staging.
				hs.login(hs.browser, "/app/")
				before := hs.upstreamCount()
				resp, _ := hs.get(hs.browser, "/app/", onInstance(1)...)
				if resp.StatusCode != http.StatusFound || !strings.Contains(resp.Header.Get("Location"), "/authorize?") {
					t.Fatalf("staging with production's cookie: %d to %q, want a login", resp.StatusCode, resp.Header.Get("Location"))
				}
				if hs.upstreamCount() != before {
					t.Fatal("staging let production's cookie through")
				}
				// ...and production still takes it.
				if resp, _ := hs.get(hs.browser, "/app/"); resp.StatusCode != http.StatusOK {
					t.Fatalf("production with its own cookie: %d", resp.StatusCode)
				}

				// A session sealed by staging is no session for production.
				s := hs.session(hs.browser)
				sealed := staging.sealers().sessions.Seal(s.marshal(), staging.cookies.aad)
				if _, err := hs.h.sealers().sessions.Open(sealed, hs.h.cookies.aad); err == nil {
					t.Fatal("production opened a session sealed by staging")
				}

				// A login state from production's login is refused by
				// staging before any token exchange.
				c := newBrowser(t)
				callback, err := hs.fake.Approve(hs.startLogin(c, "/app/"), spotifytest.DefaultUserID)
				if err != nil {
					t.Fatal(err)
				}
				tokenCalls := hs.fake.Counts().CodeExchanges + other.Counts().CodeExchanges
				resp, _ = hs.get(c, callback, onInstance(1)...)
				if resp.StatusCode != http.StatusBadRequest {
					t.Fatalf("staging took production's login state: %d", resp.StatusCode)
				}
				if n := hs.fake.Counts().CodeExchanges + other.Counts().CodeExchanges; n != tokenCalls {
					t.Fatalf("a foreign state cost %d token calls", n-tokenCalls)
				}

				// Stored sessions and published refresh results too.
				for purpose, pair := range map[string][2]*seal.Sealer{
					"state":          {hs.h.sealers().states, staging.sealers().states},
					"stored session": {hs.h.sealers().stored, staging.sealers().stored},
					"refresh result": {hs.h.sealers().results, staging.sealers().results},
				} {
					if _, err := pair[0].Open(pair[1].Seal([]byte("x"), nil), nil); err == nil {
						t.Errorf("production opened a %s sealed by staging", purpose)
					}
				}
			})
		}
	}
}
