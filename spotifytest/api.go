package spotifytest

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// route is a Web API endpoint of the fake.
type route struct {
	method string
	// appToken: an app token (client credentials) may call it, as for
	// Spotify's catalogue endpoints.
	appToken bool
	// devModeRemoved: Spotify took it away from development-mode apps in
	// February 2026; they get 403 "Forbidden".
	devModeRemoved bool
	// removed: Spotify took it away from apps created since November
	// 2024, in either mode; 403 "Forbidden".
	removed bool
	// serve answers it; nil for an endpoint the fake does not serve
	// (answered 404 "Service not found" where Spotify would serve it).
	serve func(w http.ResponseWriter, r *http.Request, at *accessToken, u *User, id string)
}

// endpoint is a path pattern ("{id}" matches one segment) and its routes.
type endpoint struct {
	pattern string
	routes  []route
}

// endpoints is the Web API as the fake knows it, in Spotify's 2026 shape.
func (s *Server) endpoints() []endpoint {
	get := func(serve func(http.ResponseWriter, *http.Request, *accessToken, *User, string)) route {
		return route{method: http.MethodGet, serve: serve}
	}
	catalogue := func(serve func(http.ResponseWriter, *http.Request, *accessToken, *User, string)) route {
		return route{method: http.MethodGet, appToken: true, serve: serve}
	}
	gone := func(method string) route { return route{method: method, appToken: true, removed: true} }
	devGone := func(r route) route { r.devModeRemoved = true; return r }
	put := func(serve func(http.ResponseWriter, *http.Request, *accessToken, *User, string)) route {
		return route{method: http.MethodPut, serve: serve}
	}
	post := func(serve func(http.ResponseWriter, *http.Request, *accessToken, *User, string)) route {
		return route{method: http.MethodPost, serve: serve}
	}
	del := func(serve func(http.ResponseWriter, *http.Request, *accessToken, *User, string)) route {
		return route{method: http.MethodDelete, serve: serve}
	}
	notServed := func(method string) route { return route{method: method, appToken: true, devModeRemoved: true} }
	return []endpoint{
		{"/v1/me", []route{get(s.serveMe)}},
		{"/v1/me/top/artists", []route{get(s.serveTopArtists)}},
		{"/v1/me/top/tracks", []route{get(s.serveTopTracks)}},
		{"/v1/me/player", []route{get(s.servePlayer), put(s.serveTransfer)}},
		{"/v1/me/player/play", []route{put(s.servePlay)}},
		{"/v1/me/player/pause", []route{put(s.servePause)}},
		{"/v1/me/player/next", []route{post(s.serveNext)}},
		{"/v1/me/player/previous", []route{post(s.servePrevious)}},
		{"/v1/me/player/volume", []route{put(s.serveVolume())}},
		{"/v1/me/player/shuffle", []route{put(s.serveShuffle())}},
		{"/v1/me/player/repeat", []route{put(s.serveRepeat())}},
		{"/v1/me/player/seek", []route{put(s.serveSeek())}},
		{"/v1/me/player/queue", []route{get(s.serveQueue), post(s.serveAddToQueue)}},
		{"/v1/me/player/currently-playing", []route{get(s.serveCurrentlyPlaying)}},
		{"/v1/me/player/devices", []route{get(s.serveDevices)}},
		{"/v1/me/player/recently-played", []route{get(s.serveRecentlyPlayed)}},
		{"/v1/me/playlists", []route{get(s.servePlaylists), post(s.serveCreatePlaylist)}},
		{"/v1/me/library", []route{put(s.serveLibrary), del(s.serveLibrary)}},
		{"/v1/me/library/contains", []route{get(s.serveLibraryContains)}},
		{"/v1/me/tracks", []route{get(s.serveSavedTracks), devGone(put(s.serveSaveTracks)), devGone(del(s.serveSaveTracks))}},
		{"/v1/me/tracks/contains", []route{devGone(get(s.serveSavedTracksContains))}},
		{"/v1/me/albums", []route{notServed(http.MethodGet), notServed(http.MethodPut), notServed(http.MethodDelete)}},
		{"/v1/me/albums/contains", []route{notServed(http.MethodGet)}},
		{"/v1/me/following", []route{notServed(http.MethodGet), notServed(http.MethodPut), notServed(http.MethodDelete)}},
		{"/v1/me/following/contains", []route{notServed(http.MethodGet)}},
		{"/v1/search", []route{catalogue(s.serveSearch)}},
		{"/v1/tracks", []route{devGone(catalogue(s.serveSeveral("tracks", 50)))}},
		{"/v1/albums", []route{devGone(catalogue(s.serveSeveral("albums", 20)))}},
		{"/v1/artists", []route{devGone(catalogue(s.serveSeveral("artists", 50)))}},
		{"/v1/tracks/{id}", []route{catalogue(s.serveTrack)}},
		{"/v1/artists/{id}", []route{catalogue(s.serveArtist)}},
		{"/v1/artists/{id}/top-tracks", []route{devGone(catalogue(s.serveArtistTopTracks))}},
		{"/v1/artists/{id}/related-artists", []route{gone(http.MethodGet)}},
		{"/v1/albums/{id}", []route{catalogue(s.serveAlbum)}},
		{"/v1/albums/{id}/tracks", []route{catalogue(s.serveAlbumTracks)}},
		{"/v1/playlists/{id}", []route{catalogue(s.servePlaylist)}},
		{"/v1/playlists/{id}/items", []route{catalogue(s.servePlaylistItems("item")), post(s.serveAddPlaylistItems)}},
		{"/v1/playlists/{id}/tracks", []route{devGone(catalogue(s.servePlaylistItems("track"))), notServed(http.MethodPost)}},
		{"/v1/users/{id}", []route{devGone(catalogue(s.serveUser))}},
		{"/v1/users/{id}/playlists", []route{devGone(catalogue(s.serveUserPlaylists)), devGone(post(s.serveCreatePlaylist))}},
		{"/v1/browse/new-releases", []route{notServed(http.MethodGet)}},
		{"/v1/browse/categories", []route{notServed(http.MethodGet)}},
		{"/v1/browse/categories/{id}", []route{notServed(http.MethodGet)}},
		{"/v1/browse/categories/{id}/playlists", []route{gone(http.MethodGet)}},
		{"/v1/browse/featured-playlists", []route{gone(http.MethodGet)}},
		{"/v1/markets", []route{notServed(http.MethodGet)}},
		{"/v1/episodes", []route{notServed(http.MethodGet)}},
		{"/v1/shows", []route{notServed(http.MethodGet)}},
		{"/v1/audiobooks", []route{notServed(http.MethodGet)}},
		{"/v1/recommendations", []route{gone(http.MethodGet)}},
		{"/v1/recommendations/available-genre-seeds", []route{gone(http.MethodGet)}},
		{"/v1/audio-features", []route{gone(http.MethodGet)}},
		{"/v1/audio-features/{id}", []route{gone(http.MethodGet)}},
		{"/v1/audio-analysis/{id}", []route{gone(http.MethodGet)}},
	}
}

// matchPattern reports whether path fits pattern, and the segment its
// "{id}" matched.
func matchPattern(pattern, path string) (id string, ok bool) {
	ps, xs := strings.Split(pattern, "/"), strings.Split(path, "/")
	if len(ps) != len(xs) {
		return "", false
	}
	for i, p := range ps {
		switch {
		case p == "{id}" && xs[i] != "":
			id = xs[i]
		case p != xs[i]:
			return "", false
		}
	}
	return id, true
}

// routeFor finds the endpoint for a path and method. id is the path's
// {id}. found is false for an unknown path; allowed lists the methods
// the path takes.
func (s *Server) routeFor(path, method string) (rt route, id string, allowed string, found bool) {
	for _, ep := range s.endpoints() {
		pid, ok := matchPattern(ep.pattern, path)
		if !ok {
			continue
		}
		var methods []string
		for _, rt := range ep.routes {
			if rt.method == method || rt.method == http.MethodGet && method == http.MethodHead {
				return rt, pid, "", true
			}
			methods = append(methods, rt.method)
		}
		return route{}, pid, strings.Join(methods, ", "), true
	}
	return route{}, "", "", false
}

// handleAPI serves the Web API: every /v1/* path.
func (s *Server) handleAPI(rw http.ResponseWriter, r *http.Request) {
	userID, answered := s.recordAPI(r)
	w := &statusWriter{ResponseWriter: rw}
	defer func() { answered(w.answeredStatus()) }()
	if s.applyFaultFor(w, r, EndpointAPI, nil, userID) {
		return
	}
	rt, id, allowed, found := s.routeFor(r.URL.Path, r.Method)
	switch {
	case !found:
		writeAPIError(w, http.StatusNotFound, "Service not found")
		return
	case allowed != "":
		w.Header().Set("Allow", allowed)
		writeAPIError(w, http.StatusMethodNotAllowed, "Method not allowed")
		return
	}
	at, ok := s.authenticate(w, r, rt.appToken)
	if !ok {
		return
	}
	var u *User
	if at.userID != "" {
		s.mu.Lock()
		stored, known := s.users[at.userID]
		s.mu.Unlock()
		if !known {
			writeAPIError(w, http.StatusNotFound, "Non existing id: '"+at.userID+"'")
			return
		}
		u = &stored
	}
	if s.refuseByAppState(w, at.userID) {
		return
	}
	s.mu.Lock()
	devMode := s.developmentMode
	s.mu.Unlock()
	switch {
	case rt.removed || rt.devModeRemoved && devMode:
		// What Spotify answers an app for an endpoint taken away from it.
		writeAPIError(w, http.StatusForbidden, "Forbidden")
	case rt.serve == nil:
		writeAPIError(w, http.StatusNotFound, "Service not found")
	default:
		rt.serve(w, r, at, u, id)
	}
}

// invalidTokenMessage is the Web API's 401 message since 2026, the same
// for a missing, unknown, revoked or expired token: clients must decide on
// WWW-Authenticate, not on the text.
const invalidTokenMessage = "Missing/invalid/expired access token"

// authenticate checks the bearer token and answers the error itself if it
// is not good for the endpoint. App tokens (client credentials, no user)
// pass only where appToken is true.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, appToken bool) (*accessToken, bool) {
	const invalidToken = `Bearer realm="spotify", error="invalid_token"`
	authz := r.Header.Get("Authorization")
	if authz == "" {
		// RFC 6750 §3.1: a request without any credentials gets no error
		// code, so a client does not take it for a dead token.
		w.Header().Set("WWW-Authenticate", `Bearer realm="spotify"`)
		writeAPIError(w, http.StatusUnauthorized, invalidTokenMessage)
		return nil, false
	}
	scheme, tok, _ := strings.Cut(authz, " ")
	tok = strings.TrimSpace(tok)
	if !strings.EqualFold(scheme, "Bearer") || tok == "" {
		writeAPIError(w, http.StatusBadRequest, "Only valid bearer authentication supported")
		return nil, false
	}
	s.mu.Lock()
	var at accessToken
	stored, known := s.accessTokens[tok]
	if known {
		at = *stored
		at.scopes = slices.Clone(stored.scopes)
	}
	s.mu.Unlock()
	switch {
	case !known || at.revoked:
		w.Header().Set("WWW-Authenticate", invalidToken)
		writeAPIError(w, http.StatusUnauthorized, invalidTokenMessage)
		return nil, false
	case !at.valid(time.Now()):
		w.Header().Set("WWW-Authenticate", invalidToken)
		writeAPIError(w, http.StatusUnauthorized, invalidTokenMessage)
		return nil, false
	case at.userID == "" && !appToken:
		// An app token (client credentials) has no user. Spotify answers
		// /v1/me and other user endpoints with 401 "Unauthorized." then.
		// The token itself is fine, so no error="invalid_token": a client
		// must not take this for an expired token and refresh.
		w.Header().Set("WWW-Authenticate", `Bearer realm="spotify"`)
		writeAPIError(w, http.StatusUnauthorized, "Unauthorized.")
		return nil, false
	}
	return &at, true
}

func writeAPIError(w http.ResponseWriter, status int, message string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "private, max-age=0")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(apiErrorJSON(status, message)))
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("spotifytest: " + err.Error()) // only maps, slices and strings: never
	}
	return b
}

func writeAPIJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeAPIError(w, http.StatusInternalServerError, "Server error.")
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "private, max-age=0")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// serveMe serves GET /v1/me: the profile fields the token's scopes allow,
// fewer in development mode.
func (s *Server) serveMe(w http.ResponseWriter, _ *http.Request, at *accessToken, u *User, _ string) {
	s.mu.Lock()
	devMode := s.developmentMode
	s.mu.Unlock()
	me := map[string]any{
		"id":            u.ID,
		"account_id":    u.accountID(),
		"display_name":  nil,
		"type":          "user",
		"uri":           "spotify:user:" + u.ID,
		"href":          s.URL + "/v1/users/" + url.PathEscape(u.ID),
		"external_urls": map[string]string{"spotify": "https://open.spotify.com/user/" + url.PathEscape(u.ID)},
		"followers":     map[string]any{"href": nil, "total": 0},
		"images":        []any{},
	}
	if u.DisplayName != "" {
		me["display_name"] = u.DisplayName
	}
	if devMode {
		delete(me, "followers")
	}
	if slices.Contains(at.scopes, "user-read-email") && u.Email != "" && !devMode {
		me["email"] = u.Email
	}
	if slices.Contains(at.scopes, "user-read-private") {
		if u.Country != "" && !devMode {
			me["country"] = u.Country
		}
		if u.Product != "" && !devMode {
			me["product"] = u.Product
		}
		me["explicit_content"] = map[string]bool{"filter_enabled": false, "filter_locked": false}
	}
	writeAPIJSON(w, me)
}

// serveTopArtists and serveTopTracks serve GET /v1/me/top/{artists,tracks}
// in Spotify's paging shape. The items do not depend on time_range.
func (s *Server) serveTopArtists(w http.ResponseWriter, r *http.Request, at *accessToken, u *User, _ string) {
	s.serveTop(w, r, at, func() []any { return s.artistsJSON(u.topArtists()) })
}

func (s *Server) serveTopTracks(w http.ResponseWriter, r *http.Request, at *accessToken, u *User, _ string) {
	s.serveTop(w, r, at, func() []any {
		s.mu.Lock()
		c := s.catalog()
		s.mu.Unlock()
		return s.fullTracks(c, u.topTracks())
	})
}

func (s *Server) serveTop(w http.ResponseWriter, r *http.Request, at *accessToken, items func() []any) {
	if !requireScope(w, at, "user-top-read") {
		return
	}
	switch r.URL.Query().Get("time_range") {
	case "", "short_term", "medium_term", "long_term":
	default:
		writeAPIError(w, http.StatusBadRequest, "Invalid time range")
		return
	}
	s.servePage(w, r, items(), 20, 50)
}

// requireScope answers 403 unless the token has the scope.
func requireScope(w http.ResponseWriter, at *accessToken, scope string) bool {
	if !slices.Contains(at.scopes, scope) {
		writeAPIError(w, http.StatusForbidden, "Insufficient client scope")
		return false
	}
	return true
}

// parsePaging reads limit (1 to maxLimit, default def) and offset.
func parsePaging(q url.Values, def, maxLimit int) (limit, offset int, problem string) {
	limit = def
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLimit {
			return 0, 0, "Invalid limit"
		}
		limit = n
	}
	if v := q.Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, 0, "Invalid offset"
		}
		offset = n
	}
	return limit, offset, ""
}

// servePage answers a paging object of items, from the request's limit and
// offset.
func (s *Server) servePage(w http.ResponseWriter, r *http.Request, items []any, def, maxLimit int) {
	limit, offset, problem := parsePaging(r.URL.Query(), def, maxLimit)
	if problem != "" {
		writeAPIError(w, http.StatusBadRequest, problem)
		return
	}
	writeAPIJSON(w, s.paging(r.URL.Path, r.URL.Query(), items, limit, offset))
}

// paging is Spotify's paging object: href, items, limit, offset, total,
// next and previous, the links keeping the other query parameters.
func (s *Server) paging(path string, query url.Values, items []any, limit, offset int) map[string]any {
	pageURL := func(off int) string {
		v := cloneValues(query)
		v.Set("limit", strconv.Itoa(limit))
		v.Set("offset", strconv.Itoa(off))
		return s.URL + path + "?" + v.Encode()
	}
	total := len(items)
	page := items[min(offset, total):min(offset+limit, total)]
	var next, previous any
	if offset+limit < total {
		next = pageURL(offset + limit)
	}
	if offset > 0 {
		previous = pageURL(max(offset-limit, 0))
	}
	return map[string]any{
		"href":     pageURL(offset),
		"items":    page,
		"limit":    limit,
		"offset":   offset,
		"total":    total,
		"next":     next,
		"previous": previous,
	}
}
