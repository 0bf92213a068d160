package spotifyauth_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/caddyspotify/caddy-spotify-auth/internal/testkit"
	"github.com/caddyspotify/caddy-spotify-auth/spotifyauthtest"
	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// Spellings of the plugin's endpoints that Caddy's path matcher takes for
// them (it decodes, cleans and ignores case) but a front proxy's rule for
// the literal path does not: each must be 404, never the endpoint.
var endpointLookAlikes = []struct{ method, path string }{
	{"GET", "/oauth2/spotify/%61uth"},
	{"GET", "/oauth2%2Fspotify%2Fauth"},
	{"GET", "/%6fauth2/spotify/auth"},
	{"GET", "/oauth2/spotify/./auth"},
	{"GET", "/oauth2/spotify//auth"},
	{"GET", "/app/../oauth2/spotify/auth"},
	{"GET", "/OAUTH2/spotify/auth"},
	{"GET", "/oauth2/spotify/AUTH"},
	{"GET", "/oauth2/spotify/auth/"},
	{"GET", "/oauth2/spotify/%74oken"},
	{"GET", "/oauth2/spotify/token%2F"},
	{"GET", "/oauth2/spotify/userinf%6f"},
	{"GET", "/oauth2/spotify/logi%6e?rd=/"},
	{"GET", "/oauth2/spotify/callbac%6b?state=x&code=y"},
	{"POST", "/oauth2/spotify/logou%74"},
	{"GET", "/oauth2/spotify/"},
	{"GET", "/oauth2/spotify"},
}

// TestEndpointsAnswerOnlyAtTheirExactPathThroughCaddy: through a real
// Caddy, with the gate on the whole site and behind a matcher, every
// endpoint answers at its unencoded path only; a look-alike spelling gets
// 404, no token, no login, no logout, no call to Spotify. Behind a
// matcher, what Caddy's matcher does not give the plugin at all goes to
// the app, ungated and without a token.
func TestEndpointsAnswerOnlyAtTheirExactPathThroughCaddy(t *testing.T) {
	for _, matcher := range []string{"", "/app/*"} {
		t.Run("matcher "+matcher, func(t *testing.T) {
			var upstream, gotToken atomic.Int32
			app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				upstream.Add(1)
				if r.Header.Get("Authorization") != "" {
					gotToken.Add(1)
				}
				_, _ = w.Write([]byte("app page"))
			}))
			defer app.Close()
			fake := testkit.NewFake(t)
			opts := []spotifyauthtest.Option{spotifyauthtest.WithScopes("user-read-email"),
				spotifyauthtest.WithDirectives("auth_endpoint", "token_endpoint")}
			if matcher != "" {
				opts = append(opts, spotifyauthtest.WithMatcher(matcher))
			}
			site := spotifyauthtest.Start(t, fake, app.URL, opts...)
			c := site.Client(t, spotifytest.DefaultUserID)
			sameOrigin := map[string]string{"Sec-Fetch-Site": "same-origin", "Accept": "application/json", "Origin": site.URL}

			resp, _ := doWith(t, c, "GET", site.URL+"/oauth2/spotify/auth", sameOrigin)
			token := strings.TrimPrefix(resp.Header.Get("Authorization"), "Bearer ")
			if resp.StatusCode != http.StatusOK || token == "" {
				t.Fatalf("the auth endpoint at its path: %d, token given %v", resp.StatusCode, token != "")
			}
			for _, exact := range []string{"/oauth2/spotify/token", "/oauth2/spotify/userinfo"} {
				if resp, body := doWith(t, c, "GET", site.URL+exact, sameOrigin); resp.StatusCode != http.StatusOK {
					t.Fatalf("%s: %d %s", exact, resp.StatusCode, body)
				}
			}
			fake.ResetCounts()
			upstream.Store(0)

			for _, la := range endpointLookAlikes {
				resp, body := doWith(t, c, la.method, site.URL+la.path, sameOrigin)
				ungated := matcher != "" && resp.StatusCode == http.StatusOK && body == "app page"
				if resp.StatusCode != http.StatusNotFound && !ungated {
					t.Errorf("%s %s: %d, want 404", la.method, la.path, resp.StatusCode)
				}
				assertNoToken(t, resp, body, token)
			}
			if n := upstream.Load(); n != 0 && matcher == "" {
				t.Errorf("%d look-alikes reached the app", n)
			}
			if n := gotToken.Load(); n != 0 {
				t.Errorf("%d look-alikes reached the app with a token", n)
			}
			if n := fake.Counts(); n != (spotifytest.Counts{}) {
				t.Errorf("look-alikes cost Spotify %+v", n)
			}
			if resp, body := doWith(t, c, "GET", site.URL+"/oauth2/spotify/userinfo", sameOrigin); resp.StatusCode != http.StatusOK {
				t.Errorf("after the look-alike logout, the session is gone: %d %s", resp.StatusCode, body)
			}
		})
	}
}

func doWith(t *testing.T, c *http.Client, method, u string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return testkit.Do(t, c, req)
}
