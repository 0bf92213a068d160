package spotifyauthtest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddyspotify/caddy-spotify-auth/spotifyauthtest"
	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// These tests start Caddy, whose config is process-wide: none may call
// t.Parallel.

// echoApp answers with the request's X-Spotify-* headers as JSON, and
// whether an Authorization header came.
func echoApp(t *testing.T) *httptest.Server {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := map[string]string{"path": r.URL.Path, "authorization": r.Header.Get("Authorization")}
		for name := range r.Header {
			if strings.HasPrefix(name, "X-Spotify-") {
				out[name] = r.Header.Get(name)
			}
		}
		_ = json.NewEncoder(w).Encode(out)
	}))
	t.Cleanup(app.Close)
	return app
}

func getJSON(t *testing.T, c *http.Client, rawURL string) (int, map[string]string) {
	t.Helper()
	resp, err := c.Get(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]string
	body, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(body, &out)
	return resp.StatusCode, out
}

func TestStartPutsTheAppBehindALoginPerUser(t *testing.T) {
	fake := spotifytest.NewServer()
	defer fake.Close()
	fake.AddUser(spotifytest.User{ID: "alice", DisplayName: "Alice", Email: "alice@example.com"})
	site := spotifyauthtest.Start(t, fake, echoApp(t).URL, spotifyauthtest.WithScopes("user-read-email", "user-top-read"))

	for _, user := range []string{"alice", spotifytest.DefaultUserID} {
		status, got := getJSON(t, site.Client(t, user), site.URL+"/anything")
		if status != 200 || got["X-Spotify-User-Id"] != user || got["path"] != "/anything" {
			t.Fatalf("as %s: %d %v", user, status, got)
		}
		if got["X-Spotify-Scopes"] != "user-read-email user-top-read" {
			t.Errorf("as %s: scopes %q", user, got["X-Spotify-Scopes"])
		}
		tok := strings.TrimPrefix(got["authorization"], "Bearer ")
		if owner, _, valid := fake.AccessTokenInfo(tok); owner != user || !valid {
			t.Errorf("as %s: the forwarded token belongs to %q (valid %v)", user, owner, valid)
		}
	}
	if c := fake.Counts(); c.CodeExchanges != 2 || c.Approvals != 2 {
		t.Errorf("fake counts %+v, want two logins", c)
	}
}

func TestBrowsersAreSentToLogInAndAPICallsGet401(t *testing.T) {
	site := spotifyauthtest.Start(t, nil, echoApp(t).URL)
	browser := site.NewBrowser()
	browser.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	resp, err := browser.Get(site.URL + "/page")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, site.Fake.AuthorizeURL()+"?") {
		t.Errorf("a navigation without a session: %d to %q, want a redirect to the fake", resp.StatusCode, loc)
	}

	req, _ := http.NewRequest("GET", site.URL+"/api", nil)
	req.Header.Set("Accept", "application/json")
	resp, err = browser.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("an API call without a session: %d, want 401", resp.StatusCode)
	}

	// The logged-in client keeps the caller's own Accept.
	c := site.Client(t, spotifytest.DefaultUserID)
	req, _ = http.NewRequest("GET", site.URL+"/api", nil)
	req.Header.Set("Accept", "application/json")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("an API call with a session: %d", resp.StatusCode)
	}
}

func TestTheConfigGetsRightWhatNewcomersGetWrong(t *testing.T) {
	site := spotifyauthtest.Start(t, nil, echoApp(t).URL, spotifyauthtest.WithMatcher("/app/*"))
	cfg := site.Caddyfile
	for _, want := range []string{"admin off", "persist_config off", "bind 127.0.0.1", "storage file_system `" + "/", "redirect_uri " + site.RedirectURI} {
		if !strings.Contains(cfg, want) {
			t.Errorf("Caddyfile lacks %q:\n%s", want, cfg)
		}
	}
	if string(caddyfile.Format([]byte(cfg))) != cfg {
		t.Errorf("Caddyfile is not caddy fmt clean:\n%s", cfg)
	}
	u, err := url.Parse(site.URL)
	if err != nil || u.Hostname() != "127.0.0.1" || u.Port() == "" || u.Port() == "80" || u.Port() == "8080" {
		t.Errorf("site URL %q: want 127.0.0.1 on a free port", site.URL)
	}
	// The redirect URI was registered: a login completes without any setup.
	site.Client(t, spotifytest.DefaultUserID)

	// The matcher leaves the rest of the site public.
	status, got := getJSON(t, site.NewBrowser(), site.URL+"/public")
	if status != 200 || got["X-Spotify-User-Id"] != "" {
		t.Errorf("a public path: %d %v", status, got)
	}
}

func TestOnlyOneSiteRunsAtATime(t *testing.T) {
	app := echoApp(t)
	site := spotifyauthtest.Start(t, nil, app.URL)
	fake := spotifytest.NewServer()
	defer fake.Close()
	if other, err := spotifyauthtest.New(fake, app.URL); err == nil || !strings.Contains(err.Error(), "t.Parallel") {
		if other != nil {
			other.Close()
		}
		t.Fatalf("a second Site while one runs: %v, want an error that explains why", err)
	}

	site.Close()
	if _, err := http.Get(site.URL + "/"); err == nil {
		t.Error("Caddy still answers after Close")
	}
	next, err := spotifyauthtest.New(fake, app.URL, spotifyauthtest.WithPublicClient())
	if err != nil {
		t.Fatalf("a Site after Close: %v", err)
	}
	defer next.Close()
	if _, err := next.NewClient(spotifytest.DefaultUserID); err != nil {
		t.Fatal(err)
	}
	if reqs := fake.TokenRequests(); len(reqs) != 1 || reqs[0].ClientAuth != "none" {
		t.Errorf("a public client authenticated with %+v, want client_id alone", reqs)
	}
}

func TestBadUpstreamsAndAddressesAreRefused(t *testing.T) {
	fake := spotifytest.NewServer()
	defer fake.Close()
	for _, tc := range []struct {
		name, upstream string
		opt            spotifyauthtest.Option
		wantErr        string
	}{
		{"an upstream with a path", "http://127.0.0.1:3000/app", nil, "no path"},
		{"an upstream without scheme", "127.0.0.1:3000", nil, "base URL"},
		{"localhost", "http://127.0.0.1:3000", spotifyauthtest.WithAddr("localhost:0"), "loopback IP literal"},
		{"real Spotify with a fake", "http://127.0.0.1:3000", spotifyauthtest.WithRealSpotify("id", ""), "WithRealSpotify"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts []spotifyauthtest.Option
			if tc.opt != nil {
				opts = append(opts, tc.opt)
			}
			site, err := spotifyauthtest.New(fake, tc.upstream, opts...)
			if err == nil {
				site.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q, want it to mention %q", err, tc.wantErr)
			}
		})
	}
}

func TestSiteDirectivesAnswerBehindTheGateWithoutAnUpstream(t *testing.T) {
	site := spotifyauthtest.Start(t, nil, "",
		spotifyauthtest.WithMatcher("/app/*"),
		spotifyauthtest.WithSiteDirectives(`respond /app/* "app for {http.auth.user.id}"`, `respond "public"`))
	if strings.Contains(site.Caddyfile, "reverse_proxy") {
		t.Errorf("a Site without upstream proxies:\n%s", site.Caddyfile)
	}
	read := func(c *http.Client, path string) (int, string) {
		resp, err := c.Get(site.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if status, body := read(site.NewBrowser(), "/"); status != 200 || body != "public" {
		t.Errorf("public path: %d %q", status, body)
	}
	if status, body := read(site.Client(t, spotifytest.DefaultUserID), "/app/x"); status != 200 || body != "app for testuser" {
		t.Errorf("protected path after login: %d %q", status, body)
	}
}
