package spotifyauth

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/caddyspotify/caddy-spotify-auth/internal/storagekeys"
	"github.com/caddyspotify/caddy-spotify-auth/internal/testkit"
	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// TestTwoCaddyProcessesShareSessionsAndRefreshOnce starts two real Caddy
// processes, built from this repository, sharing one storage directory.
// The test is the load balancer: it sends each request to one of them.
// It runs on Caddy's file_system storage, on a different
// certmagic.Storage implementation (internal/teststorage, which records
// every call), and on a real Redis (bench/internal/redisstorage).
func TestTwoCaddyProcessesShareSessionsAndRefreshOnce(t *testing.T) {
	t.Parallel()
	bin := buildTestCaddy(t)
	runAtOnce(t, []string{"file_system", "recording", "redis"}, func(kind string) string { return kind }, func(t *testing.T, kind string) {
		// processes, ports, storage and fake of its own
		dir := t.TempDir()
		storageDir, callLog := filepath.Join(dir, "storage"), filepath.Join(dir, "calls.log")
		storage := "file_system " + storageDir
		var inspect certmagic.Storage = &certmagic.FileStorage{Path: storageDir}
		switch kind {
		case "recording":
			storage = "spotify_auth_test_recording {\n\t\troot " + storageDir + "\n\t\tlog " + callLog + "\n\t}"
		case "redis":
			storage = redisStorageConfig(testkit.StartRedis(t))
			inspect = dialStorage(t, serveStorage(t, bin, storage))
		}
		fake := spotifytest.NewServer()
		t.Cleanup(fake.Close)
		fake.SetRotateRefreshTokens(true) // a second refresh with the old token would fail
		ports := freePorts(t, 2)
		var redirects []string
		for _, p := range ports {
			redirects = append(redirects, fmt.Sprintf("http://127.0.0.1:%d%s", p, DefaultCallbackPath))
		}
		fake.AddClient(spotifytest.Client{ID: testClientID, RedirectURIs: redirects})

		// Both start at once with no cookie_secret: they must end up
		// with one generated key between them.
		var a, b *caddyProcess
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); a = startCaddy(t, bin, "A", ports[0], storage, fake) }()
		go func() { defer wg.Done(); b = startCaddy(t, bin, "B", ports[1], storage, fake) }()
		wg.Wait()
		a.waitReady(t)
		b.waitReady(t)
		sk, err := loadKeys(context.Background(), inspect)
		if err != nil || len(sk.Keys) != 1 {
			t.Fatalf("storage holds %d keys (%v), want exactly 1 shared key", len(sk.Keys), err)
		}

		// Log in through A, use the session on B.
		jar, _ := cookiejar.New(nil) // cookies ignore ports: A and B are one site
		browser := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		fake.SetAccessTokenLifetime(accessLifetime)
		loggedIn := multiLogin(t, browser, fake, a)
		status, body := a.get(t, browser, "/app/")
		if status != http.StatusOK || !strings.HasPrefix(body, "A Bearer ") {
			t.Fatalf("A after login: %d %q", status, body)
		}
		status, body = b.get(t, browser, "/app/")
		if status != http.StatusOK || !strings.HasPrefix(body, "B Bearer ") {
			t.Fatalf("B with A's session: %d %q", status, body)
		}
		oldToken := strings.TrimPrefix(body, "B Bearer ")

		// 40 concurrent requests, split over A and B, when the token
		// is due: exactly one refresh at Spotify.
		time.Sleep(time.Until(loggedIn.Add(accessLifetime - refreshLeeway + 500*time.Millisecond)))
		before := fake.Counts().Refreshes
		type answer struct {
			status int
			token  string
			took   time.Duration
		}
		answers := make([]answer, 40)
		start := make(chan struct{})
		for i := range answers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p := []*caddyProcess{a, b}[i%2]
				<-start
				t0 := time.Now()
				status, body := p.get(t, browser, "/app/")
				_, tok, _ := strings.Cut(body, " Bearer ")
				answers[i] = answer{status, tok, time.Since(t0)}
			}()
		}
		close(start)
		wg.Wait()
		refreshes := fake.Counts().Refreshes - before
		var took []time.Duration
		for i, ans := range answers {
			if ans.status != http.StatusOK || ans.token == oldToken || ans.token != answers[0].token {
				t.Fatalf("request %d (%s): status %d, token %.8s… (first answer's %.8s…, old %.8s…)",
					i, []string{"A", "B"}[i%2], ans.status, ans.token, answers[0].token, oldToken)
			}
			took = append(took, ans.took)
		}
		if _, _, valid := fake.AccessTokenInfo(answers[0].token); !valid {
			t.Fatal("the refreshed token is not valid at Spotify")
		}
		if refreshes != 1 {
			t.Fatalf("%d refreshes at Spotify for 40 requests over two processes, want 1", refreshes)
		}
		slices.Sort(took)
		t.Logf("40 concurrent requests over A and B with a due token: %d refresh; latency min %v, median %v, max %v",
			refreshes, took[0].Round(time.Millisecond), took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))

		// Kill A mid-way through a stream of requests: B keeps serving,
		// including the next refresh, which falls due meanwhile.
		// (The token from the burst falls due a second after the kill;
		// the next one lives an hour, so there is exactly one more.)
		fake.SetAccessTokenLifetime(time.Hour)
		before = fake.Counts().Refreshes
		killAt := time.Now().Add(time.Second)
		var bServed, bFailed, aAfterKill int
		for i := 0; time.Since(killAt) < accessLifetime-refreshLeeway+time.Second; i++ {
			if a.cmd.ProcessState == nil && time.Now().After(killAt) {
				a.kill(t)
			}
			if i%2 == 0 {
				if status, _, err := a.tryGet(browser, "/app/"); err == nil && a.cmd.ProcessState != nil {
					aAfterKill++
					t.Logf("A answered %d after being killed", status)
				}
			} else if status, body := b.get(t, browser, "/app/"); status == http.StatusOK && strings.HasPrefix(body, "B Bearer ") {
				bServed++
				if _, _, valid := fake.AccessTokenInfo(strings.TrimPrefix(body, "B Bearer ")); !valid {
					t.Fatal("B passed on a token Spotify does not know")
				}
			} else {
				bFailed++
				t.Errorf("B answered %d %q", status, body)
			}
			time.Sleep(30 * time.Millisecond)
		}
		if a.cmd.ProcessState == nil || bFailed > 0 || aAfterKill > 0 || bServed < 20 {
			t.Fatalf("after killing A: B served %d, failed %d; A answered %d times after the kill", bServed, bFailed, aAfterKill)
		}
		if n := fake.Counts().Refreshes - before; n != 1 {
			t.Fatalf("%d refreshes while A died and B carried on, want 1", n)
		}
		t.Logf("A killed; B served %d requests in a row, refreshing once on its own", bServed)

		// A restarted (a rolling restart): the session works on it at
		// once, with no login and no refresh.
		before = fake.Counts().Refreshes
		logins := fake.Counts().CodeExchanges
		a = startCaddy(t, bin, "A", ports[0], storage, fake)
		a.waitReady(t)
		if status, body := a.get(t, browser, "/app/"); status != http.StatusOK || !strings.HasPrefix(body, "A Bearer ") {
			t.Fatalf("restarted A: %d %q", status, body)
		}
		if c := fake.Counts(); c.Refreshes != before || c.CodeExchanges != logins {
			t.Fatalf("the restart cost %d refreshes and %d logins", c.Refreshes-before, c.CodeExchanges-logins)
		}

		if kind == "recording" {
			calls := readCallLog(t, callLog)
			if calls["Store "+storagekeys.SessionKeys] != 1 {
				t.Fatalf("the key was stored %d times, want once", calls["Store "+storagekeys.SessionKeys])
			}
			if calls["Lock "+storagekeys.SessionKeys] < 1 || calls["lock-refresh"] < 2 || calls["store-refresh"] != 2 {
				t.Fatalf("the recording storage saw %v: want the key created under its lock and two refreshes coordinated through it", calls)
			}
			t.Logf("recording storage: %d refresh locks, %d published refresh results, %d pids", calls["lock-refresh"], calls["store-refresh"], calls["pids"])
		}
	})
}

// Token timing for the multi-process test: a token is due for refresh
// two seconds after it is issued.
const (
	accessLifetime = 32 * time.Second
	refreshLeeway  = 30 * time.Second
)

// buildTestCaddy builds bench/testcaddy (Caddy with the plugin and the
// test storages; in the bench module, which carries the Redis client)
// into bench/out, where an unchanged binary is not linked again.
func buildTestCaddy(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join("bench", "go.mod")); err != nil {
		// The plugin's module as downloaded has no nested modules.
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but the bench module is missing: %v", err)
		}
		t.Skipf("no bench module here (%v): run the tests from a checkout of the repository", err)
	}
	buildTestCaddyMu.Lock()
	defer buildTestCaddyMu.Unlock()
	bin, err := filepath.Abs(filepath.Join("bench", "out", "testcaddy"))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	// From the bench module's directory, so it builds with or without go.work.
	cmd := exec.Command("go", "build", "-o", bin, "./testcaddy")
	cmd.Dir = "bench"
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building Caddy: %v\n%s", err, out)
	}
	t.Logf("built Caddy in %v", time.Since(t0).Round(time.Millisecond))
	return bin
}

var buildTestCaddyMu sync.Mutex

type caddyProcess struct {
	name string
	addr string
	cmd  *exec.Cmd
	log  string
}

func startCaddy(t *testing.T, bin, name string, port int, storage string, fake *spotifytest.Server) *caddyProcess {
	return startCaddyWith(t, bin, name, port, storage, fake, refreshLeeway, "", fmt.Sprintf(`respond /app/* "%s {http.request.header.Authorization}"`, name))
}

// startCaddyWith starts a Caddy process whose site has spotify_auth on
// /app/* (with extra options) in front of the upstream directive.
func startCaddyWith(t *testing.T, bin, name string, port int, storage string, fake *spotifytest.Server, leeway time.Duration, extra, upstream string) *caddyProcess {
	dir := t.TempDir()
	p := &caddyProcess{name: name, addr: fmt.Sprintf("127.0.0.1:%d", port), log: filepath.Join(dir, "caddy.log")}
	config := fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
	storage %s
}
http://%s {
	spotify_auth /app/* {
		client_id %s
		authorize_url %s
		token_url %s
		api_url %s
		refresh_leeway %s
		timeout 3s
		%s
	}
	%s
	respond /healthz "ok"
}
`, storage, p.addr, testClientID, fake.AuthorizeURL(), fake.TokenURL(), fake.APIURL(), leeway, extra, upstream)
	cfgPath := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		t.Error(err)
		return p
	}
	if err := p.run(t, bin, cfgPath, append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)); err != nil {
		t.Error(err)
	}
	return p
}

// run starts Caddy (bin) on the Caddyfile config with env, its output in
// p.log. The test's cleanup stops it and, if the test failed, shows the
// log.
func (p *caddyProcess) run(t *testing.T, bin, config string, env []string) error {
	logFile, err := os.Create(p.log)
	if err != nil {
		return err
	}
	p.cmd = exec.Command(bin, "run", "--config", config, "--adapter", "caddyfile")
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("starting Caddy %s: %w", p.name, err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
		logFile.Close()
		if t.Failed() {
			out, _ := os.ReadFile(p.log)
			t.Logf("Caddy %s log:\n%s", p.name, out)
		}
	})
	return nil
}

func (p *caddyProcess) waitReady(t *testing.T) {
	t.Helper()
	if t.Failed() {
		t.FailNow()
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + p.addr + "/healthz"); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("Caddy %s did not come up", p.name)
}

func (p *caddyProcess) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Wait()
}

// tryGet sends a browser API request (no login redirects) to the process.
func (p *caddyProcess) tryGet(c *http.Client, path string) (int, string, error) {
	req, _ := http.NewRequest(http.MethodGet, "http://"+p.addr+path, nil)
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

func (p *caddyProcess) get(t *testing.T, c *http.Client, path string) (int, string) {
	status, body, err := p.tryGet(c, path)
	if err != nil {
		t.Errorf("GET %s on %s: %v", path, p.name, err)
	}
	return status, body
}

// multiLogin runs the login flow through p and returns when it finished.
func multiLogin(t *testing.T, c *http.Client, fake *spotifytest.Server, p *caddyProcess) time.Time {
	t.Helper()
	start, _ := http.NewRequest(http.MethodGet, "http://"+p.addr+"/app/", nil)
	start.Header.Set("Accept", "text/html")
	resp, err := fake.LogIn(c, start, spotifytest.DefaultUserID)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("callback: %d", resp.StatusCode)
	}
	return time.Now()
}

// readCallLog counts the recording storage's calls: by "method key" for
// the key file, and refresh locks and published results by kind.
func readCallLog(t *testing.T, path string) map[string]int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	counts := map[string]int{}
	pids := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pid, rest, _ := strings.Cut(sc.Text(), " ")
		pids[pid] = true
		method, key, _ := strings.Cut(rest, " ")
		counts[method+" "+key]++
		switch {
		case method == "Lock" && strings.HasPrefix(key, "spotify_auth_refresh_"):
			counts["lock-refresh"]++
		case method == "Store" && strings.HasPrefix(key, storagekeys.RefreshResults):
			counts["store-refresh"]++
		}
	}
	counts["pids"] = len(pids)
	return counts
}
