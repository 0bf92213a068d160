package main

import (
	"context"
	"net"
	"net/http"
	"time"

	spotifyauth "github.com/caddyspotify/caddy-spotify-auth"
	"github.com/caddyspotify/caddy-spotify-auth/spotifyauthtest"
	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// webAPIPrefix is where the demo site proxies the Spotify Web API for the
// page's scripts.
const webAPIPrefix = "/spotify-api"

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
	// ExtendedQuota runs the fake Spotify in extended quota, as apps ran
	// before 2026. By default it runs in development mode, as almost
	// every app does now: only the demo user is on the app's user list,
	// and unlistedUserID, also on the consent page, shows what happens to
	// anyone else. Ignored with RealSpotify.
	ExtendedQuota bool
}

// The fake Spotify's second user: on the consent page's picker, but in
// development mode not on the app's user list, as its name there says.
const (
	unlistedUserID   = "friend"
	unlistedUserName = "Friend, not on the app's user list"
)

// demo is a running demo: Caddy with spotify_auth in front of the sample
// app (both from spotifyauthtest, the kit an app's own tests use), and the
// fake Spotify unless the real one is used.
type demo struct {
	SiteURL     string // http://127.0.0.1:PORT
	AppURL      string // the protected page to open
	RedirectURI string // what to register in the Spotify dashboard
	APIURL      string // Web API base URL the sample app calls

	site     *spotifyauthtest.Site
	fake     *spotifytest.Server // nil with real Spotify
	cleanups []func()
}

// start brings the demo up. Caddy's config is process-global: only one
// demo may run at a time, and Stop must be called before the next start.
func start(ctx context.Context, opts options) (_ *demo, err error) {
	d := &demo{APIURL: spotifyauth.DefaultAPIURL}
	defer func() {
		if err != nil {
			d.Stop()
		}
	}()
	kitOpts := []spotifyauthtest.Option{
		spotifyauthtest.WithAddr(opts.Addr),
		// Only /app/* needs a login, so "/" shows that public paths pass.
		spotifyauthtest.WithMatcher("/app/*"),
		spotifyauthtest.WithScopes("user-read-email", "user-top-read"),
		// The page's own script calls the Web API through the site, with
		// no token in JavaScript (see topTracksScript).
		spotifyauthtest.WithDirectives("web_api " + webAPIPrefix),
	}
	if opts.RealSpotify {
		kitOpts = append(kitOpts, spotifyauthtest.WithRealSpotify("{env.SPOTIFY_CLIENT_ID}", "{env.SPOTIFY_CLIENT_SECRET}"))
	} else {
		d.fake = spotifytest.NewServer()
		d.cleanups = append(d.cleanups, d.fake.Close)
		if opts.AutoApprove {
			d.fake.SetAutoApprove(spotifytest.DefaultUserID)
		}
		if err := setQuotaMode(d.fake, opts.ExtendedQuota); err != nil {
			return nil, err
		}
		d.APIURL = d.fake.APIURL()
	}

	upstreamURL, err := d.startUpstream(ctx)
	if err != nil {
		return nil, err
	}
	if d.site, err = spotifyauthtest.New(d.fake, upstreamURL, kitOpts...); err != nil {
		return nil, err
	}
	d.cleanups = append(d.cleanups, d.site.Close)
	d.SiteURL, d.RedirectURI, d.AppURL = d.site.URL, d.site.RedirectURI, d.site.URL+"/app/"
	return d, nil
}

// setQuotaMode puts the fake in development mode with the demo user on the
// app's list, or in extended quota, and adds the unlisted second user.
func setQuotaMode(fake *spotifytest.Server, extendedQuota bool) error {
	friend := spotifytest.User{ID: unlistedUserID, DisplayName: "Friend", Email: "friend@example.com", Country: "SE", Product: "free"}
	if extendedQuota {
		fake.AddUser(friend)
		return nil
	}
	friend.DisplayName = unlistedUserName
	fake.AddUser(friend)
	fake.SetDevelopmentMode(true)
	return fake.SetDevelopmentUsers(spotifytest.DefaultUserID)
}

// Stop shuts everything down, Caddy first so no request reaches a stopped
// backend. It is safe to call more than once.
func (d *demo) Stop() {
	for i := len(d.cleanups) - 1; i >= 0; i-- {
		d.cleanups[i]()
	}
	d.cleanups = nil
}

// startUpstream serves the sample app on a free loopback port.
func (d *demo) startUpstream(ctx context.Context) (baseURL string, err error) {
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
	return "http://" + ln.Addr().String(), nil
}
