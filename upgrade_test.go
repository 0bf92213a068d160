package spotifyauth

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/caddyspotify/caddy-spotify-auth/internal/testkit"
)

// TestSessionsFromBeforeTheRecutStillWork: issue #25 re-cut the package
// on the promise that nothing user-visible changes, so a session made by
// the code before it (commit 99b87eb) must still work after it. The
// fixtures in testdata/before25 were made by real logins through a Caddy
// built from that commit (see its README.md); each case starts a Caddy
// built from this checkout with the very Caddyfile its fixture was made
// with, on a copy of the storage the old code wrote, and sends the old
// cookie. Spotify is a tripwire: these tokens live for decades, so the
// session must go upstream untouched, without a single call to Spotify.
func TestSessionsFromBeforeTheRecutStillWork(t *testing.T) {
	t.Parallel()
	bin := buildTestCaddy(t)
	for _, fixture := range []string{
		"cookie",         // session_store cookie, cookie_secret set
		"stored",         // session_store storage on file_system, cookie_secret set
		"generated-keys", // session_store cookie, the key generated into storage
	} {
		t.Run(fixture, func(t *testing.T) {
			t.Parallel()
			want := readBefore25Fixture(t, fixture)
			p, spotify := startBefore25Caddy(t, bin, fixture)

			status, body, setCookies := before25Get(t, p, want.Cookies)
			if status != http.StatusOK {
				t.Fatalf("the session made before the re-cut: %d, want 200 (body %d bytes)", status, len(body))
			}
			// The upstream answers "<Authorization>|<user id>|<account id>".
			got := strings.Split(body, "|")
			if len(got) != 3 {
				t.Fatalf("the upstream's answer has %d fields, want 3", len(got))
			}
			if got[0] != "Bearer "+want.AccessToken {
				t.Errorf("Authorization upstream is not the session's access token (%d bytes, want %d)", len(got[0]), len("Bearer "+want.AccessToken))
			}
			if got[1] != want.UserID || got[2] != want.AccountID {
				t.Errorf("upstream saw X-Spotify-User-Id %q and X-Spotify-Account-Id %q, want %q and %q", got[1], got[2], want.UserID, want.AccountID)
			}
			for _, c := range setCookies {
				if strings.HasPrefix(c.Name, DefaultCookieName) && (c.MaxAge < 0 || c.Value == "") {
					t.Errorf("the answer deletes cookie %s", c.Name)
				}
			}

			// A tampered copy is no session: without this the test would
			// pass for a handler that let everything through.
			tampered := append([]before25Cookie(nil), want.Cookies...)
			tampered[0].Value = flipMiddleChar(tampered[0].Value)
			status, body, _ = before25Get(t, p, tampered)
			if (status != http.StatusUnauthorized && status != http.StatusFound) || strings.HasPrefix(body, "Bearer ") {
				t.Errorf("a tampered cookie: %d (upstream reached: %v), want 401 or 302", status, strings.HasPrefix(body, "Bearer "))
			}

			if calls := spotify.calls(); len(calls) != 0 {
				t.Errorf("Caddy called Spotify %d times (%v), want none: the old session's token is valid for decades", len(calls), calls)
			}
			if !t.Failed() {
				t.Logf("%s: %d cookie(s), %d bytes; 200 upstream with the old token and ids, tampered copy %d", fixture, len(want.Cookies), len(want.Cookies[0].Value), status)
			}
		})
	}
}

// before25Fixture is testdata/before25/<fixture>/session.json: the
// cookies the old code set at login, and what its upstream then saw.
type before25Fixture struct {
	Cookies     []before25Cookie `json:"cookies"`
	AccessToken string           `json:"access_token"`
	UserID      string           `json:"user_id"`
	AccountID   string           `json:"account_id"`
}

type before25Cookie struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

func readBefore25Fixture(t *testing.T, fixture string) before25Fixture {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "before25", fixture, "session.json"))
	if err != nil {
		t.Fatal(err)
	}
	var fx before25Fixture
	if err := json.Unmarshal(data, &fx); err != nil {
		t.Fatal(err)
	}
	if len(fx.Cookies) == 0 || fx.AccessToken == "" || fx.UserID == "" || fx.AccountID == "" {
		t.Fatalf("testdata/before25/%s/session.json is incomplete", fixture)
	}
	return fx
}

// spotifyTripwire stands in for Spotify: it records every request and
// answers 503, which the plugin would shrug off for a still-valid token,
// so the record, not the answer, is what shows a call.
type spotifyTripwire struct {
	mu    sync.Mutex
	paths []string
}

func (s *spotifyTripwire) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.paths = append(s.paths, r.Method+" "+r.URL.Path)
	s.mu.Unlock()
	http.Error(w, "tripwire", http.StatusServiceUnavailable)
}

func (s *spotifyTripwire) calls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.paths...)
}

// startBefore25Caddy runs testdata/before25/<fixture>.Caddyfile on a free
// port, over a copy of the fixture's storage (Caddy writes to it). The
// Caddyfile names Spotify by a host that never resolves
// (spotify.before25.invalid), the same at generation and now, because
// keys are derived for the app's URLs; HTTP_PROXY takes Caddy's calls to
// it to the tripwire instead, never to the internet.
func startBefore25Caddy(t *testing.T, bin, fixture string) (*caddyProcess, *spotifyTripwire) {
	t.Helper()
	spotify := &spotifyTripwire{}
	proxy := httptest.NewServer(spotify)
	t.Cleanup(proxy.Close)

	dir := t.TempDir()
	storage := filepath.Join(dir, "storage")
	if src := filepath.Join("testdata", "before25", fixture, "storage"); dirExists(t, src) {
		if err := os.CopyFS(storage, os.DirFS(src)); err != nil {
			t.Fatal(err)
		}
	}
	config, err := filepath.Abs(filepath.Join("testdata", "before25", fixture+".Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	p := &caddyProcess{name: fixture, addr: fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1)[0]), log: filepath.Join(dir, "caddy.log")}
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.Contains(strings.ToLower(name), "proxy") { // NO_PROXY, no_proxy, ...: ours alone
			env = append(env, kv)
		}
	}
	env = append(env, "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir,
		"BEFORE25_SITE="+p.addr, "BEFORE25_STORAGE="+storage, "HTTP_PROXY="+proxy.URL)
	if err := p.run(t, bin, config, env); err != nil {
		t.Fatal(err)
	}
	p.waitReady(t)
	return p, spotify
}

func dirExists(t *testing.T, path string) bool {
	t.Helper()
	info, err := os.Stat(path)
	if os.IsNotExist(err) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return info.IsDir()
}

// before25Get sends a script's request (no login redirect) for /app/
// with the given cookies alone.
func before25Get(t *testing.T, p *caddyProcess, cookies []before25Cookie) (int, string, []*http.Cookie) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+p.addr+"/app/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	for _, c := range cookies {
		req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	resp, body := testkit.Do(t, before25Client, req)
	return resp.StatusCode, body, resp.Cookies()
}

// before25Client follows no redirect (a refusal must show as one) and
// uses no proxy from the environment.
var before25Client = &http.Client{
	Transport:     &http.Transport{},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// flipMiddleChar changes one character in the middle of a sealed value to
// another of the same (base64url) alphabet.
func flipMiddleChar(v string) string {
	b := []byte(v)
	i := len(b) / 2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}
