package spotifytest

import (
	"net/http"
	"slices"
	"strings"
	"time"
)

// maxLibraryURIs is how many URIs PUT, DELETE /v1/me/library and GET
// /v1/me/library/contains take at once, as Spotify documents.
const maxLibraryURIs = 40

// maxSavedTrackIDs is the limit of the older per-type /v1/me/tracks
// endpoints (ids=).
const maxSavedTrackIDs = 50

// libraryKinds are the kinds of item /v1/me/library saves.
var libraryKinds = []string{"track", "album", "episode", "show", "audiobook"}

// library is what a user has saved: URIs, most recently saved first.
type library struct {
	uris    []string
	addedAt map[string]time.Time
}

// libraryOf returns the user's library, starting from User.SavedTracks
// (saved a day apart, back from the server's start). s.mu must be held.
func (s *Server) libraryOf(u *User) *library {
	p := s.playerState(u.ID)
	if p.library == nil {
		lib := &library{addedAt: map[string]time.Time{}}
		for i, t := range u.savedTracks() {
			if _, dup := lib.addedAt[t.URI()]; !dup {
				lib.uris = append(lib.uris, t.URI())
				lib.addedAt[t.URI()] = s.started.Add(-time.Duration(i+1) * 24 * time.Hour)
			}
		}
		p.library = lib
	}
	return p.library
}

func (l *library) save(uris []string, now time.Time) {
	for _, uri := range uris {
		if _, ok := l.addedAt[uri]; !ok {
			l.uris = slices.Insert(l.uris, 0, uri)
			l.addedAt[uri] = now
		}
	}
}

func (l *library) remove(uris []string) {
	for _, uri := range uris {
		if _, ok := l.addedAt[uri]; ok {
			delete(l.addedAt, uri)
			l.uris = slices.DeleteFunc(l.uris, func(x string) bool { return x == uri })
		}
	}
}

// parseURIs reads a comma-separated list of Spotify URIs of the kinds,
// at most limit, and answers 400 itself if it is empty, too long, or an
// URI is malformed, of another kind, or names a track or album the fake
// does not know (so a test learns of a typo at once).
func (s *Server) parseURIs(w http.ResponseWriter, raw string, kinds []string, limit int) ([]string, bool) {
	if strings.TrimSpace(raw) == "" {
		writeAPIError(w, http.StatusBadRequest, "Missing required field: uris")
		return nil, false
	}
	uris := strings.Split(raw, ",")
	if len(uris) > limit {
		writeAPIError(w, http.StatusBadRequest, "Too many ids requested")
		return nil, false
	}
	s.mu.Lock()
	c := s.catalog()
	s.mu.Unlock()
	for i, uri := range uris {
		uri = strings.TrimSpace(uri)
		uris[i] = uri
		rest, ok := strings.CutPrefix(uri, "spotify:")
		kind, id, ok2 := strings.Cut(rest, ":")
		if !ok || !ok2 || !slices.Contains(kinds, kind) || !isSpotifyID(id) {
			writeAPIError(w, http.StatusBadRequest, "Invalid URI: "+uri)
			return nil, false
		}
		_, track := c.tracks[id]
		_, album := c.albums[id]
		if kind == "track" && !track || kind == "album" && !album {
			writeAPIError(w, http.StatusBadRequest, "Invalid URI: "+uri)
			return nil, false
		}
	}
	return uris, true
}

// serveLibrary serves PUT and DELETE /v1/me/library?uris=...: save or
// remove up to 40 tracks, albums, episodes, shows or audiobooks. Spotify
// answers 200 with an empty body.
func (s *Server) serveLibrary(w http.ResponseWriter, r *http.Request, at *accessToken, u *User, _ string) {
	if !requireScope(w, at, "user-library-modify") {
		return
	}
	uris, ok := s.parseURIs(w, r.URL.Query().Get("uris"), libraryKinds, maxLibraryURIs)
	if !ok {
		return
	}
	s.changeLibrary(w, r.Method, u, uris)
}

func (s *Server) changeLibrary(w http.ResponseWriter, method string, u *User, uris []string) {
	s.mu.Lock()
	lib := s.libraryOf(u)
	if method == http.MethodDelete {
		lib.remove(uris)
	} else {
		lib.save(uris, time.Now().UTC().Truncate(time.Second))
	}
	s.mu.Unlock()
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
}

// serveLibraryContains serves GET /v1/me/library/contains?uris=...: one
// boolean per URI, in order.
func (s *Server) serveLibraryContains(w http.ResponseWriter, r *http.Request, at *accessToken, u *User, _ string) {
	if !requireScope(w, at, "user-library-read") {
		return
	}
	uris, ok := s.parseURIs(w, r.URL.Query().Get("uris"), libraryKinds, maxLibraryURIs)
	if !ok {
		return
	}
	s.writeContains(w, u, uris)
}

func (s *Server) writeContains(w http.ResponseWriter, u *User, uris []string) {
	s.mu.Lock()
	lib := s.libraryOf(u)
	out := make([]bool, len(uris))
	for i, uri := range uris {
		_, out[i] = lib.addedAt[uri]
	}
	s.mu.Unlock()
	writeAPIJSON(w, out)
}

// trackURIs turns the ids= of the per-type endpoints into track URIs.
func trackURIs(ids string) string {
	var uris []string
	for _, id := range strings.Split(ids, ",") {
		if id = strings.TrimSpace(id); id != "" {
			uris = append(uris, "spotify:track:"+id)
		}
	}
	return strings.Join(uris, ",")
}

// serveSaveTracks serves the older PUT and DELETE /v1/me/tracks?ids=
// (extended quota only): the same library as /v1/me/library.
func (s *Server) serveSaveTracks(w http.ResponseWriter, r *http.Request, at *accessToken, u *User, _ string) {
	if !requireScope(w, at, "user-library-modify") {
		return
	}
	uris, ok := s.parseURIs(w, trackURIs(r.URL.Query().Get("ids")), []string{"track"}, maxSavedTrackIDs)
	if !ok {
		return
	}
	s.changeLibrary(w, r.Method, u, uris)
}

// serveSavedTracksContains serves the older GET
// /v1/me/tracks/contains?ids= (extended quota only).
func (s *Server) serveSavedTracksContains(w http.ResponseWriter, r *http.Request, at *accessToken, u *User, _ string) {
	if !requireScope(w, at, "user-library-read") {
		return
	}
	uris, ok := s.parseURIs(w, trackURIs(r.URL.Query().Get("ids")), []string{"track"}, maxSavedTrackIDs)
	if !ok {
		return
	}
	s.writeContains(w, u, uris)
}

// serveSavedTracks serves GET /v1/me/tracks: the saved tracks of the
// library, most recently saved first, with added_at.
func (s *Server) serveSavedTracks(w http.ResponseWriter, r *http.Request, at *accessToken, u *User, _ string) {
	if !requireScope(w, at, "user-library-read") {
		return
	}
	s.mu.Lock()
	c := s.catalog()
	lib := s.libraryOf(u)
	items := []any{}
	for _, uri := range lib.uris {
		if id, ok := strings.CutPrefix(uri, "spotify:track:"); ok {
			items = append(items, map[string]any{"added_at": lib.addedAt[uri].Format(time.RFC3339), "track": s.fullTrack(c, c.tracks[id])})
		}
	}
	s.mu.Unlock()
	s.servePage(w, r, items, 20, 50)
}
