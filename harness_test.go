package spotifyauth

// The in-process test harness: the handler in an httptest server, in
// front of a recording upstream, against a fake Spotify, and the helpers
// the package's internal tests share. Tests that run a real Caddy share
// caddy_harness_test.go.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	_ "github.com/caddyserver/caddy/v2/modules/filestorage" // the storage option's file_system
	"github.com/caddyserver/certmagic"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"golang.org/x/oauth2"

	"github.com/caddyspotify/caddy-spotify-auth/internal/refresher"
	"github.com/caddyspotify/caddy-spotify-auth/internal/storagekeys"
	"github.com/caddyspotify/caddy-spotify-auth/internal/testkit"
	"github.com/caddyspotify/caddy-spotify-auth/internal/teststorage"
	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// ---- Setting up the handler ----

const testClientID = "test-client"

// Cookie secrets good enough for checkCookieSecret.
const (
	secretA = "k3Zq8vN1pX7rT2mW9yB4cD6fG0hJ5sLa"
	secretB = "Q9wE2rT7yU4iO1pA6sD3fG8hJ5kL0zXc"
)

// harness runs the handler in an httptest server, in front of an upstream
// that records what it receives, against a fake Spotify.
type harness struct {
	t        *testing.T
	fake     *spotifytest.Server
	h        *Handler
	srv      *httptest.Server
	browser  *http.Client // cookie jar, does not follow redirects
	mu       sync.Mutex
	upstream []*http.Request
	repl     []*caddy.Replacer
	reg      *prometheus.Registry
	// routes sends paths with these prefixes to other handlers (several
	// spotify_auth blocks on one site).
	routes map[string]*Handler
	// upstreamReply, if set, answers in place of the default upstream.
	upstreamReply func(w http.ResponseWriter)
	// instances are other instances of the same config: a request with
	// X-Test-Instance: n goes to instances[n-1] (see addInstance).
	instances []*Handler
	// storage is the storage option of h and its instances (Provision
	// consumes the handler's own copy).
	storage json.RawMessage
}

type harnessOpt func(*Handler, *spotifytest.Client)

func withSecret(secret string) harnessOpt {
	return func(h *Handler, c *spotifytest.Client) { h.ClientSecret, c.Secret = secret, secret }
}

func withStoredSessions() harnessOpt {
	return func(h *Handler, _ *spotifytest.Client) { h.SessionStore = sessionStoreStorage }
}

func withLeeway(d time.Duration) harnessOpt {
	return func(h *Handler, _ *spotifytest.Client) { h.RefreshLeeway = caddy.Duration(d) }
}

func withGeneratedKeys() harnessOpt {
	return func(h *Handler, _ *spotifytest.Client) { h.CookieSecrets = nil }
}

func withStorage(s certmagic.Storage) harnessOpt {
	return func(h *Handler, _ *spotifytest.Client) { h.StorageRaw = storageOption(s) }
}

func newHarness(t *testing.T, opts ...harnessOpt) *harness {
	t.Helper()
	hs := &harness{t: t, fake: testkit.NewFake(t)}

	hs.srv = httptest.NewUnstartedServer(http.HandlerFunc(hs.serve))
	hs.srv.Start()
	t.Cleanup(hs.srv.Close)

	h := &Handler{
		ClientID:      testClientID,
		Scopes:        []string{"user-read-email", "user-top-read"},
		CookieSecrets: []string{secretA},
		AuthorizeURL:  hs.fake.AuthorizeURL(),
		TokenURL:      hs.fake.TokenURL(),
		APIURL:        hs.fake.APIURL(),
	}
	client := spotifytest.Client{ID: testClientID, RedirectURIs: []string{hs.srv.URL + DefaultCallbackPath}}
	for _, o := range opts {
		o(h, &client)
	}
	hs.fake.AddClient(client)
	if h.StorageRaw == nil {
		h.StorageRaw = testStorage(t)
	}
	hs.storage = h.StorageRaw
	hs.h, hs.reg = provisionCtx(t, h)
	hs.browser = newBrowser(t)
	return hs
}

func provision(t *testing.T, h *Handler) *Handler {
	t.Helper()
	h, _ = provisionCtx(t, h)
	return h
}

func provisionCtx(t *testing.T, h *Handler) (*Handler, *prometheus.Registry) {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if h.StorageRaw == nil {
		h.StorageRaw = testStorage(t)
	}
	if err := h.Provision(ctx); err != nil {
		t.Fatalf("provision: %v", err)
	}
	if err := h.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	t.Cleanup(func() { _ = h.Cleanup() })
	h.logger = zaptest.NewLogger(t)
	return h, ctx.GetMetricsRegistry()
}

func newBrowser(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{
		Jar:           jar,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// ---- Storage, through the storage option as users configure it ----

// testStorage is the storage option of a private file_system storage, as
// Caddy would give.
func testStorage(t testing.TB) json.RawMessage {
	return fileStorage(t.TempDir())
}

func fileStorage(root string) json.RawMessage {
	raw, err := json.Marshal(map[string]string{"module": "file_system", "root": root})
	if err != nil {
		panic(err)
	}
	return raw
}

// storageOption is the storage option that gives a handler s itself: a
// file_system storage by its root, any other (a recording or failing
// one) through heldStorage, so handlers configured with it share the one
// instance the test holds.
func storageOption(s certmagic.Storage) json.RawMessage {
	if fs, ok := s.(*certmagic.FileStorage); ok {
		return fileStorage(fs.Path)
	}
	name := fmt.Sprintf("%T@%p", s, s)
	heldStorages.Store(name, s)
	raw, err := json.Marshal(map[string]string{"module": "spotify_auth_test_held", "name": name})
	if err != nil {
		panic(err)
	}
	return raw
}

// heldStorages are the storages tests hand to handlers by name.
var heldStorages sync.Map

// heldStorage is a test-only caddy.storage module: the storage the test
// registered under Name.
type heldStorage struct {
	Name string `json:"name"`
}

func init() { caddy.RegisterModule(heldStorage{}) }

func (heldStorage) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.storage.spotify_auth_test_held",
		New: func() caddy.Module { return new(heldStorage) },
	}
}

func (s heldStorage) CertMagicStorage() (certmagic.Storage, error) {
	held, ok := heldStorages.Load(s.Name)
	if !ok {
		return nil, fmt.Errorf("no storage held as %q", s.Name)
	}
	return held.(certmagic.Storage), nil
}

// storageKinds are the storages the coordination tests run on: Caddy's
// default, and a different certmagic.Storage implementation.
type storageKind struct {
	name string
	new  func(t *testing.T) certmagic.Storage
}

func storageKindName(k storageKind) string { return k.name }

var storageKinds = []storageKind{
	{"file_system", func(t *testing.T) certmagic.Storage { return &certmagic.FileStorage{Path: t.TempDir()} }},
	{"recording", func(t *testing.T) certmagic.Storage { return teststorage.New(t.TempDir()) }},
}

// storageHoldsNone fails if any entry in storage contains any of secrets.
func storageHoldsNone(t *testing.T, storage certmagic.Storage, secrets ...string) {
	t.Helper()
	keys, err := storage.List(context.Background(), "", true)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, k := range keys {
		data, err := storage.Load(context.Background(), k)
		if err != nil {
			continue // a directory
		}
		n++
		for _, secret := range secrets {
			if secret != "" && strings.Contains(string(data)+k, secret) {
				t.Fatalf("storage entry %s holds a secret in the clear", k)
			}
		}
	}
	if n == 0 {
		t.Fatal("storage holds nothing to check")
	}
}

func countStoredSessions(t *testing.T, storage certmagic.Storage) int {
	t.Helper()
	keys, err := storage.List(context.Background(), storagekeys.Sessions, true)
	if err != nil {
		return 0
	}
	n := 0
	for _, k := range keys {
		if info, err := storage.Stat(context.Background(), k); err == nil && info.IsTerminal {
			n++
		}
	}
	return n
}

// forgetRefreshes makes the handler forget recent refresh results, in
// memory and in storage, as if their time had passed.
func forgetRefreshes(tb testing.TB, h *Handler) {
	h.shared.refresh.Prune(time.Now().Add(refreshResultKeep))
	keys, _ := h.storage.List(context.Background(), storagekeys.RefreshResults, false)
	for _, k := range keys {
		if err := h.storage.Delete(context.Background(), k); err != nil {
			tb.Fatal(err)
		}
	}
}

// ---- Requests, and what the upstream got ----

// serve plays the part of Caddy's server: a replacer in the context, and
// an upstream as the next handler.
func (hs *harness) serve(w http.ResponseWriter, r *http.Request) {
	repl := caddy.NewReplacer()
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
	h := hs.h
	hs.mu.Lock()
	for prefix, other := range hs.routes {
		if strings.HasPrefix(r.URL.Path, prefix) {
			h = other
		}
	}
	if n, err := strconv.Atoi(r.Header.Get("X-Test-Instance")); err == nil && n > 0 {
		h = hs.instances[n-1]
	}
	hs.mu.Unlock()
	err := h.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		hs.mu.Lock()
		hs.upstream = append(hs.upstream, r.Clone(context.Background()))
		hs.repl = append(hs.repl, repl)
		reply := hs.upstreamReply
		hs.mu.Unlock()
		if reply != nil {
			reply(w)
			return nil
		}
		_, err := io.WriteString(w, "upstream:"+r.URL.RequestURI())
		return err
	}))
	if err != nil {
		hs.t.Errorf("ServeHTTP returned %v", err)
		w.WriteHeader(http.StatusInternalServerError)
	}
}

func (hs *harness) lastUpstream() *http.Request {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if len(hs.upstream) == 0 {
		return nil
	}
	return hs.upstream[len(hs.upstream)-1]
}

func (hs *harness) upstreamCount() int {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return len(hs.upstream)
}

// upstreamToken is the token the last request passed upstream.
func (hs *harness) upstreamToken() string {
	return strings.TrimPrefix(hs.lastUpstream().Header.Get("Authorization"), "Bearer ")
}

// get sends a browser navigation (or, with api, a fetch) and returns the
// response with its body read.
func (hs *harness) get(c *http.Client, path string, headers ...string) (*http.Response, string) {
	hs.t.Helper()
	return hs.do(c, hs.navigation(path, headers...))
}

// navigation is a browser's page load of path, with headers added.
func (hs *harness) navigation(path string, headers ...string) *http.Request {
	hs.t.Helper()
	req, err := http.NewRequest(http.MethodGet, hs.url(path), nil)
	if err != nil {
		hs.t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header[headers[i]] = append(req.Header[headers[i]], headers[i+1])
	}
	return req
}

func (hs *harness) do(c *http.Client, req *http.Request) (*http.Response, string) {
	hs.t.Helper()
	return testkit.Do(hs.t, c, req)
}

func (hs *harness) url(path string) string {
	if strings.HasPrefix(path, "http") {
		return path
	}
	return hs.srv.URL + path
}

func apiGet(hs *harness, c *http.Client, path string) (*http.Response, string) {
	req, _ := http.NewRequest(http.MethodGet, hs.url(path), nil)
	req.Header.Set("Accept", "application/json")
	return hs.do(c, req)
}

func mustQuery(t *testing.T, raw string) url.Values {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}

// ---- Logging in and out ----

// startLogin requests a protected path and returns the authorize URL the
// handler redirected to.
func (hs *harness) startLogin(c *http.Client, path string, headers ...string) string {
	hs.t.Helper()
	resp, _ := hs.get(c, path, headers...)
	if resp.StatusCode != http.StatusFound {
		hs.t.Fatalf("GET %s: status %d, want 302 to Spotify", path, resp.StatusCode)
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, hs.fake.AuthorizeURL()+"?") {
		hs.t.Fatalf("GET %s: redirected to %q, want the authorize endpoint", path, loc)
	}
	return loc
}

// login runs the whole flow for path in browser c and returns where the
// callback sent the browser.
func (hs *harness) login(c *http.Client, path string, headers ...string) string {
	hs.t.Helper()
	resp := hs.loginAs(c, path, spotifytest.DefaultUserID, headers...)
	if resp.StatusCode != http.StatusFound {
		body, _ := io.ReadAll(resp.Body)
		hs.t.Fatalf("callback: status %d, body %s", resp.StatusCode, body)
	}
	return resp.Header.Get("Location")
}

// loginAs runs the flow for path as the given fake user.
// loginAs runs the whole flow for path in browser c as the fake's user
// userID and returns the callback's answer.
func (hs *harness) loginAs(c *http.Client, path, userID string, headers ...string) *http.Response {
	hs.t.Helper()
	resp, err := hs.fake.LogIn(c, hs.navigation(path, headers...), userID)
	if err != nil {
		hs.t.Fatal(err)
	}
	return resp
}

// logout posts the logout form (query e.g. "?everywhere=1") and returns the page.
func logout(t *testing.T, hs *harness, c *http.Client, query string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, hs.url(EndpointPrefix+"logout"+query), nil)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	_, body := hs.do(c, req)
	return body
}

// ---- Sessions and cookies ----

// session returns the browser's session as the handler sees it.
func (hs *harness) session(c *http.Client) session {
	hs.t.Helper()
	r := httptest.NewRequest(http.MethodGet, hs.srv.URL+"/", nil)
	u, _ := url.Parse(hs.srv.URL)
	for _, ck := range c.Jar.Cookies(u) {
		r.AddCookie(ck)
	}
	s, err := hs.h.sessions.load(r, time.Now())
	if err != nil {
		hs.t.Fatalf("no session in the browser: %v", err)
	}
	return s
}

// cookieStoreOf is the handler's session store, or the cookie store a
// storage store is built on.
func cookieStoreOf(h *Handler) *cookieStore {
	switch s := h.sessions.(type) {
	case *cookieStore:
		return s
	case *storageStore:
		return s.cookieStore
	}
	panic(fmt.Sprintf("session store %T", h.sessions))
}

// storedOf is where the handler's stored sessions live.
func storedOf(h *Handler) *storedSessions { return cookieStoreOf(h).stored }

// refID is a stored session reference's random id: after its format
// byte and the 16 bytes naming the user's directory.
func refID(ref []byte) []byte { return ref[1+16:] }

// cacheOf is the handler's cache of opened sessions.
func cacheOf(h *Handler) *sessionCache { return cookieStoreOf(h).cache }

// useStoredSessions switches a provisioned handler to session_store
// storage.
func useStoredSessions(h *Handler) {
	h.SessionStore = sessionStoreStorage
	h.sessions = newSessionStore(h)
}

// reset empties the cache, so the next read of every session misses.
func (c *sessionCache) reset() {
	fresh := newSessionCache()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.opened, c.stored, c.kr = fresh.opened, fresh.stored, nil
	c.writes++ // a read in flight is not cached
}

// setSession replaces the browser's session with s: in its cookie, or
// with session_store storage where the cookie points.
func (hs *harness) setSession(c *http.Client, s session) string {
	hs.t.Helper()
	if s.storeKey != "" {
		if _, err := storedOf(hs.h).save(context.Background(), &s); err != nil {
			hs.t.Fatal(err)
		}
		return ""
	}
	u, _ := url.Parse(hs.srv.URL)
	value := hs.h.sealers().sessions.Seal(s.marshal(), hs.h.cookies.aad)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: "spotify_auth", Value: value, Path: "/"}})
	return value
}

// nearlyExpire moves the browser's token into the refresh leeway: still
// valid, but due for refresh.
func (hs *harness) nearlyExpire(c *http.Client) session {
	hs.t.Helper()
	s := hs.session(c)
	s.TokenExpires = time.Now().Add(time.Minute).Unix()
	hs.setSession(c, s)
	return s
}

// dueNow makes the browser's token due for refresh (and about to expire).
func (hs *harness) dueNow(c *http.Client) string {
	hs.t.Helper()
	s := hs.session(c)
	s.TokenExpires = time.Now().Add(10 * time.Second).Unix()
	return hs.setSession(c, s)
}

func cookieIn(t *testing.T, hs *harness, c *http.Client, name string) string {
	t.Helper()
	u, _ := url.Parse(hs.srv.URL)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == name {
			return ck.Value
		}
	}
	t.Fatalf("no %s cookie", name)
	return ""
}

func setCookieIn(t *testing.T, hs *harness, c *http.Client, name, value string) {
	t.Helper()
	u, _ := url.Parse(hs.srv.URL)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: name, Value: value, Path: "/"}})
}

func setCookieNamed(resp *http.Response, name string) bool {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return true
		}
	}
	return false
}

func sampleSession() session {
	return session{
		Created: 1700000000, Expires: 1800000000, TokenExpires: 1700003600,
		AccessToken: "BQC-access", RefreshToken: "AQD-refresh",
		Scopes: "user-read-email user-top-read", UserID: "alice", AccountID: "4Nq7aLiCe0aCc0uNt1d2x3",
		DisplayName: "Alice Åström 🎧", Email: "alice@example.com", Product: "premium", Country: "SE",
	}
}

func mustKeyring(t *testing.T, key []byte, app string) *keyring {
	kr, err := newKeyring([][]byte{key}, app)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// ---- Several instances of one config ----

// addInstance provisions another instance of the harness's handler: same
// config and storage, its own memory. Requests with X-Test-Instance: n
// reach it.
func (hs *harness) addInstance() (*Handler, *prometheus.Registry) {
	hs.t.Helper()
	h, reg := hs.sameConfig(nil)
	// Another process shares no memory. The background work reads the
	// shared state, so it stops first (tests run maintenance by hand).
	h.maintenance.stopAndWait()
	h.shared = newSharedState()
	provisionRefresh(h)
	hs.mu.Lock()
	hs.instances = append(hs.instances, h)
	hs.mu.Unlock()
	return h, reg
}

// refreshClockAhead sets the refresh coordinators of the harness's
// handler and its instances to a clock d ahead: what they remember, and
// for how long, is decided on that clock, so a test need not wait.
func (hs *harness) refreshClockAhead(d time.Duration) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	for _, h := range append([]*Handler{hs.h}, hs.instances...) {
		cfg := refresherConfig(h)
		cfg.Now = func() time.Time { return time.Now().Add(d) }
		h.refresh = refresher.New(h.shared.refresh, cfg)
	}
}

// sameConfig provisions a new handler with the harness handler's config
// and storage, changed by change if given, as a reload would.
func (hs *harness) sameConfig(change func(*Handler)) (*Handler, *prometheus.Registry) {
	hs.t.Helper()
	data, err := json.Marshal(hs.h)
	if err != nil {
		hs.t.Fatal(err)
	}
	h := new(Handler)
	if err := json.Unmarshal(data, h); err != nil {
		hs.t.Fatal(err)
	}
	h.StorageRaw = hs.storage // Provision consumed hs.h's
	if change != nil {
		change(h)
	}
	return provisionCtx(hs.t, h)
}

// routeTo sends requests with X-Test-Instance: n+1 to h, as another
// process would get them.
func (hs *harness) routeTo(h *Handler) []string {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.instances = append(hs.instances, h)
	return onInstance(len(hs.instances))
}

// onInstance is the header pair sending a request to instance n (0: the
// harness's own handler).
func onInstance(n int) []string {
	if n == 0 {
		return nil
	}
	return []string{"X-Test-Instance", strconv.Itoa(n)}
}

type result struct {
	status int
	token  string
	took   time.Duration
}

// burst sends n concurrent API requests for path from browser c, spread
// over the instances in turn, and returns each answer and the token the
// upstream got for it.
func (hs *harness) burst(c *http.Client, path string, n, instances int) []result {
	hs.t.Helper()
	results := make([]result, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, hs.url(path), nil)
			if h := onInstance(i % instances); h != nil {
				req.Header.Set(h[0], h[1])
			}
			req.Header.Set("X-Test-Request", strconv.Itoa(i))
			<-start
			t0 := time.Now()
			resp, err := c.Do(req)
			if err != nil {
				return
			}
			resp.Body.Close()
			results[i] = result{status: resp.StatusCode, took: time.Since(t0)}
		}()
	}
	close(start)
	wg.Wait()
	hs.mu.Lock()
	defer hs.mu.Unlock()
	for _, up := range hs.upstream {
		if i, err := strconv.Atoi(up.Header.Get("X-Test-Request")); err == nil && i < n {
			results[i].token = strings.TrimPrefix(up.Header.Get("Authorization"), "Bearer ")
		}
	}
	return results
}

// retryAfterPassed stands for Spotify's Retry-After having passed: the
// back-off ends here and in storage, and so does the pause after the
// failed refresh.
func retryAfterPassed(t *testing.T, h *Handler) {
	t.Helper()
	h.shared.refresh.EndPause(refresher.Calls)
	ctx := context.Background()
	keys, err := h.storage.List(ctx, storagekeys.Backoff, false)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	for _, k := range keys {
		if err := h.storage.Delete(ctx, k); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
	}
}

// loginLimitWaited stands for d having passed for the login limiter's
// per-block buckets (not its overall budget): each refills as if its last
// use were d earlier.
func loginLimitWaited(h *Handler, d time.Duration) {
	e := &h.shared.exchanges
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, tables := range [][]blockTable{e.v4[:], e.v6[:]} {
		for i := range tables {
			for j := range tables[i].slots {
				tables[i].slots[j].b.last -= int64(d)
			}
		}
	}
}

// ---- Metrics ----

func (hs *harness) metric(name string, labels ...string) float64 {
	hs.t.Helper()
	return metricValue(hs.t, hs.reg, name, labels...)
}

// metricValue reads a counter from the registry, as /metrics would.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metric:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metric
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// ---- Config and payloads ----

func adapt(t *testing.T, body string) (string, error) {
	t.Helper()
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(body), nil)
	return string(out), err
}

// handlersIn returns the spotify_auth handlers of an adapted config, and
// the matcher sets of their routes.
func handlersIn(t *testing.T, cfgJSON string) ([]Handler, [][]map[string]json.RawMessage) {
	t.Helper()
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Routes []json.RawMessage `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		t.Fatal(err)
	}
	var hs []Handler
	var matchers [][]map[string]json.RawMessage
	var walk func(routes []json.RawMessage)
	walk = func(routes []json.RawMessage) {
		for _, raw := range routes {
			var r struct {
				Match  []map[string]json.RawMessage `json:"match"`
				Handle []json.RawMessage            `json:"handle"`
			}
			_ = json.Unmarshal(raw, &r)
			for _, hraw := range r.Handle {
				var kind struct {
					Handler string            `json:"handler"`
					Routes  []json.RawMessage `json:"routes"`
				}
				_ = json.Unmarshal(hraw, &kind)
				if kind.Handler == "spotify_auth" {
					var h Handler
					if err := json.Unmarshal(hraw, &h); err != nil {
						t.Fatal(err)
					}
					hs = append(hs, h)
					matchers = append(matchers, r.Match)
				}
				walk(kind.Routes)
			}
		}
	}
	for _, srv := range cfg.Apps.HTTP.Servers {
		walk(srv.Routes)
	}
	return hs, matchers
}

func loadRedirectPayloads(t testing.TB) []string {
	t.Helper()
	f, err := os.Open("testdata/open_redirect_payloads.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 64*1024)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		p, err := strconv.Unquote(line)
		if err != nil {
			t.Fatalf("bad corpus line %q: %v", line, err)
		}
		out = append(out, p)
	}
	return out
}

// assertSameOrigin fails unless rd, used as a Location on
// https://example.com, stays on that origin in every reading a browser or
// a decoding proxy could give it.
func assertSameOrigin(t testing.TB, payload, rd string) {
	t.Helper()
	if rd == "" || rd[0] != '/' || strings.HasPrefix(rd, "//") || strings.HasPrefix(rd, "/\\") {
		t.Fatalf("%q -> %q: not a rooted path", payload, rd)
	}
	base, _ := url.Parse("https://example.com/some/page")
	if strings.ContainsAny(rd, " ") {
		t.Fatalf("%q -> %q: contains a space", payload, rd)
	}
	v := rd
	for range 4 {
		if strings.ContainsAny(v, "\\\t\r\n\x00") {
			t.Fatalf("%q -> %q: contains characters browsers strip or reinterpret", payload, rd)
		}
		ref, err := url.Parse(v)
		if err != nil {
			t.Fatalf("%q -> %q: unparsable: %v", payload, rd, err)
		}
		if got := base.ResolveReference(ref); got.Host != "example.com" || got.Scheme != "https" {
			t.Fatalf("%q -> %q: resolves to another origin %s", payload, rd, got)
		}
		dec, err := url.PathUnescape(v)
		if err != nil || dec == v {
			break
		}
		v = dec
	}
}

// ---- Benchmarks ----

// zapNop keeps benchmarks and fuzzers quiet.
var zapNop = zap.NewNop()

// benchHandler is a provisioned handler for a benchmark that calls
// ServeHTTP directly, and a request to copy.
func benchHandler(b *testing.B) (*Handler, *http.Request) {
	return benchHandlerOn(b, testStorage(b))
}

func benchHandlerOn(b *testing.B, storage json.RawMessage) (*Handler, *http.Request) {
	h := &Handler{ClientID: testClientID, CookieSecrets: []string{secretA}, StorageRaw: storage}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	b.Cleanup(cancel)
	if err := h.Provision(ctx); err != nil {
		b.Fatal(err)
	}
	h.logger = zapNop
	r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1/app/", nil)
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
	return h, r
}

// nopNext answers as an upstream would, so the response wrapper runs too.
var nopNext = caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error { w.WriteHeader(http.StatusOK); return nil })

// benchServe runs one request per iteration with the given Cookie header.
func benchServe(b *testing.B, h *Handler, base *http.Request, cookie, accept string, perIter func()) {
	b.Helper()
	// The request, its header map and the writer are reused, so that
	// allocs/op counts the handler's allocations alone.
	w := &discardWriter{h: http.Header{}}
	r := new(http.Request)
	hdr := http.Header{}
	cookieVal, acceptVal := []string{cookie}, []string{accept}
	// As in Caddy, the request context holds the replacer and the vars map
	// (which the strip routes read), a fixed few levels deep.
	root := context.WithValue(base.Context(), caddyhttp.VarsCtxKey, map[string]any{})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if perIter != nil {
			perIter()
		}
		// Caddy makes a replacer per request; the handler adds a
		// placeholder provider to it. A fresh one every 256 requests keeps
		// the provider list short at no measurable cost per request. (It
		// replaces, not wraps, the context: a chain growing with the
		// iterations made every context lookup slower as the run went on.)
		if i++; i%256 == 1 {
			base = base.WithContext(context.WithValue(root, caddy.ReplacerCtxKey, caddy.NewReplacer()))
		}
		*r = *base
		clear(hdr)
		hdr["Cookie"], hdr["Accept"] = cookieVal, acceptVal
		r.Header = hdr
		clear(w.h)
		if err := h.ServeHTTP(w, r, nopNext); err != nil {
			b.Fatal(err)
		}
	}
}

func validSession(expires time.Duration) session {
	s := sampleSession()
	s.Expires = time.Now().Add(24 * time.Hour).Unix()
	s.TokenExpires = time.Now().Add(expires).Unix()
	return s
}

// fakeRefreshToken logs in to the fake as a public client and returns the
// refresh token.
func fakeRefreshToken(b *testing.B, fake *spotifytest.Server) string {
	b.Helper()
	cfg := &oauth2.Config{
		ClientID:    testClientID,
		RedirectURL: "http://127.0.0.1/cb",
		Endpoint:    oauth2.Endpoint{AuthURL: fake.AuthorizeURL(), TokenURL: fake.TokenURL(), AuthStyle: oauth2.AuthStyleInParams},
	}
	verifier := oauth2.GenerateVerifier()
	cb, err := fake.Approve(cfg.AuthCodeURL("state-1234567890", oauth2.S256ChallengeOption(verifier)), spotifytest.DefaultUserID)
	if err != nil {
		b.Fatal(err)
	}
	u, _ := url.Parse(cb)
	tok, err := cfg.Exchange(b.Context(), u.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		b.Fatal(err)
	}
	return tok.RefreshToken
}

// discardWriter is a ResponseWriter that keeps nothing, so benchmarks
// measure the handler rather than a recorder's buffer.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

// ---- Views of internals only tests need ----

func (t *blockTable) len() int { return len(t.index) }

func (s *sharedState) usedStateCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.usedState.Len()
}

// runAtOnce runs each case as a subtest, all of them at the same time.
// It is for cases that wait on real clocks (token lifetimes, pauses) far
// more than they compute: t.Parallel would queue them behind -parallel,
// which is sized for the CPUs, and the package would wait out each
// clock in turn.
func runAtOnce[C any](t *testing.T, cases []C, name func(C) string, run func(*testing.T, C)) {
	t.Helper()
	var wg sync.WaitGroup
	for _, c := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(name(c), func(t *testing.T) { run(t, c) })
		}()
	}
	wg.Wait()
}

// freePorts returns n ports free for a Caddy process to bind later
// (testkit.FreePorts: below the ephemeral range, each handed out once).
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	return testkit.FreePorts(t, n)
}
