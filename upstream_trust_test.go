package spotifyauth_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// seenRequest is what an upstream received.
type seenRequest struct {
	Path    string
	Header  http.Header
	Trailer http.Header
	Body    string
}

// recordingUpstream records every request it gets, trailers included,
// and answers with whatever answer says.
type recordingUpstream struct {
	*httptest.Server
	mu     sync.Mutex
	seen   []seenRequest
	answer func(w http.ResponseWriter, r *http.Request)
}

func newRecordingUpstream(t *testing.T) *recordingUpstream {
	u := &recordingUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body) // trailers arrive with the end of the body
		u.mu.Lock()
		u.seen = append(u.seen, seenRequest{Path: r.URL.RawPath + "|" + r.URL.Path, Header: r.Header.Clone(), Trailer: r.Trailer.Clone(), Body: string(body)})
		answer := u.answer
		u.mu.Unlock()
		if answer != nil {
			answer(w, r)
			return
		}
		fmt.Fprintf(w, "upstream %s", r.URL.Path)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *recordingUpstream) last(t *testing.T) seenRequest {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		t.Fatal("the upstream got no request")
	}
	return u.seen[len(u.seen)-1]
}

// demoShapeSite is the demo's shape: the gate on /app/* and a
// reverse_proxy without matcher, so every path of the site reaches the
// upstream.
func demoShapeSite(t *testing.T, fake *spotifytest.Server, upstream string, extra string) *caddytest.Tester {
	tc := caddytest.NewTester(t)
	tc.InitServer(globalOptions(caddyStorage(t))+site+` {
	spotify_auth /app/* {
		`+fakeOptions(fake)+`
		`+extra+`
	}
	reverse_proxy `+upstream+`
}`, "caddyfile")
	return tc
}

// spoofs are a client's attempts to pass for the plugin: every managed
// header in several spellings, and the plugin's cookies.
var spoofs = [][2]string{
	{"X-Spotify-User-Id", "admin"},
	{"X-Spotify-Account-Id", "admins-account"},
	{"x_spotify_account_id", "admins-account"},
	{"x_spotify_user_email", "admin@example.com"},
	{"X-SPOTIFY-PRODUCT", "premium"},
	{"X-Spotify-Token-Expires", "2099-01-01T00:00:00Z"},
	{"X-Spotify-Scopes", "everything"},
	{"Authorization", "Bearer forged"},
	{"X-Spotifyish", "not ours: must survive"},
	{"Cookie", "spotify_auth=forged; theme=dark; spotify_auth_state_abc=planted; __Host-spotify_auth_1=x"},
}

// assertNothingManaged fails if the upstream saw any managed header or
// cookie (and checks that innocent ones got through).
func assertNothingManaged(t *testing.T, probe string, got seenRequest, allowed ...string) {
	t.Helper()
	for _, hdr := range []http.Header{got.Header, got.Trailer} {
		for name, vals := range hdr {
			n := strings.ReplaceAll(strings.ToLower(name), "_", "-")
			isAllowed := false
			for _, a := range allowed {
				isAllowed = isAllowed || strings.EqualFold(a, name)
			}
			if !isAllowed && (strings.HasPrefix(n, "x-spotify-") || n == "authorization") {
				t.Errorf("%s: the upstream got %s: %q", probe, name, vals)
			}
		}
	}
	cookies := strings.Join(got.Header.Values("Cookie"), "; ")
	if strings.Contains(cookies, "spotify_auth") {
		t.Errorf("%s: the upstream got the plugin's cookies: %q", probe, cookies)
	}
	if !strings.Contains(cookies, "theme=dark") {
		t.Errorf("%s: the upstream lost the site's own cookie: %q", probe, cookies)
	}
	if got.Header.Get("X-Spotifyish") == "" {
		t.Errorf("%s: a header that is not ours was removed", probe)
	}
}

func TestNoManagedHeaderOrCookieReachesAnyUpstreamOnAnyPath(t *testing.T) {
	fake := newFake(t)
	upstream := newRecordingUpstream(t)
	tc := demoShapeSite(t, fake, upstream.URL, "")
	c := caddyBrowser(tc)

	for _, path := range []string{"/app", "/", "/public/x", "/app%2F..%2Fx", "/ap%70"} {
		req, _ := http.NewRequest(http.MethodGet, site+path, nil)
		for _, s := range spoofs {
			req.Header[s[0]] = []string{s[1]}
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d, want the upstream's 200 (this path is not gated)", path, resp.StatusCode)
		}
		assertNothingManaged(t, path, upstream.last(t))
	}

	// Trailers: declared and sent at the end of a chunked body.
	for _, path := range []string{"/public/upload", "/app"} {
		req, _ := http.NewRequest(http.MethodPost, site+path, io.MultiReader(strings.NewReader("part one, "), strings.NewReader("part two")))
		req.ContentLength = -1
		req.Header.Set("Cookie", "theme=dark")
		req.Header.Set("X-Spotifyish", "not ours")
		req.Trailer = http.Header{"X-Spotify-User-Id": {"admin"}, "Authorization": {"Bearer forged"}, "X-Checksum": {"kept"}}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got := upstream.last(t)
		if got.Body != "part one, part two" {
			t.Fatalf("trailer probe %s: body %q", path, got.Body)
		}
		assertNothingManaged(t, "trailers on "+path, got)
		if got.Trailer.Get("X-Checksum") != "kept" {
			t.Errorf("trailers on %s: the site's own trailer was lost: %v", path, got.Trailer)
		}
	}

	// The gate still does its job: a logged-in request carries the
	// plugin's own headers, and only those.
	loginThroughCaddy(t, c, fake, "/app/")
	req, _ := http.NewRequest(http.MethodGet, site+"/app/page", nil)
	req.Header.Set("Accept", "text/html")
	req.Header.Set("X-Spotify-User-Id", "admin")
	req.Header.Set("Cookie", "theme=dark")
	req.Header.Set("X-Spotifyish", "not ours")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got := upstream.last(t)
	if got.Header.Get("X-Spotify-User-Id") != spotifytest.DefaultUserID || !strings.HasPrefix(got.Header.Get("Authorization"), "Bearer ") {
		t.Fatalf("a logged-in request lost the plugin's headers: %v", got.Header)
	}
	token := strings.TrimPrefix(got.Header.Get("Authorization"), "Bearer ")
	if _, _, valid := fake.AccessTokenInfo(token); !valid {
		t.Fatalf("the upstream got %q, not a valid token", token)
	}
	if v := got.Header.Values("X-Spotify-User-Id"); len(v) != 1 {
		t.Fatalf("X-Spotify-User-Id: %q", v)
	}
	assertNothingManaged(t, "logged in", got, "X-Spotify-User-Id", "X-Spotify-Account-Id", "X-Spotify-User-Name", "X-Spotify-User-Email",
		"X-Spotify-Product", "X-Spotify-Scopes", "X-Spotify-Token-Expires", "Authorization")

	// The same session cookie sent to an ungated path goes nowhere.
	req, _ = http.NewRequest(http.MethodGet, site+"/public/y", nil)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if cookies := upstream.last(t).Header.Values("Cookie"); strings.Contains(strings.Join(cookies, ";"), "spotify_auth") {
		t.Fatalf("an ungated path got the session cookie: %q", cookies)
	}
}

// TestJSONConfigWithTheStripRouteKeepsUngatedPathsClean is docs/json-config.md's JSON
// recipe: the gate's route, then one route without matcher.
func TestJSONConfigWithTheStripRouteKeepsUngatedPathsClean(t *testing.T) {
	fake := newFake(t)
	upstream := newRecordingUpstream(t)
	tc := caddytest.NewTester(t)
	tc.InitServer(fmt.Sprintf(`{
	"admin": {"listen": "localhost:2999"},
	"apps": {"http": {"http_port": 9080, "grace_period": 1, "servers": {"srv0": {
		"listen": [":9080"],
		"routes": [
			{"match": [{"path": ["/app/*"]}, {"path": ["/oauth2/spotify/*"]}],
			 "handle": [{"handler": "spotify_auth", "client_id": "it-client",
				"cookie_secret": ["0123456789abcdef0123456789abcdef"], "scopes": ["user-read-email"],
				"authorize_url": %q, "token_url": %q, "api_url": %q}]},
			{"handle": [{"handler": "spotify_auth_strip"}]},
			{"handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": %q}]}]}
		]
	}}}}
}`, fake.AuthorizeURL(), fake.TokenURL(), fake.APIURL(), strings.TrimPrefix(upstream.URL, "http://")), "json")
	c := caddyBrowser(tc)
	req, _ := http.NewRequest(http.MethodGet, site+"/app", nil)
	for _, s := range spoofs {
		req.Header[s[0]] = []string{s[1]}
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	assertNothingManaged(t, "/app", upstream.last(t))
	loginThroughCaddy(t, c, fake, "/app/")
	if got := upstream.last(t); got.Header.Get("X-Spotify-User-Id") != spotifytest.DefaultUserID {
		t.Fatalf("JSON gate after strip route: %v", got.Header)
	}
}

func TestAuthenticatedAnswersStayOutOfSharedCaches(t *testing.T) {
	fake := newFake(t)
	upstream := newRecordingUpstream(t)
	tc := demoShapeSite(t, fake, upstream.URL, "")
	c := caddyBrowser(tc)
	loginThroughCaddy(t, c, fake, "/app/")

	get := func(path string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, site+path, nil)
		req.Header.Set("Accept", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	cases := []struct {
		name           string
		upstreamCC     string
		wantCC         string
		wantVaryCookie bool
	}{
		{"an answer without Cache-Control becomes private and varies by cookie", "", "private", true},
		{"the upstream's own no-store is kept", "no-store", "no-store", false},
		{"the upstream's own public choice is kept when no cookie is set", "public, max-age=300", "public, max-age=300", false},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			upstream.mu.Lock()
			upstream.answer = func(w http.ResponseWriter, r *http.Request) {
				if tt.upstreamCC != "" {
					w.Header().Set("Cache-Control", tt.upstreamCC)
				}
				_, _ = io.WriteString(w, "hello")
			}
			upstream.mu.Unlock()
			resp := get("/app/data")
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != tt.wantCC {
				t.Fatalf("%d Cache-Control %q, want %q", resp.StatusCode, resp.Header.Get("Cache-Control"), tt.wantCC)
			}
			if vary := strings.Join(resp.Header.Values("Vary"), ","); strings.Contains(vary, "Cookie") != tt.wantVaryCookie {
				t.Fatalf("Vary %q", vary)
			}
		})
	}

	// A refresh sets the session cookie on the upstream's answer: that
	// answer is never public, whatever the upstream says.
	// (The upstream's 401 invalid_token makes the next request refresh.)
	upstream.mu.Lock()
	upstream.answer = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		w.WriteHeader(http.StatusUnauthorized)
	}
	upstream.mu.Unlock()
	if resp := get("/app/data"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("upstream 401: %d", resp.StatusCode)
	}
	upstream.mu.Lock()
	upstream.answer = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300, s-maxage=600")
		_, _ = io.WriteString(w, "hello")
	}
	upstream.mu.Unlock()
	resp := get("/app/data")
	if resp.StatusCode != http.StatusOK || len(resp.Cookies()) == 0 {
		t.Fatalf("refresh: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	cc := resp.Header.Get("Cache-Control")
	if strings.Contains(cc, "public") || strings.Contains(cc, "s-maxage") || !strings.Contains(cc, "private") {
		t.Fatalf("an answer carrying a refreshed session cookie says Cache-Control %q", cc)
	}
	if !strings.Contains(strings.Join(resp.Header.Values("Vary"), ","), "Cookie") {
		t.Fatalf("Vary %q", resp.Header.Values("Vary"))
	}

	// The plugin's own answers (here the 401 and the login redirect)
	// keep no-store.
	stranger := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, accept := range []string{"application/json", "text/html"} {
		req, _ := http.NewRequest(http.MethodGet, site+"/app/data", nil)
		req.Header.Set("Accept", accept)
		resp, err := stranger.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
			t.Fatalf("%s: the plugin's own answer %d says Cache-Control %q", accept, resp.StatusCode, cc)
		}
	}
}

// TestHandleErrorsRoutesGetNothingAClientMadeUp: the site's handle_errors
// proxies its error pages to the app. The plugin's refusals go there, and
// the strip route does not run on error routes: what a client made up
// under our names must not reach the app that way either.
func TestHandleErrorsRoutesGetNothingAClientMadeUp(t *testing.T) {
	fake := newFake(t)
	upstream := newRecordingUpstream(t)
	tc := caddytest.NewTester(t)
	tc.InitServer(globalOptions(caddyStorage(t))+site+` {
	spotify_auth /app/* {
		`+fakeOptions(fake)+`
	}
	respond "app"
	handle_errors {
		reverse_proxy `+upstream.URL+`
	}
}`, "caddyfile")
	c := caddyBrowser(tc)
	for _, probe := range []struct{ path, accept string }{
		{"/app/data", "application/json"},                        // 401 for a script
		{"/oauth2/spotify/login?rd=/a&rd=/b", "text/html"},       // 400 from an endpoint
		{"/oauth2/spotify/callback?code=c&state=s", "text/html"}, // 400, no such login
	} {
		req, _ := http.NewRequest(http.MethodGet, site+probe.path, nil)
		for _, s := range spoofs {
			req.Header[s[0]] = []string{s[1]}
		}
		req.Header.Set("Accept", probe.accept)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.HasPrefix(string(body), "upstream ") {
			t.Fatalf("%s: %d %q, want the refusal rendered by handle_errors' upstream", probe.path, resp.StatusCode, body)
		}
		assertNothingManaged(t, probe.path, upstream.last(t))
	}
}

// TestAnErrorBeforeTheGateReachesHandleErrorsCleanWithTheStripDirective:
// an error raised before the gate (basic_auth would; here an `error` in
// the same route) reaches handle_errors as the client sent it, since
// neither the gate nor its strip route ran. spotify_auth_strip at the top
// of handle_errors keeps what a client made up from the app there, and
// keeps what the gate set on a request it let through.
func TestAnErrorBeforeTheGateReachesHandleErrorsCleanWithTheStripDirective(t *testing.T) {
	fake := newFake(t)
	upstream := newRecordingUpstream(t)
	tc := caddytest.NewTester(t)
	tc.InitServer(globalOptions(caddyStorage(t))+site+` {
	route {
		error /pre/* "refused before the gate" 418
		spotify_auth /app/* {
			`+fakeOptions(fake)+`
		}
		error /app/fail "failed after the gate" 502
		respond "app"
	}
	handle_errors {
		spotify_auth_strip
		reverse_proxy `+upstream.URL+`
	}
}`, "caddyfile")
	c := caddyBrowser(tc)
	req, _ := http.NewRequest(http.MethodGet, site+"/pre/x", nil)
	for _, s := range spoofs {
		req.Header[s[0]] = []string{s[1]}
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(string(body), "upstream /pre/x") {
		t.Fatalf("%d %q, want the error rendered by handle_errors' upstream", resp.StatusCode, body)
	}
	assertNothingManaged(t, "an error before the gate", upstream.last(t))

	// After the gate let the request through, the error route keeps the
	// gate's headers (and only those).
	loginThroughCaddy(t, c, fake, "/app/")
	req, _ = http.NewRequest(http.MethodGet, site+"/app/fail", nil)
	req.Header.Set("Cookie", "theme=dark")
	req.Header.Set("X-Spotifyish", "not ours")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	got := upstream.last(t)
	if !strings.HasPrefix(string(body), "upstream /app/fail") || got.Header.Get("X-Spotify-User-Id") != spotifytest.DefaultUserID {
		t.Fatalf("an error after the gate: %q, the error route got user %q; want it rendered upstream with the gate's user", body, got.Header.Get("X-Spotify-User-Id"))
	}
}
