package spotifyauth

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// The spotify-fake command makes the Caddy binary that has the plugin the
// test kit of apps in any language: it runs spotifytest's fake Spotify,
// whose control API (spotifytest.ControlPrefix) tests drive over HTTP. It
// is not on the gate's request path.
func init() {
	fs, opts := newFakeFlags()
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "spotify-fake",
		Usage: "[--listen <addr>] [--client <id[:secret]=uri[,uri]>]... [--user <id[=name]>]... [--users <file.json>] [--auto-approve <user>] [--development] [--development-users <ids>] [--token-lifetime <duration>] [--rotate] [--rotate-every <n>]",
		Short: "Runs a fake Spotify for tests of apps behind spotify_auth (never face the internet)",
		Long: `
Runs the fake Spotify accounts service and Web API of the plugin's Go test
kit (package spotifytest) on --listen until interrupted, and prints its
URLs: point spotify_auth's authorize_url, token_url and api_url at them.
A control API under ` + spotifytest.ControlPrefix + ` adds users, issues tokens, injects
faults and reads the request log and counters, JSON in and out
(GET ` + spotifytest.ControlPrefix + ` lists the operations).

It knows the user "testuser" and, from the flags, more users and the apps
(clients) with their redirect URIs. --user alice=Alice adds a premium
user alice with email alice@example.com; --users reads a JSON array of
user objects (the control API's, with top tracks, playlists, device...).

This is a test tool: anyone who can reach it can mint tokens. Listen on
loopback only; never expose it to the internet.
`,
		Flags: fs,
		Func:  func(caddycmd.Flags) (int, error) { return runFakeCommand(opts) },
	})
}

// fakeOptions is what the spotify-fake flags set.
type fakeOptions struct {
	listen           string
	clients          []spotifytest.Client
	users            []spotifytest.User
	usersFile        string
	autoApprove      string
	development      bool
	developmentUsers string
	tokenLifetime    time.Duration
	rotate           bool
	rotateEvery      int
}

// newFakeFlags returns the command's flags, bound to the options they
// fill; tests parse the same flags.
func newFakeFlags() (*flag.FlagSet, *fakeOptions) {
	o := &fakeOptions{}
	fs := flag.NewFlagSet("spotify-fake", flag.ContinueOnError)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8090", "address to listen on (loopback only: it is a test tool)")
	fs.Var(repeated(func(v string) error {
		c, err := parseFakeClient(v)
		o.clients = append(o.clients, c)
		return err
	}), "client", "an app, id[:secret]=redirect_uri[,redirect_uri...] (repeatable; no secret: a public PKCE client)")
	fs.Var(repeated(func(v string) error {
		o.users = append(o.users, fakeUser(v))
		return nil
	}), "user", "a user, id[=display name] (repeatable), premium, country SE, email id@example.com")
	fs.StringVar(&o.usersFile, "users", "", "JSON file of users: an array of the control API's user objects")
	fs.StringVar(&o.autoApprove, "auto-approve", "", "approve every consent at once as this user (no consent page)")
	fs.BoolVar(&o.development, "development", false, "development mode: only --development-users may use the Web API")
	fs.StringVar(&o.developmentUsers, "development-users", "", "comma-separated user IDs on the development-mode list (at most 5)")
	fs.DurationVar(&o.tokenLifetime, "token-lifetime", time.Hour, "access token lifetime")
	fs.BoolVar(&o.rotate, "rotate", false, "rotate refresh tokens on every refresh (default: never, as Spotify since 2026)")
	fs.IntVar(&o.rotateEvery, "rotate-every", 0, "rotate refresh tokens on every n-th refresh of a consent")
	return fs, o
}

// repeated is a flag that may be given more than once, each value handed
// to set. It is also a pflag.Value (Type), so that Caddy's cobra flags
// keep it as it is.
type repeated func(string) error

func (r repeated) Set(v string) error { return r(v) }
func (repeated) String() string       { return "" }
func (repeated) Type() string         { return "string" }

func parseFakeClient(v string) (spotifytest.Client, error) {
	idSecret, uris, ok := strings.Cut(v, "=")
	id, secret, _ := strings.Cut(idSecret, ":")
	if !ok || id == "" || uris == "" {
		return spotifytest.Client{}, fmt.Errorf("--client %q: want id[:secret]=redirect_uri[,redirect_uri...]", v)
	}
	return spotifytest.Client{ID: id, Secret: secret, RedirectURIs: strings.Split(uris, ",")}, nil
}

func fakeUser(v string) spotifytest.User {
	id, name, ok := strings.Cut(v, "=")
	if !ok {
		name = id
	}
	return spotifytest.User{ID: id, DisplayName: name, Email: id + "@example.com", Country: "SE", Product: "premium"}
}

// start checks the options and starts a fake with them.
func (o *fakeOptions) start() (*spotifytest.Server, error) {
	users := slices.Clone(o.users)
	if o.usersFile != "" {
		data, err := os.ReadFile(o.usersFile)
		if err != nil {
			return nil, err
		}
		fromFile, err := spotifytest.ParseUsersJSON(data)
		if err != nil {
			return nil, fmt.Errorf("--users %s: %w", o.usersFile, err)
		}
		users = append(users, fromFile...)
	}
	// --auto-approve may name a user that a test adds later through the
	// control API, as SetAutoApprove may.
	for _, u := range users {
		if u.ID == "" {
			return nil, errors.New("--user: empty user ID")
		}
	}
	s, err := spotifytest.NewServerOn(o.listen)
	if err != nil {
		return nil, err
	}
	for _, c := range o.clients {
		s.AddClient(c)
	}
	for _, u := range users {
		s.AddUser(u)
	}
	s.SetAutoApprove(o.autoApprove)
	s.SetDevelopmentMode(o.development)
	if o.developmentUsers != "" {
		if err := s.SetDevelopmentUsers(strings.Split(o.developmentUsers, ",")...); err != nil {
			s.Close()
			return nil, err
		}
	}
	s.SetAccessTokenLifetime(o.tokenLifetime)
	if o.rotate {
		s.SetRotateRefreshTokens(true)
	}
	if o.rotateEvery > 0 {
		s.SetRotateRefreshTokensEvery(o.rotateEvery)
	}
	return s, nil
}

// runFake serves a fake with the options until ctx is done, after
// printing its URLs to out: the first line says it is ready.
func runFake(ctx context.Context, o *fakeOptions, out io.Writer) error {
	s, err := o.start()
	if err != nil {
		return err
	}
	defer s.Close()
	fmt.Fprintf(out, "spotify-fake listening on %s\n", s.URL)
	fmt.Fprintf(out, "  authorize_url %s\n  token_url     %s\n  api_url       %s\n  control API   %s%s\n",
		s.AuthorizeURL(), s.TokenURL(), s.APIURL(), s.URL, spotifytest.ControlPrefix)
	fmt.Fprintln(out, "  a test tool: never expose it to the internet")
	if !isLoopback(s.URL) {
		fmt.Fprintln(out, "  WARNING: not on loopback: anyone who reaches it can mint tokens")
	}
	<-ctx.Done()
	return nil
}

func runFakeCommand(o *fakeOptions) (int, error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runFake(ctx, o, os.Stdout); err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	return caddy.ExitCodeSuccess, nil
}

// isLoopback tells whether the fake's URL has a loopback IP: the one place
// a fake Spotify is safe. (Docker networks may need more; hence a warning,
// not a refusal.)
func isLoopback(rawURL string) bool {
	u, err := url.Parse(rawURL)
	return err == nil && isLoopbackHost(u.Hostname())
}
