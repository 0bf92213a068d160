package spotifyauth

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
)

func TestSpotifyFakeCommandIsRegistered(t *testing.T) {
	t.Parallel()
	cmd, ok := caddycmd.Commands()["spotify-fake"]
	if !ok {
		t.Fatal("caddy spotify-fake is not registered")
	}
	if cmd.Func == nil || cmd.Flags == nil || cmd.Flags.Lookup("listen") == nil || !strings.Contains(cmd.Long, "internet") {
		t.Errorf("spotify-fake: %+v", cmd)
	}
}

// startFake runs the command's code with the flags, as `caddy spotify-fake
// args...` would, and returns its URL once it prints it; the fake stops at
// the end of the test, and the test checks that runFake returned.
func startFake(t *testing.T, args ...string) string {
	t.Helper()
	fs, opts := newFakeFlags()
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := runFake(ctx, opts, pw)
		pw.CloseWithError(io.EOF)
		done <- err
	}()
	lines := bufio.NewScanner(pr)
	if !lines.Scan() {
		cancel()
		t.Fatalf("spotify-fake printed nothing: %v", <-done)
	}
	base, ok := strings.CutPrefix(lines.Text(), "spotify-fake listening on ")
	if !ok {
		t.Fatalf("first line %q", lines.Text())
	}
	var printed strings.Builder
	for lines.Scan() && !strings.Contains(lines.Text(), "internet") {
		printed.WriteString(lines.Text() + "\n")
	}
	for _, want := range []string{"authorize_url " + base + "/authorize", base + "/api/token", "api_url       " + base, base + "/_spotifytest/"} {
		if !strings.Contains(printed.String(), want) {
			t.Errorf("printed URLs lack %q:\n%s", want, printed.String())
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runFake: %v", err)
		}
		if resp, err := http.Get(base + "/"); err == nil {
			resp.Body.Close()
			t.Error("the fake still answers after it was stopped")
		}
	})
	return base
}

// control calls the fake's control API.
func control(t *testing.T, base, op, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(base+"/_spotifytest/"+op, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func meStatus(t *testing.T, base, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/v1/me", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestSpotifyFakeServesWhatTheFlagsSay(t *testing.T) {
	t.Parallel()
	users := filepath.Join(t.TempDir(), "users.json")
	if err := os.WriteFile(users, []byte(`[{"id":"bob","display_name":"Bob","top_tracks":[]}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	base := startFake(t, "--listen", "127.0.0.1:0",
		"--client", "app:shh=http://127.0.0.1:9/cb,http://127.0.0.1:9/other",
		"--user", "alice=Alice Liddell", "--users", users, "--auto-approve", "alice",
		"--development", "--development-users", "alice,bob", "--token-lifetime", "90s", "--rotate")

	// The client and both redirect URIs, approved at once as alice.
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, cb := range []string{"http://127.0.0.1:9/cb", "http://127.0.0.1:9/other"} {
		q := url.Values{"client_id": {"app"}, "response_type": {"code"}, "redirect_uri": {cb}, "state": {"s"}}
		resp, err := noRedirect.Get(base + "/authorize?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, cb+"?code=") {
			t.Errorf("/authorize to %s = %d %q, want an auto-approved redirect with a code", cb, resp.StatusCode, loc)
		}
	}

	// alice from --user, bob from --users; the token lifetime.
	_, alice := control(t, base, "forwarded", `{"user":"alice"}`)
	if h, _ := alice["headers"].(map[string]any); h["X-Spotify-User-Name"] != "Alice%20Liddell" {
		t.Errorf("alice's forwarded headers: %v", alice)
	}
	status, bob := control(t, base, "tokens", `{"user":"bob","client":"app"}`)
	if status != http.StatusOK || bob["expires_in"] != float64(90) {
		t.Fatalf("bob's tokens = %d %v, want expires_in 90", status, bob)
	}

	// Development mode: the listed users only.
	_, tu := control(t, base, "tokens", `{"user":"testuser"}`)
	if got := meStatus(t, base, bob["access_token"].(string)); got != http.StatusOK {
		t.Errorf("/v1/me of listed bob = %d, want 200", got)
	}
	if got := meStatus(t, base, tu["access_token"].(string)); got != http.StatusForbidden {
		t.Errorf("/v1/me of unlisted testuser = %d, want 403", got)
	}

	// --rotate: a refresh answers a new refresh token.
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {bob["refresh_token"].(string)}}
	req, _ := http.NewRequest(http.MethodPost, base+"/api/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("app", "shh")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var refreshed map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&refreshed)
	resp.Body.Close()
	if rt, _ := refreshed["refresh_token"].(string); rt == "" || rt == bob["refresh_token"] {
		t.Errorf("refresh with --rotate = %v, want a new refresh_token", refreshed)
	}
}

func TestSpotifyFakeDefaultsToExtendedQuotaWithoutRotation(t *testing.T) {
	t.Parallel()
	base := startFake(t, "--listen", "127.0.0.1:0")
	_, tok := control(t, base, "tokens", `{"user":"testuser"}`)
	if got := meStatus(t, base, tok["access_token"].(string)); got != http.StatusOK {
		t.Errorf("/v1/me of the default user = %d, want 200", got)
	}
	if tok["expires_in"] != float64(3600) {
		t.Errorf("expires_in = %v, want 3600", tok["expires_in"])
	}
}

func TestSpotifyFakeRefusesBadFlags(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for name, args := range map[string][]string{
		"a client without redirect URI":   {"--client", "app:shh"},
		"a missing users file":            {"--users", filepath.Join(t.TempDir(), "none.json")},
		"a users file with a typo":        {"--users", writeTemp(t, `[{"id":"a","top_trakcs":[]}]`)},
		"six development users":           {"--development-users", "a,b,c,d,e,f"},
		"an address already in use":       {"--listen", busy.Addr().String()},
		"a user with an empty ID":         {"--user", "=Nobody"},
		"a token lifetime not a duration": {"--token-lifetime", "an hour"},
	} {
		t.Run(name, func(t *testing.T) {
			fs, opts := newFakeFlags()
			fs.SetOutput(io.Discard)
			if err := fs.Parse(append([]string{"--listen", "127.0.0.1:0"}, args...)); err != nil {
				return // refused while parsing
			}
			s, err := opts.start()
			if err == nil {
				s.Close()
				t.Errorf("%v: started", args)
			}
		})
	}
}

func TestSpotifyFakeWarnsOffLoopback(t *testing.T) {
	t.Parallel()
	for url, want := range map[string]bool{
		"http://127.0.0.1:8090": true,
		"http://[::1]:8090":     true,
		"http://0.0.0.0:8090":   false,
		"http://[::]:8090":      false,
		"http://10.1.2.3:8090":  false,
	} {
		if got := isLoopback(url); got != want {
			t.Errorf("isLoopback(%s) = %v, want %v", url, got, want)
		}
	}
}

func writeTemp(t *testing.T, content string) string {
	p := filepath.Join(t.TempDir(), "f.json")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
