package spotifytest

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// maxPlaylistAddURIs is how many items POST /v1/playlists/{id}/items adds
// at once, as Spotify documents.
const maxPlaylistAddURIs = 100

// createdPlaylist is a playlist made with POST /v1/me/playlists.
type createdPlaylist struct {
	Playlist
	collaborative bool
	id            string // not derived from the name: names may repeat
}

// foundPlaylist is a playlist with its owner, wherever it comes from.
type foundPlaylist struct {
	owner         User
	p             Playlist
	collaborative bool
	createdID     string
}

func (fp foundPlaylist) id() string {
	if fp.createdID != "" {
		return fp.createdID
	}
	return fp.p.id(fp.owner.ID)
}

// userPlaylists is the user's playlists: User.Playlists (or the default
// mix), then the ones created through the Web API, each with the tracks
// added since. s.mu must be held.
func (s *Server) userPlaylists(u User) []foundPlaylist {
	var out []foundPlaylist
	for _, p := range u.playlists() {
		out = append(out, foundPlaylist{owner: u, p: p})
	}
	st, ok := s.players[u.ID]
	if !ok {
		return out
	}
	for _, cp := range st.created {
		out = append(out, foundPlaylist{owner: u, p: cp.Playlist, collaborative: cp.collaborative, createdID: cp.id})
	}
	for i := range out {
		if added := st.playlistAdds[out[i].id()]; len(added) > 0 {
			out[i].p.Tracks = append(slices.Clone(out[i].p.Tracks), added...)
		}
	}
	return out
}

// findPlaylist looks a playlist up by ID among every user's. s.mu must be
// held.
func (s *Server) findPlaylist(id string) (foundPlaylist, bool) {
	for _, uid := range s.userOrder {
		for _, fp := range s.userPlaylists(s.users[uid]) {
			if fp.id() == id {
				return fp, true
			}
		}
	}
	return foundPlaylist{}, false
}

// ownerJSON is a playlist's owner: a public user object.
func (s *Server) ownerJSON(u User) map[string]any {
	owner := map[string]any{
		"id": u.ID, "display_name": nil, "type": "user", "uri": "spotify:user:" + u.ID,
		"href": s.URL + "/v1/users/" + url.PathEscape(u.ID), "external_urls": map[string]string{"spotify": "https://open.spotify.com/user/" + url.PathEscape(u.ID)},
	}
	if u.DisplayName != "" {
		owner["display_name"] = u.DisplayName
	}
	return owner
}

// playlistJSON is a simplified playlist object: items (since February
// 2026) with its href and total; in extended quota also the deprecated
// tracks, whose /tracks href development mode no longer serves. s.mu
// must be held.
func (s *Server) playlistJSON(fp foundPlaylist) map[string]any {
	id := fp.id()
	obj := s.object("playlist", id, fp.p.Name)
	obj["description"] = fp.p.Description
	obj["public"] = !fp.p.Private
	obj["collaborative"] = fp.collaborative
	obj["images"] = []any{}
	obj["owner"] = s.ownerJSON(fp.owner)
	obj["snapshot_id"] = fakeID("snapshot:" + id + "\x00" + strconv.Itoa(len(fp.p.Tracks)))
	obj["items"] = map[string]any{"href": s.URL + "/v1/playlists/" + id + "/items", "total": len(fp.p.Tracks)}
	if !s.developmentMode {
		obj["tracks"] = map[string]any{"href": s.URL + "/v1/playlists/" + id + "/tracks", "total": len(fp.p.Tracks)}
	}
	return obj
}

// playlistEntries is a playlist's entries, the object under key: "item"
// at /items, "track" at the older /tracks. s.mu must be held.
func (s *Server) playlistEntries(fp foundPlaylist, key string) []any {
	c := s.catalog()
	added := s.started.Add(-30 * 24 * time.Hour).Format(time.RFC3339)
	addedBy := s.ownerJSON(fp.owner)
	delete(addedBy, "display_name")
	items := make([]any, len(fp.p.Tracks))
	for i, t := range fp.p.Tracks {
		items[i] = map[string]any{"added_at": added, "added_by": addedBy, "is_local": false, key: s.fullTrack(c, t)}
	}
	return items
}

// mayReadItems: development-mode apps get a playlist's items only for
// playlists the user owns or collaborates on.
func (s *Server) mayReadItems(fp foundPlaylist, u *User) bool {
	return !s.developmentMode || u != nil && fp.owner.ID == u.ID || fp.collaborative
}

// servePlaylists serves GET /v1/me/playlists: the private ones only with
// playlist-read-private.
func (s *Server) servePlaylists(w http.ResponseWriter, r *http.Request, at *accessToken, u *User, _ string) {
	s.servePlaylistsOf(w, r, *u, containsScope(at, "playlist-read-private"))
}

// serveUserPlaylists serves GET /v1/users/{id}/playlists: the user's
// public playlists (the caller's own private ones too, with the scope).
func (s *Server) serveUserPlaylists(w http.ResponseWriter, r *http.Request, at *accessToken, u *User, id string) {
	s.mu.Lock()
	owner, ok := s.users[id]
	s.mu.Unlock()
	if !ok {
		writeAPIError(w, http.StatusNotFound, "Resource not found")
		return
	}
	s.servePlaylistsOf(w, r, owner, u != nil && u.ID == id && containsScope(at, "playlist-read-private"))
}

func (s *Server) servePlaylistsOf(w http.ResponseWriter, r *http.Request, owner User, readPrivate bool) {
	s.mu.Lock()
	items := []any{}
	for _, fp := range s.userPlaylists(owner) {
		if fp.p.Private && !readPrivate {
			continue
		}
		items = append(items, s.playlistJSON(fp))
	}
	s.mu.Unlock()
	s.servePage(w, r, items, 20, 50)
}

func containsScope(at *accessToken, scope string) bool {
	return slices.Contains(at.scopes, scope)
}

// servePlaylist serves GET /v1/playlists/{id}: the full playlist, with
// its first 100 items where the app may read them.
func (s *Server) servePlaylist(w http.ResponseWriter, r *http.Request, _ *accessToken, u *User, id string) {
	s.mu.Lock()
	fp, ok := s.findPlaylist(id)
	if !ok {
		s.mu.Unlock()
		writeAPIError(w, http.StatusNotFound, "Resource not found")
		return
	}
	obj := s.playlistJSON(fp)
	if s.mayReadItems(fp, u) {
		obj["items"] = s.paging("/v1/playlists/"+id+"/items", nil, s.playlistEntries(fp, "item"), 100, 0)
	}
	if !s.developmentMode {
		obj["tracks"] = s.paging("/v1/playlists/"+id+"/tracks", nil, s.playlistEntries(fp, "track"), 100, 0)
		obj["followers"] = map[string]any{"href": nil, "total": 0}
	}
	s.mu.Unlock()
	writeAPIJSON(w, obj)
}

// servePlaylistItems serves GET /v1/playlists/{id}/items (each entry's
// track under "item") and, in extended quota, the older /tracks (under
// "track").
func (s *Server) servePlaylistItems(key string) func(http.ResponseWriter, *http.Request, *accessToken, *User, string) {
	return func(w http.ResponseWriter, r *http.Request, _ *accessToken, u *User, id string) {
		s.mu.Lock()
		fp, ok := s.findPlaylist(id)
		var items []any
		mayRead := ok && s.mayReadItems(fp, u)
		if mayRead {
			items = s.playlistEntries(fp, key)
		}
		s.mu.Unlock()
		switch {
		case !ok:
			writeAPIError(w, http.StatusNotFound, "Resource not found")
		case !mayRead:
			writeAPIError(w, http.StatusForbidden, "Forbidden")
		default:
			s.servePage(w, r, items, 100, 100)
		}
	}
}

// serveCreatePlaylist serves POST /v1/me/playlists (and, in extended
// quota, the older POST /v1/users/{id}/playlists for the token's own
// user): {"name", "public" (default true), "collaborative",
// "description"}; 201 with the new playlist.
func (s *Server) serveCreatePlaylist(w http.ResponseWriter, r *http.Request, at *accessToken, u *User, id string) {
	if id != "" && id != u.ID {
		writeAPIError(w, http.StatusForbidden, "You cannot create a playlist for another user")
		return
	}
	var body struct {
		Name          string `json:"name"`
		Public        *bool  `json:"public"`
		Collaborative bool   `json:"collaborative"`
		Description   string `json:"description"`
	}
	if !readJSONBody(w, r, &body) {
		return
	}
	public := body.Public == nil || *body.Public
	scope := "playlist-modify-public"
	if !public {
		scope = "playlist-modify-private"
	}
	if !requireScope(w, at, scope) {
		return
	}
	switch {
	case strings.TrimSpace(body.Name) == "":
		writeAPIError(w, http.StatusBadRequest, "Missing required field: name")
		return
	case body.Collaborative && public:
		writeAPIError(w, http.StatusBadRequest, "Collaborative playlists cannot be public")
		return
	}
	s.mu.Lock()
	st := s.playerState(u.ID)
	cp := createdPlaylist{Playlist: Playlist{Name: body.Name, Description: body.Description, Private: !public}, collaborative: body.Collaborative,
		id: fakeID("playlist:" + u.ID + "\x00created\x00" + strconv.Itoa(len(st.created)))}
	st.created = append(st.created, cp)
	fp := foundPlaylist{owner: *u, p: cp.Playlist, collaborative: cp.collaborative, createdID: cp.id}
	obj := s.playlistJSON(fp)
	obj["items"] = s.paging("/v1/playlists/"+fp.id()+"/items", nil, []any{}, 100, 0)
	s.mu.Unlock()
	b := mustJSON(obj)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Location", s.URL+"/v1/playlists/"+fp.id())
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(b)
}

// serveAddPlaylistItems serves POST /v1/playlists/{id}/items: uris in the
// query or {"uris": [...]} in the body, up to 100 tracks, appended; only
// the owner (or, collaborative, anyone) may; 201 {"snapshot_id"}.
func (s *Server) serveAddPlaylistItems(w http.ResponseWriter, r *http.Request, at *accessToken, u *User, id string) {
	var body struct {
		URIs []string `json:"uris"`
	}
	if !readJSONBody(w, r, &body) {
		return
	}
	raw := r.URL.Query().Get("uris")
	if raw == "" {
		raw = strings.Join(body.URIs, ",")
	}
	s.mu.Lock()
	fp, ok := s.findPlaylist(id)
	s.mu.Unlock()
	if !ok {
		writeAPIError(w, http.StatusNotFound, "Resource not found")
		return
	}
	scope := "playlist-modify-public"
	if fp.p.Private {
		scope = "playlist-modify-private"
	}
	if !requireScope(w, at, scope) {
		return
	}
	if fp.owner.ID != u.ID && !fp.collaborative {
		writeAPIError(w, http.StatusForbidden, "Forbidden")
		return
	}
	uris, ok := s.parseURIs(w, raw, []string{"track"}, maxPlaylistAddURIs)
	if !ok {
		return
	}
	s.mu.Lock()
	c := s.catalog()
	st := s.playerState(fp.owner.ID)
	if st.playlistAdds == nil {
		st.playlistAdds = map[string][]Track{}
	}
	for _, uri := range uris {
		st.playlistAdds[id] = append(st.playlistAdds[id], c.tracks[strings.TrimPrefix(uri, "spotify:track:")])
	}
	fp, _ = s.findPlaylist(id)
	snapshot := s.playlistJSON(fp)["snapshot_id"]
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(mustJSON(map[string]any{"snapshot_id": snapshot}))
}
