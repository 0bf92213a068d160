package spotifyauth_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyspotify/caddy-spotify-auth/spotifyauthtest"
	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// forwardedHeaders are the headers the plugin forwards: the token header
// and every X-Spotify-* header.
func forwardedHeaders(h http.Header, tokenHeader string) http.Header {
	out := http.Header{}
	for name, vs := range h {
		if name == tokenHeader || strings.HasPrefix(name, "X-Spotify-") {
			out[name] = vs
		}
	}
	return out
}

// TestSpotifytestForwardedMatchesWhatThePluginForwards proves that the
// request spotifytest builds for upstream unit tests carries exactly the
// headers the real plugin, in a real Caddy, hands the upstream: same
// names, same values (the display name and a non-ASCII email encoded the
// same way), and an expiry within the second the token was issued in.
func TestSpotifytestForwardedMatchesWhatThePluginForwards(t *testing.T) {
	tests := []struct {
		name        string
		tokenHeader string
		directives  []string
		adjust      func(*spotifytest.Forwarded)
	}{
		{name: "default headers", tokenHeader: "Authorization"},
		{name: "token_header and user_headers off", tokenHeader: "X-Spotify-Token",
			directives: []string{"token_header X-Spotify-Token", "user_headers off"},
			adjust: func(f *spotifytest.Forwarded) {
				f.TokenHeader, f.NoUserHeaders = "X-Spotify-Token", true
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := spotifytest.NewServer()
			defer fake.Close()
			fake.AddUser(spotifytest.User{ID: "zoe", DisplayName: "Zoë + Ünïcode/Test \"quoted\"", Email: "zoë@example.com", Product: "premium"})

			var mu sync.Mutex
			var got http.Header
			app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				got = r.Header.Clone()
				mu.Unlock()
			}))
			defer app.Close()
			site := spotifyauthtest.Start(t, fake, app.URL,
				spotifyauthtest.WithScopes("user-read-email", "user-read-private", "user-top-read"),
				spotifyauthtest.WithDirectives(tt.directives...))

			resp, err := site.Client(t, "zoe").Get(site.URL + "/x")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			mu.Lock()
			plugin := forwardedHeaders(got, tt.tokenHeader)
			mu.Unlock()

			token := strings.TrimPrefix(plugin.Get(tt.tokenHeader), "Bearer ")
			f, ok := fake.ForwardedFor(token)
			if !ok {
				t.Fatalf("the fake does not know the forwarded token (headers %v)", plugin)
			}
			if tt.adjust != nil {
				tt.adjust(&f)
			}
			req := httptest.NewRequest("GET", "/x", nil)
			f.Apply(req)
			kit := forwardedHeaders(req.Header, tt.tokenHeader)

			pluginExp, err1 := time.Parse(time.RFC3339, plugin.Get("X-Spotify-Token-Expires"))
			kitExp, err2 := time.Parse(time.RFC3339, kit.Get("X-Spotify-Token-Expires"))
			if err1 != nil || err2 != nil || pluginExp.Sub(kitExp).Abs() > 2*time.Second {
				t.Errorf("X-Spotify-Token-Expires: plugin %q, kit %q", plugin.Get("X-Spotify-Token-Expires"), kit.Get("X-Spotify-Token-Expires"))
			}
			plugin.Del("X-Spotify-Token-Expires")
			kit.Del("X-Spotify-Token-Expires")
			for name := range plugin {
				if strings.Join(plugin[name], "\n") != strings.Join(kit[name], "\n") {
					t.Errorf("%s: plugin %q, kit %q", name, plugin[name], kit[name])
				}
			}
			for name := range kit {
				if _, ok := plugin[name]; !ok {
					t.Errorf("the kit sets %s = %q, the plugin does not", name, kit[name])
				}
			}
			if tt.adjust == nil && (plugin.Get("X-Spotify-User-Name") == "" || plugin.Get("X-Spotify-User-Email") == "") {
				t.Errorf("the identity headers are missing: %v", plugin)
			}
		})
	}
}
