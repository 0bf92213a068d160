package spotifytest

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// player is a user's playback state. The device comes from User.Device.
type player struct {
	playing bool
	trackID string // "" = the user's first top track
}

// playerState returns the user's state (zero value if none yet). s.mu
// must be held.
func (s *Server) playerState(userID string) *player {
	p, ok := s.players[userID]
	if !ok {
		p = &player{}
		s.players[userID] = p
	}
	return p
}

// IsPlaying reports whether the user's player is playing (after a PUT
// /v1/me/player/play and before a pause).
func (s *Server) IsPlaying(userID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.players[userID]
	return ok && p.playing
}

// writePlayerError is a player command error: Spotify adds a reason.
func writePlayerError(w http.ResponseWriter, status int, message, reason string) {
	b, _ := json.Marshal(map[string]any{"error": map[string]any{"status": status, "message": message, "reason": reason}})
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
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
	p := *s.playerState(u.ID)
	c := s.catalog()
	s.mu.Unlock()
	var item any
	if t, ok := c.tracks[p.trackID]; ok {
		item = s.fullTrack(c, t)
	} else if top := u.topTracks(); len(top) > 0 {
		item = s.fullTrack(c, top[0])
	}
	writeAPIJSON(w, map[string]any{
		"device": map[string]any{
			"id": fakeID("device:" + u.ID + "\x00" + u.Device), "is_active": true, "is_private_session": false,
			"is_restricted": false, "name": u.Device, "type": "Computer", "volume_percent": 50, "supports_volume": true,
		},
		"repeat_state":           "off",
		"shuffle_state":          false,
		"context":                nil,
		"timestamp":              time.Now().UnixMilli(),
		"progress_ms":            0,
		"is_playing":             p.playing,
		"item":                   item,
		"currently_playing_type": "track",
		"actions":                map[string]any{"disallows": map[string]bool{}},
	})
}

// playerCommand checks what every player command needs: the scope, an
// active device and Premium.
func playerCommand(w http.ResponseWriter, at *accessToken, u *User) bool {
	if !requireScope(w, at, "user-modify-playback-state") {
		return false
	}
	if u.Device == "" {
		writePlayerError(w, http.StatusNotFound, "Player command failed: No active device found", "NO_ACTIVE_DEVICE")
		return false
	}
	if u.Product != "premium" {
		writePlayerError(w, http.StatusForbidden, "Player command failed: Premium required", "PREMIUM_REQUIRED")
		return false
	}
	return true
}

// servePlay serves PUT /v1/me/player/play, with an optional body
// {"uris":["spotify:track:ID", ...]} choosing the track.
func (s *Server) servePlay(w http.ResponseWriter, r *http.Request, at *accessToken, u *User, _ string) {
	if !playerCommand(w, at, u) {
		return
	}
	var body struct {
		URIs []string `json:"uris"`
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil || len(strings.TrimSpace(string(raw))) > 0 && json.Unmarshal(raw, &body) != nil {
		writeAPIError(w, http.StatusBadRequest, "Malformed json")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.playerState(u.ID)
	if len(body.URIs) > 0 {
		id, ok := strings.CutPrefix(body.URIs[0], "spotify:track:")
		if _, known := s.catalog().tracks[id]; !ok || !known {
			writeAPIError(w, http.StatusBadRequest, "Invalid track uri: "+body.URIs[0])
			return
		}
		p.trackID = id
	}
	p.playing = true
	w.WriteHeader(http.StatusNoContent)
}

// servePause serves PUT /v1/me/player/pause. Pausing a paused player is
// refused, as Spotify does.
func (s *Server) servePause(w http.ResponseWriter, _ *http.Request, at *accessToken, u *User, _ string) {
	if !playerCommand(w, at, u) {
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

// playedAt is when the user played the i-th (0 = most recent) track of
// their history: every four minutes back from the server's start.
func (s *Server) playedAt(i int) time.Time {
	return s.started.Add(-time.Duration(i+1) * 4 * time.Minute)
}

const spotifyTimeMillis = "2006-01-02T15:04:05.000Z"

// serveRecentlyPlayed serves GET /v1/me/player/recently-played with
// Spotify's cursor paging (limit, before or after in Unix milliseconds).
func (s *Server) serveRecentlyPlayed(w http.ResponseWriter, r *http.Request, at *accessToken, u *User, _ string) {
	if !requireScope(w, at, "user-read-recently-played") {
		return
	}
	q := r.URL.Query()
	limit, _, problem := parsePaging(q, 20, 50)
	if problem != "" {
		writeAPIError(w, http.StatusBadRequest, problem)
		return
	}
	var before, after int64 = -1, -1
	for name, dst := range map[string]*int64{"before": &before, "after": &after} {
		if v := q.Get(name); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				writeAPIError(w, http.StatusBadRequest, "Invalid "+name)
				return
			}
			*dst = n
		}
	}
	if before >= 0 && after >= 0 {
		writeAPIError(w, http.StatusBadRequest, "Only one of before and after can be specified")
		return
	}
	s.mu.Lock()
	c := s.catalog()
	s.mu.Unlock()
	var items []any
	var times []int64
	more := false
	for i, t := range u.recentlyPlayed() {
		ms := s.playedAt(i).UnixMilli()
		if before >= 0 && ms >= before || after >= 0 && ms <= after {
			continue
		}
		if len(items) == limit {
			more = true
			break
		}
		items = append(items, map[string]any{"track": s.fullTrack(c, t), "played_at": s.playedAt(i).Format(spotifyTimeMillis), "context": nil})
		times = append(times, ms)
	}
	if items == nil {
		items = []any{}
	}
	var cursors, next any
	if len(times) > 0 {
		last := strconv.FormatInt(times[len(times)-1], 10)
		cursors = map[string]string{"after": strconv.FormatInt(times[0], 10), "before": last}
		if more {
			next = s.URL + r.URL.Path + "?before=" + last + "&limit=" + strconv.Itoa(limit)
		}
	}
	writeAPIJSON(w, map[string]any{
		"href":    s.URL + r.URL.RequestURI(),
		"items":   items,
		"limit":   limit,
		"next":    next,
		"cursors": cursors,
	})
}

// servePlaylists serves GET /v1/me/playlists: simplified playlists, the
// private ones only with playlist-read-private.
func (s *Server) servePlaylists(w http.ResponseWriter, r *http.Request, at *accessToken, u *User, _ string) {
	readPrivate := containsScope(at, "playlist-read-private")
	owner := map[string]any{
		"id": u.ID, "display_name": nil, "type": "user", "uri": "spotify:user:" + u.ID,
		"href": s.URL + "/v1/users/" + u.ID, "external_urls": map[string]string{"spotify": "https://open.spotify.com/user/" + u.ID},
	}
	if u.DisplayName != "" {
		owner["display_name"] = u.DisplayName
	}
	items := []any{}
	for _, p := range u.playlists() {
		if p.Private && !readPrivate {
			continue
		}
		obj := s.object("playlist", p.id(u.ID), p.Name)
		obj["description"] = p.Description
		obj["public"] = !p.Private
		obj["collaborative"] = false
		obj["images"] = []any{}
		obj["owner"] = owner
		obj["snapshot_id"] = fakeID("snapshot:" + p.id(u.ID))
		obj["tracks"] = map[string]any{"href": s.URL + "/v1/playlists/" + p.id(u.ID) + "/tracks", "total": len(p.Tracks)}
		items = append(items, obj)
	}
	s.servePage(w, r, items, 20, 50)
}

func containsScope(at *accessToken, scope string) bool {
	for _, sc := range at.scopes {
		if sc == scope {
			return true
		}
	}
	return false
}

// serveSavedTracks serves GET /v1/me/tracks: saved tracks with added_at.
func (s *Server) serveSavedTracks(w http.ResponseWriter, r *http.Request, at *accessToken, u *User, _ string) {
	if !requireScope(w, at, "user-library-read") {
		return
	}
	s.mu.Lock()
	c := s.catalog()
	s.mu.Unlock()
	saved := u.savedTracks()
	items := make([]any, len(saved))
	for i, t := range saved {
		items[i] = map[string]any{"added_at": s.started.Add(-time.Duration(i+1) * 24 * time.Hour).Format(time.RFC3339), "track": s.fullTrack(c, t)}
	}
	s.servePage(w, r, items, 20, 50)
}

// serveSearch serves GET /v1/search over the catalogue (every default and
// user track, artist and album). Every word of q must occur in the item's
// name, or for tracks and albums in its artist's or album's name too,
// ignoring case; "field:" prefixes such as artist: are read as plain
// words.
func (s *Server) serveSearch(w http.ResponseWriter, r *http.Request, _ *accessToken, _ *User, _ string) {
	q := r.URL.Query()
	query := strings.TrimSpace(q.Get("q"))
	if query == "" {
		writeAPIError(w, http.StatusBadRequest, "No search query")
		return
	}
	if q.Get("type") == "" {
		writeAPIError(w, http.StatusBadRequest, "Missing parameter type")
		return
	}
	types := strings.Split(q.Get("type"), ",")
	for _, t := range types {
		switch t {
		case "track", "artist", "album", "playlist", "show", "episode", "audiobook":
		default:
			writeAPIError(w, http.StatusBadRequest, "Bad search type field "+t)
			return
		}
	}
	limit, offset, problem := parsePaging(q, 20, 50)
	if problem != "" || offset > 1000 {
		writeAPIError(w, http.StatusBadRequest, "Invalid limit or offset")
		return
	}
	var words []string
	for _, word := range strings.Fields(strings.ToLower(query)) {
		if _, rest, ok := strings.Cut(word, ":"); ok {
			word = rest
		}
		if word != "" {
			words = append(words, word)
		}
	}
	matches := func(texts ...string) bool {
		all := strings.ToLower(strings.Join(texts, " "))
		for _, word := range words {
			if !strings.Contains(all, word) {
				return false
			}
		}
		return true
	}
	s.mu.Lock()
	c := s.catalog()
	s.mu.Unlock()
	out := map[string]any{}
	for _, t := range types {
		items := []any{}
		switch t {
		case "track":
			for _, id := range c.trackIDs {
				if tr := c.tracks[id]; matches(tr.Name, tr.Artist, tr.albumName()) {
					items = append(items, s.fullTrack(c, tr))
				}
			}
		case "artist":
			for _, id := range c.artistIDs {
				if a := c.artists[id]; matches(a.Name) {
					items = append(items, s.artistJSON(a))
				}
			}
		case "album":
			for _, id := range c.albumIDs {
				if tr := c.albums[id][0]; matches(tr.albumName(), tr.Artist) {
					items = append(items, s.albumJSON(tr, len(c.albums[id])))
				}
			}
		}
		out[t+"s"] = s.paging(r.URL.Path, q, items, limit, offset)
	}
	writeAPIJSON(w, out)
}

// lookupID checks an {id} and answers the error itself if it is malformed.
func lookupID(w http.ResponseWriter, id string) bool {
	if !isSpotifyID(id) {
		writeAPIError(w, http.StatusBadRequest, "invalid id")
		return false
	}
	return true
}

// serveTrack serves GET /v1/tracks/{id}.
func (s *Server) serveTrack(w http.ResponseWriter, _ *http.Request, _ *accessToken, _ *User, id string) {
	if !lookupID(w, id) {
		return
	}
	s.mu.Lock()
	c := s.catalog()
	s.mu.Unlock()
	t, ok := c.tracks[id]
	if !ok {
		writeAPIError(w, http.StatusNotFound, "Resource not found")
		return
	}
	writeAPIJSON(w, s.fullTrack(c, t))
}

// serveArtist serves GET /v1/artists/{id}.
func (s *Server) serveArtist(w http.ResponseWriter, _ *http.Request, _ *accessToken, _ *User, id string) {
	if !lookupID(w, id) {
		return
	}
	s.mu.Lock()
	c := s.catalog()
	s.mu.Unlock()
	a, ok := c.artists[id]
	if !ok {
		writeAPIError(w, http.StatusNotFound, "Resource not found")
		return
	}
	writeAPIJSON(w, s.artistJSON(a))
}

// serveAlbum serves GET /v1/albums/{id}: the album with its tracks (a
// paging object of simplified tracks).
func (s *Server) serveAlbum(w http.ResponseWriter, _ *http.Request, _ *accessToken, _ *User, id string) {
	if !lookupID(w, id) {
		return
	}
	s.mu.Lock()
	c := s.catalog()
	s.mu.Unlock()
	tracks, ok := c.albums[id]
	if !ok {
		writeAPIError(w, http.StatusNotFound, "Resource not found")
		return
	}
	album := s.albumJSON(tracks[0], len(tracks))
	items := make([]any, len(tracks))
	popularity := 0
	for i, t := range tracks {
		items[i] = s.simpleTrackJSON(t, i+1)
		popularity = max(popularity, t.Popularity)
	}
	album["tracks"] = s.paging("/v1/albums/"+id+"/tracks", nil, items, 50, 0)
	album["genres"] = []string{}
	album["label"] = "spotifytest"
	album["popularity"] = popularity
	album["copyrights"] = []any{}
	album["external_ids"] = map[string]string{}
	writeAPIJSON(w, album)
}
