package spotifytest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

func decode(t *testing.T, raw []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("not the JSON expected: %v: %s", err, raw)
	}
}

func TestLibrarySavesRemovesAndChecksURIs(t *testing.T) {
	s := newKitServer(t)
	tok := s.IssueToken(spotifytest.DefaultUserID, "user-library-read", "user-library-modify")
	top := spotifytest.DefaultTopTracks()
	s.AddUser(spotifytest.User{ID: "alice", SavedTracks: []spotifytest.Track{}})
	alice := s.IssueToken("alice", "user-library-read", "user-library-modify")
	album := "spotify:album:" + top[0].AlbumID()
	show := "spotify:show:5CfCWKI5pZ28U0uOzXkDHe"

	contains := func(token string, uris ...string) []bool {
		t.Helper()
		status, raw := send(t, s, "GET", "/v1/me/library/contains?uris="+url.QueryEscape(strings.Join(uris, ",")), token, "")
		var out []bool
		if status != 200 {
			t.Fatalf("contains: %d %s", status, raw)
		}
		decode(t, raw, &out)
		return out
	}
	if got := contains(alice, top[0].URI(), album, show); len(got) != 3 || got[0] || got[1] || got[2] {
		t.Fatalf("a new library contains %v, want nothing", got)
	}
	status, raw := send(t, s, "PUT", "/v1/me/library?uris="+url.QueryEscape(top[0].URI()+","+album+","+show), alice, "")
	if status != 200 || len(raw) != 0 {
		t.Fatalf("save: %d %q, want 200 with an empty body", status, raw)
	}
	if got := contains(alice, top[0].URI(), album, show, top[1].URI()); jsonOf(got) != "[true,true,true,false]" {
		t.Errorf("after saving: %v", got)
	}
	status, raw = send(t, s, "GET", "/v1/me/tracks", alice, "")
	if status != 200 || strings.Join(names(pageOf(t, raw)), "|") != top[0].Name {
		t.Errorf("GET /v1/me/tracks after saving one track: %d %s", status, raw)
	}
	if status, _ := send(t, s, "DELETE", "/v1/me/library?uris="+url.QueryEscape(top[0].URI()), alice, ""); status != 200 {
		t.Fatalf("remove: %d", status)
	}
	if got := contains(alice, top[0].URI(), album); got[0] || !got[1] {
		t.Errorf("after removing the track: %v, want the album still saved", got)
	}
	if got := contains(tok, top[0].URI()); !got[0] {
		t.Errorf("another user's library changed: %v", got)
	}

	tooMany := strings.TrimSuffix(strings.Repeat(top[0].URI()+",", 41), ",")
	for _, tc := range []struct {
		name, method, query, token string
		status                     int
	}{
		{"41 URIs are too many", "PUT", tooMany, alice, 400},
		{"no URIs", "PUT", "", alice, 400},
		{"an artist cannot be saved", "PUT", "spotify:artist:" + spotifytest.DefaultTopArtists()[0].ID(), alice, 400},
		{"an unknown track is refused", "PUT", "spotify:track:0000000000000000000000", alice, 400},
		{"saving needs user-library-modify", "PUT", top[0].URI(), s.IssueToken("alice", "user-library-read"), 403},
		{"checking needs user-library-read", "GET", top[0].URI(), s.IssueToken("alice", "user-library-modify"), 403},
	} {
		path := "/v1/me/library?uris=" + url.QueryEscape(tc.query)
		if tc.method == "GET" {
			path = "/v1/me/library/contains?uris=" + url.QueryEscape(tc.query)
		}
		if status, raw := send(t, s, tc.method, path, tc.token, ""); status != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, status, raw, tc.status)
		}
	}
}

func jsonOf(v any) string { b, _ := json.Marshal(v); return string(b) }

func pageOf(t *testing.T, raw []byte) map[string]any {
	var m map[string]any
	decode(t, raw, &m)
	return m
}

func TestPlaylistsAreCreatedFilledAndRead(t *testing.T) {
	s := newKitServer(t)
	s.SetDevelopmentMode(true)
	if err := s.SetDevelopmentUsers("alice", "bob"); err != nil {
		t.Fatal(err)
	}
	s.AddUser(spotifytest.User{ID: "alice"})
	s.AddUser(spotifytest.User{ID: "bob"})
	alice := s.IssueToken("alice", "playlist-modify-private", "playlist-modify-public", "playlist-read-private")
	bob := s.IssueToken("bob", "playlist-modify-public")
	top := spotifytest.DefaultTopTracks()

	status, raw := send(t, s, "POST", "/v1/me/playlists", alice, `{"name":"Road trip","public":false,"description":"vroom"}`)
	var created struct {
		ID, Name, Description string
		Public                bool
		Items                 struct{ Total int }
		Owner                 struct{ ID string }
	}
	decode(t, raw, &created)
	if status != 201 || created.Name != "Road trip" || created.Public || created.Owner.ID != "alice" || created.Items.Total != 0 {
		t.Fatalf("create: %d %s", status, raw)
	}
	if status, raw := send(t, s, "POST", "/v1/playlists/"+created.ID+"/items", alice, `{"uris":["`+top[3].URI()+`","`+top[1].URI()+`"]}`); status != 201 {
		t.Fatalf("add items: %d %s", status, raw)
	}
	status, raw = send(t, s, "GET", "/v1/playlists/"+created.ID+"/items", alice, "")
	var items struct {
		Total int
		Items []struct{ Item struct{ Name string } }
	}
	decode(t, raw, &items)
	if status != 200 || items.Total != 2 || items.Items[0].Item.Name != top[3].Name || items.Items[1].Item.Name != top[1].Name {
		t.Errorf("items: %d %s", status, raw)
	}
	status, raw = send(t, s, "GET", "/v1/me/playlists", alice, "")
	if got := names(pageOf(t, raw)); status != 200 || strings.Join(got, "|") != "alice's Mix|Road trip" {
		t.Errorf("/v1/me/playlists lists %q, want the mix and the new playlist", got)
	}

	for _, tc := range []struct {
		name, method, path, token, body string
		status                          int
	}{
		{"creating a private playlist needs playlist-modify-private", "POST", "/v1/me/playlists", bob, `{"name":"x","public":false}`, 403},
		{"a playlist needs a name", "POST", "/v1/me/playlists", alice, `{"public":false}`, 400},
		{"a collaborative playlist cannot be public", "POST", "/v1/me/playlists", alice, `{"name":"x","collaborative":true}`, 400},
		{"another user cannot add to it", "POST", "/v1/playlists/" + created.ID + "/items", s.IssueToken("bob", "playlist-modify-private"), `{"uris":["` + top[0].URI() + `"]}`, 403},
		{"in development mode another user's items are forbidden", "GET", "/v1/playlists/" + created.ID + "/items", bob, "", 403},
		{"an unknown playlist is 404", "GET", "/v1/playlists/0000000000000000000000", alice, "", 404},
		{"the old /tracks is gone in development mode", "GET", "/v1/playlists/" + created.ID + "/tracks", alice, "", 403},
		{"creating for a user is gone in development mode", "POST", "/v1/users/alice/playlists", alice, `{"name":"x"}`, 403},
	} {
		if status, raw := send(t, s, tc.method, tc.path, tc.token, tc.body); status != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, status, raw, tc.status)
		}
	}

	s.SetDevelopmentMode(false)
	status, raw = send(t, s, "GET", "/v1/playlists/"+created.ID+"/tracks", bob, "")
	var old struct {
		Items []struct{ Track struct{ Name string } }
	}
	decode(t, raw, &old)
	if status != 200 || len(old.Items) != 2 || old.Items[0].Track.Name != top[3].Name {
		t.Errorf("extended quota, the old /tracks: %d %s", status, raw)
	}
}

// TestRemovedEndpointsAnswerByQuotaMode: what Spotify took away from
// development-mode apps answers 403 there and is served in extended
// quota; what it took away from all new apps in November 2024 is 403 in
// both; what the fake does not model is 404 in extended quota.
func TestRemovedEndpointsAnswerByQuotaMode(t *testing.T) {
	s := newKitServer(t)
	tok := s.IssueToken(spotifytest.DefaultUserID, "user-library-modify", "user-library-read", "playlist-modify-public")
	top := spotifytest.DefaultTopTracks()
	artist := spotifytest.DefaultTopArtists()[0].ID()
	for _, tc := range []struct {
		method, path      string
		extended, devMode int
	}{
		{"GET", "/v1/users/" + spotifytest.DefaultUserID, 200, 403},
		{"GET", "/v1/users/" + spotifytest.DefaultUserID + "/playlists", 200, 403},
		{"POST", "/v1/users/" + spotifytest.DefaultUserID + "/playlists", 201, 403},
		{"GET", "/v1/tracks?ids=" + top[0].ID(), 200, 403},
		{"GET", "/v1/albums?ids=" + top[0].AlbumID(), 200, 403},
		{"GET", "/v1/artists?ids=" + artist, 200, 403},
		{"GET", "/v1/artists/" + artist + "/top-tracks", 200, 403},
		{"PUT", "/v1/me/tracks?ids=" + top[0].ID(), 200, 403},
		{"GET", "/v1/me/tracks/contains?ids=" + top[0].ID(), 200, 403},
		{"GET", "/v1/albums/" + top[0].AlbumID() + "/tracks", 200, 200},
		{"GET", "/v1/me/tracks", 200, 200},
		{"GET", "/v1/browse/new-releases", 404, 403},
		{"GET", "/v1/browse/categories", 404, 403},
		{"GET", "/v1/markets", 404, 403},
		{"GET", "/v1/recommendations?seed_genres=rock", 403, 403},
		{"GET", "/v1/audio-features/" + top[0].ID(), 403, 403},
		{"GET", "/v1/artists/" + artist + "/related-artists", 403, 403},
		{"GET", "/v1/browse/featured-playlists", 403, 403},
	} {
		for _, devMode := range []bool{false, true} {
			s.SetDevelopmentMode(devMode)
			if err := s.SetDevelopmentUsers(spotifytest.DefaultUserID); err != nil {
				t.Fatal(err)
			}
			want := tc.extended
			if devMode {
				want = tc.devMode
			}
			body := ""
			if tc.method == "POST" {
				body = `{"name":"n"}`
			}
			status, raw := send(t, s, tc.method, tc.path, tok, body)
			if status != want {
				t.Errorf("development mode %v: %s %s = %d %s, want %d", devMode, tc.method, tc.path, status, raw, want)
			}
			if status == 403 && string(raw) != `{"error":{"status":403,"message":"Forbidden"}}` {
				t.Errorf("%s %s: 403 body %s, want Spotify's", tc.method, tc.path, raw)
			}
		}
	}
}

func TestSeveralAtOnceAnswersNullForUnknownIDs(t *testing.T) {
	s := newKitServer(t)
	top := spotifytest.DefaultTopTracks()
	tok := s.IssueToken(spotifytest.DefaultUserID)
	status, raw := send(t, s, "GET", "/v1/tracks?ids="+top[1].ID()+",0000000000000000000000,"+top[0].ID(), tok, "")
	var out struct{ Tracks []*struct{ Name string } }
	decode(t, raw, &out)
	if status != 200 || len(out.Tracks) != 3 || out.Tracks[0].Name != top[1].Name || out.Tracks[1] != nil || out.Tracks[2].Name != top[0].Name {
		t.Errorf("%d %s", status, raw)
	}
	ids := strings.TrimSuffix(strings.Repeat(top[0].ID()+",", 51), ",")
	if status, _ := send(t, s, "GET", "/v1/tracks?ids="+ids, tok, ""); status != 400 {
		t.Errorf("51 ids: %d, want 400", status)
	}
}

// TestEveryLinkResolves follows every href, next and previous the fake
// returns, in extended quota: each must answer 200 on the fake.
func TestEveryLinkResolves(t *testing.T) {
	s := newKitServer(t)
	s.AddUser(spotifytest.User{ID: "dj", DisplayName: "DJ", Product: "premium", Device: "Kitchen"})
	tok := s.IssueToken("dj", "user-read-playback-state", "user-top-read", "user-read-recently-played",
		"user-library-read", "playlist-read-private", "user-read-currently-playing")
	var links []string
	var collect func(v any)
	collect = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if link, ok := x.(string); ok && (k == "href" || k == "next" || k == "previous") {
					links = append(links, link)
				}
				collect(x)
			}
		case []any:
			for _, x := range v {
				collect(x)
			}
		}
	}
	for _, path := range []string{"/v1/me", "/v1/me/top/tracks?limit=2", "/v1/me/top/artists", "/v1/me/playlists",
		"/v1/me/tracks?limit=2", "/v1/me/player", "/v1/me/player/recently-played?limit=2", "/v1/search?q=port&type=track,album,artist"} {
		status, raw := send(t, s, "GET", path, tok, "")
		if status != 200 {
			t.Fatalf("%s: %d %s", path, status, raw)
		}
		var v any
		decode(t, raw, &v)
		collect(v)
	}
	seen := map[string]bool{}
	for i := 0; i < len(links); i++ { // grows as the linked answers add links
		link := links[i]
		if seen[link] {
			continue
		}
		seen[link] = true
		if !strings.HasPrefix(link, s.URL+"/v1/") {
			t.Errorf("link %q is not on the fake", link)
			continue
		}
		status, raw := send(t, s, "GET", strings.TrimPrefix(link, s.URL), tok, "")
		if status != 200 {
			t.Errorf("GET %s: %d %s", link, status, raw)
			continue
		}
		var v any
		decode(t, raw, &v)
		if len(seen) < 300 {
			collect(v)
		}
	}
	if len(seen) < 20 {
		t.Errorf("followed only %d links", len(seen))
	}
}

func TestUsersWithoutTheirOwnDataGetTheirOwnDerivedData(t *testing.T) {
	s := newKitServer(t)
	topOf := func(user string) string {
		status, raw := send(t, s, "GET", "/v1/me/top/tracks", s.IssueToken(user, "user-top-read"), "")
		if status != 200 {
			t.Fatalf("%s: %d", user, status)
		}
		return strings.Join(names(pageOf(t, raw)), "|")
	}
	seen := map[string]string{}
	for i := range 20 {
		user := "user" + strconv.Itoa(i)
		s.AddUser(spotifytest.User{ID: user})
		got := topOf(user)
		if len(strings.Split(got, "|")) != 5 {
			t.Errorf("%s has top tracks %q, want 5", user, got)
		}
		if other, dup := seen[got]; dup {
			t.Errorf("%s and %s have the same top tracks %q", user, other, got)
		}
		seen[got] = user
		s.AddUser(spotifytest.User{ID: user, DisplayName: "changed"}) // same ID: same data
		if again := topOf(user); again != got {
			t.Errorf("%s's top tracks changed from %q to %q", user, got, again)
		}
	}
	if got, want := topOf(spotifytest.DefaultUserID), "Port 0|Handshake|Segfault Lullaby|Data Race|Lock Contention Blues"; got != want {
		t.Errorf("DefaultUser's top tracks = %q, want the canned %q", got, want)
	}
}

func TestAPIRequestsRecordBodyAndStatus(t *testing.T) {
	s := newKitServer(t)
	s.AddUser(spotifytest.User{ID: "dj", Product: "premium", Device: "Kitchen"})
	tok := s.IssueToken("dj", "user-modify-playback-state")
	body := `{"uris":["` + spotifytest.DefaultTopTracks()[0].URI() + `"]}`
	send(t, s, "PUT", "/v1/me/player/play", tok, body)
	send(t, s, "PUT", "/v1/me/player/play", tok, `{"uris":["spotify:track:nope"]}`)
	big := `{"name":"` + strings.Repeat("x", 20<<10) + `"}`
	send(t, s, "POST", "/v1/me/playlists", tok, big)
	s.InjectFault(spotifytest.EndpointAPI, spotifytest.Fault{Drop: true, Times: 1, Method: "POST"})
	req, _ := http.NewRequest("POST", s.APIURL()+"/v1/me/player/next", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("the dropped POST got an answer: %d", resp.StatusCode)
	}

	reqs := s.APIRequests()
	if len(reqs) != 4 {
		t.Fatalf("%d requests recorded, want 4", len(reqs))
	}
	for i, want := range []struct {
		status    int
		body      string
		truncated bool
	}{
		{204, body, false},
		{400, `{"uris":["spotify:track:nope"]}`, false},
		{403, big[:16<<10], true}, // no playlist-modify-public scope
		{0, "", false},
	} {
		if r := reqs[i]; r.Status != want.status || string(r.Body) != want.body || r.BodyTruncated != want.truncated {
			t.Errorf("request %d %s %s: status %d, body %d bytes (truncated %v); want %d, %d bytes (%v)",
				i, r.Method, r.Path, r.Status, len(r.Body), r.BodyTruncated, want.status, len(want.body), want.truncated)
		}
	}
}

func TestFaultsTargetAMethodAndAUser(t *testing.T) {
	s := newKitServer(t)
	s.AddUser(spotifytest.User{ID: "alice"})
	s.InjectFault(spotifytest.EndpointAPI, spotifytest.Fault{Status: 503, Method: "PUT", UserID: "alice"})
	alice := s.IssueToken("alice", "user-library-modify", "user-library-read")
	other := s.IssueToken(spotifytest.DefaultUserID, "user-library-modify", "user-library-read")
	uri := url.QueryEscape(spotifytest.DefaultTopTracks()[0].URI())
	for _, tc := range []struct {
		name, method, path, token string
		status                    int
	}{
		{"alice's PUT fails", "PUT", "/v1/me/library?uris=" + uri, alice, 503},
		{"alice's GET works", "GET", "/v1/me/library/contains?uris=" + uri, alice, 200},
		{"another user's PUT works", "PUT", "/v1/me/library?uris=" + uri, other, 200},
	} {
		if status, raw := send(t, s, tc.method, tc.path, tc.token, ""); status != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, status, raw, tc.status)
		}
	}
}

func TestForwardedNewRequestCarriesTheBody(t *testing.T) {
	s := newKitServer(t)
	var got struct{ method, path, body, user string }
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.method, got.path, got.body, got.user = r.Method, r.URL.Path, string(b), r.Header.Get("X-Spotify-User-Id")
	})
	req := s.Forward(spotifytest.DefaultUserID, "user-library-modify").NewRequest("POST", "/app/like", strings.NewReader(`{"track":"x"}`))
	app.ServeHTTP(httptest.NewRecorder(), req)
	if got.method != "POST" || got.path != "/app/like" || got.body != `{"track":"x"}` || got.user != spotifytest.DefaultUserID {
		t.Errorf("the handler got %+v", got)
	}
	if userID, _, valid := s.AccessTokenInfo(strings.TrimPrefix(req.Header.Get("Authorization"), "Bearer ")); userID != spotifytest.DefaultUserID || !valid {
		t.Errorf("the forwarded token is not a valid token of the user")
	}
}
