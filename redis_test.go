package spotifyauth

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/caddyspotify/caddy-spotify-auth/internal/remotestorage"
	"github.com/caddyspotify/caddy-spotify-auth/internal/storagekeys"
	"github.com/caddyspotify/caddy-spotify-auth/internal/testkit"
)

// The coordination tests also run on a real Redis, through the Redis
// test storage (bench/internal/redisstorage) over a redis-server each
// test starts on a free loopback port. The storage and its Redis client
// live in the bench module, so that the plugin's go.mod carries no Redis
// client: the test Caddy built from there lends it to these in-process
// tests (serve-test-storage, internal/remotestorage), one connection and
// so one Redis client per instance, as separate processes have. Without
// redis-server they skip locally and fail under CI=true (.ci/run
// installs Debian's redis-server).

// testLockTTL is the Redis lock lifetime in tests: a killed holder's lock
// must expire within a test's patience.
const testLockTTL = 2 * time.Second

func init() {
	storageKinds = append(storageKinds, storageKind{"redis", func(t *testing.T) certmagic.Storage { return dialStorage(t, startRedisStorage(t)) }})
}

// startRedisStorage starts a redis-server for this test and a test Caddy
// serving the Redis test storage on it, and returns the latter's address:
// every dialStorage to it is a Redis client of its own, as one Caddy
// instance has.
func startRedisStorage(t testing.TB) string {
	t.Helper()
	addr := testkit.StartRedis(t)
	return serveStorage(t, buildTestCaddy(t), redisStorageConfig(addr))
}

// redisStorageConfig is the Caddyfile storage block for the Redis test
// storage on addr.
func redisStorageConfig(addr string) string {
	return fmt.Sprintf("spotify_auth_test_redis {\n\t\taddress %s\n\t\tkey_prefix caddy/\n\t\tlock_ttl %s\n\t}", addr, testLockTTL)
}

// serveStorage starts bin's serve-test-storage on the Caddyfile storage
// block and returns its address.
func serveStorage(t testing.TB, bin, storage string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfg, []byte("{\n\tstorage "+storage+"\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve-test-storage", "--config", cfg, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the storage server: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		if addr, ok := strings.CutPrefix(lines.Text(), "listening on "); ok {
			go func() { _, _ = io.Copy(io.Discard, stdout) }()
			return addr
		}
	}
	_ = cmd.Wait()
	t.Fatalf("the storage server did not start: %s", stderr.String())
	return ""
}

// dialStorage is a client of the storage server at addr, closed when the
// test ends.
func dialStorage(t testing.TB, addr string) *remotestorage.Storage {
	t.Helper()
	s, err := remotestorage.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestAKilledLockHoldersRefreshLockExpiresOnRedis: another instance took
// the refresh lock for this session and died holding it. The lock expires
// (it is not renewed) and this instance refreshes, once, and serves.
func TestAKilledLockHoldersRefreshLockExpiresOnRedis(t *testing.T) {
	t.Parallel()
	served := startRedisStorage(t)
	hs := newHarness(t, withStorage(dialStorage(t, served)))
	hs.addInstance()
	hs.login(hs.browser, "/")
	sess := hs.nearlyExpire(hs.browser)

	dead, err := remotestorage.Dial(served) // another instance's Redis client
	if err != nil {
		t.Fatal(err)
	}
	if err := dead.Lock(context.Background(), storagekeys.RefreshLock(tokensOf(sess).Key())); err != nil {
		t.Fatal(err)
	}
	_ = dead.Close() // killed: its Redis client closes with no renewal, no unlock
	killed := time.Now()
	before := hs.fake.Counts().Refreshes

	results := hs.burst(hs.browser, "/app/", 10, 2)
	for i, r := range results {
		if r.status != http.StatusOK || r.token == sess.AccessToken || r.token != results[0].token {
			t.Fatalf("request %d: status %d, token %.8s… (first %.8s…)", i, r.status, r.token, results[0].token)
		}
	}
	waited := time.Since(killed)
	if n := hs.fake.Counts().Refreshes - before; n != 1 {
		t.Fatalf("%d refreshes, want 1", n)
	}
	if waited < testLockTTL/2 {
		t.Fatalf("served after %v: the dead holder's lock (TTL %v) was not respected", waited, testLockTTL)
	}
	t.Logf("dead holder's lock expired; 10 requests over 2 instances served after %v with 1 refresh", waited.Round(time.Millisecond))
}
