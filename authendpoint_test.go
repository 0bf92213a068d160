package spotifyauth_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyspotify/caddy-spotify-auth/internal/testkit"
	"github.com/caddyspotify/caddy-spotify-auth/spotifyauthtest"
	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// needNginx returns the nginx binary, skipping the test without one
// (failing under CI=true, where .ci/run installs it).
func needNginx(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr == nil {
			bin, err = "/usr/sbin/nginx", nil
		}
	}
	if err == nil {
		out, _ := exec.Command(bin, "-V").CombinedOutput()
		if !strings.Contains(string(out), "http_auth_request_module") {
			err = fmt.Errorf("%s has no auth_request module", bin)
		}
	}
	if err != nil {
		msg := "this test needs nginx with auth_request (Debian: apt-get install nginx-light): " + err.Error()
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin
}

// docsNginx is the nginx server block of docs/nginx-traefik.md, the config
// users copy.
func docsNginx(t *testing.T) string {
	t.Helper()
	for _, s := range docSnippets(t, "nginx") {
		if s.file == "docs/nginx-traefik.md" {
			return s.text
		}
	}
	t.Fatal("docs/nginx-traefik.md has no nginx block")
	return ""
}

// startNginx runs nginx in the foreground with the docs' server block,
// its addresses replaced, and everything it writes inside a temp dir.
func startNginx(t *testing.T, bin string, port int, caddyAddr, appAddr string) {
	t.Helper()
	server := docsNginx(t)
	for old, repl := range map[string]string{
		"listen 8080;":   "listen 127.0.0.1:" + strconv.Itoa(port) + ";",
		"127.0.0.1:2015": caddyAddr,
		"127.0.0.1:3000": appAddr,
	} {
		if !strings.Contains(server, old) {
			t.Fatalf("docs/nginx-traefik.md's nginx block lacks %q", old)
		}
		server = strings.ReplaceAll(server, old, repl)
	}
	dir := t.TempDir()
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;\n" // workers must reach the temp dir
	}
	conf := fmt.Sprintf(`%spid %[2]s/nginx.pid;
error_log %[2]s/error.log info;
events { worker_connections 64; }
http {
	access_log %[2]s/access.log;
	client_body_temp_path %[2]s/client_body;
	proxy_temp_path %[2]s/proxy;
	fastcgi_temp_path %[2]s/fastcgi;
	uwsgi_temp_path %[2]s/uwsgi;
	scgi_temp_path %[2]s/scgi;
%[3]s
}
`, user, dir, server)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", confPath, "-g", "daemon off; master_process off;")
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx output:\n%s\nerror.log:\n%s", out, log)
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		select {
		case <-done:
			t.Fatalf("nginx exited: %s", out)
		default:
		}
		if c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("nginx did not start listening")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAuthEndpointBehindNginx runs docs/nginx-traefik.md's nginx config in front of
// an app, with Caddy's auth_endpoint as its auth_request: a browser
// logs in through nginx and comes back to the page it asked for, the app
// receives the user's Bearer token and id, a refreshed session cookie
// reaches the browser, and headers a client makes up go nowhere.
func TestAuthEndpointBehindNginx(t *testing.T) {
	bin := needNginx(t)
	fake := spotifytest.NewServer()
	defer fake.Close()
	// Tokens that are always due for refresh: every request refreshes.
	fake.SetAccessTokenLifetime(time.Minute)

	var mu sync.Mutex
	var seen []http.Header
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		_, _ = io.WriteString(w, "app: "+r.URL.RequestURI())
	}))
	defer app.Close()
	lastSeen := func() (http.Header, int) {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) == 0 {
			return nil, 0
		}
		return seen[len(seen)-1], len(seen)
	}

	nginxPort, caddyPort := freePort(t), freePort(t)
	site := "http://127.0.0.1:" + strconv.Itoa(nginxPort)
	fake.AddClient(spotifytest.Client{ID: "nginx-app", Secret: "s3cret", RedirectURIs: []string{site + "/oauth2/spotify/callback"}})
	runCaddy(t, fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
	storage file_system %s
	log {
		level ERROR
	}
}

:%d {
	bind 127.0.0.1
	spotify_auth {
		client_id nginx-app
		client_secret s3cret
		authorize_url %s
		token_url %s
		api_url %s
		redirect_uri %s/oauth2/spotify/callback
		auth_endpoint
	}
}
`, t.TempDir(), caddyPort, fake.AuthorizeURL(), fake.TokenURL(), fake.APIURL(), site))
	startNginx(t, bin, nginxPort, "127.0.0.1:"+strconv.Itoa(caddyPort), strings.TrimPrefix(app.URL, "http://"))

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(u string, hdr map[string]string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", u, nil)
		req.Header.Set("Accept", "text/html")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := browser.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	spoof := map[string]string{"Authorization": "Bearer made-up", "X-Spotify-User-Id": "mallory", "X-Spotify-Scopes": "everything"}

	// Not logged in: nginx sends the browser to log in, back to the page.
	resp := get(site+"/page?x=1&y=2", spoof)
	login := strings.TrimPrefix(resp.Header.Get("Location"), site) // nginx makes it absolute
	if resp.StatusCode != http.StatusFound || login != "/oauth2/spotify/login?rd=%2Fpage%3Fx%3D1%26y%3D2" {
		t.Fatalf("anonymous page: %d Location %q; want 302 to the login with the page as rd", resp.StatusCode, login)
	}
	if _, n := lastSeen(); n != 0 {
		t.Fatal("an anonymous request reached the app")
	}
	resp = get(site+login, nil)
	authURL := resp.Header.Get("Location")
	if !strings.HasPrefix(authURL, fake.AuthorizeURL()+"?") {
		t.Fatalf("login through nginx: %d, want a redirect to Spotify", resp.StatusCode)
	}
	callback, err := fake.Approve(authURL, spotifytest.DefaultUserID)
	if err != nil || !strings.HasPrefix(callback, site+"/oauth2/spotify/callback?") {
		t.Fatalf("consent: %v (callback on nginx: %v)", err, strings.HasPrefix(callback, site))
	}
	resp = get(callback, nil)
	if back := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || back != "/page?x=1&y=2" {
		t.Fatalf("callback through nginx: %d Location %q; want back to /page?x=1&y=2", resp.StatusCode, back)
	}
	cookieBefore := sessionCookie(jar, site)

	// Logged in: the app gets the user's token and id, not the made-up ones.
	resp = get(site+"/page?x=1&y=2", spoof)
	hdr, _ := lastSeen()
	if resp.StatusCode != http.StatusOK || hdr == nil {
		t.Fatalf("logged-in page: %d", resp.StatusCode)
	}
	token, ok := strings.CutPrefix(hdr.Get("Authorization"), "Bearer ")
	if user, _, valid := fake.AccessTokenInfo(token); !ok || user != spotifytest.DefaultUserID || !valid {
		t.Errorf("the app got Authorization for %q (valid %v), want a live token of %s", user, valid, spotifytest.DefaultUserID)
	}
	if got := hdr.Get("X-Spotify-User-Id"); got != spotifytest.DefaultUserID {
		t.Errorf("X-Spotify-User-Id %q, want %q", got, spotifytest.DefaultUserID)
	}
	if got := hdr.Get("X-Spotify-Scopes"); got == "everything" {
		t.Error("the client's X-Spotify-Scopes reached the app")
	}
	if hdr.Get("X-Spotify-Token-Expires") == "" {
		t.Error("no X-Spotify-Token-Expires")
	}
	// The token was due: Caddy refreshed it, and its new cookie reached
	// the browser through auth_request_set and add_header.
	if fake.Counts().Refreshes == 0 || !strings.Contains(strings.Join(resp.Header.Values("Set-Cookie"), "\n"), "spotify_auth=") {
		t.Errorf("refreshes %d, Set-Cookie %v; want the refreshed session cookie on the answer", fake.Counts().Refreshes, resp.Header.Values("Set-Cookie") != nil)
	}
	if cookieBefore == "" || sessionCookie(jar, site) == cookieBefore {
		t.Error("the browser's session cookie did not change after the refresh")
	}

	// The site's own scripts cannot fetch the auth endpoint through nginx:
	// its 200 carries the token.
	resp = get(site+"/oauth2/spotify/auth", map[string]string{"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"})
	if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Authorization") != "" {
		t.Errorf("a script's fetch of /oauth2/spotify/auth through nginx: %d (Authorization given: %v), want 404",
			resp.StatusCode, resp.Header.Get("Authorization") != "")
	}

	// Another browser making up the headers gets the login, not the app.
	_, before := lastSeen()
	other := &http.Client{CheckRedirect: browser.CheckRedirect}
	req, _ := http.NewRequest("GET", site+"/", nil)
	for k, v := range spoof {
		req.Header.Set(k, v)
	}
	resp, err = other.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, after := lastSeen(); resp.StatusCode != http.StatusFound || after != before {
		t.Errorf("spoofed headers without a session: %d, app reached %v", resp.StatusCode, after != before)
	}
}

// TestAuthEndpointAnswers covers the auth endpoint's answers in a real
// Caddy: off by default, 401 JSON (never a redirect) with a checked
// return path, 200 with the upstream's headers and no body, 403 for a
// user the rules refuse, 503 when Spotify is out and the token is dead.
func TestAuthEndpointAnswers(t *testing.T) {
	ask := func(t *testing.T, c *http.Client, u string, hdr map[string]string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", u, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		return testkit.Do(t, c, req)
	}
	navigation := map[string]string{"Accept": "text/html", "Sec-Fetch-Mode": "navigate"}

	t.Run("off by default", func(t *testing.T) {
		site := spotifyauthtest.Start(t, nil, "", spotifyauthtest.WithSiteDirectives(`respond "app"`))
		resp, _ := ask(t, site.Client(t, spotifytest.DefaultUserID), site.URL+"/oauth2/spotify/auth", nil)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("without auth_endpoint: %d, want 404", resp.StatusCode)
		}
	})

	t.Run("answers", func(t *testing.T) {
		fake := spotifytest.NewServer()
		defer fake.Close()
		fake.AddUser(spotifytest.User{ID: "outsider"})
		site := spotifyauthtest.Start(t, fake, "", spotifyauthtest.WithSiteDirectives(`respond "app"`),
			spotifyauthtest.WithScopes("user-read-email"),
			spotifyauthtest.WithDirectives("auth_endpoint", "allow_users "+spotifytest.DefaultUserID))
		auth := site.URL + "/oauth2/spotify/auth"

		for _, tc := range []struct{ name, header, value, rd string }{
			{"nginx's X-Original-URI", "X-Original-URI", "/a/b?c=1&d=2", "%2Fa%2Fb%3Fc%3D1%26d%3D2"},
			{"Traefik's X-Forwarded-Uri", "X-Forwarded-Uri", "/t", "%2Ft"},
			{"another origin", "X-Original-URI", "//evil.example/x", "%2F"},
			{"encoded backslash", "X-Forwarded-Uri", "/%5C%5Cevil.example", "%2F"},
		} {
			hdr := map[string]string{tc.header: tc.value}
			for k, v := range navigation {
				hdr[k] = v
			}
			resp, body := ask(t, site.NewBrowser(), auth, hdr)
			want := "/oauth2/spotify/login?rd=" + tc.rd
			if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("X-Spotify-Login-Url") != want ||
				!strings.Contains(body, `"login_url":"`+want+`"`) {
				t.Errorf("%s: %d %q body %s; want 401 with login_url %s", tc.name, resp.StatusCode, resp.Header.Get("X-Spotify-Login-Url"), body, want)
			}
		}

		c := site.Client(t, spotifytest.DefaultUserID)
		resp, body := ask(t, c, auth, map[string]string{"X-Spotify-User-Id": "mallory"})
		token, _ := strings.CutPrefix(resp.Header.Get("Authorization"), "Bearer ")
		if user, _, valid := fake.AccessTokenInfo(token); resp.StatusCode != http.StatusOK || user != spotifytest.DefaultUserID || !valid {
			t.Errorf("logged in: %d, token of %q (valid %v)", resp.StatusCode, user, valid)
		}
		if resp.Header.Get("X-Spotify-User-Id") != spotifytest.DefaultUserID || resp.Header.Get("X-Spotify-Token-Expires") == "" ||
			resp.Header.Get("X-Spotify-User-Email") == "" || resp.Header.Get("X-Spotify-Login-Url") != "" || body != "" {
			t.Errorf("logged in: headers %v, body %q; want the upstream's headers and no body", resp.Header, body)
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("Cache-Control %q, want no-store", cc)
		}

		// LogIn says the rules refuse the outsider; the browser keeps the
		// session, which the auth endpoint must refuse too.
		outsider := site.NewBrowser()
		if err := site.LogIn(outsider, "outsider"); !errors.Is(err, spotifyauthtest.ErrRefused) {
			t.Fatalf("LogIn(outsider) = %v, want ErrRefused", err)
		}
		resp, _ = ask(t, outsider, auth, nil)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("a user allow_users refuses: %d, want 403", resp.StatusCode)
		}
	})

	t.Run("Spotify out", func(t *testing.T) {
		fake := spotifytest.NewServer()
		defer fake.Close()
		fake.SetAccessTokenLifetime(time.Second)
		site := spotifyauthtest.Start(t, fake, "", spotifyauthtest.WithSiteDirectives(`respond "app"`),
			spotifyauthtest.WithDirectives("auth_endpoint"))
		c := site.Client(t, spotifytest.DefaultUserID)
		time.Sleep(1100 * time.Millisecond) // the token has expired
		fake.InjectFault(spotifytest.EndpointToken, spotifytest.Fault{Status: http.StatusBadGateway})
		resp, body := ask(t, c, site.URL+"/oauth2/spotify/auth", navigation)
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, `"error":"spotify_unavailable"`) {
			t.Errorf("Spotify out: %d %s; want 503 JSON", resp.StatusCode, body)
		}
	})
}

// TestAuthEndpointKeepsTheTokenOutOfTheAccessLog: Caddy's access log
// records response headers and redacts only Authorization and cookies;
// with another token_header the auth endpoint's 200 would put the token
// there.
func TestAuthEndpointKeepsTheTokenOutOfTheAccessLog(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "access.log")
	fake := testkit.NewFake(t)
	site := spotifyauthtest.Start(t, fake, "",
		spotifyauthtest.WithDirectives("auth_endpoint", "token_header X-Access-Token"),
		spotifyauthtest.WithSiteDirectives("log {\n\t\toutput file "+logPath+"\n\t}", `respond "app"`))
	c := site.Client(t, spotifytest.DefaultUserID)
	resp, _ := testkit.Get(t, c, site.URL+"/oauth2/spotify/auth")
	token := resp.Header.Get("X-Access-Token")
	if resp.StatusCode != http.StatusOK || token == "" {
		t.Fatalf("auth endpoint: %d, token given %v", resp.StatusCode, token != "")
	}
	testkit.Get(t, c, site.URL+"/") // a logged request, so the log is known to work
	site.Close()
	logged, err := os.ReadFile(logPath)
	if err != nil || len(logged) == 0 {
		t.Fatalf("no access log: %v", err)
	}
	if strings.Contains(string(logged), token) {
		t.Error("the access token is in Caddy's access log")
	}
}
