package spotifytest

import (
	"crypto/sha256"
	"fmt"
)

// Words the derived listening data is made of: 16 of each, so that a
// byte of a hash picks one and two users' lists differ unless 20 such
// picks coincide.
var (
	derivedAdjectives = [16]string{"Quiet", "Electric", "Broken", "Golden", "Hidden", "Velvet", "Paper", "Neon",
		"Silver", "Hollow", "Lucky", "Crimson", "Distant", "Frozen", "Wild", "Gentle"}
	derivedNouns = [16]string{"Sockets", "Kernels", "Buffers", "Pipes", "Signals", "Threads", "Packets", "Routers",
		"Daemons", "Cursors", "Caches", "Tokens", "Queues", "Heaps", "Stacks", "Frames"}
	derivedTitleFirst = [16]string{"Midnight", "Summer", "Last", "First", "Slow", "Open", "Cold", "Bright",
		"Empty", "Late", "Blue", "Long", "Little", "Second", "Falling", "Northern"}
	derivedTitleSecond = [16]string{"Drive", "Light", "Call", "Signal", "Dance", "Letter", "Train", "Window",
		"Garden", "Static", "Harbour", "Echo", "Season", "Motel", "River", "Radio"}
	derivedGenres = [16]string{"indie pop", "shoegaze", "synthwave", "folk", "jazz", "techno", "dream pop", "emo",
		"soul", "grunge", "house", "ambient", "new wave", "math rock", "trip hop", "bossa nova"}
)

// derivedCount is how many top artists and tracks a user without their
// own data gets, as many as DefaultUser has.
const derivedCount = 5

// derivedArtists are the top artists of a user added without any: stable
// for the ID, different from other users'.
func derivedArtists(userID string) []Artist {
	h := sha256.Sum256([]byte("artists:" + userID))
	out := make([]Artist, 0, derivedCount)
	seen := map[string]bool{}
	for i := 0; len(out) < derivedCount; i++ {
		a, n := h[(2*i)%len(h)], h[(2*i+1)%len(h)]
		name := "The " + derivedAdjectives[int(a+byte(i/16))%16] + " " + derivedNouns[int(n)%16]
		if seen[name] {
			continue
		}
		seen[name] = true
		out = append(out, Artist{
			Name:       name,
			Genres:     []string{derivedGenres[int(a)%16], derivedGenres[int(n)%16]},
			Popularity: 80 - 8*len(out),
			Followers:  int(a)*1000 + int(n) + 100,
		})
	}
	return out
}

// derivedTracks are the top tracks of a user added without any: one by
// each of derivedArtists, stable for the ID.
func derivedTracks(userID string) []Track {
	h := sha256.Sum256([]byte("tracks:" + userID))
	artists := derivedArtists(userID)
	out := make([]Track, len(artists))
	for i, a := range artists {
		b := h[3*i : 3*i+3]
		out[i] = Track{
			Name:        derivedTitleFirst[b[0]%16] + " " + derivedTitleSecond[b[1]%16],
			Artist:      a.Name,
			ReleaseDate: fmt.Sprintf("%04d-%02d-%02d", 2000+int(b[2])%25, 1+int(b[0])%12, 1+int(b[1])%28),
			DurationMS:  150000 + int(b[2])*500,
			Popularity:  a.Popularity - 5,
			Explicit:    b[2]%5 == 0,
		}
	}
	return out
}
