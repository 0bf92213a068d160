package spotifytest

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// handleAPI serves the Web API: every /v1/* path.
func (s *Server) handleAPI(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.counts.APICalls++
	if r.URL.Path == "/v1/me" {
		s.counts.Me++
	}
	s.mu.Unlock()
	if s.applyFault(w, r, EndpointAPI, nil) {
		return
	}

	var serve func(http.ResponseWriter, *http.Request, *accessToken)
	switch r.URL.Path {
	case "/v1/me":
		serve = s.serveMe
	case "/v1/me/top/artists":
		serve = func(w http.ResponseWriter, r *http.Request, at *accessToken) { s.serveTop(w, r, at, s.topArtists()) }
	case "/v1/me/top/tracks":
		serve = func(w http.ResponseWriter, r *http.Request, at *accessToken) { s.serveTop(w, r, at, s.topTracks()) }
	default:
		writeAPIError(w, http.StatusNotFound, "Service not found")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET")
		writeAPIError(w, http.StatusMethodNotAllowed, "Method not allowed")
		return
	}
	at, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	serve(w, r, at)
}

// authenticate checks the bearer token and answers the error itself if it
// is not good for user data.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (*accessToken, bool) {
	const invalidToken = `Bearer realm="spotify", error="invalid_token"`
	authz := r.Header.Get("Authorization")
	if authz == "" {
		w.Header().Set("WWW-Authenticate", invalidToken)
		writeAPIError(w, http.StatusUnauthorized, "No token provided")
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
	case !known:
		w.Header().Set("WWW-Authenticate", invalidToken)
		writeAPIError(w, http.StatusUnauthorized, "Invalid access token")
		return nil, false
	case !at.valid(time.Now()):
		w.Header().Set("WWW-Authenticate", invalidToken)
		writeAPIError(w, http.StatusUnauthorized, "The access token expired")
		return nil, false
	case at.userID == "":
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

// serveMe serves GET /v1/me: the profile fields the token's scopes allow.
func (s *Server) serveMe(w http.ResponseWriter, _ *http.Request, at *accessToken) {
	s.mu.Lock()
	u, ok := s.users[at.userID]
	s.mu.Unlock()
	if !ok {
		writeAPIError(w, http.StatusNotFound, "Non existing id: '"+at.userID+"'")
		return
	}
	me := map[string]any{
		"id":            u.ID,
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
	if slices.Contains(at.scopes, "user-read-email") && u.Email != "" {
		me["email"] = u.Email
	}
	if slices.Contains(at.scopes, "user-read-private") {
		if u.Country != "" {
			me["country"] = u.Country
		}
		if u.Product != "" {
			me["product"] = u.Product
		}
		me["explicit_content"] = map[string]bool{"filter_enabled": false, "filter_locked": false}
	}
	writeAPIJSON(w, me)
}

// serveTop serves GET /v1/me/top/{artists,tracks} in Spotify's paging
// shape. The canned items do not depend on time_range.
func (s *Server) serveTop(w http.ResponseWriter, r *http.Request, at *accessToken, items []map[string]any) {
	if !slices.Contains(at.scopes, "user-top-read") {
		writeAPIError(w, http.StatusForbidden, "Insufficient client scope")
		return
	}
	q := r.URL.Query()
	limit, offset := 20, 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 50 {
			writeAPIError(w, http.StatusBadRequest, "Invalid limit")
			return
		}
		limit = n
	}
	if v := q.Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeAPIError(w, http.StatusBadRequest, "Invalid offset")
			return
		}
		offset = n
	}
	timeRange := q.Get("time_range")
	switch timeRange {
	case "", "short_term", "medium_term", "long_term":
	default:
		writeAPIError(w, http.StatusBadRequest, "Invalid time range")
		return
	}
	pageURL := func(off int) string {
		v := url.Values{"limit": {strconv.Itoa(limit)}, "offset": {strconv.Itoa(off)}}
		if timeRange != "" {
			v.Set("time_range", timeRange)
		}
		return s.URL + r.URL.Path + "?" + v.Encode()
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
	writeAPIJSON(w, map[string]any{
		"href":     pageURL(offset),
		"items":    page,
		"limit":    limit,
		"offset":   offset,
		"total":    total,
		"next":     next,
		"previous": previous,
	})
}

// fakeID derives a stable 22-character base62 Spotify ID from a name.
func fakeID(name string) string {
	const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	sum := sha256.Sum256([]byte(name))
	n := new(big.Int).SetBytes(sum[:])
	b62 := big.NewInt(62)
	mod := new(big.Int)
	id := make([]byte, 22)
	for i := range id {
		n.DivMod(n, b62, mod)
		id[i] = base62[mod.Int64()]
	}
	return string(id)
}

type cannedArtist struct {
	name       string
	genres     []string
	popularity int
	followers  int
}

type cannedTrack struct {
	name        string
	artist      int // index into cannedArtists
	album       string
	releaseDate string
	durationMS  int
	popularity  int
	explicit    bool
}

var cannedArtists = []cannedArtist{
	{"The Loopbacks", []string{"indie rock", "garage rock"}, 71, 812345},
	{"Ada & the Lovelaces", []string{"synth-pop", "electropop"}, 64, 402117},
	{"Null Pointer Orchestra", []string{"post-rock", "ambient"}, 58, 150932},
	{"Race Condition", []string{"punk", "hardcore punk"}, 49, 61020},
	{"The Mutex Brothers", []string{"blues rock"}, 42, 23871},
}

var cannedTracks = []cannedTrack{
	{"Port 0", 0, "Ephemeral Ports", "2021-03-12", 201000, 68, false},
	{"Handshake", 1, "Three-Way", "2019-10-04", 187400, 61, false},
	{"Segfault Lullaby", 2, "Undefined Behaviour", "2018-06-01", 412800, 55, false},
	{"Data Race", 3, "Happens-Before", "2022-01-21", 134500, 47, true},
	{"Lock Contention Blues", 4, "Deadlock", "2017-09-15", 263300, 40, false},
}

// object is the common part of a catalogue object of the kind.
func (s *Server) object(kind, name string) map[string]any {
	id := fakeID(kind + ":" + name)
	return map[string]any{
		"id":            id,
		"name":          name,
		"type":          kind,
		"uri":           "spotify:" + kind + ":" + id,
		"href":          s.URL + "/v1/" + kind + "s/" + id,
		"external_urls": map[string]string{"spotify": "https://open.spotify.com/" + kind + "/" + id},
	}
}

func (s *Server) topArtists() []map[string]any {
	out := make([]map[string]any, 0, len(cannedArtists))
	for _, a := range cannedArtists {
		obj := s.object("artist", a.name)
		obj["genres"] = slices.Clone(a.genres)
		obj["popularity"] = a.popularity
		obj["followers"] = map[string]any{"href": nil, "total": a.followers}
		obj["images"] = []any{}
		out = append(out, obj)
	}
	return out
}

func (s *Server) topTracks() []map[string]any {
	out := make([]map[string]any, 0, len(cannedTracks))
	for i, t := range cannedTracks {
		artist := s.object("artist", cannedArtists[t.artist].name)
		album := s.object("album", t.album)
		album["album_type"] = "album"
		album["total_tracks"] = 10
		album["images"] = []any{}
		album["release_date"] = t.releaseDate
		album["release_date_precision"] = "day"
		album["artists"] = []any{artist}
		obj := s.object("track", t.name)
		obj["artists"] = []any{artist}
		obj["album"] = album
		obj["disc_number"] = 1
		obj["track_number"] = 1
		obj["duration_ms"] = t.durationMS
		obj["explicit"] = t.explicit
		obj["popularity"] = t.popularity
		obj["is_local"] = false
		obj["preview_url"] = nil
		obj["external_ids"] = map[string]string{"isrc": fmt.Sprintf("SEXYZ24%05d", i+1)}
		out = append(out, obj)
	}
	return out
}
