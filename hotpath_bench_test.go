package spotifyauth

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// BenchmarkHotPathAsCaddy measures what the gate costs per request as
// Caddy runs it, not as BenchmarkServeHTTP isolates it: each request gets
// what Caddy gives it (a fresh header map, vars map and replacer with
// Caddy's own provider), passes the gate and the strip route, and is
// answered like `respond "ok"` through a fresh response header map. The
// floor runs the same without the gate and strip; the difference between
// the floor and a session kind is the plugin's cost, allocations included
// (which a reused map in BenchmarkServeHTTP hides).
func BenchmarkHotPathAsCaddy(b *testing.B) {
	respond := caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		w.Header()["Content-Type"] = []string{"text/plain; charset=utf-8"}
		w.WriteHeader(http.StatusOK)
		_, err := io.WriteString(w, "ok")
		return err
	})
	for _, kind := range []string{"floor", "cookie", "stored", "cookie-nouser"} {
		b.Run(kind, func(b *testing.B) {
			h, _ := benchHandler(b)
			if kind == "cookie-nouser" { // user_headers off: two headers, not eight
				h.userHeaders = false
			}
			s := validSession(time.Hour)
			cookie := "spotify_auth=" + h.sealers().sessions.Seal(s.marshal(), h.cookies.aad)
			if kind == "stored" {
				useStoredSessions(h)
				ref, err := storedOf(h).save(context.Background(), &s)
				if err != nil {
					b.Fatal(err)
				}
				cookie = "spotify_auth=" + h.sealers().sessions.Seal(ref, h.cookies.aad)
			}
			strip := &Strip{}
			if err := strip.Provision(caddy.Context{}); err != nil {
				b.Fatal(err)
			}
			chain := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
				return h.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
					return strip.ServeHTTP(w, r, respond)
				}))
			})
			if kind == "floor" {
				chain = respond
			}
			base := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:18082/", nil)
			b.ReportAllocs()
			for b.Loop() {
				// What Caddy's server does before the first handler: a
				// replacer, the vars map (with its two entries), the
				// request's context values, and net/http's header map sized
				// for the headers read.
				r := base.WithContext(context.Background())
				r.Header = make(http.Header, 4)
				r.Header["User-Agent"] = []string{"loadgen"}
				r.Header["Accept"] = []string{"text/html"}
				r.Header["Accept-Encoding"] = []string{"gzip"}
				r.Header["Cookie"] = []string{cookie}
				w := &discardWriter{h: http.Header{}}
				r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), w, nil)
				if err := chain.ServeHTTP(w, r); err != nil {
					b.Fatal(err)
				}
				if kind != "floor" && r.Header["Authorization"] == nil {
					b.Fatal("the gate did not pass the request")
				}
			}
		})
	}
}
