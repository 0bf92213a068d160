package spotifyauth

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// A strip route keeps a token header only if the gate it belongs to set
// it on this request, and X-Spotify-* only if some gate let the request
// through; two gates with different token headers each keep their own.
func TestStripKeepsOnlyWhatAGateSet(t *testing.T) {
	t.Parallel()
	newStrip := func(tokenHeader string) *Strip {
		s := &Strip{TokenHeader: tokenHeader}
		if err := s.Provision(caddy.Context{}); err != nil {
			t.Fatal(err)
		}
		return s
	}
	bearer, custom := newStrip(""), newStrip("x-token")
	for _, tc := range []struct {
		name       string
		passedBy   []string // the token headers of the gates that let it through
		strip      *Strip
		keep, drop []string
	}{
		{"no gate passed", nil, bearer, nil, []string{"Authorization", "X-Spotify-User-Id"}},
		{"its gate passed", []string{"Authorization"}, bearer, []string{"Authorization", "X-Spotify-User-Id", "X-Token"}, nil},
		{"another gate passed", []string{"X-Token"}, bearer, []string{"X-Spotify-User-Id", "X-Token"}, []string{"Authorization"}},
		{"both gates passed, first strip", []string{"X-Token", "Authorization"}, bearer, []string{"Authorization", "X-Spotify-User-Id", "X-Token"}, nil},
		{"both gates passed, second strip", []string{"Authorization", "X-Token"}, custom, []string{"Authorization", "X-Spotify-User-Id", "X-Token"}, nil},
		{"no gate passed, custom strip", nil, custom, []string{"Authorization"}, []string{"X-Spotify-User-Id", "X-Token"}},
	} {
		r, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1/", nil)
		r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{}))
		for _, h := range tc.passedBy {
			markPassed(r, &passMark{tokenHeader: h})
		}
		r.Header = http.Header{"Authorization": {"Bearer t"}, "X-Spotify-User-Id": {"u"}, "X-Token": {"t"}}
		var got http.Header
		err := tc.strip.ServeHTTP(&discardWriter{h: http.Header{}}, r, caddyhttp.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) error {
			got = r.Header
			return nil
		}))
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range tc.keep {
			if got[k] == nil {
				t.Errorf("%s: %s was removed", tc.name, k)
			}
		}
		for _, k := range tc.drop {
			if got[k] != nil {
				t.Errorf("%s: %s reached the upstream", tc.name, k)
			}
		}
	}
}

// The plugin's cookies leave the request however a client spells the
// pair: the upstream's cookie parser trims the name, so must we.
func TestOurCookiesAreStrippedWithSpacesAroundTheName(t *testing.T) {
	t.Parallel()
	names := newCookieNames("spotify_auth", false)
	for _, line := range []string{"spotify_auth =forged; theme=dark", "theme=dark;  spotify_auth_1\t=x", "__Host-spotify_auth = y;theme=dark"} {
		hdr := http.Header{"Cookie": {line}}
		stripOurCookies(hdr, names)
		r := &http.Request{Header: hdr}
		for _, c := range r.Cookies() {
			if names.ours(c.Name) {
				t.Errorf("%q: the upstream still gets cookie %q", line, c.Name)
			}
		}
		if c, err := r.Cookie("theme"); err != nil || c.Value != "dark" {
			t.Errorf("%q: the site's own cookie was lost: %v", line, hdr)
		}
	}
}

// With two gates of different token headers, a trailer named after
// either is gone once the body is read: the second gate wraps the body
// again rather than trusting the first's wrapper.
func TestTrailersLoseEveryGatesTokenHeader(t *testing.T) {
	t.Parallel()
	r, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1/", strings.NewReader("body"))
	r.Trailer = http.Header{}
	scrubTrailers(r, "Authorization")
	scrubTrailers(r, "X-Token")
	// What the server's reader sets once the chunked body ends.
	r.Trailer["Authorization"], r.Trailer["X-Token"], r.Trailer["X-Checksum"] = []string{"Bearer forged"}, []string{"forged"}, []string{"kept"}
	if _, err := io.ReadAll(r.Body); err != nil {
		t.Fatal(err)
	}
	if r.Trailer["Authorization"] != nil || r.Trailer["X-Token"] != nil || r.Trailer["X-Checksum"] == nil {
		t.Fatalf("trailers after the body: %v", r.Trailer)
	}
}
