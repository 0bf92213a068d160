package spotifytest_test

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// loginApp is the smallest app with a Spotify login: /page sends the
// browser to authorize, /callback checks state and code and sets a
// session cookie.
func loginApp(t *testing.T, s *spotifytest.Server) *httptest.Server {
	mux := http.NewServeMux()
	app := httptest.NewServer(mux)
	t.Cleanup(app.Close)
	s.AddClient(spotifytest.Client{ID: "app", Secret: "shh", RedirectURIs: []string{app.URL + "/callback"}})
	mux.HandleFunc("/page", func(w http.ResponseWriter, r *http.Request) {
		if _, err := r.Cookie("session"); err == nil {
			_, _ = io.WriteString(w, "the page")
			return
		}
		http.SetCookie(w, &http.Cookie{Name: "state", Value: "st4te"})
		http.Redirect(w, r, s.AuthorizeURL()+"?"+url.Values{"client_id": {"app"}, "response_type": {"code"},
			"redirect_uri": {app.URL + "/callback"}, "state": {"st4te"}}.Encode(), http.StatusFound)
	})
	mux.HandleFunc("/callback", func(w http.ResponseWriter, r *http.Request) {
		st, err := r.Cookie("state")
		if err != nil || st.Value != r.URL.Query().Get("state") || r.URL.Query().Get("code") == "" {
			http.Error(w, "bad callback", http.StatusBadRequest)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: "session", Value: "in"})
		w.Header().Set("X-Seen", r.Header.Get("X-Test"))
		http.Redirect(w, r, "/page", http.StatusFound)
	})
	return app
}

func TestLogInWalksTheFlowAndLeavesTheSessionInTheJar(t *testing.T) {
	s := spotifytest.NewServer()
	defer s.Close()
	app := loginApp(t, s)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}

	start, _ := http.NewRequest(http.MethodGet, app.URL+"/page", nil)
	start.Header.Set("X-Test", "kept")
	resp, err := s.LogIn(c, start, "")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/page" {
		t.Fatalf("callback answered %d to %q, want 302 to /page", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp.Header.Get("X-Seen") != "kept" {
		t.Error("the callback request lacks start's headers")
	}
	if body, _ := io.ReadAll(resp.Body); !strings.Contains(string(body), "/page") {
		t.Errorf("callback body not kept: %q", body)
	}
	page, err := c.Get(app.URL + "/page")
	if err != nil {
		t.Fatal(err)
	}
	defer page.Body.Close()
	if body, _ := io.ReadAll(page.Body); string(body) != "the page" {
		t.Errorf("after LogIn the page answers %q, want the logged-in page", body)
	}
	if c := s.Counts(); c.Approvals != 1 {
		t.Errorf("approvals %d, want 1", c.Approvals)
	}
}

func TestLogInReportsAStartThatDoesNotRedirectToTheFake(t *testing.T) {
	s := spotifytest.NewServer()
	defer s.Close()
	app := loginApp(t, s)
	start, _ := http.NewRequest(http.MethodGet, app.URL+"/callback", nil)
	_, err := s.LogIn(http.DefaultClient, start, "")
	if err == nil || !strings.Contains(err.Error(), "GET /callback answered 400") || !strings.Contains(err.Error(), "want a redirect to the fake's /authorize") {
		t.Fatalf("error %v, want it to name the step", err)
	}
	start, _ = http.NewRequest(http.MethodGet, app.URL+"/page", nil)
	if _, err := s.LogIn(http.DefaultClient, start, "nobody"); err == nil || !strings.Contains(err.Error(), `approving the login of "nobody"`) {
		t.Fatalf("error %v for an unknown user, want it to name the approval", err)
	}
}
