package spotifyauth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddyspotify/caddy-spotify-auth/internal/seal"
	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// BenchmarkServeHTTP is the hot path: a request with a valid session
// cookie, passed upstream.
func BenchmarkServeHTTP(b *testing.B) {
	h, base := benchHandler(b)
	s := validSession(time.Hour)
	cookie := "spotify_auth=" + h.sealers().sessions.Seal(s.marshal(), h.cookies.aad) + "; theme=dark"
	benchServe(b, h, base, cookie, "text/html", nil)
}

// BenchmarkServeHTTPStoredSession: the hot path with session_store
// storage, which reads the session from Caddy's (file_system) storage.
func BenchmarkServeHTTPStoredSession(b *testing.B) {
	h, base := benchHandler(b)
	useStoredSessions(h)
	s := validSession(time.Hour)
	ref, err := storedOf(h).save(context.Background(), &s)
	if err != nil {
		b.Fatal(err)
	}
	cookie := "spotify_auth=" + h.sealers().sessions.Seal(ref, h.cookies.aad) + "; theme=dark"
	benchServe(b, h, base, cookie, "text/html", nil)
}

// BenchmarkServeHTTPNoCookie: a stranger's navigation, redirected to log in.
func BenchmarkServeHTTPNoCookie(b *testing.B) {
	h, base := benchHandler(b)
	benchServe(b, h, base, "theme=dark", "text/html", nil)
}

// BenchmarkServeHTTPThreeChunks: a session too big for one cookie.
func BenchmarkServeHTTPThreeChunks(b *testing.B) {
	h, base := benchHandler(b)
	s := validSession(time.Hour)
	s.AccessToken = strings.Repeat("T", 2*maxChunkLen)
	parts := splitChunks(h.sealers().sessions.Seal(s.marshal(), h.cookies.aad))
	if len(parts) != 3 {
		b.Fatalf("%d chunks", len(parts))
	}
	cookie := "spotify_auth=" + parts[0] + "; spotify_auth_1=" + parts[1] + "; spotify_auth_2=" + parts[2]
	benchServe(b, h, base, cookie, "text/html", nil)
}

// BenchmarkServeHTTPRefresh: a session whose token needs refreshing, with
// a real refresh call to the fake Spotify on loopback every iteration.
func BenchmarkServeHTTPRefresh(b *testing.B) {
	fake := spotifytest.NewServer()
	defer fake.Close()
	h, base := benchHandler(b)
	h.TokenURL = fake.TokenURL()
	h.oauth.Endpoint.TokenURL = fake.TokenURL()
	fake.AddClient(spotifytest.Client{ID: testClientID, RedirectURIs: []string{"http://127.0.0.1/cb"}})
	// A refresh token the fake knows: log in once through its helpers.
	refreshToken := fakeRefreshToken(b, fake)
	s := validSession(time.Minute) // inside the leeway
	s.RefreshToken = refreshToken
	cookie := "spotify_auth=" + h.sealers().sessions.Seal(s.marshal(), h.cookies.aad)
	benchServe(b, h, base, cookie, "text/html", func() {
		// Forget the last result so every iteration really refreshes.
		forgetRefreshes(b, h)
	})
	if n := fake.Counts().Refreshes; n < b.N {
		b.Fatalf("%d refreshes for %d iterations", n, b.N)
	}
}

// BenchmarkInvalidCookieFlood sends 1,000,000 requests with random,
// invalid session cookies and reports how much the live heap grew: no
// cache may keep anything for them.
func BenchmarkInvalidCookieFlood(b *testing.B) {
	h, base := benchHandler(b)
	const n = 1_000_000
	cookies := make([]string, 1024)
	for i := range cookies {
		raw := make([]byte, 400)
		_, _ = rand.Read(raw)
		raw[0] = seal.Version
		cookies[i] = "spotify_auth=" + base64.RawURLEncoding.EncodeToString(raw)
	}
	w := &discardWriter{h: http.Header{}}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	for b.Loop() {
		before := heap()
		for i := range n {
			r := *base
			r.Header = http.Header{"Cookie": {cookies[i%len(cookies)]}, "Accept": {"application/json"}}
			clear(w.h)
			_ = h.ServeHTTP(w, &r, nopNext)
		}
		after := heap()
		b.ReportMetric(float64(int64(after)-int64(before))/1024, "heap-growth-KiB")
		b.ReportMetric(float64(n), "requests")
	}
}

// BenchmarkStripAfterTheGate is the matcherless route the directive adds,
// on a request the gate has let through (the common case): it must cost
// next to nothing.
func BenchmarkStripAfterTheGate(b *testing.B) {
	s := &Strip{}
	if err := s.Provision(caddy.Context{}); err != nil {
		b.Fatal(err)
	}
	vars := map[string]any{}
	mark := &passMark{tokenHeader: s.tokenHeader}
	base, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1/app/", nil)
	base = base.WithContext(context.WithValue(base.Context(), caddyhttp.VarsCtxKey, vars))
	r := new(http.Request)
	hdr := http.Header{}
	w := &discardWriter{h: http.Header{}}
	auth, user, cookie := []string{"Bearer x"}, []string{"u"}, []string{"theme=dark; lang=en"}
	b.ReportAllocs()
	for b.Loop() {
		*r = *base
		clear(hdr)
		clear(vars)
		markPassed(r, mark)
		hdr["Authorization"], hdr["X-Spotify-User-Id"], hdr["Cookie"] = auth, user, cookie
		r.Header = hdr
		if err := s.ServeHTTP(w, r, nopNext); err != nil {
			b.Fatal(err)
		}
	}
}
