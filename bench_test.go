package spotifyauth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"golang.org/x/oauth2"

	"github.com/caddyspotify/caddy-spotify-auth/internal/seal"
	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// nopNext answers as an upstream would, so the response wrapper runs too.
var nopNext = caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error { w.WriteHeader(http.StatusOK); return nil })

// benchServe runs one request per iteration with the given Cookie header.
func benchServe(b *testing.B, h *Handler, base *http.Request, cookie, accept string, perIter func()) {
	b.Helper()
	// The request, its header map and the writer are reused, so that
	// allocs/op counts the handler's allocations alone.
	w := &discardWriter{h: http.Header{}}
	r := new(http.Request)
	hdr := http.Header{}
	cookieVal, acceptVal := []string{cookie}, []string{accept}
	// As in Caddy, the request context holds the replacer and the vars map
	// (which the strip routes read), a fixed few levels deep.
	root := context.WithValue(base.Context(), caddyhttp.VarsCtxKey, map[string]any{})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if perIter != nil {
			perIter()
		}
		// Caddy makes a replacer per request; the handler adds a
		// placeholder provider to it. A fresh one every 256 requests keeps
		// the provider list short at no measurable cost per request. (It
		// replaces, not wraps, the context: a chain growing with the
		// iterations made every context lookup slower as the run went on.)
		if i++; i%256 == 1 {
			base = base.WithContext(context.WithValue(root, caddy.ReplacerCtxKey, caddy.NewReplacer()))
		}
		*r = *base
		clear(hdr)
		hdr["Cookie"], hdr["Accept"] = cookieVal, acceptVal
		r.Header = hdr
		clear(w.h)
		if err := h.ServeHTTP(w, r, nopNext); err != nil {
			b.Fatal(err)
		}
	}
}

func validSession(expires time.Duration) session {
	s := sampleSession()
	s.Expires = time.Now().Add(24 * time.Hour).Unix()
	s.TokenExpires = time.Now().Add(expires).Unix()
	return s
}

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
	h.storeSessions = true
	s := validSession(time.Hour)
	ref, err := h.storeSession(context.Background(), &s)
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

// fakeRefreshToken logs in to the fake as a public client and returns the
// refresh token.
func fakeRefreshToken(b *testing.B, fake *spotifytest.Server) string {
	b.Helper()
	cfg := &oauth2.Config{
		ClientID:    testClientID,
		RedirectURL: "http://127.0.0.1/cb",
		Endpoint:    oauth2.Endpoint{AuthURL: fake.AuthorizeURL(), TokenURL: fake.TokenURL(), AuthStyle: oauth2.AuthStyleInParams},
	}
	verifier := oauth2.GenerateVerifier()
	cb, err := fake.Approve(cfg.AuthCodeURL("state-1234567890", oauth2.S256ChallengeOption(verifier)), spotifytest.DefaultUserID)
	if err != nil {
		b.Fatal(err)
	}
	u, _ := url.Parse(cb)
	tok, err := cfg.Exchange(b.Context(), u.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		b.Fatal(err)
	}
	return tok.RefreshToken
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
		markPassed(r, s.headerVar)
		hdr["Authorization"], hdr["X-Spotify-User-Id"], hdr["Cookie"] = auth, user, cookie
		r.Header = hdr
		if err := s.ServeHTTP(w, r, nopNext); err != nil {
			b.Fatal(err)
		}
	}
}
