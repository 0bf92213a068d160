package spotifyauth

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// Per-operation costs of the storages the plugin coordinates through, and
// of the plugin's storage-bound paths on each: the inputs of SCALING.md.
//
//	go test -run '^$' -bench 'Storage|Coordinated|Uncached' -benchmem .
//
// The Redis variants need redis-server (they start their own).

var benchStorages = []struct {
	name string
	new  func(b *testing.B) certmagic.Storage
}{
	{"file_system", func(b *testing.B) certmagic.Storage { return &certmagic.FileStorage{Path: b.TempDir()} }},
	{"redis", func(b *testing.B) certmagic.Storage { return newRedisStorage(b, startRedis(b)) }},
}

func BenchmarkStorageOps(b *testing.B) {
	ctx := context.Background()
	value := make([]byte, 700) // a sealed stored session is about this long
	for _, kind := range benchStorages {
		b.Run(kind.name, func(b *testing.B) {
			s := kind.new(b)
			const dir = "spotify_auth/sessions/0123456789abcdef0123456789abcdef"
			for i := range 100 {
				if err := s.Store(ctx, fmt.Sprintf("%s/%03d", dir, i), value); err != nil {
					b.Fatal(err)
				}
			}
			key := dir + "/000"
			b.Run("Load", func(b *testing.B) {
				for b.Loop() {
					if _, err := s.Load(ctx, key); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("LoadMissing", func(b *testing.B) {
				for b.Loop() {
					_, _ = s.Load(ctx, "spotify_auth/paused/none")
				}
			})
			b.Run("Store", func(b *testing.B) {
				for b.Loop() {
					if err := s.Store(ctx, key, value); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("Exists", func(b *testing.B) {
				for b.Loop() {
					s.Exists(ctx, key)
				}
			})
			b.Run("Stat", func(b *testing.B) {
				for b.Loop() {
					if _, err := s.Stat(ctx, key); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("List100", func(b *testing.B) {
				for b.Loop() {
					if keys, err := s.List(ctx, dir, false); err != nil || len(keys) != 100 {
						b.Fatal(len(keys), err)
					}
				}
			})
			b.Run("LockUnlock", func(b *testing.B) {
				for b.Loop() {
					if err := s.Lock(ctx, "bench"); err != nil {
						b.Fatal(err)
					}
					if err := s.Unlock(ctx, "bench"); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
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
			h.storeSessions = true
			s := validSession(time.Hour)
			ref, err := h.storeSession(context.Background(), &s)
			if err != nil {
				b.Fatal(err)
			}
			cookie := "spotify_auth=" + h.sealers().sessions.Seal(ref, h.cookies.aad)
			benchServe(b, h, base, cookie, "text/html", func() { h.opened = newSessionCache() })
		})
	}
}
