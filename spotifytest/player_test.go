package spotifytest_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// playerFixture is a premium user with a device and the default top
// tracks as the player's context.
func playerFixture(t *testing.T) (s *spotifytest.Server, token string, top []spotifytest.Track) {
	s = newKitServer(t)
	s.AddUser(spotifytest.User{ID: "dj", Product: "premium", Device: "Kitchen", TopTracks: spotifytest.DefaultTopTracks()})
	token = s.IssueToken("dj", "user-modify-playback-state", "user-read-playback-state", "user-read-currently-playing")
	return s, token, spotifytest.DefaultTopTracks()
}

func mustSend(t *testing.T, s *spotifytest.Server, method, path, token, body string, want int) []byte {
	t.Helper()
	status, raw := send(t, s, method, path, token, body)
	if status != want {
		t.Fatalf("%s %s: %d %s, want %d", method, path, status, raw, want)
	}
	return raw
}

func current(s *spotifytest.Server) string {
	if p := s.PlayerState("dj"); p.Item != nil {
		return p.Item.Name
	}
	return ""
}

func TestPlayerPlaysQueuesAndSkips(t *testing.T) {
	s, tok, top := playerFixture(t)
	mustSend(t, s, "PUT", "/v1/me/player/play", tok, `{"uris":["`+top[2].URI()+`","`+top[3].URI()+`"],"position_ms":1000}`, 204)
	mustSend(t, s, "POST", "/v1/me/player/queue?uri="+top[0].URI(), tok, "", 204)

	p := s.PlayerState("dj")
	if !p.Playing || p.Item == nil || p.Item.Name != top[2].Name || p.ProgressMS != 1000 || len(p.Queue) != 1 || p.Queue[0].Name != top[0].Name || p.Device != "Kitchen" || p.DeviceID == "" {
		t.Fatalf("after play and queue: %+v", p)
	}
	var q struct {
		CurrentlyPlaying struct{ Name string } `json:"currently_playing"`
		Queue            []struct{ Name string }
	}
	decode(t, mustSend(t, s, "GET", "/v1/me/player/queue", tok, "", 200), &q)
	if q.CurrentlyPlaying.Name != top[2].Name || len(q.Queue) != 1 || q.Queue[0].Name != top[0].Name {
		t.Errorf("GET queue: %+v", q)
	}

	for i, want := range []string{top[0].Name, top[3].Name} { // the queue first, then the context
		mustSend(t, s, "POST", "/v1/me/player/next", tok, "", 204)
		if got := current(s); got != want {
			t.Errorf("next #%d: %q, want %q", i+1, got, want)
		}
	}
	if len(s.PlayerState("dj").Queue) != 0 {
		t.Errorf("the queue was not used up")
	}
	mustSend(t, s, "POST", "/v1/me/player/next", tok, "", 204) // past the context's end
	if p := s.PlayerState("dj"); p.Playing || current(s) != top[3].Name {
		t.Errorf("past the end: playing %v on %q; want stopped on the last track", p.Playing, current(s))
	}
	mustSend(t, s, "PUT", "/v1/me/player/repeat?state=context", tok, "", 204)
	mustSend(t, s, "POST", "/v1/me/player/next", tok, "", 204)
	if got := current(s); got != top[2].Name {
		t.Errorf("next with repeat context: %q, want the context's first %q", got, top[2].Name)
	}
	for i, want := range []string{top[3].Name, top[0].Name} {
		mustSend(t, s, "POST", "/v1/me/player/previous", tok, "", 204)
		if got := current(s); got != want {
			t.Errorf("previous #%d: %q, want %q", i+1, got, want)
		}
	}

	var cp struct {
		IsPlaying  bool `json:"is_playing"`
		ProgressMS int  `json:"progress_ms"`
		Item       struct{ Name string }
	}
	mustSend(t, s, "PUT", "/v1/me/player/seek?position_ms=5000", tok, "", 204)
	decode(t, mustSend(t, s, "GET", "/v1/me/player/currently-playing", tok, "", 200), &cp)
	if cp.Item.Name != top[0].Name || cp.ProgressMS != 5000 {
		t.Errorf("currently-playing after seek: %+v", cp)
	}
	mustSend(t, s, "PUT", "/v1/me/player/seek?position_ms="+strconv.Itoa(top[0].DurationMS), tok, "", 204)
	if current(s) == top[0].Name {
		t.Errorf("seeking past the end stayed on the track")
	}
}

func TestPlayerSettingsAndDevices(t *testing.T) {
	s, tok, _ := playerFixture(t)
	mustSend(t, s, "PUT", "/v1/me/player/volume?volume_percent=30", tok, "", 204)
	mustSend(t, s, "PUT", "/v1/me/player/shuffle?state=true", tok, "", 204)
	mustSend(t, s, "PUT", "/v1/me/player/repeat?state=track", tok, "", 204)
	if p := s.PlayerState("dj"); p.VolumePercent != 30 || !p.Shuffle || p.Repeat != "track" {
		t.Errorf("settings: %+v", p)
	}
	var state struct {
		Device struct {
			ID, Name      string
			VolumePercent int `json:"volume_percent"`
		}
		Shuffle bool   `json:"shuffle_state"`
		Repeat  string `json:"repeat_state"`
	}
	decode(t, mustSend(t, s, "GET", "/v1/me/player", tok, "", 200), &state)
	if state.Device.VolumePercent != 30 || !state.Shuffle || state.Repeat != "track" {
		t.Errorf("GET /v1/me/player: %+v", state)
	}
	var devices struct {
		Devices []struct{ ID, Name string }
	}
	decode(t, mustSend(t, s, "GET", "/v1/me/player/devices", tok, "", 200), &devices)
	if len(devices.Devices) != 1 || devices.Devices[0].Name != "Kitchen" || devices.Devices[0].ID != state.Device.ID {
		t.Fatalf("devices: %+v", devices)
	}
	id := devices.Devices[0].ID
	mustSend(t, s, "PUT", "/v1/me/player", tok, `{"device_ids":["`+id+`"],"play":true}`, 204)
	if !s.IsPlaying("dj") {
		t.Errorf("transfer with play:true did not start playback")
	}
	mustSend(t, s, "PUT", "/v1/me/player/pause?device_id="+id, tok, "", 204)

	for _, tc := range []struct {
		name, method, path, body string
		status                   int
	}{
		{"volume over 100", "PUT", "/v1/me/player/volume?volume_percent=101", "", 400},
		{"volume missing", "PUT", "/v1/me/player/volume", "", 400},
		{"shuffle not a boolean", "PUT", "/v1/me/player/shuffle?state=yes", "", 400},
		{"repeat not a mode", "PUT", "/v1/me/player/repeat?state=all", "", 400},
		{"seek negative", "PUT", "/v1/me/player/seek?position_ms=-1", "", 400},
		{"queue an unknown track", "POST", "/v1/me/player/queue?uri=spotify:track:0000000000000000000000", "", 400},
		{"another device_id", "PUT", "/v1/me/player/pause?device_id=0000000000000000000000", "", 404},
		{"transfer to two devices", "PUT", "/v1/me/player", `{"device_ids":["` + id + `","` + id + `"]}`, 400},
		{"transfer to an unknown device", "PUT", "/v1/me/player", `{"device_ids":["0000000000000000000000"]}`, 404},
		{"next is POST", "PUT", "/v1/me/player/next", "", 405},
	} {
		if status, raw := send(t, s, tc.method, tc.path, tok, tc.body); status != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, status, raw, tc.status)
		}
	}
}

// TestPlayerRefusalsComeInSpotifysOrder: the scope, then Premium, then an
// active device: a Free user without a device hears PREMIUM_REQUIRED.
func TestPlayerRefusalsComeInSpotifysOrder(t *testing.T) {
	s := newKitServer(t)
	s.AddUser(spotifytest.User{ID: "free", Product: "free"})
	s.AddUser(spotifytest.User{ID: "free-with-device", Product: "free", Device: "Phone"})
	s.AddUser(spotifytest.User{ID: "premium", Product: "premium"})
	commands := []struct{ method, path string }{
		{"PUT", "/v1/me/player/play"}, {"PUT", "/v1/me/player/pause"}, {"POST", "/v1/me/player/next"},
		{"POST", "/v1/me/player/previous"}, {"PUT", "/v1/me/player/volume?volume_percent=5"},
		{"PUT", "/v1/me/player/shuffle?state=true"}, {"PUT", "/v1/me/player/repeat?state=off"},
		{"PUT", "/v1/me/player/seek?position_ms=0"}, {"POST", "/v1/me/player/queue?uri=" + spotifytest.DefaultTopTracks()[0].URI()},
	}
	for _, tc := range []struct {
		user, scope string
		status      int
		reason      string
	}{
		{"free", "user-read-playback-state", 403, ""}, // the scope comes first
		{"free", "user-modify-playback-state", 403, "PREMIUM_REQUIRED"},
		{"free-with-device", "user-modify-playback-state", 403, "PREMIUM_REQUIRED"},
		{"premium", "user-modify-playback-state", 404, "NO_ACTIVE_DEVICE"},
	} {
		tok := s.IssueToken(tc.user, tc.scope)
		for _, c := range commands {
			status, raw := send(t, s, c.method, c.path, tok, "")
			var e struct {
				Error struct{ Reason, Message string }
			}
			_ = json.Unmarshal(raw, &e)
			if status != tc.status || e.Error.Reason != tc.reason {
				t.Errorf("%s with %s: %s %s = %d %s, want %d %q", tc.user, tc.scope, c.method, c.path, status, raw, tc.status, tc.reason)
			}
		}
	}
}

func TestPlayerReadsNeedTheirScopesAndADevice(t *testing.T) {
	s := newKitServer(t)
	s.AddUser(spotifytest.User{ID: "dj", Product: "premium", Device: "Kitchen"})
	for _, tc := range []struct {
		name, user, path string
		scopes           []string
		status           int
	}{
		{"currently-playing needs user-read-currently-playing", "dj", "/v1/me/player/currently-playing", []string{"user-read-playback-state"}, 403},
		{"the queue needs user-read-playback-state too", "dj", "/v1/me/player/queue", []string{"user-read-currently-playing"}, 403},
		{"the queue needs user-read-currently-playing too", "dj", "/v1/me/player/queue", []string{"user-read-playback-state"}, 403},
		{"devices need user-read-playback-state", "dj", "/v1/me/player/devices", []string{"user-read-currently-playing"}, 403},
		{"nothing is playing without a device", spotifytest.DefaultUserID, "/v1/me/player/currently-playing", []string{"user-read-currently-playing"}, 204},
		{"no device, an empty list", spotifytest.DefaultUserID, "/v1/me/player/devices", []string{"user-read-playback-state"}, 200},
	} {
		status, raw := send(t, s, "GET", tc.path, s.IssueToken(tc.user, tc.scopes...), "")
		if status != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, status, raw, tc.status)
		}
		if tc.status == 200 && !strings.Contains(string(raw), `"devices":[]`) {
			t.Errorf("%s: %s", tc.name, raw)
		}
	}
}
