package spotifyauth

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/caddyspotify/caddy-spotify-auth/internal/redisstorage"
)

// The coordination tests also run on a real Redis (internal/redisstorage
// over a redis-server each test starts on a free loopback port). Without
// redis-server they skip locally and fail under CI=true (.ci/run installs
// Debian's redis-server).

// testLockTTL is the Redis lock lifetime in tests: a killed holder's lock
// must expire within a test's patience.
const testLockTTL = 2 * time.Second

func init() {
	storageKinds = append(storageKinds, struct {
		name string
		new  func(t *testing.T) certmagic.Storage
	}{"redis", func(t *testing.T) certmagic.Storage { return newRedisStorage(t, startRedis(t)) }})
}

// startRedis starts a redis-server for this test and returns its address.
func startRedis(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true but redis-server is not installed: the Redis tests must run in CI (.ci/run installs Debian's redis-server)")
		}
		t.Skip("redis-server not installed (apt-get install redis-server); skipping the Redis variant")
	}
	dir := t.TempDir()
	for attempt := 0; ; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		cmd := exec.Command(bin, "--port", fmt.Sprint(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting redis-server: %v", err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		stop := func() {
			_ = cmd.Process.Kill()
			<-exited
		}
		if waitForRedis(addr, exited) {
			t.Cleanup(stop)
			return addr
		}
		stop()
		if attempt == 2 {
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			t.Fatalf("redis-server did not come up on %s:\n%s", addr, log)
		}
	}
}

func waitForRedis(addr string, exited <-chan struct{}) bool {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false // the port was taken meanwhile
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = c.SetDeadline(time.Now().Add(time.Second))
			_, _ = c.Write([]byte("PING\r\n"))
			buf := make([]byte, 7)
			n, _ := c.Read(buf)
			c.Close()
			if string(buf[:n]) == "+PONG\r\n" {
				return true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// newRedisStorage is a storage client on addr, as one Caddy instance has.
func newRedisStorage(t testing.TB, addr string) *redisstorage.Storage {
	t.Helper()
	s := redisstorage.New(addr, "caddy/", testLockTTL)
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Client().Ping(context.Background()).Err(); err != nil {
		t.Fatalf("redis at %s: %v", addr, err)
	}
	return s
}
