package spotifytest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"

	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// get calls the fake's Web API with a token and decodes the answer.
func get(s *spotifytest.Server, path, token string, v any) int {
	req, _ := http.NewRequest("GET", s.APIURL()+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(v)
	return resp.StatusCode
}

// ExampleServer_IssueToken gets a token for a unit test in one line.
func ExampleServer_IssueToken() {
	s := spotifytest.NewServer()
	defer s.Close()

	token := s.IssueToken(spotifytest.DefaultUserID, "user-read-email")

	var me struct{ ID, Email string }
	status := get(s, "/v1/me", token, &me)
	fmt.Println(status, me.ID, me.Email)
	// Output:
	// 200 testuser test@example.com
}

// ExampleServer_NewForwardedRequest unit-tests an upstream handler without
// Caddy: the request carries the headers exactly as spotify_auth forwards
// them, with a token the fake accepts.
func ExampleServer_NewForwardedRequest() {
	s := spotifytest.NewServer()
	defer s.Close()
	s.AddUser(spotifytest.User{ID: "zoe", DisplayName: "Zoë Ü"})

	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// X-Spotify-User-Name is percent-encoded UTF-8: decode it.
		name, err := url.PathUnescape(r.Header.Get("X-Spotify-User-Name"))
		if err != nil {
			http.Error(w, "bad name", http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "Hello %s (%s)", name, r.Header.Get("X-Spotify-User-Id"))
	})

	req := s.NewForwardedRequest("GET", "/app/", "zoe", "user-top-read")
	rec := httptest.NewRecorder()
	hello.ServeHTTP(rec, req)
	fmt.Println(rec.Body.String())
	fmt.Println(req.Header.Get("X-Spotify-User-Name"))
	fmt.Println(req.Header.Get("X-Spotify-Scopes"))
	// Output:
	// Hello Zoë Ü (zoe)
	// Zo%C3%AB%20%C3%9C
	// user-top-read
}

// ExampleUser gives each user their own listening data, so a test can
// prove a page shows this user's tracks and not someone else's.
func ExampleUser() {
	s := spotifytest.NewServer()
	defer s.Close()
	s.AddUser(spotifytest.User{ID: "alice", TopTracks: []spotifytest.Track{{Name: "Gopher Groove", Artist: "The Channels"}}})
	s.AddUser(spotifytest.User{ID: "newbie", TopTracks: []spotifytest.Track{}}) // empty: a new account

	for _, user := range []string{"alice", "newbie", spotifytest.DefaultUserID} {
		var page struct {
			Total int
			Items []struct{ Name string }
		}
		get(s, "/v1/me/top/tracks?limit=1", s.IssueToken(user, "user-top-read"), &page)
		fmt.Println(user, page.Total, page.Items)
	}
	// Output:
	// alice 1 [{Gopher Groove}]
	// newbie 0 []
	// testuser 5 [{Port 0}]
}

// ExampleServer_IsPlaying drives the player: without an active device
// Spotify answers 404 NO_ACTIVE_DEVICE; with one, play starts playback.
func ExampleServer_IsPlaying() {
	s := spotifytest.NewServer()
	defer s.Close()
	s.AddUser(spotifytest.User{ID: "dj", Product: "premium", Device: "Kitchen speaker"})

	play := func(user string) {
		req, _ := http.NewRequest("PUT", s.APIURL()+"/v1/me/player/play", nil)
		req.Header.Set("Authorization", "Bearer "+s.IssueToken(user, "user-modify-playback-state"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		defer resp.Body.Close()
		var e struct{ Error struct{ Reason string } }
		_ = json.NewDecoder(resp.Body).Decode(&e)
		fmt.Println(user, resp.StatusCode, e.Error.Reason, s.IsPlaying(user))
	}
	play(spotifytest.DefaultUserID)
	play("dj")
	// Output:
	// testuser 404 NO_ACTIVE_DEVICE false
	// dj 204  true
}

// ExampleServer_APIRequests asserts which Web API calls an app made, and
// for whom.
func ExampleServer_APIRequests() {
	s := spotifytest.NewServer()
	defer s.Close()
	token := s.IssueToken(spotifytest.DefaultUserID, "user-top-read")
	var v any
	get(s, "/v1/me", token, &v)
	get(s, "/v1/me/top/artists?limit=3", token, &v)

	for _, r := range s.APIRequests() {
		fmt.Println(r.Method, r.Path, r.Query.Encode(), r.UserID)
	}
	fmt.Println("/v1/me:", s.APIRequestCount("/v1/me"), "top:", s.APIRequestCount("/v1/me/top/*"))
	// Output:
	// GET /v1/me  testuser
	// GET /v1/me/top/artists limit=3 testuser
	// /v1/me: 1 top: 1
}

// ExampleFault targets a fault at one path: the app's own call fails while
// /v1/me, which the plugin calls at login, keeps working.
func ExampleFault() {
	s := spotifytest.NewServer()
	defer s.Close()
	s.InjectFault(spotifytest.EndpointAPI, spotifytest.Fault{Path: "/v1/me/top/*", Status: http.StatusServiceUnavailable})
	token := s.IssueToken(spotifytest.DefaultUserID, "user-top-read")

	var v any
	fmt.Println(get(s, "/v1/me", token, &v), get(s, "/v1/me/top/tracks", token, &v))
	// Output:
	// 200 503
}

// ExampleServer_ExpireAccessToken expires one token and revokes another,
// leaving every other token working.
func ExampleServer_ExpireAccessToken() {
	s := spotifytest.NewServer()
	defer s.Close()
	s.AddUser(spotifytest.User{ID: "alice"})
	expired, revoked, other := s.IssueToken("alice"), s.IssueToken("alice"), s.IssueToken(spotifytest.DefaultUserID)
	s.ExpireAccessToken(expired)
	s.RevokeAccessToken(revoked)

	for _, tok := range []string{expired, revoked, other} {
		var body struct{ Error struct{ Message string } }
		fmt.Println(get(s, "/v1/me", tok, &body), body.Error.Message)
	}
	// Output:
	// 401 Missing/invalid/expired access token
	// 401 Missing/invalid/expired access token
	// 200
}

// ExampleEncodeHeaderText decodes X-Spotify-User-Name as an upstream
// should.
func ExampleEncodeHeaderText() {
	header := spotifytest.EncodeHeaderText("Zoë + Ünïcode/Test")
	name, _ := url.PathUnescape(header)
	fmt.Println(header)
	fmt.Println(name)
	// Output:
	// Zo%C3%AB%20%2B%20%C3%9Cn%C3%AFcode%2FTest
	// Zoë + Ünïcode/Test
}

// ExampleServer_IssueTokens gives a registered app a refreshable token,
// for code that refreshes on its own.
func ExampleServer_IssueTokens() {
	s := spotifytest.NewServer()
	defer s.Close()
	s.AddClient(spotifytest.Client{ID: "app", Secret: "shh"})

	tok := s.IssueTokens("app", spotifytest.DefaultUserID, "user-top-read")
	fmt.Println(tok.AccessToken != "", tok.RefreshToken != "", tok.Scopes)

	// A revoked refresh token answers invalid_grant at the token endpoint.
	fmt.Println(s.RevokeRefreshToken(tok.RefreshToken))
	// Output:
	// true true [user-top-read]
	// true
}

// ExampleServer_PlayerState tests an app that plays a track and queues
// another: the player holds what the app did, and the request log what
// it sent and what it got.
func ExampleServer_PlayerState() {
	s := spotifytest.NewServer()
	defer s.Close()
	s.AddUser(spotifytest.User{ID: "dj", Product: "premium", Device: "Kitchen speaker"})
	token := s.IssueToken("dj", "user-modify-playback-state")
	tracks := spotifytest.DefaultTopTracks()

	// The app under test would make these two calls.
	for _, call := range [][3]string{
		{"PUT", "/v1/me/player/play", `{"uris":["` + tracks[2].URI() + `"]}`},
		{"POST", "/v1/me/player/queue?uri=" + tracks[4].URI(), ""},
	} {
		req, _ := http.NewRequest(call[0], s.APIURL()+call[1], strings.NewReader(call[2]))
		req.Header.Set("Authorization", "Bearer "+token)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}

	p := s.PlayerState("dj")
	fmt.Println(p.Device, p.Playing, p.Item.Name, "then", p.Queue[0].Name)
	for _, r := range s.APIRequests() {
		fmt.Println(r.Status, r.Method, r.Path, string(r.Body))
	}
	// Output:
	// Kitchen speaker true Segfault Lullaby then Lock Contention Blues
	// 204 PUT /v1/me/player/play {"uris":["spotify:track:MSg6yi7a41LaVk3WjlH0u7"]}
	// 204 POST /v1/me/player/queue
}
