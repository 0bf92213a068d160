package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile" // registers the caddyfile adapter
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	spotifyauth "github.com/caddyspotify/caddy-spotify-auth"
	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// fakeClientID is the app the demo registers with the fake Spotify.
const fakeClientID = "demo-client"

// options configure a demo.
type options struct {
	// Addr is where Caddy listens: a loopback IP literal and a port (0
	// picks a free one). Spotify accepts plain-http redirect URIs only on
	// loopback IP literals, not on "localhost".
	Addr string
	// RealSpotify uses accounts.spotify.com and api.spotify.com with the
	// app in SPOTIFY_CLIENT_ID and SPOTIFY_CLIENT_SECRET (optional). The
	// plugin reads them from the environment itself, so the secret never
	// passes through the demo or the config.
	RealSpotify bool
	// AutoApprove makes the fake consent page approve at once, for
	// headless runs. Ignored with RealSpotify.
	AutoApprove bool
}

// demo is a running demo: Caddy with spotify_auth in front of the sample
// app, and the fake Spotify unless the real one is used.
type demo struct {
	SiteURL     string // http://127.0.0.1:PORT
	AppURL      string // the protected page to open
	RedirectURI string // what to register in the Spotify dashboard
	APIURL      string // Web API base URL the sample app calls

	fake     *spotifytest.Server // nil with real Spotify
	cleanups []func()
}

// start brings the demo up. Caddy's config is process-global: only one
// demo may run at a time, and Stop must be called before the next start.
func start(ctx context.Context, opts options) (_ *demo, err error) {
	d := &demo{}
	defer func() {
		if err != nil {
			d.Stop()
		}
	}()

	host, port, err := checkAddr(opts.Addr)
	if err != nil {
		return nil, err
	}
	d.SiteURL = "http://" + net.JoinHostPort(host, strconv.Itoa(port))
	d.AppURL = d.SiteURL + "/app/"
	d.RedirectURI = d.SiteURL + "/oauth2/spotify/callback"

	cfg := caddyConfig{Host: host, SiteURL: d.SiteURL, RedirectURI: d.RedirectURI}
	if opts.RealSpotify {
		d.APIURL = spotifyauth.DefaultAPIURL
	} else {
		d.fake = spotifytest.NewServer()
		d.cleanups = append(d.cleanups, d.fake.Close)
		d.fake.AddClient(spotifytest.Client{ID: fakeClientID, RedirectURIs: []string{d.RedirectURI}})
		if opts.AutoApprove {
			d.fake.SetAutoApprove(spotifytest.DefaultUserID)
		}
		d.APIURL = d.fake.APIURL()
		cfg.Fake = d.fake
	}

	upstreamAddr, err := d.startUpstream(ctx)
	if err != nil {
		return nil, err
	}
	cfg.Upstream = upstreamAddr

	// The session key the plugin generates goes to this storage; a fresh
	// one per run keeps the demo from touching the user's Caddy data.
	if cfg.Storage, err = os.MkdirTemp("", "spotify-auth-demo-"); err != nil {
		return nil, err
	}
	d.cleanups = append(d.cleanups, func() { os.RemoveAll(cfg.Storage) })

	cfgJSON, warnings, err := adaptCaddyfile(cfg.caddyfile())
	if err != nil {
		return nil, err
	}
	for _, w := range warnings {
		fmt.Fprintf(os.Stderr, "caddyfile: %s\n", w)
	}
	if err = caddy.Load(cfgJSON, true); err != nil {
		return nil, fmt.Errorf("starting caddy: %w", err)
	}
	d.cleanups = append(d.cleanups, func() { _ = caddy.Stop() })
	return d, nil
}

// Stop shuts everything down, Caddy first so no request reaches a stopped
// backend. It is safe to call more than once.
func (d *demo) Stop() {
	for i := len(d.cleanups) - 1; i >= 0; i-- {
		d.cleanups[i]()
	}
	d.cleanups = nil
}

// checkAddr validates addr and resolves port 0 to a free port. Caddy binds
// the port itself, so it is probed here to turn "address in use" into
// advice rather than Caddy's long error; the port is free again for the
// moment in between, which is fine for a demo.
func checkAddr(addr string) (host string, port int, err error) {
	host, _, err = net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("-addr %q: %v (want e.g. 127.0.0.1:8080)", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return "", 0, fmt.Errorf("-addr %q: the host must be a loopback IP literal such as 127.0.0.1: "+
			"Spotify accepts plain-http redirect URIs only there (not on localhost)", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return "", 0, fmt.Errorf("%s is already in use (another demo or Caddy?); pick a free port with -addr, e.g. -addr %s",
			addr, net.JoinHostPort(host, "8081"))
	}
	if err != nil {
		return "", 0, fmt.Errorf("cannot listen on %s: %w; pick another address with -addr", addr, err)
	}
	port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return host, port, nil
}

// startUpstream serves the sample app on a free loopback port.
func (d *demo) startUpstream(ctx context.Context) (addr string, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{
		Handler:           newUpstream(d.APIURL),
		ReadHeaderTimeout: 10 * time.Second,
		// Web API calls in flight end with the demo's context.
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	go func() { _ = srv.Serve(ln) }()
	d.cleanups = append(d.cleanups, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return ln.Addr().String(), nil
}

// caddyConfig fills demoCaddyfile.
type caddyConfig struct {
	Host        string // IP Caddy binds to
	SiteURL     string
	RedirectURI string
	Upstream    string              // host:port of the sample app
	Storage     string              // directory for Caddy's storage
	Fake        *spotifytest.Server // nil: real Spotify
}

// demoCaddyfile is what a user would write, plus the global options an
// embedded, short-lived Caddy needs. The whole site is proxied to the
// sample app, and only /app/* needs a login, so "/" shows that public
// paths pass through.
var demoCaddyfile = template.Must(template.New("Caddyfile").Parse(`{
	admin off
	auto_https off
	persist_config off
	grace_period 2s
	storage file_system ` + "`{{.Storage}}`" + `
	# Caddy's info and warnings (e.g. "HTTP/2 skipped") would bury the
	# demo's own output; errors still show.
	log {
		level ERROR
	}
}

{{.SiteURL}} {
	bind {{.Host}}

	spotify_auth /app/* {
{{- with .Fake}}
		client_id ` + fakeClientID + `
		authorize_url {{.AuthorizeURL}}
		token_url {{.TokenURL}}
		api_url {{.APIURL}}
{{- else}}
		client_id {env.SPOTIFY_CLIENT_ID}
		client_secret {env.SPOTIFY_CLIENT_SECRET}
{{- end}}
		redirect_uri {{.RedirectURI}}
		scopes user-read-email user-top-read
	}

	reverse_proxy {{.Upstream}}
}
`))

func (c caddyConfig) caddyfile() []byte {
	var b strings.Builder
	if err := demoCaddyfile.Execute(&b, c); err != nil {
		panic(err) // the template and its data are ours: a bug, not input
	}
	return []byte(b.String())
}

// adaptCaddyfile turns a Caddyfile into Caddy's JSON config, as
// `caddy adapt` does.
func adaptCaddyfile(body []byte) ([]byte, []caddyconfig.Warning, error) {
	adapter := caddyconfig.GetAdapter("caddyfile")
	if adapter == nil {
		return nil, nil, errors.New("caddyfile adapter not registered")
	}
	cfgJSON, warnings, err := adapter.Adapt(body, nil)
	if err != nil {
		return nil, warnings, fmt.Errorf("adapting the demo Caddyfile: %w", err)
	}
	return cfgJSON, warnings, nil
}
