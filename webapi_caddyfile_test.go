package spotifyauth

import (
	"encoding/json"
	"strings"
	"testing"
)

// siteRoutes returns the routes of the first site of an adapted config
// (inside its subroute), each as its matchers and handlers.
func siteRoutes(t *testing.T, cfgJSON string) []struct {
	Match  []map[string]json.RawMessage `json:"match"`
	Handle []map[string]json.RawMessage `json:"handle"`
} {
	t.Helper()
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Routes []struct {
						Handle []struct {
							Routes json.RawMessage `json:"routes"`
						} `json:"handle"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		t.Fatal(err)
	}
	var routes []struct {
		Match  []map[string]json.RawMessage `json:"match"`
		Handle []map[string]json.RawMessage `json:"handle"`
	}
	for _, srv := range cfg.Apps.HTTP.Servers {
		if err := json.Unmarshal(srv.Routes[0].Handle[0].Routes, &routes); err != nil {
			t.Fatal(err)
		}
	}
	return routes
}

// TestWebAPICaddyfileRoute: `web_api` adds a route ahead of the gate's,
// whatever the gate's matcher: the gate in web_api mode, then
// reverse_proxy to api_url with the prefix stripped, the API's Host, no
// X-Forwarded-* and TLS for https.
func TestWebAPICaddyfileRoute(t *testing.T) {
	t.Parallel()
	for _, matcher := range []string{"", "/*", "/app/*"} {
		cfg, err := adapt(t, `example.com {
	spotify_auth `+matcher+` {
		client_id abc
		web_api /spotify-api
		auth_endpoint
	}
	reverse_proxy localhost:3000
}`)
		if err != nil {
			t.Fatal(err)
		}
		routes := siteRoutes(t, cfg)
		if len(routes) < 2 { // routes without matchers are merged
			t.Fatalf("matcher %q: %d routes", matcher, len(routes))
		}
		api := routes[0]
		if got := string(api.Match[0]["path"]); len(api.Match) != 1 || got != `["/spotify-api/*"]` {
			t.Errorf("matcher %q: first route matches %s, want the web_api prefix", matcher, got)
		}
		if len(api.Handle) != 2 || string(api.Handle[0]["handler"]) != `"spotify_auth"` || string(api.Handle[0]["web_api"]) != "true" ||
			string(api.Handle[0]["web_api_prefix"]) != `"/spotify-api"` ||
			api.Handle[0]["auth_endpoint"] != nil || string(api.Handle[1]["handler"]) != `"reverse_proxy"` {
			t.Fatalf("matcher %q: web_api route handlers %v", matcher, api.Handle)
		}
		proxy, _ := json.Marshal(api.Handle[1])
		for _, want := range []string{`"dial":"api.spotify.com:443"`, `"strip_path_prefix":"/spotify-api"`,
			`"Host":["api.spotify.com"]`, `"X-Forwarded-For"`, `"tls":{}`, `"response_header_timeout":10000000000`} {
			if !strings.Contains(string(proxy), want) {
				t.Errorf("reverse_proxy %s lacks %s", proxy, want)
			}
		}
		gate := routes[1]
		if string(gate.Handle[0]["handler"]) != `"spotify_auth"` || gate.Handle[0]["web_api"] != nil || gate.Handle[0]["web_api_prefix"] != nil {
			t.Errorf("matcher %q: second route is not the site's gate: %v", matcher, gate.Handle)
		}
		if matcher != "" && !strings.Contains(string(gate.Match[1]["path"]), `"/oauth2/spotify/auth"`) {
			t.Errorf("matcher %q: the gate's endpoints lack /oauth2/spotify/auth: %s", matcher, gate.Match[1]["path"])
		}
	}
}

func TestWebAPIAndAuthEndpointConfigErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ lines, want string }{
		{"web_api spotify-api", "want a path"},
		{"web_api /spotify-api/", "want a path"},
		{"web_api /api/*", "want a path"},
		{"web_api /oauth2", "overlaps"},
		{"web_api /oauth2/spotify/x", "overlaps"},
		{"web_api /OAUTH2", "overlaps"},
		{"web_api /OAuth2/Spotify/token", "overlaps"},
		{"web_api /spotify-api\nredirect_uri /spotify-api/callback", "overlaps the callback"},
		{"web_api /Spotify-API\nredirect_uri https://example.com/spotify-api/cb", "overlaps the callback"},
		{"web_api /a\napi_url http://127.0.0.1:9/base", "must have no path"},
		{"web_api /a\napi_url {env.API}", "literal URL"},
		{"client_secret s\nmode app\nweb_api /a", "not available with mode app"},
		{"client_secret s\nmode app\nauth_endpoint", "not available with mode app"},
	} {
		_, err := adapt(t, "example.com {\nspotify_auth {\nclient_id abc\n"+tc.lines+"\n}\n}")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error containing %q", tc.lines, err, tc.want)
		}
	}
}
