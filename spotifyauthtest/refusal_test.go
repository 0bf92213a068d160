package spotifyauthtest_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/caddyspotify/caddy-spotify-auth/spotifyauthtest"
	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// countingApp counts the requests that reach the upstream.
func countingApp(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		_, _ = w.Write([]byte("app"))
	}))
	t.Cleanup(app.Close)
	return app, &n
}

func TestLogInSaysWhenTheSiteRefusesTheUser(t *testing.T) {
	for _, tc := range []struct {
		name   string
		setup  func(fake *spotifytest.Server)
		opts   []spotifyauthtest.Option
		want   string // in the error
		all    bool   // the listed user is refused too
		outage bool   // not a refusal of the user: an error without ErrRefused
	}{
		{
			name: "a user not on the allow list is logged in but not let in",
			opts: []spotifyauthtest.Option{spotifyauthtest.WithDirectives("allow_users " + spotifytest.DefaultUserID)},
			want: "not allowed here",
		},
		{
			name: "the allow list applies through a path matcher too",
			opts: []spotifyauthtest.Option{spotifyauthtest.WithMatcher("/app/*"), spotifyauthtest.WithDirectives("allow_users " + spotifytest.DefaultUserID)},
			want: "not allowed here",
		},
		{
			name: "a user not on the development-mode list is refused at the callback",
			setup: func(fake *spotifytest.Server) {
				fake.SetDevelopmentMode(true)
				if err := fake.SetDevelopmentUsers(spotifytest.DefaultUserID); err != nil {
					t.Fatal(err)
				}
			},
			want: "not on the app's user list",
		},
		{
			name:   "the owner's lapsed Premium is an outage for everyone at the callback",
			setup:  func(fake *spotifytest.Server) { fake.SetOwnerPremiumLapsed(true) },
			want:   "503 Spotify is refusing this site",
			all:    true,
			outage: true,
		},
		{
			name: "a required scope the user does not grant",
			setup: func(fake *spotifytest.Server) {
				fake.AddUser(spotifytest.User{ID: "mallory", GrantScopes: []string{"user-read-email"}})
			},
			opts: []spotifyauthtest.Option{spotifyauthtest.WithScopes("user-top-read", "user-read-email"), spotifyauthtest.WithDirectives("required_scopes user-top-read")},
			want: "insufficient_scope",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := spotifytest.NewServer()
			t.Cleanup(fake.Close)
			fake.AddUser(spotifytest.User{ID: "mallory"})
			if tc.setup != nil {
				tc.setup(fake)
			}
			app, upstream := countingApp(t)
			site := spotifyauthtest.Start(t, fake, app.URL, tc.opts...)

			err := site.LogIn(site.NewBrowser(), "mallory")
			if err == nil || errors.Is(err, spotifyauthtest.ErrRefused) == tc.outage || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "mallory") {
				t.Errorf("LogIn(mallory) = %v; want an error saying %q (ErrRefused: %v)", err, tc.want, !tc.outage)
			}
			if err := site.LogIn(site.NewBrowser(), spotifytest.DefaultUserID); (err == nil) == tc.all {
				t.Errorf("LogIn(%s) = %v; want refused %v", spotifytest.DefaultUserID, err, tc.all)
			}
			if n := upstream.Load(); n != 0 {
				t.Errorf("the logins sent %d requests to the app; LogIn must not touch it", n)
			}
		})
	}
}

func TestLogOutEndsTheSessionAndNoRedirectsShowsTheLoginRedirect(t *testing.T) {
	app, _ := countingApp(t)
	site := spotifyauthtest.Start(t, nil, app.URL)
	c := site.Client(t, spotifytest.DefaultUserID)
	noFollow := spotifyauthtest.NoRedirects(c)

	resp, err := noFollow.Get(site.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("logged in: %d, want 200 from the app", resp.StatusCode)
	}
	if err := site.LogOut(c); err != nil {
		t.Fatal(err)
	}
	resp, err = noFollow.Get(site.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), site.Fake.AuthorizeURL()) {
		t.Errorf("after LogOut: %d Location %q; want 302 to the fake's /authorize", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestLogInFailingOnTheWayIsNotARefusal(t *testing.T) {
	fake := spotifytest.NewServer()
	t.Cleanup(fake.Close)
	app, _ := countingApp(t)
	site := spotifyauthtest.Start(t, fake, app.URL)
	fake.InjectFault(spotifytest.EndpointToken, spotifytest.Fault{Status: http.StatusServiceUnavailable})

	err := site.LogIn(site.NewBrowser(), spotifytest.DefaultUserID)
	if err == nil || errors.Is(err, spotifyauthtest.ErrRefused) || !strings.Contains(err.Error(), "503") {
		t.Errorf("LogIn with Spotify's token endpoint down = %v; want an error with the 503 that is not ErrRefused", err)
	}
}
