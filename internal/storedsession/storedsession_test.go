package storedsession

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/caddyspotify/caddy-spotify-auth/internal/seal"
	"github.com/caddyspotify/caddy-spotify-auth/internal/storagekeys"
)

// plain is a stand-in encoded session: a format byte and the creation
// time (the plugin's codec is not this package's business).
func plain(created int64) []byte { return binary.AppendVarint([]byte{2}, created) }

func created(p []byte) (int64, bool) {
	if len(p) < 2 || p[0] != 2 {
		return 0, false
	}
	v, n := binary.Varint(p[1:])
	return v, n > 0
}

type recorder struct {
	mu   sync.Mutex
	keys []string
}

func (r *recorder) changed(key string) { r.mu.Lock(); r.keys = append(r.keys, key); r.mu.Unlock() }

func newStore(t *testing.T, storage certmagic.Storage, secret, clientID string) (*Store, *recorder) {
	t.Helper()
	sealer, err := seal.New([][]byte{[]byte(secret)}, "stored")
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	return New(Config{Storage: storage, ClientID: clientID, Sealer: func() *seal.Sealer { return sealer },
		Created: created, Changed: rec.changed, Logger: zap.NewNop()}), rec
}

const secretA, secretB = "k3Zq8vN1pX7rT2mW9yB4cD6fG0hJ5sLa", "Q9wE2rT7yU4iO1pA6sD3fG8hJ5kL0zXc"

func count(t *testing.T, storage certmagic.Storage) int {
	t.Helper()
	keys, _ := storage.List(context.Background(), storagekeys.Sessions, true)
	n := 0
	for _, k := range keys {
		if info, err := storage.Stat(context.Background(), k); err == nil && info.IsTerminal {
			n++
		}
	}
	return n
}

func TestASessionReadsBackAndTheStorageHoldsNeitherItNorItsReference(t *testing.T) {
	t.Parallel()
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	s, rec := newStore(t, storage, secretA, "client")
	ref := s.NewRef("alice")
	key := KeyOf(ref)
	secret := []byte("\x02token-BQC-secret")
	if err := s.Write(context.Background(), key, secret); err != nil {
		t.Fatal(err)
	}
	got, err := s.Read(context.Background(), key)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("read %q: %v", got, err)
	}
	if len(rec.keys) != 1 || rec.keys[0] != key {
		t.Fatalf("changes told: %v", rec.keys)
	}
	data, _ := storage.Load(context.Background(), key)
	for _, leak := range [][]byte{secret[1:], ref[1+refUserLen:]} {
		if bytes.Contains(data, leak) || strings.Contains(key, string(leak)) {
			t.Fatal("the storage holds the session or its reference in the clear")
		}
	}
}

func TestReferencesAreUnguessableButMigrationRefsAreStable(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, &certmagic.FileStorage{Path: t.TempDir()}, secretA, "client")
	if first, second := s.NewRef("alice"), s.NewRef("alice"); KeyOf(first) == KeyOf(second) {
		t.Fatal("two new references name one entry")
	}
	a, b := s.MigrationRef("alice", plain(1)), s.MigrationRef("alice", plain(1))
	if !bytes.Equal(a, b) {
		t.Fatal("one cookie session maps to two stored sessions")
	}
	if bytes.Equal(a, s.MigrationRef("alice", plain(2))) {
		t.Fatal("two cookie sessions map to one stored session")
	}
	// A user's references share a directory, so logging out everywhere
	// finds them all.
	if dir := s.userDir("alice"); !strings.HasPrefix(KeyOf(a), dir) || !strings.HasPrefix(KeyOf(s.NewRef("alice")), dir) {
		t.Fatal("a reference outside its user's directory")
	}
	for _, bad := range [][]byte{nil, a[:RefLen-1], append([]byte{2}, a[1:]...)} {
		if KeyOf(bad) != "" {
			t.Errorf("%x names an entry", bad)
		}
	}
}

func TestAnotherSitesSessionsAreNotFound(t *testing.T) {
	t.Parallel()
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	ours, _ := newStore(t, storage, secretA, "client")
	theirs, _ := newStore(t, storage, secretB, "client")
	key := KeyOf(theirs.NewRef("alice"))
	if err := theirs.Write(context.Background(), key, plain(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := ours.Read(context.Background(), key); err != ErrNotFound {
		t.Fatalf("another site's session: %v", err)
	}
	if _, err := ours.Read(context.Background(), KeyOf(ours.NewRef("alice"))); err != ErrNotFound {
		t.Fatalf("no session: %v", err)
	}
}

type failing struct{ certmagic.Storage }

var errDown = errors.New("storage down")

func (failing) Load(context.Context, string) ([]byte, error) { return nil, errDown }

func TestAStorageFailureIsNotNotFound(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, failing{&certmagic.FileStorage{Path: t.TempDir()}}, secretA, "client")
	if _, err := s.Read(context.Background(), KeyOf(s.NewRef("alice"))); !errors.Is(err, errDown) {
		t.Fatalf("storage down reads as %v", err)
	}
}

func TestDeleteUserEndsOnlyThatUsersSessions(t *testing.T) {
	t.Parallel()
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	s, rec := newStore(t, storage, secretA, "client")
	other, _ := newStore(t, storage, secretA, "other-client")
	// Another site of the same client id, with its own keys (a staging
	// site, say): its alice is in the same folder but not ours to end.
	sibling, _ := newStore(t, storage, secretB, "client")
	for _, w := range []struct {
		s    *Store
		user string
	}{{s, "alice"}, {s, "alice"}, {s, "bob"}, {other, "alice"}, {sibling, "alice"}} {
		if err := w.s.Write(context.Background(), KeyOf(w.s.NewRef(w.user)), plain(1)); err != nil {
			t.Fatal(err)
		}
	}
	rec.keys = nil
	if n, err := s.DeleteUser(context.Background(), "alice"); n != 2 || err != nil {
		t.Fatalf("ended %d of alice's 2: %v", n, err)
	}
	if len(rec.keys) != 2 {
		t.Fatalf("%d deletions told, want 2", len(rec.keys))
	}
	if n := count(t, storage); n != 3 {
		t.Fatalf("%d left, want bob's, the other app's alice and the sibling site's alice", n)
	}
	if n, err := s.DeleteUser(context.Background(), "carol"); n != 0 || err != nil {
		t.Fatalf("a user without sessions: %d, %v", n, err)
	}
}

func TestCapKeepsTheNewestAndTheOneJustStored(t *testing.T) {
	t.Parallel()
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	s, _ := newStore(t, storage, secretA, "client")
	ctx := context.Background()
	var keys []string
	for i := range MaxPerUser + 3 {
		key := KeyOf(s.NewRef("alice"))
		if err := s.Write(ctx, key, plain(int64(100+i))); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, key)
	}
	// The one just stored is the oldest by its creation time: kept anyway.
	keep := keys[0]
	s.Cap(ctx, "alice", keep)
	if n := count(t, storage); n != MaxPerUser {
		t.Fatalf("%d stored, cap %d", n, MaxPerUser)
	}
	for i, k := range keys {
		want := k == keep || i >= 4
		if got := storage.Exists(ctx, k); got != want {
			t.Errorf("session %d: exists %v, want %v", i, got, want)
		}
	}
}

// hungStorage never answers until its caller gives up.
type hungStorage struct{ certmagic.Storage }

func (hungStorage) Load(ctx context.Context, _ string) ([]byte, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (hungStorage) List(ctx context.Context, _ string, _ bool) ([]string, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// A hung storage fails a read (the session store is then unavailable,
// fail closed) instead of holding the request for good, even when the
// caller has cut the request's cancellation (a refresh's save does).
func TestAHungStorageFailsInsteadOfHolding(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, hungStorage{&certmagic.FileStorage{Path: t.TempDir()}}, "0123456789abcdef0123456789abcdef", "client")
	ctx := context.WithoutCancel(context.Background())
	if _, err := s.Read(ctx, storagekeys.StoredSession("ab", "cd")); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("read from a hung storage: %v, want a storage error", err)
	}
	if _, err := s.DeleteUser(ctx, "alice"); err == nil {
		t.Fatal("deleting from a hung storage succeeded")
	}
}
