package spotifytest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// apiResult is a decoded Web API answer.
type apiResult struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func callAPI(t *testing.T, s *spotifytest.Server, method, path, token, body string) apiResult {
	t.Helper()
	req, err := http.NewRequest(method, s.APIURL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	res := apiResult{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &res.body); err != nil {
			t.Fatalf("%s %s: not JSON: %s", method, path, raw)
		}
	}
	return res
}

// names lists the "name" of each item of a paging object.
func names(page any) []string {
	var out []string
	m, _ := page.(map[string]any)
	items, _ := m["items"].([]any)
	for _, it := range items {
		obj, _ := it.(map[string]any)
		if tr, ok := obj["track"].(map[string]any); ok {
			obj = tr
		}
		name, _ := obj["name"].(string)
		out = append(out, name)
	}
	return out
}

func errorOf(r apiResult) (status float64, message, reason string) {
	e, _ := r.body["error"].(map[string]any)
	status, _ = e["status"].(float64)
	message, _ = e["message"].(string)
	reason, _ = e["reason"].(string)
	return
}

func newKitServer(t *testing.T) *spotifytest.Server {
	s := spotifytest.NewServer()
	t.Cleanup(s.Close)
	return s
}

var aliceTracks = []spotifytest.Track{
	{Name: "Gopher Groove", Artist: "Alice and the Channels", Album: "Select", ReleaseDate: "2024-05-01", DurationMS: 180000, Popularity: 77},
	{Name: "Buffered", Artist: "Alice and the Channels", Album: "Select", ReleaseDate: "2024-05-01", DurationMS: 200000, Popularity: 60},
	{Name: "Unbuffered", Artist: "Goroutine Choir", ReleaseDate: "2023-01-01", DurationMS: 90000},
}

func addAlice(s *spotifytest.Server) {
	s.AddUser(spotifytest.User{
		ID: "alice", DisplayName: "Alice", Email: "alice@example.com", Product: "premium", Device: "Alice's laptop",
		TopTracks:  aliceTracks,
		TopArtists: []spotifytest.Artist{{Name: "Alice and the Channels", Genres: []string{"go-pop"}, Popularity: 80}},
		Playlists: []spotifytest.Playlist{
			{Name: "Public picks", Tracks: aliceTracks[:1]},
			{Name: "Secret stash", Private: true, Tracks: aliceTracks},
		},
	})
}

func TestIssueTokenGivesAWorkingTokenInOneLine(t *testing.T) {
	s := newKitServer(t)
	s.AddUser(spotifytest.User{ID: "capped", GrantScopes: []string{"user-top-read"}})

	tok := s.IssueToken(spotifytest.DefaultUserID, "user-read-email")
	me := callAPI(t, s, "GET", "/v1/me", tok, "")
	if me.status != 200 || me.body["id"] != spotifytest.DefaultUserID || me.body["email"] != "test@example.com" {
		t.Errorf("/v1/me with an issued token: %d %v", me.status, me.body)
	}
	if user, scopes, valid := s.AccessTokenInfo(tok); user != spotifytest.DefaultUserID || !valid || len(scopes) != 1 {
		t.Errorf("AccessTokenInfo = %q %v %v", user, scopes, valid)
	}
	if _, scopes, _ := s.AccessTokenInfo(s.IssueToken("capped", "user-top-read", "user-read-email")); len(scopes) != 1 || scopes[0] != "user-top-read" {
		t.Errorf("GrantScopes did not cap the issued scopes: %v", scopes)
	}
	for name, f := range map[string]func(){
		"an unknown user":  func() { s.IssueToken("nobody") },
		"an unknown scope": func() { s.IssueToken(spotifytest.DefaultUserID, "user-read-mind") },
		"an unknown app":   func() { s.IssueTokens("no-app", spotifytest.DefaultUserID) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("issuing for %s did not panic", name)
				}
			}()
			f()
		}()
	}
}

func TestIssueTokensCanBeRefreshedByTheApp(t *testing.T) {
	s := newKitServer(t)
	s.AddClient(spotifytest.Client{ID: "app", Secret: "shh"})
	tok := s.IssueTokens("app", spotifytest.DefaultUserID, "user-top-read")
	if tok.RefreshToken == "" || tok.AccessToken == "" || time.Until(tok.Expiry) < 59*time.Minute {
		t.Fatalf("IssueTokens = %+v", tok)
	}
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}
	req, _ := http.NewRequest("POST", s.TokenURL(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("app", "shh")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || s.Counts().Refreshes != 1 {
		t.Errorf("refreshing an issued refresh token: %d", resp.StatusCode)
	}
}

func TestUsersCarryTheirOwnListeningData(t *testing.T) {
	s := newKitServer(t)
	addAlice(s)
	s.AddUser(spotifytest.User{ID: "newbie", TopTracks: []spotifytest.Track{}, TopArtists: []spotifytest.Artist{}})

	tests := []struct {
		name, user, path string
		want             []string
	}{
		{"the default user has the canned top tracks", spotifytest.DefaultUserID, "/v1/me/top/tracks",
			[]string{"Port 0", "Handshake", "Segfault Lullaby", "Data Race", "Lock Contention Blues"}},
		{"the default user has the canned top artists", spotifytest.DefaultUserID, "/v1/me/top/artists",
			[]string{"The Loopbacks", "Ada & the Lovelaces", "Null Pointer Orchestra", "Race Condition", "The Mutex Brothers"}},
		{"alice has her own top tracks", "alice", "/v1/me/top/tracks", []string{"Gopher Groove", "Buffered", "Unbuffered"}},
		{"alice has her own top artists", "alice", "/v1/me/top/artists", []string{"Alice and the Channels"}},
		{"an empty list means none", "newbie", "/v1/me/top/tracks", nil},
		{"saved tracks default to the top tracks", "alice", "/v1/me/tracks", []string{"Gopher Groove", "Buffered", "Unbuffered"}},
		{"a new account has no saved tracks", "newbie", "/v1/me/tracks", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := s.IssueToken(tt.user, "user-top-read", "user-library-read")
			res := callAPI(t, s, "GET", tt.path, tok, "")
			if got := names(res.body); res.status != 200 || strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("%s for %s: %d %q, want %q", tt.path, tt.user, res.status, got, tt.want)
			}
		})
	}

	def := spotifytest.DefaultUser()
	def.DisplayName = "changed"
	if spotifytest.DefaultUser().DisplayName != "Test User" {
		t.Error("changing a DefaultUser() value changed the default")
	}
	if got := spotifytest.DefaultTopTracks(); len(got) != 5 || got[3].Name != "Data Race" || !got[3].Explicit {
		t.Errorf("DefaultTopTracks = %+v", got)
	}
}

func TestPagingFollowsSpotifysShape(t *testing.T) {
	s := newKitServer(t)
	tok := s.IssueToken(spotifytest.DefaultUserID, "user-top-read")
	res := callAPI(t, s, "GET", "/v1/me/top/tracks?limit=2&offset=2&time_range=short_term", tok, "")
	if res.status != 200 || res.body["total"] != 5.0 || res.body["limit"] != 2.0 || res.body["offset"] != 2.0 {
		t.Fatalf("page: %d %v", res.status, res.raw)
	}
	next, _ := res.body["next"].(string)
	prev, _ := res.body["previous"].(string)
	if !strings.Contains(next, "offset=4") || !strings.Contains(next, "time_range=short_term") || !strings.Contains(prev, "offset=0") {
		t.Errorf("next %q, previous %q", next, prev)
	}
	if got := names(res.body); strings.Join(got, "|") != "Segfault Lullaby|Data Race" {
		t.Errorf("items %q", got)
	}
	if res := callAPI(t, s, "GET", "/v1/me/top/tracks?limit=51", tok, ""); res.status != 400 {
		t.Errorf("limit 51: %d", res.status)
	}
}

func TestPlayerAnswersLikeSpotify(t *testing.T) {
	s := newKitServer(t)
	addAlice(s)
	s.AddUser(spotifytest.User{ID: "free", Product: "free", Device: "Phone"})
	const read, modify = "user-read-playback-state", "user-modify-playback-state"
	noDevice := s.IssueToken(spotifytest.DefaultUserID, read, modify)
	alice := s.IssueToken("alice", read, modify)

	if res := callAPI(t, s, "GET", "/v1/me/player", noDevice, ""); res.status != 204 || res.raw != "" {
		t.Errorf("GET /v1/me/player without a device: %d %q, want 204 and no body", res.status, res.raw)
	}
	res := callAPI(t, s, "PUT", "/v1/me/player/play", noDevice, "")
	if st, msg, reason := errorOf(res); res.status != 404 || st != 404 || reason != "NO_ACTIVE_DEVICE" || !strings.Contains(msg, "No active device") {
		t.Errorf("play without a device: %d %s", res.status, res.raw)
	}

	res = callAPI(t, s, "GET", "/v1/me/player", alice, "")
	device, _ := res.body["device"].(map[string]any)
	if res.status != 200 || res.body["is_playing"] != false || device["name"] != "Alice's laptop" || device["is_active"] != true {
		t.Fatalf("GET /v1/me/player with a device: %d %s", res.status, res.raw)
	}
	if res := callAPI(t, s, "PUT", "/v1/me/player/pause", alice, ""); res.status != 403 {
		t.Errorf("pausing a paused player: %d %s, want 403", res.status, res.raw)
	}
	body := `{"uris":["` + aliceTracks[1].URI() + `"]}`
	if res := callAPI(t, s, "PUT", "/v1/me/player/play", alice, body); res.status != 204 || !s.IsPlaying("alice") {
		t.Errorf("play: %d %s, playing %v", res.status, res.raw, s.IsPlaying("alice"))
	}
	res = callAPI(t, s, "GET", "/v1/me/player", alice, "")
	item, _ := res.body["item"].(map[string]any)
	if res.body["is_playing"] != true || item["name"] != "Buffered" {
		t.Errorf("after play: %s", res.raw)
	}
	if res := callAPI(t, s, "PUT", "/v1/me/player/pause", alice, ""); res.status != 204 || s.IsPlaying("alice") {
		t.Errorf("pause: %d %s", res.status, res.raw)
	}
	if res := callAPI(t, s, "PUT", "/v1/me/player/play", alice, `{"uris":["spotify:track:nope"]}`); res.status != 400 {
		t.Errorf("play an unknown track: %d", res.status)
	}
	if res := callAPI(t, s, "PUT", "/v1/me/player/play", s.IssueToken("free", modify), ""); res.status != 403 {
		t.Errorf("play as a free user: %d %s", res.status, res.raw)
	} else if _, _, reason := errorOf(res); reason != "PREMIUM_REQUIRED" {
		t.Errorf("play as a free user: reason %q", reason)
	}
	if res := callAPI(t, s, "PUT", "/v1/me/player/play", s.IssueToken("alice", read), ""); res.status != 403 {
		t.Errorf("play without user-modify-playback-state: %d", res.status)
	}
	if res := callAPI(t, s, "POST", "/v1/me/player/play", alice, ""); res.status != 405 || res.header.Get("Allow") != "PUT" {
		t.Errorf("POST play: %d Allow %q", res.status, res.header.Get("Allow"))
	}
}

func TestRecentlyPlayedHasCursorPaging(t *testing.T) {
	s := newKitServer(t)
	tok := s.IssueToken(spotifytest.DefaultUserID, "user-read-recently-played")
	res := callAPI(t, s, "GET", "/v1/me/player/recently-played?limit=2", tok, "")
	if res.status != 200 || strings.Join(names(res.body), "|") != "Port 0|Handshake" {
		t.Fatalf("first page: %d %s", res.status, res.raw)
	}
	next, _ := res.body["next"].(string)
	cursors, _ := res.body["cursors"].(map[string]any)
	if !strings.Contains(next, "before="+cursors["before"].(string)) {
		t.Fatalf("next %q does not continue before the cursor %v", next, cursors)
	}
	items := res.body["items"].([]any)
	if _, err := time.Parse(time.RFC3339, items[0].(map[string]any)["played_at"].(string)); err != nil {
		t.Errorf("played_at: %v", err)
	}
	path := strings.TrimPrefix(next, s.APIURL())
	res = callAPI(t, s, "GET", path, tok, "")
	if strings.Join(names(res.body), "|") != "Segfault Lullaby|Data Race" {
		t.Errorf("second page: %s", res.raw)
	}
	if res := callAPI(t, s, "GET", "/v1/me/player/recently-played", s.IssueToken(spotifytest.DefaultUserID), ""); res.status != 403 {
		t.Errorf("without the scope: %d", res.status)
	}
}

func TestPlaylistsHidePrivateOnesWithoutTheScope(t *testing.T) {
	s := newKitServer(t)
	addAlice(s)
	res := callAPI(t, s, "GET", "/v1/me/playlists", s.IssueToken("alice"), "")
	if strings.Join(names(res.body), "|") != "Public picks" {
		t.Errorf("without playlist-read-private: %s", res.raw)
	}
	res = callAPI(t, s, "GET", "/v1/me/playlists", s.IssueToken("alice", "playlist-read-private"), "")
	if strings.Join(names(res.body), "|") != "Public picks|Secret stash" {
		t.Errorf("with playlist-read-private: %s", res.raw)
	}
	first := res.body["items"].([]any)[1].(map[string]any)
	if tr := first["tracks"].(map[string]any); tr["total"] != 3.0 || first["public"] != false {
		t.Errorf("playlist object %v", first)
	}
	res = callAPI(t, s, "GET", "/v1/me/playlists", s.IssueToken(spotifytest.DefaultUserID), "")
	if strings.Join(names(res.body), "|") != "Test User's Mix" {
		t.Errorf("default playlists: %s", res.raw)
	}
}

func TestSearchAndCatalogueLookups(t *testing.T) {
	s := newKitServer(t)
	addAlice(s)
	s.AddClient(spotifytest.Client{ID: "app", Secret: "shh"})
	tok := s.IssueToken("alice")

	res := callAPI(t, s, "GET", "/v1/search?q=groove&type=track,artist", tok, "")
	if res.status != 200 || strings.Join(names(res.body["tracks"]), "|") != "Gopher Groove" || len(names(res.body["artists"])) != 0 {
		t.Errorf("search groove: %d %s", res.status, res.raw)
	}
	res = callAPI(t, s, "GET", "/v1/search?q=artist:channels&type=album", tok, "")
	if strings.Join(names(res.body["albums"]), "|") != "Select" {
		t.Errorf("album search: %s", res.raw)
	}
	for _, tc := range []struct{ query, message string }{
		{"type=track", "No search query"},
		{"q=x", "Missing parameter type"},
		{"q=x&type=song", "Bad search type field song"},
	} {
		if res := callAPI(t, s, "GET", "/v1/search?"+tc.query, tok, ""); res.status != 400 {
			t.Errorf("search %s: %d", tc.query, res.status)
		} else if _, msg, _ := errorOf(res); msg != tc.message {
			t.Errorf("search %s: %q, want %q", tc.query, msg, tc.message)
		}
	}

	track := aliceTracks[0]
	res = callAPI(t, s, "GET", "/v1/tracks/"+track.ID(), tok, "")
	album, _ := res.body["album"].(map[string]any)
	if res.status != 200 || res.body["name"] != "Gopher Groove" || album["id"] != track.AlbumID() || album["total_tracks"] != 2.0 {
		t.Errorf("track by id: %d %s", res.status, res.raw)
	}
	res = callAPI(t, s, "GET", "/v1/albums/"+track.AlbumID(), tok, "")
	if res.status != 200 || strings.Join(names(res.body["tracks"]), "|") != "Gopher Groove|Buffered" {
		t.Errorf("album by id: %d %s", res.status, res.raw)
	}
	artistID := spotifytest.Artist{Name: "Alice and the Channels"}.ID()
	res = callAPI(t, s, "GET", "/v1/artists/"+artistID, tok, "")
	if res.status != 200 || res.body["name"] != "Alice and the Channels" || res.body["popularity"] != 80.0 {
		t.Errorf("artist by id: %d %s", res.status, res.raw)
	}
	if res := callAPI(t, s, "GET", "/v1/tracks/not-an-id", tok, ""); res.status != 400 {
		t.Errorf("malformed id: %d", res.status)
	}
	if res := callAPI(t, s, "GET", "/v1/tracks/"+spotifytest.Track{Name: "nope"}.ID(), tok, ""); res.status != 404 {
		t.Errorf("unknown id: %d", res.status)
	}

	// Catalogue endpoints take app tokens; user endpoints do not.
	appToken := clientCredentials(t, s, "app", "shh")
	if res := callAPI(t, s, "GET", "/v1/search?q=port&type=track", appToken, ""); res.status != 200 || len(names(res.body["tracks"])) != 1 {
		t.Errorf("search with an app token: %d %s", res.status, res.raw)
	}
	if res := callAPI(t, s, "GET", "/v1/me/tracks", appToken, ""); res.status != 401 {
		t.Errorf("/v1/me/tracks with an app token: %d", res.status)
	}
}

func clientCredentials(t *testing.T, s *spotifytest.Server, id, secret string) string {
	t.Helper()
	req, _ := http.NewRequest("POST", s.TokenURL(), strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return body.AccessToken
}

func TestAPIRequestsAreRecordedAndCountedPerPath(t *testing.T) {
	s := newKitServer(t)
	addAlice(s)
	alice := s.IssueToken("alice", "user-top-read")
	callAPI(t, s, "GET", "/v1/me", alice, "")
	callAPI(t, s, "GET", "/v1/me/top/tracks?limit=3", alice, "")
	callAPI(t, s, "GET", "/v1/me/top/tracks", s.IssueToken(spotifytest.DefaultUserID, "user-top-read"), "")
	callAPI(t, s, "PUT", "/v1/me/player/play", "", "")

	reqs := s.APIRequests()
	if len(reqs) != 4 {
		t.Fatalf("APIRequests = %+v", reqs)
	}
	if r := reqs[1]; r.Method != "GET" || r.Path != "/v1/me/top/tracks" || r.Query.Get("limit") != "3" || r.UserID != "alice" {
		t.Errorf("second request recorded as %+v", r)
	}
	if r := reqs[3]; r.Method != "PUT" || r.UserID != "" {
		t.Errorf("request without a token recorded as %+v", r)
	}
	for path, want := range map[string]int{"/v1/me": 1, "/v1/me/top/tracks": 2, "/v1/me/*": 3, "/v1/me*": 4, "/v1/search": 0} {
		if got := s.APIRequestCount(path); got != want {
			t.Errorf("APIRequestCount(%q) = %d, want %d", path, got, want)
		}
	}
	reqs[1].Query.Set("limit", "changed")
	if s.APIRequests()[1].Query.Get("limit") != "3" {
		t.Error("APIRequests shares its query maps")
	}
	s.ResetCounts()
	if len(s.APIRequests()) != 0 || s.APIRequestCount("/v1/me") != 0 {
		t.Error("ResetCounts kept API requests")
	}
}

func TestFaultsTargetAPath(t *testing.T) {
	s := newKitServer(t)
	tok := s.IssueToken(spotifytest.DefaultUserID, "user-top-read")
	s.InjectFault(spotifytest.EndpointAPI, spotifytest.Fault{Path: "/v1/me/top/*", Status: 503})
	s.InjectFault(spotifytest.EndpointAPI, spotifytest.Fault{Path: "/v1/me", Status: 500, Times: 1})

	if res := callAPI(t, s, "GET", "/v1/me", tok, ""); res.status != 500 {
		t.Errorf("first /v1/me: %d, want the one-time 500", res.status)
	}
	if res := callAPI(t, s, "GET", "/v1/me", tok, ""); res.status != 200 {
		t.Errorf("second /v1/me: %d, want 200", res.status)
	}
	for range 2 {
		if res := callAPI(t, s, "GET", "/v1/me/top/artists", tok, ""); res.status != 503 {
			t.Errorf("/v1/me/top/artists: %d, want 503 until ClearFaults", res.status)
		}
	}
	s.ClearFaults()
	if res := callAPI(t, s, "GET", "/v1/me/top/artists", tok, ""); res.status != 200 {
		t.Errorf("after ClearFaults: %d", res.status)
	}
}

func TestExpiryAndRevocationTargetOneUserOrToken(t *testing.T) {
	s := newKitServer(t)
	addAlice(s)
	s.AddClient(spotifytest.Client{ID: "app", Secret: "shh"})
	meStatus := func(tok string) (int, string) {
		res := callAPI(t, s, "GET", "/v1/me", tok, "")
		_, msg, _ := errorOf(res)
		return res.status, msg
	}
	a1, a2, d := s.IssueToken("alice"), s.IssueToken("alice"), s.IssueToken(spotifytest.DefaultUserID)

	s.ExpireAccessToken(a1)
	if st, msg := meStatus(a1); st != 401 || msg != "Missing/invalid/expired access token" {
		t.Errorf("expired token: %d %q", st, msg)
	}
	if st, _ := meStatus(a2); st != 200 {
		t.Errorf("alice's other token after ExpireAccessToken: %d", st)
	}
	s.RevokeAccessToken(a2)
	if st, msg := meStatus(a2); st != 401 || msg != "Missing/invalid/expired access token" {
		t.Errorf("revoked token: %d %q", st, msg)
	}
	if st, _ := meStatus(d); st != 200 {
		t.Errorf("another user's token: %d", st)
	}
	a3 := s.IssueToken("alice")
	s.ExpireUserAccessTokens(spotifytest.DefaultUserID)
	if st, _ := meStatus(d); st != 401 {
		t.Errorf("after ExpireUserAccessTokens: %d", st)
	}
	if st, _ := meStatus(a3); st != 200 {
		t.Errorf("alice after the default user's expiry: %d", st)
	}
	s.RevokeUserAccessTokens("alice")
	if st, _ := meStatus(a3); st != 401 {
		t.Errorf("after RevokeUserAccessTokens: %d", st)
	}
	if s.ExpireAccessToken("unknown") || s.RevokeAccessToken("unknown") || s.RevokeRefreshToken("unknown") {
		t.Error("an unknown token was reported known")
	}

	t1, t2 := s.IssueTokens("app", "alice"), s.IssueTokens("app", "alice")
	s.RevokeRefreshToken(t1.RefreshToken)
	refresh := func(rt string) int {
		req, _ := http.NewRequest("POST", s.TokenURL(), strings.NewReader(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("app", "shh")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if refresh(t1.RefreshToken) != 400 || refresh(t2.RefreshToken) != 200 {
		t.Error("RevokeRefreshToken did not revoke exactly one refresh token")
	}
}

func TestMissingTokenIsAskedForWithoutAnErrorCode(t *testing.T) {
	s := newKitServer(t)
	res := callAPI(t, s, "GET", "/v1/search?q=x&type=track", "", "")
	if wa := res.header.Get("WWW-Authenticate"); res.status != 401 || wa != `Bearer realm="spotify"` {
		t.Errorf("no token: %d WWW-Authenticate %q, want 401 with no error code (RFC 6750 §3.1)", res.status, wa)
	}
}

func TestForwardedRequestCarriesWhatThePluginSends(t *testing.T) {
	s := newKitServer(t)
	s.AddUser(spotifytest.User{ID: "zoe", DisplayName: "Zoë + Ünïcode/Test", Email: "zoë@example.com", Product: "free"})

	req := httptest.NewRequest("GET", "/app/", nil)
	req.Header.Set("X-Spotify-User-Id", "spoofed")
	req.Header.Set("Authorization", "Bearer spoofed")
	f := s.Forward("zoe", "user-read-email", "user-top-read")
	f.Apply(req)
	h := req.Header
	if h.Get("Authorization") != "Bearer "+f.AccessToken || h.Get("X-Spotify-User-Id") != "zoe" || len(h.Values("X-Spotify-User-Id")) != 1 {
		t.Errorf("token and id headers: %v", h)
	}
	if name, err := url.PathUnescape(h.Get("X-Spotify-User-Name")); err != nil || name != "Zoë + Ünïcode/Test" {
		t.Errorf("X-Spotify-User-Name %q decodes to %q, %v", h.Get("X-Spotify-User-Name"), name, err)
	}
	if raw := h.Get("X-Spotify-User-Name"); strings.ContainsAny(raw, " +/ë") {
		t.Errorf("X-Spotify-User-Name %q is not encoded", raw)
	}
	if h.Get("X-Spotify-User-Email") != "zo%C3%AB@example.com" || h.Get("X-Spotify-Product") != "" {
		t.Errorf("email %q (want encoded, non-ASCII), product %q (want none without user-read-private)",
			h.Get("X-Spotify-User-Email"), h.Get("X-Spotify-Product"))
	}
	if h.Get("X-Spotify-Scopes") != "user-read-email user-top-read" {
		t.Errorf("scopes %q", h.Get("X-Spotify-Scopes"))
	}
	exp, err := time.Parse(time.RFC3339, h.Get("X-Spotify-Token-Expires"))
	if err != nil || !strings.HasSuffix(h.Get("X-Spotify-Token-Expires"), "Z") || time.Until(exp) < 59*time.Minute {
		t.Errorf("X-Spotify-Token-Expires %q", h.Get("X-Spotify-Token-Expires"))
	}
	if user, _, valid := s.AccessTokenInfo(f.AccessToken); user != "zoe" || !valid {
		t.Error("the forwarded token is not a valid token of the user")
	}

	f.TokenHeader, f.NoUserHeaders = "x-spotify-token", true
	req = httptest.NewRequest("GET", "/", nil)
	f.Apply(req)
	if req.Header.Get("X-Spotify-Token") != f.AccessToken || req.Header.Get("Authorization") != "" || req.Header.Get("X-Spotify-User-Id") != "" {
		t.Errorf("token_header and user_headers off: %v", req.Header)
	}

	req = s.NewForwardedRequest("GET", "/app/", spotifytest.DefaultUserID, "user-read-private")
	if req.Header.Get("X-Spotify-Product") != "premium" || req.Header.Get("X-Spotify-User-Name") != "Test%20User" {
		t.Errorf("NewForwardedRequest headers %v", req.Header)
	}
}
