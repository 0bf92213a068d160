package spotifytest

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

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
	if _, ok := c.albums[id]; !ok {
		writeAPIError(w, http.StatusNotFound, "Resource not found")
		return
	}
	writeAPIJSON(w, s.fullAlbumJSON(c, id))
}

// fullAlbumJSON is a full album object of a known album.
func (s *Server) fullAlbumJSON(c *catalog, id string) map[string]any {
	tracks := c.albums[id]
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
	return album
}

// serveSeveral serves GET /v1/{tracks,albums,artists}?ids=: up to limit
// comma-separated IDs, answered {"<kind>": [object or null, ...]} in
// order, null for an unknown ID, as Spotify does.
func (s *Server) serveSeveral(kind string, limit int) func(http.ResponseWriter, *http.Request, *accessToken, *User, string) {
	return func(w http.ResponseWriter, r *http.Request, _ *accessToken, _ *User, _ string) {
		raw := r.URL.Query().Get("ids")
		if strings.TrimSpace(raw) == "" {
			writeAPIError(w, http.StatusBadRequest, "invalid id")
			return
		}
		ids := strings.Split(raw, ",")
		if len(ids) > limit {
			writeAPIError(w, http.StatusBadRequest, "Too many ids requested")
			return
		}
		s.mu.Lock()
		c := s.catalog()
		s.mu.Unlock()
		out := make([]any, len(ids))
		for i, id := range ids {
			if !isSpotifyID(id) {
				writeAPIError(w, http.StatusBadRequest, "invalid id")
				return
			}
			switch kind {
			case "tracks":
				if t, ok := c.tracks[id]; ok {
					out[i] = s.fullTrack(c, t)
				}
			case "artists":
				if a, ok := c.artists[id]; ok {
					out[i] = s.artistJSON(a)
				}
			case "albums":
				if _, ok := c.albums[id]; ok {
					out[i] = s.fullAlbumJSON(c, id)
				}
			}
		}
		writeAPIJSON(w, map[string]any{kind: out})
	}
}

// serveArtistTopTracks serves GET /v1/artists/{id}/top-tracks: the
// artist's known tracks, most popular first, at most 10.
func (s *Server) serveArtistTopTracks(w http.ResponseWriter, _ *http.Request, _ *accessToken, _ *User, id string) {
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
	var tracks []Track
	for _, tid := range c.trackIDs {
		if t := c.tracks[tid]; t.Artist == a.Name {
			tracks = append(tracks, t)
		}
	}
	slices.SortStableFunc(tracks, func(x, y Track) int { return y.Popularity - x.Popularity })
	writeAPIJSON(w, map[string]any{"tracks": s.fullTracks(c, tracks[:min(len(tracks), 10)])})
}

// serveAlbumTracks serves GET /v1/albums/{id}/tracks: a paging object of
// simplified tracks.
func (s *Server) serveAlbumTracks(w http.ResponseWriter, r *http.Request, _ *accessToken, _ *User, id string) {
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
	items := make([]any, len(tracks))
	for i, t := range tracks {
		items[i] = s.simpleTrackJSON(t, i+1)
	}
	s.servePage(w, r, items, 20, 50)
}

// serveUser serves GET /v1/users/{id}: a public user object.
func (s *Server) serveUser(w http.ResponseWriter, _ *http.Request, _ *accessToken, _ *User, id string) {
	s.mu.Lock()
	u, ok := s.users[id]
	s.mu.Unlock()
	if !ok {
		writeAPIError(w, http.StatusNotFound, "Resource not found")
		return
	}
	obj := s.ownerJSON(u)
	obj["followers"] = map[string]any{"href": nil, "total": 0}
	obj["images"] = []any{}
	writeAPIJSON(w, obj)
}
