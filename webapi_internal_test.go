package spotifyauth

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// Spotify's answer reaches the page with only the headers that describe
// it, and never cacheable by a shared cache: what Spotify says of its own
// domain (HSTS, Alt-Svc, CORS, cookies, public caching) must not apply to
// this site, and nothing carrying the token passes.
func TestWebAPIAnswersKeepOnlyTheirDescription(t *testing.T) {
	t.Parallel()
	h := &Handler{requestSettings: requestSettings{cookies: newCookieNames("spotify_auth", false), tokenHeader: "Authorization"}}
	rec := httptest.NewRecorder()
	w := &webAPIWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: rec}, hdr: http.Header{}, token: "the-token", h: h}
	for k, v := range map[string]string{
		"Content-Type":                "application/json; charset=utf-8",
		"Etag":                        `"abc"`,
		"Cache-Control":               "public, max-age=3600",
		"Strict-Transport-Security":   "max-age=31536000; includeSubDomains",
		"Alt-Svc":                     `h3=":443"`,
		"Access-Control-Allow-Origin": "*",
		"Set-Cookie":                  "sp_t=1; Domain=example.com",
		"X-Spotify-Thing":             "1",
		"Www-Authenticate":            `Bearer error="invalid_token", token="the-token"`,
	} {
		w.Header().Set(k, v)
	}
	w.WriteHeader(http.StatusOK)
	got := rec.Header()
	for _, name := range []string{"Strict-Transport-Security", "Alt-Svc", "Access-Control-Allow-Origin", "Set-Cookie", "X-Spotify-Thing", "Www-Authenticate"} {
		if v := got.Values(name); len(v) > 0 {
			t.Errorf("%s reached the page: %q", name, v)
		}
	}
	if got.Get("Content-Type") != "application/json; charset=utf-8" || got.Get("Etag") != `"abc"` {
		t.Errorf("the answer's description is lost: %v", got)
	}
	if cc := got.Get("Cache-Control"); cc != "private, max-age=3600" {
		t.Errorf("Cache-Control %q, want Spotify's public answer made private", cc)
	}
	if got.Get("Vary") != "Cookie" {
		t.Errorf("Vary %q, want Cookie", got.Get("Vary"))
	}
}

// Only <prefix>/v1/... spelled so, with nothing that strip_path_prefix or
// Spotify could resolve elsewhere, is a Web API call.
func TestWebAPIPathIsTheWebAPIOnly(t *testing.T) {
	t.Parallel()
	h := &Handler{WebAPIPrefix: "/spotify-api"}
	for target, want := range map[string]bool{
		"/spotify-api/v1/me":                      true,
		"/spotify-api/v1/me/top/artists?limit=5":  true,
		"/spotify-api/v1/playlists/abc/tracks/":   true,
		"/spotify-api/v1/search?q=a%2Fb%20c":      true,
		"/spotify-api/v1/":                        true,
		"/spotify-api/v1":                         false,
		"/spotify-api/":                           false,
		"/spotify-api/me":                         false,
		"/spotify-api/v2/me":                      false,
		"/spotify-api/api/token":                  false,
		"/spotify-api/v1/../api/token":            false,
		"/spotify-api/v1/%2e%2e/api/token":        false,
		"/spotify-api/v1/me%2F..%2F..%2Fapi":      false,
		"/spotify-api/v1/./me":                    false,
		"/spotify-api/v1//me":                     false,
		"/spotify-api/v1/me%5C..%5Capi":           false,
		"/spotify-api/%761/me":                    false,
		"/spotify%2Dapi/v1/me":                    false,
		"/%73potify-api/v1/me":                    false,
		"/SPOTIFY-API/v1/me":                      false,
		"/spotify-api/V1/me":                      false,
		"/spotify-apix/v1/me":                     false,
		"/other/spotify-api/v1/me":                false,
		"/spotify-api/v1/me/../../../v1/me":       false,
		"/spotify-api/v1/me%2Fplayer%2F..%2F..":   false,
		"/spotify-api/v1/users/a%2Fb/playlists":   true, // decoded it is a/b: no dot segment
		"/spotify-api/v1/users/a%252e%252e/x":     true, // %2e%2e once decoded is text, not a segment
		"/spotify-api/v1/users/.hidden/playlists": true,
	} {
		if got := isWebAPIPath(h, httptest.NewRequest(http.MethodGet, target, nil)); got != want {
			t.Errorf("%s: %v, want %v", target, got, want)
		}
	}
}

// A user taken off a development-mode app's list keeps refreshing; only
// the Web API's 403s tell. The 403 passes on as it came, and the
// operator reads it once per user, not once per call.
func TestWebAPISaysOnceThatAUserIsOffTheList(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	core, logs := observer.New(zap.WarnLevel)
	hs.h.logger = zap.New(core)
	for _, user := range []string{"alice", "alice", "alice", "bob"} {
		rec := httptest.NewRecorder()
		aw := &webAPIWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: rec}, hdr: http.Header{},
			h: hs.h, heldStatus: http.StatusForbidden, forbidden: true}
		aw.heldBody.WriteString("User not registered in the Developer Dashboard")
		req := httptest.NewRequest(http.MethodGet, "/spotify-api/v1/me/top/tracks", nil)
		if err := answerForbidden(hs.h, rec, req, aw, user); err != nil || rec.Code != http.StatusForbidden ||
			rec.Body.String() != "User not registered in the Developer Dashboard" {
			t.Fatalf("%s: %d %q %v, want Spotify's 403 as it came", user, rec.Code, rec.Body.String(), err)
		}
	}
	lines := logs.FilterMessageSnippet("not on the user list").All()
	if len(lines) != 2 || lines[0].ContextMap()["user_id"] != "alice" || lines[1].ContextMap()["user_id"] != "bob" {
		t.Fatalf("%d lines, want one for alice and one for bob: %+v", len(lines), lines)
	}
}
