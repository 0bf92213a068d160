package spotifytest

import (
	"crypto/sha256"

	"math/big"
	"slices"
	"strings"
)

// Artist is an artist in a user's listening data. Its Spotify ID is
// derived from the name (Artist.ID).
type Artist struct {
	Name       string
	Genres     []string
	Popularity int // 0 to 100
	Followers  int
}

// Track is a track in a user's listening data. Its ID, its artist's and
// its album's are derived from the names, so the same track listed for two
// users is one catalogue entry.
type Track struct {
	Name        string
	Artist      string // the artist's name
	Album       string // the album's name; "" means a single named after the track
	ReleaseDate string // YYYY-MM-DD
	DurationMS  int
	Popularity  int
	Explicit    bool
}

// Playlist is one of a user's playlists.
type Playlist struct {
	Name        string
	Description string
	Private     bool // listed by /v1/me/playlists only with scope playlist-read-private
	Tracks      []Track
}

// ID is the artist's Spotify ID: 22 base62 characters, stable for a name.
func (a Artist) ID() string { return fakeID("artist:" + a.Name) }

// ID is the track's Spotify ID: 22 base62 characters, stable for its name
// and artist.
func (t Track) ID() string { return fakeID("track:" + t.Artist + "\x00" + t.Name) }

// AlbumID is the Spotify ID of the track's album.
func (t Track) AlbumID() string { return fakeID("album:" + t.Artist + "\x00" + t.albumName()) }

// URI is the track's Spotify URI, spotify:track:ID, as player commands
// take it.
func (t Track) URI() string { return "spotify:track:" + t.ID() }

func (t Track) albumName() string {
	if t.Album == "" {
		return t.Name
	}
	return t.Album
}

// ID is the playlist's Spotify ID, stable for its owner and name.
func (p Playlist) id(ownerID string) string { return fakeID("playlist:" + ownerID + "\x00" + p.Name) }

var defaultArtists = []Artist{
	{"The Loopbacks", []string{"indie rock", "garage rock"}, 71, 812345},
	{"Ada & the Lovelaces", []string{"synth-pop", "electropop"}, 64, 402117},
	{"Null Pointer Orchestra", []string{"post-rock", "ambient"}, 58, 150932},
	{"Race Condition", []string{"punk", "hardcore punk"}, 49, 61020},
	{"The Mutex Brothers", []string{"blues rock"}, 42, 23871},
}

var defaultTracks = []Track{
	{"Port 0", "The Loopbacks", "Ephemeral Ports", "2021-03-12", 201000, 68, false},
	{"Handshake", "Ada & the Lovelaces", "Three-Way", "2019-10-04", 187400, 61, false},
	{"Segfault Lullaby", "Null Pointer Orchestra", "Undefined Behaviour", "2018-06-01", 412800, 55, false},
	{"Data Race", "Race Condition", "Happens-Before", "2022-01-21", 134500, 47, true},
	{"Lock Contention Blues", "The Mutex Brothers", "Deadlock", "2017-09-15", 263300, 40, false},
}

// DefaultTopArtists returns DefaultUser's canned top artists: The Loopbacks, Ada & the Lovelaces, Null Pointer
// Orchestra, Race Condition and The Mutex Brothers, in that order.
func DefaultTopArtists() []Artist {
	out := slices.Clone(defaultArtists)
	for i := range out {
		out[i].Genres = slices.Clone(out[i].Genres)
	}
	return out
}

// DefaultTopTracks returns DefaultUser's canned top tracks: "Port 0", "Handshake", "Segfault Lullaby", "Data Race"
// (explicit) and "Lock Contention Blues", one by each default artist, in
// that order.
func DefaultTopTracks() []Track { return slices.Clone(defaultTracks) }

// clone deep-copies the slices of u, so that callers cannot change a
// stored user.
func (u User) clone() User {
	if u.GrantScopes != nil {
		u.GrantScopes = slices.Clone(u.GrantScopes)
	}
	if u.TopArtists != nil {
		u.TopArtists = slices.Clone(u.TopArtists)
		for i := range u.TopArtists {
			u.TopArtists[i].Genres = slices.Clone(u.TopArtists[i].Genres)
		}
	}
	u.TopTracks = cloneTracks(u.TopTracks)
	u.SavedTracks = cloneTracks(u.SavedTracks)
	u.RecentlyPlayed = cloneTracks(u.RecentlyPlayed)
	if u.Playlists != nil {
		u.Playlists = slices.Clone(u.Playlists)
		for i := range u.Playlists {
			u.Playlists[i].Tracks = cloneTracks(u.Playlists[i].Tracks)
		}
	}
	return u
}

func cloneTracks(ts []Track) []Track {
	if ts == nil {
		return nil
	}
	return slices.Clone(ts)
}

// The user's data with the documented defaults filled in: DefaultUser's
// canned data, or for any other user data derived from the ID.
func (u *User) topArtists() []Artist {
	switch {
	case u.TopArtists != nil:
		return u.TopArtists
	case u.ID == DefaultUserID:
		return defaultArtists
	}
	return derivedArtists(u.ID)
}

func (u *User) topTracks() []Track {
	switch {
	case u.TopTracks != nil:
		return u.TopTracks
	case u.ID == DefaultUserID:
		return defaultTracks
	}
	return derivedTracks(u.ID)
}

func (u *User) savedTracks() []Track {
	if u.SavedTracks == nil {
		return u.topTracks()
	}
	return u.SavedTracks
}

func (u *User) recentlyPlayed() []Track {
	if u.RecentlyPlayed == nil {
		return u.topTracks()
	}
	return u.RecentlyPlayed
}

func (u *User) playlists() []Playlist {
	if u.Playlists == nil {
		name := u.DisplayName
		if name == "" {
			name = u.ID
		}
		return []Playlist{{Name: name + "'s Mix", Description: "Made for " + name, Tracks: u.topTracks()}}
	}
	return u.Playlists
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

// isSpotifyID reports whether id looks like a Spotify ID (base62, 22
// characters).
func isSpotifyID(id string) bool {
	if len(id) != 22 {
		return false
	}
	for _, c := range []byte(id) {
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return true
}

// catalog is every artist, track and album the server knows: the defaults
// and all users' data. Built per request: the fake serves tests, not load.
type catalog struct {
	artists map[string]Artist
	tracks  map[string]Track
	albums  map[string][]Track // album ID: its tracks, in order met
	// Insertion order, for deterministic search results.
	artistIDs, trackIDs, albumIDs []string
}

// catalog collects the catalogue. s.mu must be held.
func (s *Server) catalog() *catalog {
	c := &catalog{artists: map[string]Artist{}, tracks: map[string]Track{}, albums: map[string][]Track{}}
	addTracks := func(ts []Track) {
		for _, t := range ts {
			id := t.ID()
			if _, ok := c.tracks[id]; !ok {
				c.tracks[id] = t
				c.trackIDs = append(c.trackIDs, id)
				aid := t.AlbumID()
				if _, ok := c.albums[aid]; !ok {
					c.albumIDs = append(c.albumIDs, aid)
				}
				c.albums[aid] = append(c.albums[aid], t)
			}
			if a := (Artist{Name: t.Artist}); t.Artist != "" {
				if _, ok := c.artists[a.ID()]; !ok {
					c.artists[a.ID()] = a
					c.artistIDs = append(c.artistIDs, a.ID())
				}
			}
		}
	}
	addArtists := func(as []Artist) {
		for _, a := range as {
			id := a.ID()
			if old, ok := c.artists[id]; !ok || old.Genres == nil && old.Popularity == 0 {
				if !ok {
					c.artistIDs = append(c.artistIDs, id)
				}
				c.artists[id] = a // a full entry beats one known only from a track
			}
		}
	}
	addArtists(defaultArtists)
	addTracks(defaultTracks)
	for _, id := range s.userOrder {
		u := s.users[id]
		addArtists(u.topArtists())
		addTracks(u.topTracks())
		addTracks(u.savedTracks())
		addTracks(u.recentlyPlayed())
		for _, p := range u.playlists() {
			addTracks(p.Tracks)
		}
	}
	return c
}

// object is the common part of a catalogue object of the kind.
func (s *Server) object(kind, id, name string) map[string]any {
	return map[string]any{
		"id":            id,
		"name":          name,
		"type":          kind,
		"uri":           "spotify:" + kind + ":" + id,
		"href":          s.URL + "/v1/" + kind + "s/" + id,
		"external_urls": map[string]string{"spotify": "https://open.spotify.com/" + kind + "/" + id},
	}
}

func (s *Server) simpleArtist(name string) map[string]any {
	return s.object("artist", Artist{Name: name}.ID(), name)
}

// artistJSON is a full artist object.
func (s *Server) artistJSON(a Artist) map[string]any {
	obj := s.object("artist", a.ID(), a.Name)
	obj["genres"] = append([]string{}, a.Genres...)
	obj["popularity"] = a.Popularity
	obj["followers"] = map[string]any{"href": nil, "total": a.Followers}
	obj["images"] = []any{}
	return obj
}

// albumJSON is a simplified album object.
func (s *Server) albumJSON(t Track, totalTracks int) map[string]any {
	album := s.object("album", t.AlbumID(), t.albumName())
	albumType := "album"
	if totalTracks == 1 && t.Album == "" {
		albumType = "single"
	}
	album["album_type"] = albumType
	album["total_tracks"] = totalTracks
	album["images"] = []any{}
	album["release_date"] = t.ReleaseDate
	album["release_date_precision"] = "day"
	album["artists"] = []any{s.simpleArtist(t.Artist)}
	return album
}

// trackJSON is a full track object; number is its 1-based place on its
// album, albumSize the album's length.
func (s *Server) trackJSON(t Track, number, albumSize int) map[string]any {
	obj := s.simpleTrackJSON(t, number)
	obj["album"] = s.albumJSON(t, albumSize)
	obj["popularity"] = t.Popularity
	obj["external_ids"] = map[string]string{"isrc": "SEXYZ" + strings.ToUpper(t.ID()[:7])}
	return obj
}

// simpleTrackJSON is a simplified track object (as in an album's tracks).
func (s *Server) simpleTrackJSON(t Track, number int) map[string]any {
	obj := s.object("track", t.ID(), t.Name)
	obj["artists"] = []any{s.simpleArtist(t.Artist)}
	obj["disc_number"] = 1
	obj["track_number"] = number
	obj["duration_ms"] = t.DurationMS
	obj["explicit"] = t.Explicit
	obj["is_local"] = false
	obj["preview_url"] = nil
	return obj
}

// fullTrack renders a track with its album's place and size from the
// catalogue.
func (s *Server) fullTrack(c *catalog, t Track) map[string]any {
	album := c.albums[t.AlbumID()]
	number := 1
	for i, at := range album {
		if at.ID() == t.ID() {
			number = i + 1
		}
	}
	return s.trackJSON(t, number, max(len(album), 1))
}

func (s *Server) fullTracks(c *catalog, ts []Track) []any {
	out := make([]any, len(ts))
	for i, t := range ts {
		out[i] = s.fullTrack(c, t)
	}
	return out
}

func (s *Server) artistsJSON(as []Artist) []any {
	out := make([]any, len(as))
	for i, a := range as {
		out[i] = s.artistJSON(a)
	}
	return out
}
