package redisstorage

import (
	"context"
	"fmt"
	"testing"

	"github.com/caddyserver/certmagic"
	"github.com/caddyspotify/caddy-spotify-auth/internal/testkit"
)

// Per-operation costs of the storages the plugin coordinates through: an
// input of docs/scaling.md (the plugin's storage-bound paths on each are
// benchmarked in the root package, storage_bench_test.go).
//
//	go test -run '^$' -bench StorageOps -benchmem ./bench/internal/redisstorage
//
// redis_remote is Redis through remotestorage, as the plugin's in-process
// tests and benchmarks reach it: the difference to redis is the loopback
// net/rpc round trip they pay on top. The Redis variants need
// redis-server (they start their own).

var benchStorages = []struct {
	name string
	new  func(b *testing.B) certmagic.Storage
}{
	{"file_system", func(b *testing.B) certmagic.Storage { return &certmagic.FileStorage{Path: b.TempDir()} }},
	{"redis", func(b *testing.B) certmagic.Storage { return newRedisStorage(b, testkit.StartRedis(b)) }},
	{"redis_remote", func(b *testing.B) certmagic.Storage { return newRemoteStorage(b, testkit.StartRedis(b)) }},
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
