package spotifyauthtest_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyspotify/caddy-spotify-auth/spotifyauthtest"
	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// topTrackApp is a small upstream app: it greets the user named in
// X-Spotify-User-Name and shows their top track, fetched from the Web API
// with the token spotify_auth forwarded.
func topTrackApp(apiURL string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, _ := url.PathUnescape(r.Header.Get("X-Spotify-User-Name"))
		req, _ := http.NewRequestWithContext(r.Context(), "GET", apiURL+"/v1/me/top/tracks?limit=1", nil)
		req.Header.Set("Authorization", r.Header.Get("Authorization"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, "Spotify unreachable", http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		var top struct{ Items []struct{ Name string } }
		if err := json.NewDecoder(resp.Body).Decode(&top); err != nil || len(top.Items) == 0 {
			fmt.Fprintf(w, "Hello %s, no top track yet", name)
			return
		}
		fmt.Fprintf(w, "Hello %s, your top track is %s", name, top.Items[0].Name)
	})
}

// Example is an end-to-end test of an app behind spotify_auth: two users,
// each seeing their own data. In a test, Start(t, ...) does what New and
// Close do here.
func Example() {
	fake := spotifytest.NewServer()
	defer fake.Close()
	fake.AddUser(spotifytest.User{ID: "alice", DisplayName: "Alice Ø", TopTracks: []spotifytest.Track{{Name: "Gopher Groove", Artist: "The Channels"}}})

	app := httptest.NewServer(topTrackApp(fake.APIURL()))
	defer app.Close()
	site, err := spotifyauthtest.New(fake, app.URL, spotifyauthtest.WithScopes("user-top-read"))
	if err != nil {
		panic(err)
	}
	defer site.Close()

	for _, user := range []string{"alice", spotifytest.DefaultUserID} {
		client, err := site.NewClient(user)
		if err != nil {
			panic(err)
		}
		resp, err := client.Get(site.URL + "/")
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(string(body))
	}
	fmt.Println("top tracks calls:", fake.APIRequestCount("/v1/me/top/tracks"))
	// Output:
	// Hello Alice Ø, your top track is Gopher Groove
	// Hello Test User, your top track is Port 0
	// top tracks calls: 2
}

// ExampleStart is the same end-to-end test as a test function: Start
// stops Caddy (and a fake it made) when the test ends.
func ExampleStart() {
	_ = func(t *testing.T) {
		fake := spotifytest.NewServer()
		t.Cleanup(fake.Close)
		app := httptest.NewServer(topTrackApp(fake.APIURL()))
		t.Cleanup(app.Close)

		site := spotifyauthtest.Start(t, fake, app.URL, spotifyauthtest.WithScopes("user-top-read"))
		resp, err := site.Client(t, spotifytest.DefaultUserID).Get(site.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), "Port 0") {
			t.Errorf("page %q lacks the user's top track", body)
		}
	}
}

// ExampleSite_NewBrowser shows the two answers to a request without a
// session: a page load (what a browser sends, and what NewBrowser sends
// unless told otherwise) is sent to log in; an API call asking for JSON
// gets 401 with the login URL.
func ExampleSite_NewBrowser() {
	fake := spotifytest.NewServer()
	defer fake.Close()
	app := httptest.NewServer(topTrackApp(fake.APIURL()))
	defer app.Close()
	site, err := spotifyauthtest.New(fake, app.URL)
	if err != nil {
		panic(err)
	}
	defer site.Close()

	browser := site.NewBrowser()
	browser.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, _ := browser.Get(site.URL + "/")
	resp.Body.Close()
	fmt.Println("page load:", resp.StatusCode, strings.HasPrefix(resp.Header.Get("Location"), fake.AuthorizeURL()))

	req, _ := http.NewRequest("GET", site.URL+"/", nil)
	req.Header.Set("Accept", "application/json")
	resp, _ = browser.Do(req)
	var body struct {
		LoginURL string `json:"login_url"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	fmt.Println("API call:", resp.StatusCode, body.LoginURL)
	// Output:
	// page load: 302 true
	// API call: 401 /oauth2/spotify/login?rd=%2F
}
