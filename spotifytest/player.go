package spotifytest

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// player is a user's mutable state at the fake: the playback an app
// drives, and (as it is per user too) the library and the playlists the
// user created through the Web API. The device comes from User.Device.
type player struct {
	playing    bool
	trackID    string   // "" = the first track of the context
	context    []string // track IDs play started from; nil = the user's top tracks
	queue      []string // track IDs added with POST /v1/me/player/queue, next first
	history    []string // track IDs played before the current one, latest last
	progressMS int
	volume     int
	shuffle    bool
	repeat     string // off, track or context

	library      *library // nil until the user's library is first used
	created      []createdPlaylist
	playlistAdds map[string][]Track // by playlist ID: tracks added through the Web API
}

// playerState returns the user's state, made on first use. s.mu must be
// held.
func (s *Server) playerState(userID string) *player {
	p, ok := s.players[userID]
	if !ok {
		p = &player{volume: defaultVolumePercent, repeat: "off"}
		s.players[userID] = p
	}
	return p
}

// defaultVolumePercent is the volume of a device nobody has set.
const defaultVolumePercent = 50

// Player is a user's player as the fake holds it, for a test to assert
// what the app under test did.
type Player struct {
	Device   string // the active device's name (User.Device); "" = none
	DeviceID string // its id, as GET /v1/me/player/devices lists it
	Playing  bool
	// Item is the current track (the first of the user's top tracks until
	// something else is played); nil if there is none.
	Item  *Track
	Queue []Track // the tracks added to the queue, next first
	// ProgressMS is the position in Item: where play or seek put it.
	// It does not advance with time, so tests stay exact.
	ProgressMS    int
	VolumePercent int
	Shuffle       bool
	Repeat        string // "off", "track" or "context"
}

// PlayerState returns the user's player: device, current track, queue,
// position and modes. An unknown user has none of them.
func (s *Server) PlayerState(userID string) Player {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[userID]
	if !ok {
		return Player{}
	}
	c := s.catalog()
	p := s.playerState(userID)
	out := Player{Device: u.Device, Playing: p.playing, ProgressMS: p.progressMS, VolumePercent: p.volume, Shuffle: p.shuffle, Repeat: p.repeat}
	if u.Device != "" {
		out.DeviceID = deviceID(&u)
	}
	if t, ok := s.currentTrack(c, &u, p); ok {
		out.Item = &t
	}
	for _, id := range p.queue {
		out.Queue = append(out.Queue, c.tracks[id])
	}
	return out
}

// IsPlaying reports whether the user's player is playing (after a PUT
// /v1/me/player/play and before a pause).
func (s *Server) IsPlaying(userID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.players[userID]
	return ok && p.playing
}

func deviceID(u *User) string { return fakeID("device:" + u.ID + "\x00" + u.Device) }

// contextIDs is what play started from: the URIs of the last play, or
// the user's top tracks.
func (p *player) contextIDs(u *User) []string {
	if p.context != nil {
		return p.context
	}
	var ids []string
	for _, t := range u.topTracks() {
		ids = append(ids, t.ID())
	}
	return ids
}

// currentTrack is the track the player is on. s.mu must be held.
func (s *Server) currentTrack(c *catalog, u *User, p *player) (Track, bool) {
	id := p.trackID
	if id == "" {
		ctx := p.contextIDs(u)
		if len(ctx) == 0 {
			return Track{}, false
		}
		id = ctx[0]
	}
	t, ok := c.tracks[id]
	return t, ok
}

// writePlayerError is a player command error: Spotify adds a reason.
func writePlayerError(w http.ResponseWriter, status int, message, reason string) {
	b, _ := json.Marshal(map[string]any{"error": map[string]any{"status": status, "message": message, "reason": reason}})
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func (s *Server) deviceJSON(u *User, volume int) map[string]any {
	return map[string]any{
		"id": deviceID(u), "is_active": true, "is_private_session": false,
		"is_restricted": false, "name": u.Device, "type": "Computer", "volume_percent": volume, "supports_volume": true,
	}
}

// servePlayer serves GET /v1/me/player: 204 without an active device.
func (s *Server) servePlayer(w http.ResponseWriter, _ *http.Request, at *accessToken, u *User, _ string) {
	if !requireScope(w, at, "user-read-playback-state") {
		return
	}
	if u.Device == "" {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.playerState(u.ID)
	state := s.playbackJSON(u, p)
	state["device"] = s.deviceJSON(u, p.volume)
	state["repeat_state"] = p.repeat
	state["shuffle_state"] = p.shuffle
	writeAPIJSON(w, state)
}

// playbackJSON is what GET /v1/me/player and /currently-playing share.
// s.mu must be held.
func (s *Server) playbackJSON(u *User, p *player) map[string]any {
	c := s.catalog()
	var item any
	if t, ok := s.currentTrack(c, u, p); ok {
		item = s.fullTrack(c, t)
	}
	return map[string]any{
		"context":                nil,
		"timestamp":              time.Now().UnixMilli(),
		"progress_ms":            p.progressMS,
		"is_playing":             p.playing,
		"item":                   item,
		"currently_playing_type": "track",
		"actions":                map[string]any{"disallows": map[string]bool{}},
	}
}

// serveCurrentlyPlaying serves GET /v1/me/player/currently-playing: 204
// without an active device or a current track.
func (s *Server) serveCurrentlyPlaying(w http.ResponseWriter, _ *http.Request, at *accessToken, u *User, _ string) {
	if !requireScope(w, at, "user-read-currently-playing") {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.playerState(u.ID)
	state := s.playbackJSON(u, p)
	if u.Device == "" || state["item"] == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeAPIJSON(w, state)
}

// serveQueue serves GET /v1/me/player/queue: the current track and the
// queue. Spotify's reference lists both read scopes for it; requiring
// both keeps an app that passes here working there.
func (s *Server) serveQueue(w http.ResponseWriter, _ *http.Request, at *accessToken, u *User, _ string) {
	if !requireScope(w, at, "user-read-currently-playing") || !requireScope(w, at, "user-read-playback-state") {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.catalog()
	p := s.playerState(u.ID)
	var current any
	queue := []any{}
	if u.Device != "" {
		if t, ok := s.currentTrack(c, u, p); ok {
			current = s.fullTrack(c, t)
		}
		for _, id := range p.queue {
			queue = append(queue, s.fullTrack(c, c.tracks[id]))
		}
	}
	writeAPIJSON(w, map[string]any{"currently_playing": current, "queue": queue})
}

// serveDevices serves GET /v1/me/player/devices: the user's device, if
// any.
func (s *Server) serveDevices(w http.ResponseWriter, _ *http.Request, at *accessToken, u *User, _ string) {
	if !requireScope(w, at, "user-read-playback-state") {
		return
	}
	devices := []any{}
	if u.Device != "" {
		s.mu.Lock()
		devices = append(devices, s.deviceJSON(u, s.playerState(u.ID).volume))
		s.mu.Unlock()
	}
	writeAPIJSON(w, map[string]any{"devices": devices})
}

// playerCommand checks what every player command needs, in Spotify's
// order: the scope, then Premium, then an active device (a Free user is
// told PREMIUM_REQUIRED whether or not a device is on; only then does
// Spotify look for the device), and a device_id, if given, naming it.
func playerCommand(w http.ResponseWriter, r *http.Request, at *accessToken, u *User) bool {
	if !requireScope(w, at, "user-modify-playback-state") {
		return false
	}
	if u.Product != "premium" {
		writePlayerError(w, http.StatusForbidden, "Player command failed: Premium required", "PREMIUM_REQUIRED")
		return false
	}
	if u.Device == "" {
		writePlayerError(w, http.StatusNotFound, "Player command failed: No active device found", "NO_ACTIVE_DEVICE")
		return false
	}
	if id := r.URL.Query().Get("device_id"); id != "" && id != deviceID(u) {
		writeAPIError(w, http.StatusNotFound, "Device not found")
		return false
	}
	return true
}

// readJSONBody decodes an optional JSON body into v; it answers 400
// itself if the body is not JSON.
func readJSONBody(w http.ResponseWriter, r *http.Request, v any) bool {
	raw, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil || len(strings.TrimSpace(string(raw))) > 0 && json.Unmarshal(raw, v) != nil {
		writeAPIError(w, http.StatusBadRequest, "Malformed json")
		return false
	}
	return true
}

// trackIDOf returns the ID of a spotify:track: URI of a known track.
func trackIDOf(c *catalog, uri string) (string, bool) {
	id, ok := strings.CutPrefix(uri, "spotify:track:")
	if _, known := c.tracks[id]; !ok || !known {
		return "", false
	}
	return id, true
}

// servePlay serves PUT /v1/me/player/play. An optional body
// {"uris":["spotify:track:ID", ...], "position_ms": N} plays the first
// track and makes the list what next goes through.
func (s *Server) servePlay(w http.ResponseWriter, r *http.Request, at *accessToken, u *User, _ string) {
	if !playerCommand(w, r, at, u) {
		return
	}
	var body struct {
		URIs       []string `json:"uris"`
		PositionMS int      `json:"position_ms"`
	}
	if !readJSONBody(w, r, &body) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.catalog()
	p := s.playerState(u.ID)
	if len(body.URIs) > 0 {
		var ids []string
		for _, uri := range body.URIs {
			id, ok := trackIDOf(c, uri)
			if !ok {
				writeAPIError(w, http.StatusBadRequest, "Invalid track uri: "+uri)
				return
			}
			ids = append(ids, id)
		}
		s.moveTo(c, u, p, ids[0])
		p.context = ids
		p.progressMS = max(body.PositionMS, 0)
	}
	p.playing = true
	w.WriteHeader(http.StatusNoContent)
}

// moveTo makes id the current track, remembering the one it replaces for
// previous. s.mu must be held.
func (s *Server) moveTo(c *catalog, u *User, p *player, id string) {
	if t, ok := s.currentTrack(c, u, p); ok {
		p.history = append(p.history, t.ID())
	}
	p.trackID = id
	p.progressMS = 0
}

// servePause serves PUT /v1/me/player/pause. Pausing a paused player is
// refused, as Spotify does.
func (s *Server) servePause(w http.ResponseWriter, r *http.Request, at *accessToken, u *User, _ string) {
	if !playerCommand(w, r, at, u) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.playerState(u.ID)
	if !p.playing {
		writePlayerError(w, http.StatusForbidden, "Player command failed: Restriction violated", "UNKNOWN")
		return
	}
	p.playing = false
	w.WriteHeader(http.StatusNoContent)
}

// serveAddToQueue serves POST /v1/me/player/queue?uri=spotify:track:ID.
func (s *Server) serveAddToQueue(w http.ResponseWriter, r *http.Request, at *accessToken, u *User, _ string) {
	if !playerCommand(w, r, at, u) {
		return
	}
	uri := r.URL.Query().Get("uri")
	if uri == "" {
		writeAPIError(w, http.StatusBadRequest, "Missing required parameter: uri")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := trackIDOf(s.catalog(), uri)
	if !ok {
		writeAPIError(w, http.StatusBadRequest, "Invalid track uri: "+uri)
		return
	}
	p := s.playerState(u.ID)
	p.queue = append(p.queue, id)
	w.WriteHeader(http.StatusNoContent)
}

// serveNext serves POST /v1/me/player/next: the queue first, then the
// context; past the context's end the player stops on its last track,
// unless repeat is "context".
func (s *Server) serveNext(w http.ResponseWriter, r *http.Request, at *accessToken, u *User, _ string) {
	if !playerCommand(w, r, at, u) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next(s.catalog(), u, s.playerState(u.ID))
	w.WriteHeader(http.StatusNoContent)
}

// next skips to the next track. s.mu must be held.
func (s *Server) next(c *catalog, u *User, p *player) {
	if len(p.queue) > 0 {
		id := p.queue[0]
		p.queue = slices.Delete(p.queue, 0, 1)
		s.moveTo(c, u, p, id)
		return
	}
	ctx := p.contextIDs(u)
	cur, _ := s.currentTrack(c, u, p)
	i := slices.Index(ctx, cur.ID())
	// After queued tracks, play goes on from where it left the context.
	for h := len(p.history) - 1; i < 0 && h >= 0; h-- {
		i = slices.Index(ctx, p.history[h])
	}
	switch {
	case i >= 0 && i+1 < len(ctx):
		s.moveTo(c, u, p, ctx[i+1])
	case len(ctx) > 0 && (i < 0 || p.repeat == "context"):
		s.moveTo(c, u, p, ctx[0])
	default:
		p.playing = false
		p.progressMS = 0
	}
}

// servePrevious serves POST /v1/me/player/previous: back to the track
// played before, or the start of this one if there is none.
func (s *Server) servePrevious(w http.ResponseWriter, r *http.Request, at *accessToken, u *User, _ string) {
	if !playerCommand(w, r, at, u) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.playerState(u.ID)
	if n := len(p.history); n > 0 {
		p.trackID = p.history[n-1]
		p.history = p.history[:n-1]
	}
	p.progressMS = 0
	w.WriteHeader(http.StatusNoContent)
}

// playerSetting serves the PUT /v1/me/player/{volume,shuffle,repeat,seek}
// commands: one query parameter, checked by parse, applied by set.
func (s *Server) playerSetting(param string, parse func(v string) (any, bool), set func(c *catalog, u *User, p *player, v any)) func(http.ResponseWriter, *http.Request, *accessToken, *User, string) {
	return func(w http.ResponseWriter, r *http.Request, at *accessToken, u *User, _ string) {
		if !playerCommand(w, r, at, u) {
			return
		}
		raw := r.URL.Query().Get(param)
		if raw == "" {
			writeAPIError(w, http.StatusBadRequest, "Missing required parameter: "+param)
			return
		}
		v, ok := parse(raw)
		if !ok {
			writeAPIError(w, http.StatusBadRequest, "Invalid "+param)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		set(s.catalog(), u, s.playerState(u.ID), v)
		w.WriteHeader(http.StatusNoContent)
	}
}

func parseIntIn(lo, hi int) func(string) (any, bool) {
	return func(v string) (any, bool) {
		n, err := strconv.Atoi(v)
		return n, err == nil && n >= lo && n <= hi
	}
}

func parseOneOf(values ...string) func(string) (any, bool) {
	return func(v string) (any, bool) { return v, slices.Contains(values, v) }
}

func (s *Server) serveVolume() func(http.ResponseWriter, *http.Request, *accessToken, *User, string) {
	return s.playerSetting("volume_percent", parseIntIn(0, 100), func(_ *catalog, _ *User, p *player, v any) { p.volume = v.(int) })
}

func (s *Server) serveShuffle() func(http.ResponseWriter, *http.Request, *accessToken, *User, string) {
	return s.playerSetting("state", parseOneOf("true", "false"), func(_ *catalog, _ *User, p *player, v any) { p.shuffle = v == "true" })
}

func (s *Server) serveRepeat() func(http.ResponseWriter, *http.Request, *accessToken, *User, string) {
	return s.playerSetting("state", parseOneOf("track", "context", "off"), func(_ *catalog, _ *User, p *player, v any) { p.repeat = v.(string) })
}

// serveSeek: a position past the track's end starts the next track, as
// Spotify does.
func (s *Server) serveSeek() func(http.ResponseWriter, *http.Request, *accessToken, *User, string) {
	const maxInt = int(^uint(0) >> 1)
	return s.playerSetting("position_ms", parseIntIn(0, maxInt), func(c *catalog, u *User, p *player, v any) {
		if t, ok := s.currentTrack(c, u, p); ok && t.DurationMS > 0 && v.(int) >= t.DurationMS {
			s.next(c, u, p)
			return
		}
		p.progressMS = v.(int)
	})
}

// serveTransfer serves PUT /v1/me/player: {"device_ids":["ID"],
// "play":bool}. Spotify takes exactly one device; the fake knows only
// the user's own (User.Device), so an unknown ID is 404.
func (s *Server) serveTransfer(w http.ResponseWriter, r *http.Request, at *accessToken, u *User, _ string) {
	if !requireScope(w, at, "user-modify-playback-state") {
		return
	}
	if u.Product != "premium" {
		writePlayerError(w, http.StatusForbidden, "Player command failed: Premium required", "PREMIUM_REQUIRED")
		return
	}
	var body struct {
		DeviceIDs []string `json:"device_ids"`
		Play      *bool    `json:"play"`
	}
	if !readJSONBody(w, r, &body) {
		return
	}
	switch {
	case len(body.DeviceIDs) == 0:
		writeAPIError(w, http.StatusBadRequest, "Required field device_ids missing")
		return
	case len(body.DeviceIDs) > 1:
		writeAPIError(w, http.StatusBadRequest, "Only one device_id supported")
		return
	case u.Device == "" || body.DeviceIDs[0] != deviceID(u):
		writeAPIError(w, http.StatusNotFound, "Device not found")
		return
	}
	if body.Play != nil && *body.Play {
		s.mu.Lock()
		s.playerState(u.ID).playing = true
		s.mu.Unlock()
	}
	w.WriteHeader(http.StatusNoContent)
}
