package spotifyauth

import (
	"net/http"
	"testing"
)

// Each answer gets header values of its own: a later handler that writes
// into one (Caddy's header replace does, on one path of the site) must
// not change what every other authenticated answer says.
func TestPrivateAnswersShareNoHeaderValues(t *testing.T) {
	t.Parallel()
	first, second := http.Header{}, http.Header{}
	makePrivate(first, new([2]string))
	first["Cache-Control"][0] = "public, max-age=3600"
	first["Vary"][0] = "Accept"
	makePrivate(second, new([2]string))
	if cc, vary := second.Get("Cache-Control"), second.Get("Vary"); cc != "private" || vary != "Cookie" {
		t.Fatalf("the next answer says Cache-Control %q, Vary %q; want private, Cookie", cc, vary)
	}
}
