package remotestorage

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

// serve starts a server lending one file_system storage to every
// connection and counts the connections it closed.
func serve(t *testing.T) (addr string, closed *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	fsys := &certmagic.FileStorage{Path: t.TempDir()}
	closed = new(atomic.Int32)
	go func() {
		_ = Serve(l, func() (certmagic.Storage, func(), error) {
			return fsys, func() { closed.Add(1) }, nil
		})
	}()
	return l.Addr().String(), closed
}

func dial(t *testing.T, addr string) *Storage {
	t.Helper()
	s, err := Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestCallsKeepTheirResultsAndErrorKinds: values, listings and key info
// come back as the storage gave them, and a missing key is still
// fs.ErrNotExist on this side (the plugin tells "none yet" by it).
func TestCallsKeepTheirResultsAndErrorKinds(t *testing.T) {
	addr, _ := serve(t)
	s := dial(t, addr)
	ctx := context.Background()
	for _, k := range []string{"a/one", "a/two"} {
		if err := s.Store(ctx, k, []byte("v-"+k)); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := dial(t, addr).Load(ctx, "a/one"); err != nil || string(v) != "v-a/one" {
		t.Fatalf("Load from another connection: %q %v", v, err)
	}
	if _, err := s.Load(ctx, "a/none"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing key: %v, want fs.ErrNotExist", err)
	}
	if _, err := s.Stat(ctx, "a/none"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Stat of a missing key: %v, want fs.ErrNotExist", err)
	}
	if info, err := s.Stat(ctx, "a/two"); err != nil || info.Key != "a/two" || !info.IsTerminal || info.Size != 7 || time.Since(info.Modified) > time.Minute {
		t.Fatalf("Stat: %+v %v", info, err)
	}
	keys, err := s.List(ctx, "a", false)
	slices.Sort(keys)
	if err != nil || !slices.Equal(keys, []string{"a/one", "a/two"}) {
		t.Fatalf("List: %v %v", keys, err)
	}
	if !s.Exists(ctx, "a/one") || s.Exists(ctx, "a/none") {
		t.Fatal("Exists is wrong")
	}
	if err := s.Delete(ctx, "a/one"); err != nil || s.Exists(ctx, "a/one") {
		t.Fatalf("Delete: %v", err)
	}
}

// TestLocksExcludeAcrossConnectionsAndHonourTheContext: a lock held on
// one connection keeps another waiting until its context ends, and an
// abandoned wait leaves nothing held.
func TestLocksExcludeAcrossConnectionsAndHonourTheContext(t *testing.T) {
	addr, _ := serve(t)
	a, b, c := dial(t, addr), dial(t, addr), dial(t, addr)
	ctx := context.Background()
	if err := a.Lock(ctx, "L"); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 3*lockSlice/2)
	defer cancel()
	if err := b.Lock(short, "L"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock of a held lock until the deadline: %v, want context.DeadlineExceeded", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	waited := make(chan error, 1)
	go func() { waited <- b.Lock(cancelled, "L") }()
	time.Sleep(lockSlice / 2)
	cancel()
	if err := <-waited; !errors.Is(err, context.Canceled) {
		t.Fatalf("Lock with a cancelled context: %v, want context.Canceled", err)
	}
	if err := a.Unlock(ctx, "L"); err != nil {
		t.Fatal(err)
	}
	soon, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := c.Lock(soon, "L"); err != nil {
		t.Fatalf("Lock after the holder released it (and the other gave up): %v", err)
	}
	if err := c.Unlock(ctx, "L"); err != nil {
		t.Fatal(err)
	}
}

// TestAClosedClientFailsClosedAndEndsItsStorage: once closed, calls fail
// with an error that is not "missing", and the server closes that
// connection's storage.
func TestAClosedClientFailsClosedAndEndsItsStorage(t *testing.T) {
	addr, closed := serve(t)
	s := dial(t, addr)
	ctx := context.Background()
	if err := s.Store(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	if _, err := s.Load(ctx, "k"); err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load on a closed client: %v, want an error other than fs.ErrNotExist", err)
	}
	if err := s.Lock(ctx, "L"); err == nil {
		t.Fatal("Lock on a closed client succeeded")
	}
	deadline := time.Now().Add(5 * time.Second)
	for closed.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the server closed %d storages, want 1", closed.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
