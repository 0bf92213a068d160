package spotifyauth_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"

	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/caddyspotify/caddy-spotify-auth/internal/testkit"
	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// adminSite is a Caddy with its admin endpoint on a free loopback port
// and spotify_auth in front of an app.
type adminSite struct {
	url, admin, storage string
	fake                *spotifytest.Server
	caddyfile           string
}

func startAdminSite(t *testing.T, sessionStore string) *adminSite {
	t.Helper()
	fake := testkit.NewFake(t)
	fake.AddUser(spotifytest.User{ID: "bystander"})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello "+r.Header.Get("X-Spotify-User-Id"))
	}))
	t.Cleanup(app.Close)
	port, adminPort := freePort(t), freePort(t)
	s := &adminSite{url: "http://127.0.0.1:" + strconv.Itoa(port), admin: "http://127.0.0.1:" + strconv.Itoa(adminPort),
		storage: t.TempDir(), fake: fake}
	fake.AddClient(spotifytest.Client{ID: "admin-app", Secret: "s3cret", RedirectURIs: []string{s.url + "/oauth2/spotify/callback"}})
	s.caddyfile = fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	auto_https off
	storage file_system %s
	log {
		level ERROR
	}
}

%s {
	bind 127.0.0.1
	spotify_auth {
		client_id admin-app
		client_secret s3cret
		authorize_url %s
		token_url %s
		api_url %s
		redirect_uri %s/oauth2/spotify/callback
		session_store %s
	}
	reverse_proxy %s
}
`, adminPort, s.storage, s.url, fake.AuthorizeURL(), fake.TokenURL(), fake.APIURL(), s.url, sessionStore, app.URL)
	runCaddy(t, s.caddyfile)
	return s
}

// logIn returns a browser logged in as userID.
func (s *adminSite) logIn(t *testing.T, userID string) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	start, _ := http.NewRequest(http.MethodGet, s.url+"/oauth2/spotify/login?rd=%2F", nil)
	resp, err := s.fake.LogIn(c, start, userID)
	if err != nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("callback: %v %v", err, resp)
	}
	return c
}

// page is the status of an API call to the app with c's session.
func (s *adminSite) page(t *testing.T, c *http.Client) int {
	t.Helper()
	req, _ := http.NewRequest("GET", s.url+"/", nil)
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (s *adminSite) adminCall(t *testing.T, method, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, s.admin+path, nil)
	// A connection per call, as curl makes: a reload replaces the admin
	// server, and a kept-alive connection to the old one reads EOF.
	req.Close = true
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAdminRevokeEndsLiveSessions: DELETE on Caddy's admin endpoint ends
// a user's live sessions at once (cookie and stored), leaves other users
// alone, writes the mark other instances read, answers what it did, and
// the user can log in again.
func TestAdminRevokeEndsLiveSessions(t *testing.T) {
	for _, store := range []string{"cookie", "storage"} {
		t.Run(store, func(t *testing.T) {
			s := startAdminSite(t, store)
			laptop := s.logIn(t, spotifytest.DefaultUserID)
			phone := s.logIn(t, spotifytest.DefaultUserID)
			other := s.logIn(t, "bystander")
			for _, c := range []*http.Client{laptop, phone, other} {
				if got := s.page(t, c); got != http.StatusOK {
					t.Fatalf("before the revoke: %d", got)
				}
			}

			status, body := s.adminCall(t, "DELETE", "/spotify_auth/users/"+spotifytest.DefaultUserID+"/sessions")
			if status != http.StatusOK {
				t.Fatalf("revoke: %d %s", status, body)
			}
			var res struct {
				UserID        string `json:"user_id"`
				RevokedBefore string `json:"revoked_before"`
				Apps          []struct {
					ClientID              string `json:"client_id"`
					StoredSessionsDeleted int    `json:"stored_sessions_deleted"`
				} `json:"apps"`
				OtherInstancesWithin string `json:"other_instances_within"`
			}
			if err := json.Unmarshal([]byte(body), &res); err != nil || res.UserID != spotifytest.DefaultUserID ||
				len(res.Apps) != 1 || res.Apps[0].ClientID != "admin-app" || res.RevokedBefore == "" || res.OtherInstancesWithin != "30s" {
				t.Fatalf("revoke answer %s (%v)", body, err)
			}
			wantDeleted := 0
			if store == "storage" {
				wantDeleted = 2
			}
			if res.Apps[0].StoredSessionsDeleted != wantDeleted {
				t.Errorf("stored sessions deleted: %d, want %d", res.Apps[0].StoredSessionsDeleted, wantDeleted)
			}

			for name, c := range map[string]*http.Client{"laptop": laptop, "phone": phone} {
				if got := s.page(t, c); got != http.StatusUnauthorized {
					t.Errorf("%s after the revoke: %d, want 401", name, got)
				}
			}
			if got := s.page(t, other); got != http.StatusOK {
				t.Errorf("another user after the revoke: %d, want 200", got)
			}
			// The mark other instances sharing the storage re-read.
			marks, _ := filepath.Glob(filepath.Join(s.storage, "spotify_auth", "revoked", "*"))
			if len(marks) != 1 {
				t.Errorf("revocation marks in storage: %d, want 1", len(marks))
			}
			if got := s.page(t, s.logIn(t, spotifytest.DefaultUserID)); got != http.StatusOK {
				t.Errorf("logging in again after the revoke: %d, want 200", got)
			}
		})
	}
}

// TestAdminRevokeErrors: the admin endpoint answers Caddy's API errors.
func TestAdminRevokeErrors(t *testing.T) {
	s := startAdminSite(t, "cookie")
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/spotify_auth/users/x/sessions", http.StatusMethodNotAllowed},
		{"DELETE", "/spotify_auth/users/x", http.StatusNotFound},
		{"DELETE", "/spotify_auth/users//sessions", http.StatusNotFound},
		{"DELETE", "/spotify_auth/users/x/sessions?client_id=another-app", http.StatusNotFound},
		// Exact spellings only, as for the site's endpoints.
		{"DELETE", "/spotify_auth/users/%78/sessions", http.StatusNotFound},
		{"DELETE", "/spotify_auth/users/x/session%73", http.StatusNotFound},
		{"DELETE", "/spotify_auth/users%2Fx%2Fsessions", http.StatusNotFound},
	} {
		status, body := s.adminCall(t, tc.method, tc.path)
		if status != tc.status || !strings.Contains(body, `"error"`) {
			t.Errorf("%s %s: %d %s; want %d with Caddy's error JSON", tc.method, tc.path, status, body, tc.status)
		}
	}
	if status, body := s.adminCall(t, "DELETE", "/spotify_auth/users/x/sessions?client_id=admin-app"); status != http.StatusOK {
		t.Errorf("with the site's client_id: %d %s", status, body)
	}

	// After a config reload the endpoint acts on the new config's
	// handlers (the old ones are cleaned up), and only once per app.
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(s.caddyfile), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatal(err)
	}
	status, body := s.adminCall(t, "DELETE", "/spotify_auth/users/x/sessions")
	if status != http.StatusOK || strings.Count(body, `"client_id"`) != 1 {
		t.Errorf("after a reload: %d %s; want one app revoked", status, body)
	}
}

// TestAdminRevokeReachesEveryStorageOfTheApp: one app served by two sites
// with different storage options has its sessions in two places; the
// revoke marks both.
func TestAdminRevokeReachesEveryStorageOfTheApp(t *testing.T) {
	fake := testkit.NewFake(t)
	adminPort, portA, portB := freePort(t), freePort(t), freePort(t)
	globalStorage, ownStorage := t.TempDir(), t.TempDir()
	gate := func(port int, extra string) string {
		return fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	spotify_auth {
		client_id admin-app
		client_secret s3cret
		authorize_url %s
		token_url %s
		api_url %s
		redirect_uri http://127.0.0.1:%d/oauth2/spotify/callback%s
	}
	respond "app"
}
`, port, fake.AuthorizeURL(), fake.TokenURL(), fake.APIURL(), port, extra)
	}
	runCaddy(t, fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	auto_https off
	storage file_system %s
	log {
		level ERROR
	}
}

`, adminPort, globalStorage)+gate(portA, "")+"\n"+gate(portB, "\n\t\tstorage file_system "+ownStorage))

	s := &adminSite{admin: "http://127.0.0.1:" + strconv.Itoa(adminPort)}
	status, body := s.adminCall(t, "DELETE", "/spotify_auth/users/"+spotifytest.DefaultUserID+"/sessions")
	if status != http.StatusOK || strings.Count(body, `"client_id":"admin-app"`) != 2 {
		t.Fatalf("revoke: %d %s; want the app revoked in each of its two storages", status, body)
	}
	for name, dir := range map[string]string{"Caddy's storage": globalStorage, "the block's own storage": ownStorage} {
		if marks, _ := filepath.Glob(filepath.Join(dir, "spotify_auth", "revoked", "*")); len(marks) != 1 {
			t.Errorf("revocation marks in %s: %d, want 1", name, len(marks))
		}
	}
}
