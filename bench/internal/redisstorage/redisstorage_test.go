package redisstorage

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/caddyspotify/caddy-spotify-auth/internal/remotestorage"
	"github.com/caddyspotify/caddy-spotify-auth/internal/testkit"
)

// The tests start their own redis-server on a free loopback port; without
// it they skip locally and fail under CI=true (.ci/run installs Debian's
// redis-server).

// testLockTTL is the lock lifetime in tests: a killed holder's lock must
// expire within a test's patience.
const testLockTTL = 2 * time.Second

// storage is a storage client that can be closed, as its process dies.
type storage interface {
	certmagic.Storage
	Close() error
}

// clientKinds are the ways a test reaches the Redis storage: directly, as
// a Caddy with the module does, and through remotestorage, as the
// plugin's in-process tests do (one connection, one Redis client).
var clientKinds = []struct {
	name string
	new  func(t testing.TB, addr string) storage
}{
	{"direct", func(t testing.TB, addr string) storage { return newRedisStorage(t, addr) }},
	{"remote", func(t testing.TB, addr string) storage { return newRemoteStorage(t, addr) }},
}

// newRedisStorage is a storage client on addr, as one Caddy instance has.
func newRedisStorage(t testing.TB, addr string) *Storage {
	t.Helper()
	s := New(addr, "caddy/", testLockTTL)
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Client().Ping(context.Background()).Err(); err != nil {
		t.Fatalf("redis at %s: %v", addr, err)
	}
	return s
}

// newRemoteStorage is a remotestorage client of an in-process server
// lending a Redis storage on addr, one per connection.
func newRemoteStorage(t testing.TB, addr string) *remotestorage.Storage {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = remotestorage.Serve(l, func() (certmagic.Storage, func(), error) {
			s := New(addr, "caddy/", testLockTTL)
			return s, func() { _ = s.Close() }, nil
		})
	}()
	c, err := remotestorage.Dial(l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Close()
		_ = l.Close()
	})
	return c
}

// TestRedisStorageSemantics checks the test-only Redis storage against
// what the plugin relies on from file_system: keys and "directories",
// listing, and locks that only their holder releases, renewed while held
// and expiring once the holder is gone. It runs on the storage itself,
// and through remotestorage as the plugin's in-process tests reach it
// (a client closing its connection is a holder gone).
func TestRedisStorageSemantics(t *testing.T) {
	for _, kind := range clientKinds {
		t.Run(kind.name, func(t *testing.T) {
			addr := testkit.StartRedis(t)
			testStorageSemantics(t, kind.new(t, addr), kind.new(t, addr))
		})
	}
}

func testStorageSemantics(t *testing.T, s, other storage) {
	ctx := context.Background()
	for _, k := range []string{"a/b/one", "a/b/two", "a/c", "z"} {
		if err := s.Store(ctx, k, []byte("v-"+k)); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := other.Load(ctx, "a/b/one"); err != nil || string(v) != "v-a/b/one" {
		t.Fatalf("Load: %q %v", v, err)
	}
	if _, err := s.Load(ctx, "a/b"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a directory: %v, want fs.ErrNotExist", err)
	}
	list := func(prefix string, recursive bool) []string {
		keys, err := s.List(ctx, prefix, recursive)
		if err != nil {
			t.Fatalf("List(%q, %v): %v", prefix, recursive, err)
		}
		slices.Sort(keys)
		return keys
	}
	if got := list("a/", false); !slices.Equal(got, []string{"a/b", "a/c"}) {
		t.Fatalf("List a/: %v", got)
	}
	if got := list("a", true); !slices.Equal(got, []string{"a/b/one", "a/b/two", "a/c"}) {
		t.Fatalf("List a recursive: %v", got)
	}
	if got := list("", false); !slices.Equal(got, []string{"a", "z"}) {
		t.Fatalf("List root: %v", got)
	}
	if _, err := s.List(ctx, "nothing/", false); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("List of nothing: %v, want fs.ErrNotExist", err)
	}
	if info, err := s.Stat(ctx, "a/b/one"); err != nil || !info.IsTerminal || info.Size != int64(len("v-a/b/one")) || time.Since(info.Modified) > time.Minute {
		t.Fatalf("Stat of a key: %+v %v", info, err)
	}
	if info, err := s.Stat(ctx, "a/b"); err != nil || info.IsTerminal {
		t.Fatalf("Stat of a directory: %+v %v", info, err)
	}
	if !s.Exists(ctx, "a/b") || !s.Exists(ctx, "a/c") || s.Exists(ctx, "a/d") {
		t.Fatal("Exists is wrong")
	}
	if err := s.Delete(ctx, "a/b"); err != nil || s.Exists(ctx, "a/b/one") || !s.Exists(ctx, "a/c") {
		t.Fatalf("Delete of a directory: %v", err)
	}
	if err := s.Delete(ctx, "a/b"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Delete of nothing: %v, want fs.ErrNotExist", err)
	}

	// Locks: exclusive, held past their time to live while the holder
	// lives, released only by the holder.
	if err := s.Lock(ctx, "L"); err != nil {
		t.Fatal(err)
	}
	if err := other.Unlock(ctx, "L"); err == nil {
		t.Fatal("another client released a lock it does not hold")
	}
	waitCtx, cancel := context.WithTimeout(ctx, testLockTTL+time.Second)
	defer cancel()
	if err := other.Lock(waitCtx, "L"); err == nil {
		t.Fatal("a second holder got a held lock (renewal failed, or no exclusion)")
	}
	if err := s.Unlock(ctx, "L"); err != nil {
		t.Fatal(err)
	}
	if err := other.Lock(ctx, "L"); err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	// The holder dies (stops renewing without releasing): the lock expires.
	t0 := time.Now()
	_ = other.Close()
	if err := s.Lock(ctx, "L"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(t0); took < testLockTTL/2 || took > testLockTTL+time.Second {
		t.Fatalf("a dead holder's lock was taken over after %v, want about its TTL (%v)", took, testLockTTL)
	}
	if err := s.Unlock(ctx, "L"); err != nil {
		t.Fatal(err)
	}
}
