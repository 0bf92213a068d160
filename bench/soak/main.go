// Command soak runs a real Caddy with spotify_auth under steady load for a
// bounded time while tokens roll over, Spotify fails and the config is
// reloaded, and prints one table of what held and what was left behind.
//
//	go run ./bench/soak                  # about 4.5 minutes: 2 min with the plugin, 2 min control
//	DURATION=10m go run ./bench/soak     # longer; the control run takes as long
//	DURATION=30s CONTROL=0 go run ./bench/soak   # what CI runs
//
// In one process: the fake Spotify (spotifytest, short-lived access tokens,
// refresh-token rotation on), the upstream (checks, for every request,
// that the token it got is valid at the fake and belongs to the session
// that sent the request), and SESSIONS logged-in sessions with WORKERS
// concurrent requesters each. Caddy (./example/caddy, built into
// bench/out/soak/) is a separate process, reverse-proxying to the upstream.
// While the load runs: RELOADS config reloads through the admin API (each
// changes the plugin's timeout and a response header), a token-endpoint
// outage (503 for OUTAGE), and one 429 with Retry-After.
//
// The control run is the same Caddy, load and reloads without the plugin:
// whatever connection errors it shows at reloads are Caddy's own.
//
// The exit status is 1 if the plugin run lost a session, answered 5xx
// outside a fault window, passed a bad token upstream, or left plugin
// goroutines or connections to Spotify behind.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

type config struct {
	duration      time.Duration
	sessions      int
	workers       int
	think         time.Duration
	tokenLifetime time.Duration
	leeway        time.Duration
	reloads       int
	outage        time.Duration
	retryAfter    int
	control       bool
	basePort      int
	caddyBin      string
	out           string
}

// refreshRetryPause is the plugin's pause after a failed refresh of a
// session (handler.go): requests that need a new token get 503 for that
// long after a fault ends, so the fault windows extend by it.
const refreshRetryPause = 10 * time.Second

func main() {
	var cfg config
	flag.DurationVar(&cfg.duration, "duration", envDuration("DURATION", 2*time.Minute), "load time of each run (env DURATION)")
	flag.IntVar(&cfg.sessions, "sessions", envInt("SESSIONS", 20), "logged-in sessions (env SESSIONS)")
	flag.IntVar(&cfg.workers, "workers", envInt("WORKERS", 2), "concurrent requesters per session, sharing its cookies (env WORKERS)")
	flag.DurationVar(&cfg.think, "think", envDuration("THINK", 20*time.Millisecond), "pause between a requester's requests (env THINK)")
	flag.DurationVar(&cfg.tokenLifetime, "token-lifetime", envDuration("TOKEN_LIFETIME", 20*time.Second), "access token lifetime at the fake (env TOKEN_LIFETIME)")
	flag.DurationVar(&cfg.leeway, "leeway", envDuration("LEEWAY", 5*time.Second), "the plugin's refresh_leeway (env LEEWAY)")
	flag.IntVar(&cfg.reloads, "reloads", envInt("RELOADS", 4), "config reloads, evenly spread (env RELOADS)")
	flag.DurationVar(&cfg.outage, "outage", envDuration("OUTAGE", 10*time.Second), "token endpoint outage (503) length (env OUTAGE)")
	flag.IntVar(&cfg.retryAfter, "retry-after", envInt("RETRY_AFTER", 3), "Retry-After seconds of the 429 (env RETRY_AFTER)")
	flag.BoolVar(&cfg.control, "control", envInt("CONTROL", 1) != 0, "also run the control without the plugin (env CONTROL)")
	flag.IntVar(&cfg.basePort, "base-port", envInt("BASE_PORT", 18181), "Caddy's site port; +1 is its admin API (env BASE_PORT)")
	flag.StringVar(&cfg.caddyBin, "caddy", os.Getenv("CADDY"), "Caddy binary with the plugin (env CADDY; default: build ./example/caddy)")
	flag.StringVar(&cfg.out, "out", "bench/out/soak", "directory for the binary, configs, storage and logs")
	flag.Parse()
	if cfg.sessions < 1 || cfg.workers < 1 || cfg.reloads < 3 || cfg.duration < 20*time.Second {
		fatalf("soak: need SESSIONS >= 1, WORKERS >= 1, RELOADS >= 3 and DURATION >= 20s")
	}
	if cfg.leeway >= cfg.tokenLifetime {
		fatalf("soak: LEEWAY must be shorter than TOKEN_LIFETIME")
	}
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		fatalf("soak: %v", err)
	}
	if cfg.caddyBin == "" {
		cfg.caddyBin = filepath.Join(cfg.out, "caddy")
		fmt.Printf("== build %s\n", cfg.caddyBin)
		build := exec.Command("go", "build", "-o", cfg.caddyBin, "./example/caddy")
		build.Stdout, build.Stderr = os.Stdout, os.Stderr
		if err := build.Run(); err != nil {
			fatalf("soak: building Caddy: %v", err)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	results := []*result{}
	plugin, err := run(ctx, cfg, true)
	if err != nil {
		fatalf("soak: plugin run: %v", err)
	}
	results = append(results, plugin)
	if cfg.control && ctx.Err() == nil {
		control, err := run(ctx, cfg, false)
		if err != nil {
			fatalf("soak: control run: %v", err)
		}
		results = append(results, control)
	}
	printTable(os.Stdout, cfg, results)
	if problems := plugin.problems(cfg); len(problems) > 0 {
		fmt.Println()
		for _, p := range problems {
			fmt.Println("FAIL:", p)
		}
		os.Exit(1)
	}
	fmt.Println("\nok: no session lost, no 5xx outside the fault windows, no bad token upstream, nothing left behind")
}

// result is what one run measured.
type result struct {
	name    string
	elapsed time.Duration

	requests, ok2xx atomic.Int64
	lost            atomic.Int64 // 302/401/403 on a session that was valid
	other           atomic.Int64 // any other status
	connErrors      atomic.Int64 // no HTTP answer at all

	mu        sync.Mutex
	fiveXX    []time.Time // start of every request answered 5xx
	connErrAt []time.Time
	windows   []window
	reloadAt  []time.Time
	reloadDur []time.Duration

	// from the upstream
	badToken     atomic.Int64 // invalid at the fake, or another session's
	tokens       []map[string]struct{}
	fakeRefresh  int
	fakeTokenErr int

	goroutinesBefore, goroutinesAfter int // the plugin's own
	connsBefore, connsPeak            int // Caddy's connections to the fake
	connsAfterLoad, connsAfterReload  int
	rssBefore, rssAfter               int // kB
	storedBefore, storedAfter         int // refresh results in storage
	logProblems                       int
}

type window struct {
	what       string
	start, end time.Time
}

func (r *result) inWindow(t time.Time) bool {
	for _, w := range r.windows {
		if !t.Before(w.start) && t.Before(w.end) {
			return true
		}
	}
	return false
}

func (r *result) fiveXXOutside() (in, out int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.fiveXX {
		if r.inWindow(t) {
			in++
		} else {
			out++
		}
	}
	return in, out
}

func (r *result) problems(cfg config) []string {
	var p []string
	// A session refreshes once per (lifetime - leeway); one more for the
	// phase of its login, one more for a retry after a fault.
	due := int(math.Ceil(cfg.duration.Seconds() / (cfg.tokenLifetime - cfg.leeway).Seconds()))
	if _, _, most := r.tokenStats(); most > due+2 {
		p = append(p, fmt.Sprintf("a session refreshed %d times, %d were due: a refresh storm", most, due))
	}
	if n := r.lost.Load(); n > 0 {
		p = append(p, fmt.Sprintf("%d sessions lost (302/401/403 on a valid session)", n))
	}
	if _, out := r.fiveXXOutside(); out > 0 {
		p = append(p, fmt.Sprintf("%d answers 5xx outside the fault windows", out))
	}
	if n := r.badToken.Load(); n > 0 {
		p = append(p, fmt.Sprintf("%d requests reached the upstream with an invalid or foreign token", n))
	}
	if r.goroutinesAfter > r.goroutinesBefore {
		p = append(p, fmt.Sprintf("plugin goroutines grew from %d to %d", r.goroutinesBefore, r.goroutinesAfter))
	}
	if r.connsAfterReload > 0 {
		p = append(p, fmt.Sprintf("%d connections to Spotify still open after a reload with no traffic", r.connsAfterReload))
	}
	return p
}

// run does one run: the plugin's (withPlugin) or the control.
func run(ctx context.Context, cfg config, withPlugin bool) (*result, error) {
	res := &result{name: "spotify_auth", tokens: make([]map[string]struct{}, cfg.sessions)}
	if !withPlugin {
		res.name = "control (no plugin)"
	}
	for i := range res.tokens {
		res.tokens[i] = map[string]struct{}{}
	}
	fmt.Printf("\n== run: %s, %s of load, %d sessions x %d requesters\n", res.name, cfg.duration, cfg.sessions, cfg.workers)

	sitePort, adminPort := cfg.basePort, cfg.basePort+1
	site := fmt.Sprintf("http://127.0.0.1:%d", sitePort)
	redirectURI := site + "/oauth2/spotify/callback"

	// Another server on these ports would answer in Caddy's place.
	for _, p := range []int{sitePort, adminPort} {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p), time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("port %d on 127.0.0.1 is in use; set BASE_PORT", p)
		}
	}

	fake := spotifytest.NewServer()
	defer fake.Close()
	fake.AddClient(spotifytest.Client{ID: "soak", RedirectURIs: []string{redirectURI}})
	fake.SetAccessTokenLifetime(cfg.tokenLifetime)
	fake.SetRotateRefreshTokens(true)
	for i := range cfg.sessions {
		fake.AddUser(spotifytest.User{ID: sessionUser(i), Product: "premium"})
	}
	fakePort := mustPort(fake.URL)

	up := &upstream{fake: fake, res: res, checkTokens: withPlugin}
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	upSrv := &http.Server{Handler: up, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = upSrv.Serve(upLn) }()
	defer upSrv.Close()

	dir, err := filepath.Abs(filepath.Join(cfg.out, strings.Fields(res.name)[0]))
	if err != nil {
		return nil, err
	}
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cf := caddyfile{adminPort: adminPort, sitePort: sitePort, storage: filepath.Join(dir, "storage"),
		upstream: upLn.Addr().String(), fake: fake.URL, redirectURI: redirectURI, leeway: cfg.leeway, plugin: withPlugin}
	if err := os.WriteFile(filepath.Join(dir, "Caddyfile"), []byte(cf.render(0)), 0o644); err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(dir, "caddy.log"))
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	caddy := exec.Command(cfg.caddyBin, "run", "--config", filepath.Join(dir, "Caddyfile"), "--adapter", "caddyfile")
	caddy.Stdout, caddy.Stderr = logFile, logFile
	if err := caddy.Start(); err != nil {
		return nil, err
	}
	defer stopProcess(caddy)
	if err := waitPort(sitePort); err != nil {
		return nil, fmt.Errorf("%w; see %s", err, logFile.Name())
	}
	pid := caddy.Process.Pid
	admin := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	fmt.Printf("Caddy pid %d on %s (admin %s), fake Spotify %s, upstream %s; config and log in %s\n",
		pid, site, admin, fake.URL, upLn.Addr(), dir)

	// One transport per session: its connections are its own, as a
	// browser's would be.
	// Logins are spread over one token lifetime, so refreshes are too, as
	// with real users.
	sessions := make([]*soakSession, cfg.sessions)
	for i := range sessions {
		if withPlugin && i > 0 {
			time.Sleep(cfg.tokenLifetime / time.Duration(cfg.sessions))
		}
		jar, _ := cookiejar.New(nil)
		tr := &http.Transport{MaxIdleConnsPerHost: cfg.workers, IdleConnTimeout: time.Minute}
		sessions[i] = &soakSession{i: i, site: site, fake: fake, client: &http.Client{
			Jar: jar, Transport: tr, Timeout: 30 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}}
		if withPlugin {
			if err := sessions[i].login(ctx); err != nil {
				return nil, fmt.Errorf("session %d login: %w", i, err)
			}
		}
	}
	if withPlugin {
		fmt.Printf("%d sessions logged in (one Spotify user each), spread over %s\n", cfg.sessions, cfg.tokenLifetime)
	}

	time.Sleep(500 * time.Millisecond)
	res.goroutinesBefore = pluginGoroutines(admin)
	res.connsBefore = connsTo(pid, fakePort)
	res.connsPeak = res.connsBefore
	res.rssBefore = rssKB(pid)
	res.storedBefore = countFiles(filepath.Join(cf.storage, "spotify_auth", "refresh"))
	fake.ResetCounts()

	// The load.
	loadCtx, stopLoad := context.WithTimeout(ctx, cfg.duration)
	defer stopLoad()
	start := time.Now()
	var wg sync.WaitGroup
	for _, s := range sessions {
		for range cfg.workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.load(loadCtx, res, cfg.think, withPlugin)
			}()
		}
	}

	// The schedule: reloads spread evenly, the outage at a quarter of the
	// run, the 429 at 70 %.
	events := []event{}
	for i := 1; i <= cfg.reloads; i++ {
		n := i
		events = append(events, event{at: cfg.duration * time.Duration(i) / time.Duration(cfg.reloads+1), do: func() {
			t0 := time.Now()
			err := reload(admin, cf.render(n))
			d := time.Since(t0)
			res.mu.Lock()
			res.reloadAt = append(res.reloadAt, t0)
			res.reloadDur = append(res.reloadDur, d)
			res.mu.Unlock()
			change := fmt.Sprintf("header X-Soak-Config %d", n)
			if withPlugin {
				change = fmt.Sprintf("timeout %s, ", cf.timeout(n)) + change
			}
			logEvent(start, "reload %d (%s): %s", n, change, errOr(err, "done in "+d.Round(time.Millisecond).String()))
		}})
	}
	if withPlugin {
		events = append(events, event{at: cfg.duration / 4, do: func() {
			t0 := time.Now()
			fake.InjectFault(spotifytest.EndpointToken, spotifytest.Fault{Status: http.StatusServiceUnavailable})
			logEvent(start, "token endpoint outage: every token request answers 503 for %s", cfg.outage)
			select {
			case <-time.After(cfg.outage):
			case <-loadCtx.Done():
			}
			fake.ClearFaults()
			end := time.Now()
			res.mu.Lock()
			res.windows = append(res.windows, window{"outage", t0, end.Add(refreshRetryPause + time.Second)})
			res.mu.Unlock()
			logEvent(start, "token endpoint back")
		}}, event{at: cfg.duration * 7 / 10, do: func() {
			t0 := time.Now()
			failed := fake.Counts().TokenErrors
			fake.InjectFault(spotifytest.EndpointToken, spotifytest.Fault{Status: http.StatusTooManyRequests,
				RetryAfter: strconv.Itoa(cfg.retryAfter), Times: 1})
			logEvent(start, "token endpoint: the next token request answers 429 with Retry-After: %d", cfg.retryAfter)
			// The window runs from now until its effects are over, counted
			// from when the 429 is actually served: the next refresh may
			// be a while off.
			for fake.Counts().TokenErrors == failed && loadCtx.Err() == nil {
				time.Sleep(10 * time.Millisecond)
			}
			served := time.Now()
			logEvent(start, "429 served")
			ra := time.Duration(cfg.retryAfter) * time.Second
			res.mu.Lock()
			res.windows = append(res.windows, window{"429", t0, served.Add(max(ra, refreshRetryPause) + time.Second)})
			res.mu.Unlock()
		}})
	}
	// 5xx answers are sorted into the fault windows after the run, once
	// every window is known.
	var ewg sync.WaitGroup
	for _, e := range events {
		ewg.Add(1)
		go func() {
			defer ewg.Done()
			select {
			case <-time.After(e.at):
				e.do()
			case <-loadCtx.Done():
			}
		}()
	}
	sample := time.NewTicker(time.Second)
	for loadCtx.Err() == nil {
		select {
		case <-sample.C:
			res.connsPeak = max(res.connsPeak, connsTo(pid, fakePort))
		case <-loadCtx.Done():
		}
	}
	sample.Stop()
	wg.Wait()
	ewg.Wait()
	res.elapsed = time.Since(start)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	for _, s := range sessions {
		s.client.CloseIdleConnections()
	}

	// After: once the requests are done, and once more after one further
	// reload with no traffic, which must leave nothing of the old config.
	time.Sleep(2 * time.Second)
	res.connsAfterLoad = connsTo(pid, fakePort)
	if err := reload(admin, cf.render(cfg.reloads+1)); err != nil {
		return nil, fmt.Errorf("final reload: %w", err)
	}
	time.Sleep(2 * time.Second)
	runtimeGC(admin)
	res.connsAfterReload = connsTo(pid, fakePort)
	res.goroutinesAfter = pluginGoroutines(admin)
	res.rssAfter = rssKB(pid)
	res.storedAfter = countFiles(filepath.Join(cf.storage, "spotify_auth", "refresh"))
	counts := fake.Counts()
	res.fakeRefresh, res.fakeTokenErr = counts.Refreshes, counts.TokenErrors
	res.logProblems = countLogProblems(logFile.Name())
	return res, nil
}

type event struct {
	at time.Duration
	do func()
}

func logEvent(start time.Time, format string, args ...any) {
	fmt.Printf("  %6.1fs  %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
}

func errOr(err error, ok string) string {
	if err != nil {
		return "FAILED: " + err.Error()
	}
	return ok
}

func sessionUser(i int) string { return fmt.Sprintf("soak%02d", i) }

// soakSession is one logged-in browser: its cookie jar is shared by its
// requesters, as a browser's tabs share it.
type soakSession struct {
	i      int
	site   string
	fake   *spotifytest.Server
	client *http.Client
}

// login goes through the real flow: the protected page redirects to the
// fake's /authorize, this session's user approves, the callback sets the
// session cookie and sends the browser back.
func (s *soakSession) login(ctx context.Context) error {
	resp, _, err := s.get(ctx, s.site+"/", true)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusFound {
		return fmt.Errorf("protected page without a session: %d, want 302", resp.StatusCode)
	}
	loc, err := resp.Location()
	if err != nil {
		return err
	}
	if loc.Path != "/authorize" {
		// Through the plugin's login endpoint first.
		if resp, _, err = s.get(ctx, loc.String(), true); err != nil {
			return err
		}
		if loc, err = resp.Location(); err != nil {
			return err
		}
	}
	callback, err := s.fake.Approve(loc.String(), sessionUser(s.i))
	if err != nil {
		return err
	}
	if resp, _, err = s.get(ctx, callback, true); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusFound {
		return fmt.Errorf("callback: %d, want 302", resp.StatusCode)
	}
	resp, body, err := s.get(ctx, s.site+"/", true)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || body != "ok" {
		return fmt.Errorf("after login: %d %.100q", resp.StatusCode, body)
	}
	return nil
}

func (s *soakSession) get(ctx context.Context, u string, navigate bool) (*http.Response, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, "", err
	}
	if navigate {
		req.Header.Set("Accept", "text/html")
	} else {
		req.Header.Set("Accept", "application/json")
	}
	req.Header.Set("X-Soak-Session", strconv.Itoa(s.i))
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp, string(body), err
}

// load sends requests until ctx ends: API calls (401 if the session were
// lost) and page loads (302) in turn.
func (s *soakSession) load(ctx context.Context, res *result, think time.Duration, withPlugin bool) {
	for n := 0; ctx.Err() == nil; n++ {
		t0 := time.Now()
		resp, _, err := s.get(ctx, s.site+"/api/x", n%2 == 1)
		if ctx.Err() != nil {
			return
		}
		res.requests.Add(1)
		switch {
		case err != nil:
			res.connErrors.Add(1)
			res.mu.Lock()
			res.connErrAt = append(res.connErrAt, t0)
			if len(res.connErrAt) <= 3 {
				fmt.Printf("  session %d: %v\n", s.i, err)
			}
			res.mu.Unlock()
		case resp.StatusCode >= 200 && resp.StatusCode < 300:
			res.ok2xx.Add(1)
		case resp.StatusCode == http.StatusFound || resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
			res.lost.Add(1)
			fmt.Printf("  session %d lost: %d\n", s.i, resp.StatusCode)
			if withPlugin {
				if err := s.login(ctx); err != nil && ctx.Err() == nil {
					fmt.Printf("  session %d: login again failed: %v\n", s.i, err)
				}
			}
		case resp.StatusCode >= 500:
			res.mu.Lock()
			res.fiveXX = append(res.fiveXX, t0)
			res.mu.Unlock()
		default:
			res.other.Add(1)
		}
		select {
		case <-time.After(think):
		case <-ctx.Done():
		}
	}
}

// upstream answers "ok" and, with the plugin in front, checks that the
// token it got is valid at the fake and is the requesting session's.
type upstream struct {
	fake        *spotifytest.Server
	res         *result
	checkTokens bool
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if u.checkTokens {
		i, err := strconv.Atoi(r.Header.Get("X-Soak-Session"))
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		user, _, valid := u.fake.AccessTokenInfo(tok)
		if err != nil || i < 0 || i >= len(u.res.tokens) || !ok || !valid || user != sessionUser(i) {
			u.res.badToken.Add(1)
			why := "expired or unknown at the fake"
			switch {
			case !ok:
				why = "no bearer token"
			case user != "" && err == nil && user != sessionUser(i):
				why = "another session's token"
			}
			// Rare by design: print each, with how long the token had
			// left by the plugin's own account.
			fmt.Printf("  bad token upstream (session %s): %s; X-Spotify-Token-Expires %s, now %s\n",
				r.Header.Get("X-Soak-Session"), why, r.Header.Get("X-Spotify-Token-Expires"), time.Now().UTC().Format("15:04:05.000"))
		} else {
			u.res.mu.Lock()
			u.res.tokens[i][tok] = struct{}{}
			u.res.mu.Unlock()
		}
	}
	_, _ = io.WriteString(w, "ok")
}

// caddyfile renders the config of reload n.
type caddyfile struct {
	adminPort, sitePort int
	storage             string
	upstream, fake      string
	redirectURI         string
	leeway              time.Duration
	plugin              bool
}

// timeout is the plugin option each reload changes.
func (c caddyfile) timeout(n int) time.Duration { return time.Duration(10+n%5) * time.Second }

func (c caddyfile) render(n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{
	admin 127.0.0.1:%d
	auto_https off
	storage file_system %s
	log {
		level WARN
	}
}

http://127.0.0.1:%d {
	bind 127.0.0.1
	header X-Soak-Config %d
`, c.adminPort, c.storage, c.sitePort, n)
	if c.plugin {
		fmt.Fprintf(&b, `	spotify_auth {
		client_id soak
		authorize_url %[1]s/authorize
		token_url %[1]s/api/token
		api_url %[1]s
		redirect_uri %[2]s
		refresh_leeway %[3]s
		timeout %[4]s
	}
`, c.fake, c.redirectURI, c.leeway, c.timeout(n))
	}
	fmt.Fprintf(&b, "\treverse_proxy %s\n}\n", c.upstream)
	return b.String()
}

// reload replaces Caddy's config through its admin API.
func reload(admin, cfg string) error {
	req, err := http.NewRequest(http.MethodPost, admin+"/load", strings.NewReader(cfg))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("POST /load: %d %s", resp.StatusCode, body)
	}
	return nil
}

// pluginGoroutines counts Caddy's goroutines with a plugin function on
// their stack, from the admin API's goroutine profile.
func pluginGoroutines(admin string) int {
	resp, err := http.Get(admin + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	n, group, inPlugin := 0, 0, false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	flush := func() {
		if inPlugin {
			n += group
		}
		group, inPlugin = 0, false
	}
	for sc.Scan() {
		line := sc.Text()
		if count, _, ok := strings.Cut(line, " @ "); ok {
			flush()
			group, _ = strconv.Atoi(count)
		} else if strings.Contains(line, "caddyspotify/caddy-spotify-auth") {
			inPlugin = true
		}
	}
	flush()
	return n
}

// runtimeGC asks Caddy to collect garbage before RSS is read (a heap
// profile with gc=1 does that).
func runtimeGC(admin string) {
	resp, err := http.Get(admin + "/debug/pprof/heap?gc=1")
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// connsTo counts pid's established TCP connections to 127.0.0.1:port:
// the socket inodes of its open files, looked up in /proc/net/tcp.
func connsTo(pid, port int) int {
	inodes := map[string]bool{}
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	for _, fd := range fds {
		if l, err := os.Readlink(fd); err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		return -1
	}
	want := fmt.Sprintf("0100007F:%04X", port)
	n := 0
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		// sl local rem st ... inode (field 9)
		if len(f) > 9 && f[2] == want && f[3] == "01" && inodes[f[9]] {
			n++
		}
	}
	return n
}

func rssKB(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return -1
}

func countFiles(dir string) int {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	return len(entries)
}

// countLogProblems counts Caddy's log lines at ERROR or above.
func countLogProblems(path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, `"level":"error"`) || strings.Contains(line, `"level":"fatal"`) || strings.Contains(line, `"level":"panic"`) {
			n++
		}
	}
	return n
}

func printTable(w io.Writer, cfg config, rs []*result) {
	fmt.Fprintf(w, "\n== soak: %s per run, %d sessions x %d requesters (%s apart), tokens live %s, refresh_leeway %s, rotation on;\n"+
		"   %d reloads, a %s token-endpoint outage at 25 %%, a 429 (Retry-After: %d) at 70 %%\n\n",
		cfg.duration, cfg.sessions, cfg.workers, cfg.think, cfg.tokenLifetime, cfg.leeway, cfg.reloads, cfg.outage, cfg.retryAfter)
	table := [][]string{{""}}
	for _, r := range rs {
		table[0] = append(table[0], r.name)
	}
	row := func(name string, f func(r *result) string) {
		line := []string{name}
		for _, r := range rs {
			line = append(line, f(r))
		}
		table = append(table, line)
	}
	pluginOnly := func(f func(r *result) string) func(r *result) string {
		return func(r *result) string {
			if r.name != "spotify_auth" {
				return "-"
			}
			return f(r)
		}
	}
	row("requests", func(r *result) string {
		return fmt.Sprintf("%d (%.0f/s)", r.requests.Load(), float64(r.requests.Load())/r.elapsed.Seconds())
	})
	row("2xx", func(r *result) string {
		return fmt.Sprintf("%d (%.3f %%)", r.ok2xx.Load(), 100*float64(r.ok2xx.Load())/float64(max(1, r.requests.Load())))
	})
	row("sessions lost (302/401/403)", func(r *result) string { return strconv.FormatInt(r.lost.Load(), 10) })
	row("5xx outside fault windows", func(r *result) string { _, out := r.fiveXXOutside(); return strconv.Itoa(out) })
	row("5xx inside fault windows", pluginOnly(func(r *result) string {
		in, _ := r.fiveXXOutside()
		return fmt.Sprintf("%d (windows %s)", in, r.windowSummary())
	}))
	row("other statuses", func(r *result) string { return strconv.FormatInt(r.other.Load(), 10) })
	row("connection errors (all within 1 s of a reload)", func(r *result) string {
		at := r.connErrorsAtReload()
		return fmt.Sprintf("%d (%d)", r.connErrors.Load(), at)
	})
	row("reloads (admin API /load time)", func(r *result) string { return r.reloadSummary() })
	row("bad tokens upstream (invalid or foreign)", pluginOnly(func(r *result) string { return strconv.FormatInt(r.badToken.Load(), 10) }))
	lifetimes := cfg.duration.Seconds() / cfg.tokenLifetime.Seconds()
	expected := cfg.duration.Seconds() / (cfg.tokenLifetime - cfg.leeway).Seconds()
	row("new tokens per session min/median/max", pluginOnly(func(r *result) string {
		lo, med, hi := r.tokenStats()
		return fmt.Sprintf("%d / %d / %d", lo, med, hi)
	}))
	row("  token lifetimes elapsed; refreshes due", pluginOnly(func(*result) string {
		return fmt.Sprintf("%.1f; %.1f", lifetimes, expected)
	}))
	row("refresh calls at the fake (failed)", pluginOnly(func(r *result) string {
		return fmt.Sprintf("%d (%d); %.1f per session", r.fakeRefresh, r.fakeTokenErr, float64(r.fakeRefresh)/float64(cfg.sessions))
	}))
	row("plugin goroutines before -> after", pluginOnly(func(r *result) string {
		return fmt.Sprintf("%d -> %d", r.goroutinesBefore, r.goroutinesAfter)
	}))
	row("conns Caddy->Spotify before / peak / after load / after a reload", pluginOnly(func(r *result) string {
		return fmt.Sprintf("%d / %d / %d / %d", r.connsBefore, r.connsPeak, r.connsAfterLoad, r.connsAfterReload)
	}))
	row("refresh results in storage before -> after", pluginOnly(func(r *result) string {
		return fmt.Sprintf("%d -> %d", r.storedBefore, r.storedAfter)
	}))
	row("Caddy VmRSS before -> after", func(r *result) string {
		return fmt.Sprintf("%d -> %d kB (%+d)", r.rssBefore, r.rssAfter, r.rssAfter-r.rssBefore)
	})
	row("Caddy log lines at ERROR", func(r *result) string { return strconv.Itoa(r.logProblems) })
	printMarkdown(w, table)
}

// printMarkdown prints rows as a Markdown table, padded to line up.
func printMarkdown(w io.Writer, rows [][]string) {
	width := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], len(c))
		}
	}
	line := func(cells []string) {
		fmt.Fprint(w, "|")
		for i, c := range cells {
			if i == 0 {
				fmt.Fprintf(w, " %-*s |", width[i], c)
			} else {
				fmt.Fprintf(w, " %*s |", width[i], c)
			}
		}
		fmt.Fprintln(w)
	}
	line(rows[0])
	sep := make([]string, len(width))
	for i, n := range width {
		sep[i] = strings.Repeat("-", n)
		if i > 0 {
			sep[i] = sep[i][1:] + ":"
		}
	}
	line(sep)
	for _, r := range rows[1:] {
		line(r)
	}
}

func (r *result) windowSummary() string {
	var parts []string
	for _, w := range r.windows {
		parts = append(parts, fmt.Sprintf("%s %.0fs", w.what, w.end.Sub(w.start).Seconds()))
	}
	return strings.Join(parts, ", ")
}

func (r *result) connErrorsAtReload() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, t := range r.connErrAt {
		for i, at := range r.reloadAt {
			if t.After(at.Add(-time.Second)) && t.Before(at.Add(r.reloadDur[i]+time.Second)) {
				n++
				break
			}
		}
	}
	return n
}

func (r *result) reloadSummary() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var longest time.Duration
	for _, d := range r.reloadDur {
		longest = max(longest, d)
	}
	return fmt.Sprintf("%d (longest %s)", len(r.reloadAt), longest.Round(time.Millisecond))
}

func (r *result) tokenStats() (lo, med, hi int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n []int
	for _, m := range r.tokens {
		n = append(n, max(len(m)-1, 0)) // the login's token is not a refresh
	}
	slices.Sort(n)
	return n[0], n[len(n)/2], n[len(n)-1]
}

func waitPort(port int) error {
	for range 200 {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("port %d did not open", port)
}

func stopProcess(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func mustPort(u string) int {
	pu, err := url.Parse(u)
	if err != nil {
		fatalf("soak: %v", err)
	}
	p, err := strconv.Atoi(pu.Port())
	if err != nil {
		fatalf("soak: %v", err)
	}
	return p
}

func envDuration(name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		fatalf("soak: %s=%q: %v", name, v, err)
	}
	return d
}

func envInt(name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		fatalf("soak: %s=%q: %v", name, v, err)
	}
	return n
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(2)
}
