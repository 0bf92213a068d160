package spotifytest_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// send calls the fake's Web API and returns the status and raw body.
func send(t *testing.T, s *spotifytest.Server, method, path, token, body string) (int, []byte) {
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
	return resp.StatusCode, raw
}

// loadShape reads testdata/shapes/name (see its README.md).
func loadShape(t *testing.T, name string) any {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "shapes", name))
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return v
}

// shapeProblems compares an answer with a documented shape and lists
// where they differ.
func shapeProblems(t *testing.T, shape, got any, at string) []string {
	if ref, ok := shape.(string); ok && strings.HasPrefix(ref, "$ref:") {
		shape = loadShape(t, strings.TrimPrefix(ref, "$ref:"))
	}
	if shape == nil || got == nil { // documented as nullable, or sent as null
		return nil
	}
	switch want := shape.(type) {
	case map[string]any:
		obj, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: %T, want an object", at, got)}
		}
		var problems []string
		for key, w := range want {
			name, optional := strings.CutPrefix(key, "?")
			v, present := obj[name]
			if !present {
				if !optional {
					problems = append(problems, at+"."+name+": missing")
				}
				continue
			}
			problems = append(problems, shapeProblems(t, w, v, at+"."+name)...)
		}
		for key := range obj {
			_, documented := want[key]
			_, optional := want["?"+key]
			if !documented && !optional {
				problems = append(problems, at+"."+key+": not in Spotify's shape")
			}
		}
		sort.Strings(problems)
		return problems
	case []any:
		arr, ok := got.([]any)
		if !ok {
			return []string{fmt.Sprintf("%s: %T, want an array", at, got)}
		}
		if len(want) == 0 {
			return nil
		}
		var problems []string
		for i, v := range arr {
			problems = append(problems, shapeProblems(t, want[0], v, fmt.Sprintf("%s[%d]", at, i))...)
		}
		return problems
	default:
		if fmt.Sprintf("%T", want) != fmt.Sprintf("%T", got) {
			return []string{fmt.Sprintf("%s: %T %v, want %T", at, got, got, want)}
		}
	}
	return nil
}

// TestAnswersHaveSpotifysShape compares each new answer with the shape
// Spotify documents (testdata/shapes).
func TestAnswersHaveSpotifysShape(t *testing.T) {
	s := newKitServer(t)
	s.AddUser(spotifytest.User{ID: "dj", Product: "premium", Device: "Kitchen"})
	all := []string{"user-read-playback-state", "user-modify-playback-state", "user-read-currently-playing",
		"user-library-read", "user-library-modify", "playlist-read-private", "playlist-modify-public", "playlist-modify-private"}
	dj := s.IssueToken("dj", all...)
	top := spotifytest.DefaultTopTracks()
	playlistID := func() string {
		_, raw := send(t, s, "GET", "/v1/me/playlists", dj, "")
		var page struct{ Items []struct{ ID string } }
		_ = json.Unmarshal(raw, &page)
		return page.Items[0].ID
	}()
	for _, setup := range []struct{ method, path, body string }{
		{"PUT", "/v1/me/player/play", `{"uris":["` + top[0].URI() + `"]}`},
		{"POST", "/v1/me/player/queue?uri=" + top[1].URI(), ""},
	} {
		if status, raw := send(t, s, setup.method, setup.path, dj, setup.body); status != http.StatusNoContent {
			t.Fatalf("%s %s: %d %s", setup.method, setup.path, status, raw)
		}
	}

	for _, tc := range []struct {
		method, path, body string
		status             int
		shape              string
		devMode            bool
	}{
		{"GET", "/v1/playlists/" + playlistID, "", 200, "playlist.json", true},
		{"GET", "/v1/playlists/" + playlistID + "/items", "", 200, "playlist_items.json", true},
		{"POST", "/v1/me/playlists", `{"name":"Road trip","public":false}`, 201, "playlist.json", true},
		{"POST", "/v1/playlists/" + playlistID + "/items", `{"uris":["` + top[2].URI() + `"]}`, 201, "snapshot.json", true},
		{"GET", "/v1/me/library/contains?uris=" + top[0].URI(), "", 200, "library_contains.json", true},
		{"GET", "/v1/me/player", "", 200, "player.json", true},
		{"GET", "/v1/me/player/currently-playing", "", 200, "currently_playing.json", true},
		{"GET", "/v1/me/player/queue", "", 200, "queue.json", true},
		{"GET", "/v1/me/player/devices", "", 200, "devices.json", true},
		{"GET", "/v1/albums/" + top[0].AlbumID() + "/tracks", "", 200, "album_tracks.json", true},
		{"GET", "/v1/users/dj", "", 200, "public_user.json", false},
		{"GET", "/v1/users/dj/playlists", "", 200, "user_playlists.json", false},
		{"GET", "/v1/tracks?ids=" + top[0].ID() + "," + top[1].ID(), "", 200, "several_tracks.json", false},
		{"GET", "/v1/artists/" + spotifytest.DefaultTopArtists()[0].ID() + "/top-tracks", "", 200, "several_tracks.json", false},
		{"GET", "/v1/users/dj", "", 403, "error.json", true},
		{"PUT", "/v1/me/player/volume?volume_percent=30", "", 404, "player_error.json", true}, // testuser: no device
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			s.SetDevelopmentMode(tc.devMode)
			if tc.devMode {
				if err := s.SetDevelopmentUsers("dj", spotifytest.DefaultUserID); err != nil {
					t.Fatal(err)
				}
			}
			token := dj
			if tc.shape == "player_error.json" {
				token = s.IssueToken(spotifytest.DefaultUserID, "user-modify-playback-state")
			}
			status, raw := send(t, s, tc.method, tc.path, token, tc.body)
			if status != tc.status {
				t.Fatalf("%d %s, want %d", status, raw, tc.status)
			}
			var got any
			if err := json.Unmarshal(raw, &got); err != nil {
				t.Fatalf("not JSON: %s", raw)
			}
			if problems := shapeProblems(t, loadShape(t, tc.shape), got, "answer"); len(problems) > 0 {
				t.Errorf("differs from %s:\n%s\n%s", tc.shape, strings.Join(problems, "\n"), raw)
			}
		})
	}
}
