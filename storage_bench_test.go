package spotifyauth

import (
	"context"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// The plugin's storage-bound paths on each storage: inputs of docs/scaling.md.
// The per-operation costs of the storages themselves are measured in the
// bench module (bench/internal/redisstorage, BenchmarkStorageOps).
//
//	go test -run '^$' -bench 'Coordinated|Uncached' -benchmem .
//
// The Redis variants need redis-server (they start their own) and reach
// it through the test Caddy's serve-test-storage (see redis_test.go):
// one loopback net/rpc round trip more per storage call than a Redis
// storage module inside Caddy makes (BenchmarkStorageOps/redis_remote
// measures it).

var benchStorages = []struct {
	name string
	new  func(b *testing.B) certmagic.Storage
}{
	{"file_system", func(b *testing.B) certmagic.Storage { return &certmagic.FileStorage{Path: b.TempDir()} }},
	{"redis", func(b *testing.B) certmagic.Storage { return dialStorage(b, startRedisStorage(b)) }},
}

// BenchmarkServeHTTPRefreshCoordinated: a request whose token is due, on
// each storage: the storage lock, a real refresh at the fake on loopback,
// the published result (and the benchmark deleting it again).
func BenchmarkServeHTTPRefreshCoordinated(b *testing.B) {
	for _, kind := range benchStorages {
		b.Run(kind.name, func(b *testing.B) {
			fake := spotifytest.NewServer()
			defer fake.Close()
			h, base := benchHandlerOn(b, storageOption(kind.new(b)))
			h.TokenURL = fake.TokenURL()
			h.oauth.Endpoint.TokenURL = fake.TokenURL()
			fake.AddClient(spotifytest.Client{ID: testClientID, RedirectURIs: []string{"http://127.0.0.1/cb"}})
			s := validSession(time.Minute) // inside the leeway
			s.RefreshToken = fakeRefreshToken(b, fake)
			cookie := "spotify_auth=" + h.sealers().sessions.Seal(s.marshal(), h.cookies.aad)
			benchServe(b, h, base, cookie, "text/html", func() { forgetRefreshes(b, h) })
			if n := fake.Counts().Refreshes; n < b.N {
				b.Fatalf("%d refreshes for %d iterations", n, b.N)
			}
		})
	}
}

// BenchmarkServeHTTPStoredSessionUncached: session_store storage when the
// session is not in this instance's cache (a session's first request
// here, or once a second after the last read): one storage read.
func BenchmarkServeHTTPStoredSessionUncached(b *testing.B) {
	for _, kind := range benchStorages {
		b.Run(kind.name, func(b *testing.B) {
			h, base := benchHandlerOn(b, storageOption(kind.new(b)))
			useStoredSessions(h)
			s := validSession(time.Hour)
			ref, err := storedOf(h).save(context.Background(), &s)
			if err != nil {
				b.Fatal(err)
			}
			cookie := "spotify_auth=" + h.sealers().sessions.Seal(ref, h.cookies.aad)
			benchServe(b, h, base, cookie, "text/html", func() { cacheOf(h).reset() })
		})
	}
}
