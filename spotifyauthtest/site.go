// Package spotifyauthtest starts a real Caddy, in the test's own process,
// with the spotify_auth plugin in front of your app and a fake Spotify
// (package spotifytest) behind it, for end-to-end tests of an app that
// runs behind the plugin:
//
//	app := httptest.NewServer(myHandler)
//	defer app.Close()
//	site := spotifyauthtest.Start(t, nil, app.URL, spotifyauthtest.WithScopes("user-top-read"))
//	resp, err := site.Client(t, spotifytest.DefaultUserID).Get(site.URL + "/")
//
// It gets right what a hand-written setup tends to get wrong: Caddy's
// admin endpoint and config persistence are off, storage is a temporary
// directory, the site binds 127.0.0.1 only on a free port, and the exact
// redirect URI is registered at the fake before Caddy starts.
//
// Site.LogIn says when the site refuses a user (ErrRefused: not on the
// development-mode list, not admitted by allow_* rules), Site.LogOut ends
// a session as the logout button does, and NoRedirects shows a client the
// redirects themselves. Keep the tests that Start a site in a package of
// their own: it compiles Caddy, and unit tests with spotifytest alone stay
// fast.
//
// Caddy's running config is process-wide, so one Site runs at a time in a
// process: tests that Start a Site must not call t.Parallel (Start fails
// the test if another Site is running). Unit tests that need no Caddy use
// spotifytest's IssueToken and NewForwardedRequest instead.
package spotifyauthtest

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile" // the caddyfile adapter
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddyspotify/caddy-spotify-auth" // the spotify_auth directive
	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// ClientID is the app the Site registers at the fake and configures
// spotify_auth with.
const ClientID = "spotifyauthtest"

// portAttempts bounds the retries when a probed free port is taken by
// someone else before Caddy binds it.
const portAttempts = 5

// Site is a running Caddy serving one site: spotify_auth, then
// reverse_proxy to the upstream.
type Site struct {
	URL         string // http://127.0.0.1:PORT, no trailing slash
	RedirectURI string // URL + "/oauth2/spotify/callback", registered at the fake
	// Fake is the fake Spotify the plugin talks to; nil with
	// WithRealSpotify.
	Fake *spotifytest.Server
	// Caddyfile is the config Caddy runs, formatted as caddy fmt would.
	Caddyfile string

	closeOnce sync.Once
	cleanups  []func()
}

// Option changes the site's config.
type Option func(*config)

type config struct {
	matcher     string
	scopes      []string
	directives  []string
	public      bool
	addr        string
	realID      string
	realSecret  string
	realSpotify bool
	siteLines   []string
	storage     string
}

// WithScopes sets the scopes spotify_auth asks for. Default: none.
func WithScopes(scopes ...string) Option {
	return func(c *config) { c.scopes = append(c.scopes, scopes...) }
}

// WithMatcher puts only the matched requests behind the login, e.g.
// "/app/*". Default: the whole site.
func WithMatcher(matcher string) Option {
	return func(c *config) { c.matcher = matcher }
}

// WithDirectives adds subdirectives to the spotify_auth block, one per
// string, e.g. "required_scopes streaming" or "token_endpoint".
func WithDirectives(lines ...string) Option {
	return func(c *config) { c.directives = append(c.directives, lines...) }
}

// WithSiteDirectives adds directives to the site block, one per string,
// e.g. `respond /health "ok"` or `header X-Frame-Options DENY`. Caddy
// orders them as usual: spotify_auth runs before respond, handle,
// file_server and reverse_proxy.
func WithSiteDirectives(lines ...string) Option {
	return func(c *config) { c.siteLines = append(c.siteLines, lines...) }
}

// WithPublicClient registers the app without a client secret: the plugin
// then relies on PKCE alone, as with a public client on Spotify.
func WithPublicClient() Option {
	return func(c *config) { c.public = true }
}

// WithAddr makes Caddy listen on addr, a loopback IP literal and a port
// (Spotify accepts plain-http redirect URIs only there). Default:
// 127.0.0.1 on a free port.
func WithAddr(addr string) Option {
	return func(c *config) { c.addr = addr }
}

// WithRealSpotify talks to accounts.spotify.com and api.spotify.com with
// the given app instead of a fake: for demos, never for tests. The values
// may be placeholders such as {env.SPOTIFY_CLIENT_ID}, which the plugin
// resolves itself; clientSecret "" makes a public client.
func WithRealSpotify(clientID, clientSecret string) Option {
	return func(c *config) { c.realSpotify, c.realID, c.realSecret = true, clientID, clientSecret }
}

var running sync.Mutex // held while a Site runs: Caddy's config is process-wide

// Start runs a Site for the test: Caddy with spotify_auth in front of
// upstream (a base URL such as httptest.Server's URL; "" for none, when
// WithSiteDirectives answers) against fake (nil starts a new fake, closed
// when the test ends). Caddy stops when the test
// ends. Start fails the test if Caddy cannot start.
func Start(t testing.TB, fake *spotifytest.Server, upstream string, opts ...Option) *Site {
	t.Helper()
	var c config
	for _, o := range opts {
		o(&c)
	}
	if c.realSpotify {
		t.Fatal("spotifyauthtest: WithRealSpotify is for demos: tests must not reach the internet")
	}
	if fake == nil {
		fake = spotifytest.NewServer()
		t.Cleanup(fake.Close)
	}
	c.storage = t.TempDir()
	s, err := start(fake, upstream, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// New runs a Site outside a test, e.g. for a demo; Close stops it. fake
// must be nil exactly when WithRealSpotify is given.
func New(fake *spotifytest.Server, upstream string, opts ...Option) (*Site, error) {
	var c config
	for _, o := range opts {
		o(&c)
	}
	if (fake == nil) != c.realSpotify {
		return nil, errors.New("spotifyauthtest: New needs a fake Spotify, or WithRealSpotify and no fake")
	}
	dir, err := os.MkdirTemp("", "spotifyauthtest-")
	if err != nil {
		return nil, err
	}
	c.storage = dir
	s, err := start(fake, upstream, c)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s.cleanups = append([]func(){func() { os.RemoveAll(dir) }}, s.cleanups...)
	return s, nil
}

func start(fake *spotifytest.Server, upstream string, c config) (_ *Site, err error) {
	var up string
	if upstream != "" {
		if up, err = upstreamAddress(upstream); err != nil {
			return nil, err
		}
	}
	if !running.TryLock() {
		return nil, errors.New("spotifyauthtest: another Site is running in this process; Caddy's config is process-wide, " +
			"so tests that start a Site must not run in parallel (no t.Parallel) and must close one before starting the next")
	}
	s := &Site{Fake: fake, cleanups: []func(){running.Unlock}}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	secret := ""
	if !c.public && !c.realSpotify {
		secret = rand.Text()
	}
	for attempt := 1; ; attempt++ {
		host, port, err := freeAddr(c.addr)
		if err != nil {
			return nil, err
		}
		s.URL = "http://" + net.JoinHostPort(host, strconv.Itoa(port))
		s.RedirectURI = s.URL + "/oauth2/spotify/callback"
		if fake != nil {
			// Registered before Caddy starts: no login can race it.
			fake.AddClient(spotifytest.Client{ID: ClientID, Secret: secret, RedirectURIs: []string{s.RedirectURI}})
		}
		s.Caddyfile = string(caddyfile.Format([]byte(c.caddyfile(s, host, up, secret))))
		err = load(s.Caddyfile)
		if err == nil {
			break
		}
		// The probed port was taken in between: try another, unless the
		// caller chose it.
		if c.addr != "" || attempt == portAttempts || !errors.Is(err, syscall.EADDRINUSE) && !strings.Contains(err.Error(), "address already in use") {
			return nil, err
		}
	}
	s.cleanups = append(s.cleanups, func() { _ = caddy.Stop() })
	return s, nil
}

// Close stops Caddy. It is safe to call more than once; Start calls it
// when the test ends.
func (s *Site) Close() {
	s.closeOnce.Do(func() {
		for i := len(s.cleanups) - 1; i >= 0; i-- {
			s.cleanups[i]()
		}
	})
}

// upstreamAddress turns a base URL into reverse_proxy's upstream address.
func upstreamAddress(upstream string) (string, error) {
	u, err := url.Parse(upstream)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("spotifyauthtest: upstream %q: want a base URL such as http://127.0.0.1:3000", upstream)
	}
	if strings.Trim(u.Path, "/") != "" || u.RawQuery != "" {
		return "", fmt.Errorf("spotifyauthtest: upstream %q: reverse_proxy takes no path; give the base URL", upstream)
	}
	return u.Scheme + "://" + u.Host, nil
}

// freeAddr resolves addr ("" = 127.0.0.1:0) to a loopback host and a port
// free at this moment.
func freeAddr(addr string) (host string, port int, err error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	host, _, err = net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("spotifyauthtest: address %q: %v (want e.g. 127.0.0.1:8080)", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return "", 0, fmt.Errorf("spotifyauthtest: address %q: the host must be a loopback IP literal such as 127.0.0.1: "+
			"Spotify accepts plain-http redirect URIs only there (not on localhost)", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return "", 0, fmt.Errorf("spotifyauthtest: %s is already in use: %w", addr, err)
	}
	if err != nil {
		return "", 0, fmt.Errorf("spotifyauthtest: cannot listen on %s: %w", addr, err)
	}
	port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return host, port, nil
}

// caddyfile is the site's config before formatting.
func (c config) caddyfile(s *Site, host, upstream, secret string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "{\nadmin off\npersist_config off\nauto_https off\ngrace_period 1s\nstorage file_system %s\n", quote(c.storage))
	// Caddy's info logs (e.g. "HTTP/2 skipped") would bury the test's own.
	b.WriteString("log {\nlevel ERROR\n}\n}\n\n")
	fmt.Fprintf(&b, "%s {\nbind %s\n", s.URL, host)
	matcher := c.matcher
	if strings.HasPrefix(matcher, "/") {
		// A path matcher gates the probe too, so LogIn sees the rules.
		fmt.Fprintf(&b, "@spotifyauthtest_gated path %s %s\n", matcher, admittedPath)
		matcher = "@spotifyauthtest_gated"
	}
	b.WriteString("spotify_auth")
	if matcher != "" {
		b.WriteString(" " + matcher)
	}
	b.WriteString(" {\n")
	if c.realSpotify {
		fmt.Fprintf(&b, "client_id %s\n", c.realID)
		if c.realSecret != "" {
			fmt.Fprintf(&b, "client_secret %s\n", c.realSecret)
		}
	} else {
		fmt.Fprintf(&b, "client_id %s\n", ClientID)
		if secret != "" {
			fmt.Fprintf(&b, "client_secret %s\n", secret)
		}
		fmt.Fprintf(&b, "authorize_url %s\ntoken_url %s\napi_url %s\n", s.Fake.AuthorizeURL(), s.Fake.TokenURL(), s.Fake.APIURL())
	}
	fmt.Fprintf(&b, "redirect_uri %s\n", s.RedirectURI)
	if len(c.scopes) > 0 {
		fmt.Fprintf(&b, "scopes %s\n", strings.Join(c.scopes, " "))
	}
	for _, d := range c.directives {
		b.WriteString(d + "\n")
	}
	b.WriteString("}\n\n")
	for _, line := range c.siteLines {
		b.WriteString(line + "\n")
	}
	// Answered after spotify_auth has admitted the request, never by the
	// upstream: LogIn's check costs the app nothing.
	fmt.Fprintf(&b, "respond %s 204\n", admittedPath)
	if upstream != "" {
		fmt.Fprintf(&b, "reverse_proxy %s\n", upstream)
	}
	b.WriteString("}\n")
	return b.String()
}

// quote makes a path one Caddyfile token.
func quote(s string) string { return "`" + s + "`" }

// load adapts and runs the Caddyfile. Any adapter warning is an error: the
// kit's own config must be clean.
func load(body string) error {
	adapter := caddyconfig.GetAdapter("caddyfile")
	if adapter == nil {
		return errors.New("spotifyauthtest: caddyfile adapter not registered")
	}
	cfgJSON, warnings, err := adapter.Adapt([]byte(body), nil)
	if err != nil {
		return fmt.Errorf("spotifyauthtest: adapting the Caddyfile: %w\n%s", err, body)
	}
	if len(warnings) > 0 {
		return fmt.Errorf("spotifyauthtest: Caddyfile warnings %v\n%s", warnings, body)
	}
	if err := caddy.Load(cfgJSON, true); err != nil {
		return fmt.Errorf("spotifyauthtest: starting Caddy: %w", err)
	}
	return nil
}

// browserAccept is what browsers send on navigation. spotify_auth reads
// it (with Sec-Fetch-Mode) to tell a page load, sent to log in, from an
// API call, answered 401.
const browserAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

// browserTransport sets Accept as a browser's navigation does, unless the
// request sets its own.
type browserTransport struct{ base http.RoundTripper }

func (bt browserTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Accept") == "" {
		r = r.Clone(r.Context())
		r.Header.Set("Accept", browserAccept)
	}
	return bt.base.RoundTrip(r)
}

// NewBrowser returns a client that acts like a browser with no session
// yet: a cookie jar, redirects followed, and "Accept: text/html,..." on
// every request that sets no Accept of its own, so a page behind
// spotify_auth sends it to log in. Set "Accept: application/json" on a
// request to make it an API call (401 without a session).
func (s *Site) NewBrowser() *http.Client {
	jar, _ := cookiejar.New(nil) // never fails without options
	return &http.Client{Jar: jar, Transport: browserTransport{base: http.DefaultTransport}}
}

// NewClient returns a NewBrowser logged in as the fake's user userID, with
// the site's scopes granted (capped by the user's GrantScopes): the
// consent is done, as if the user had pressed Approve.
func (s *Site) NewClient(userID string) (*http.Client, error) {
	c := s.NewBrowser()
	if err := s.LogIn(c, userID); err != nil {
		return nil, err
	}
	return c, nil
}

// Client is NewClient for a test: it fails the test if the login does
// not complete.
func (s *Site) Client(t testing.TB, userID string) *http.Client {
	t.Helper()
	c, err := s.NewClient(userID)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ErrRefused is wrapped by LogIn's error when the site refuses the user
// (rather than the login failing on the way): test it with errors.Is.
var ErrRefused = errors.New("spotifyauthtest: the site refuses this user")

// admittedPath is the probe LogIn requests after the callback: spotify_auth
// gates it like the app and the Caddyfile answers it 204.
const admittedPath = "/spotifyauthtest/admitted"

// LogIn logs the client (made by NewBrowser or NewClient) in as userID,
// replacing any session it has: the login redirect, the consent at the
// fake, the callback; then it asks the site, through spotify_auth and not
// the upstream, whether the session is let in.
//
// A user the site refuses gets an error wrapping ErrRefused that says why,
// as the site answered:
//   - not on the app's development-mode list at Spotify
//     (spotifytest's SetDevelopmentMode and SetDevelopmentUsers): the
//     callback answers 403, page "This Spotify account is not on the
//     app's user list", and no session is made;
//   - not admitted by the block's rules (allow_users, allow_emails,
//     allow_products, allow_countries): the login completes and every
//     page behind the gate answers 403, "Not allowed" (JSON
//     {"error":"forbidden"} to API calls);
//   - a required_scopes scope the user does not grant (User.GrantScopes):
//     the plugin asks once more, then pages answer 403 "Permission
//     missing" (JSON {"error":"insufficient_scope"}).
//
// Any other failure (Spotify unreachable, a fault injected at the fake,
// the owner's lapsed Premium with SetOwnerPremiumLapsed, which the plugin
// answers as an outage for everyone: 503 "Spotify is refusing this site")
// is an error that does not wrap ErrRefused.
//
// A user refused by the rules keeps the session in c, so a test can go
// on to check what such a user sees.
//
// With a WithMatcher that is not a path ("@name ..."), LogIn cannot see
// the rules' refusal: the probe is not behind the gate.
func (s *Site) LogIn(c *http.Client, userID string) error {
	if s.Fake == nil {
		return errors.New("spotifyauthtest: LogIn needs a fake Spotify")
	}
	start, err := http.NewRequest(http.MethodGet, s.URL+"/oauth2/spotify/login?rd=%2F", nil)
	if err != nil {
		return err
	}
	resp, err := s.Fake.LogIn(c, start, userID)
	if err != nil {
		return err // names the step that failed
	}
	switch resp.StatusCode {
	case http.StatusFound:
	case http.StatusForbidden:
		return fmt.Errorf("%w: the login of %q: the callback answered 403 %s", ErrRefused, userID, pageText(resp))
	default:
		return fmt.Errorf("spotifyauthtest: the login of %q: the callback answered %d %s, want a redirect back to the site", userID, resp.StatusCode, pageText(resp))
	}
	probe, err := http.NewRequest(http.MethodGet, s.URL+admittedPath, nil)
	if err != nil {
		return err
	}
	probe.Header.Set("Accept", "application/json")
	resp, err = NoRedirects(c).Do(probe)
	if err != nil {
		return fmt.Errorf("spotifyauthtest: checking the session of %q: %w", userID, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNoContent:
		return nil
	case http.StatusForbidden:
		var e struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e)
		return fmt.Errorf("%w: %q is logged in, but the site answers 403 %s: %s", ErrRefused, userID, e.Error, e.Description)
	}
	return fmt.Errorf("spotifyauthtest: after the login of %q the site answered %d to a request with the session", userID, resp.StatusCode)
}

// pageText is the title and message of one of spotify_auth's pages, or
// the start of any other body.
func pageText(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	body := string(b)
	between := func(open, close string) string {
		_, rest, ok := strings.Cut(body, open)
		if !ok {
			return ""
		}
		text, _, _ := strings.Cut(rest, close)
		return html.UnescapeString(strings.TrimSpace(text))
	}
	if title := between("<h1>", "</h1>"); title != "" {
		return title + ": " + between("<p>", "</p>")
	}
	return strings.TrimSpace(body[:min(len(body), 200)])
}

// NoRedirects returns a copy of c (sharing its cookie jar and transport)
// that does not follow redirects: the answer is the 3xx itself, its
// Location for the test to read.
func NoRedirects(c *http.Client) *http.Client {
	nc := *c
	nc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &nc
}

// LogOut logs the client out of the site as its logout button does (a
// same-origin POST to /oauth2/spotify/logout): the session ends and its
// cookie is cleared. A client without a session is fine.
func (s *Site) LogOut(c *http.Client) error {
	req, err := http.NewRequest(http.MethodPost, s.URL+"/oauth2/spotify/logout", strings.NewReader(""))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", s.URL)
	resp, err := NoRedirects(c).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("spotifyauthtest: logout answered %d %s", resp.StatusCode, pageText(resp))
	}
	return nil
}
