package revocation

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/caddyspotify/caddy-spotify-auth/internal/seal"
	"github.com/caddyspotify/caddy-spotify-auth/internal/storagekeys"
)

const keep = 24*time.Hour + Margin

func newSealer(t *testing.T, secret string) *seal.Sealer {
	t.Helper()
	s, err := seal.New([][]byte{[]byte(secret)}, "marks")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newMarks builds marks over storage as the plugin does, with its
// records (internal/records).
func newMarks(t *testing.T, storage certmagic.Storage, secret string) *Marks {
	t.Helper()
	sealer := newSealer(t, secret)
	return New(Config{
		Storage: storage,
		Sealer:  func() *seal.Sealer { return sealer },
		App:     "app",
		Keep:    keep,
		Logger:  zap.NewNop(),
	})
}

func newStorage(t *testing.T) certmagic.Storage { return &certmagic.FileStorage{Path: t.TempDir()} }

const secretA, secretB = "k3Zq8vN1pX7rT2mW9yB4cD6fG0hJ5sLa", "Q9wE2rT7yU4iO1pA6sD3fG8hJ5kL0zXc"

func marksIn(t *testing.T, storage certmagic.Storage) int {
	t.Helper()
	keys, _ := storage.List(context.Background(), storagekeys.Revoked, false)
	return len(keys)
}

func TestARevocationVoidsOnlyTheUsersEarlierSessions(t *testing.T) {
	t.Parallel()
	m := newMarks(t, newStorage(t), secretA)
	now := time.Now()
	if m.Revoked("u1", now.UnixNano()-1) {
		t.Fatal("revoked before any mark")
	}
	if err := m.Revoke(context.Background(), "u1", now); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		user    string
		created time.Time
		want    bool
	}{
		{"u1", now.Add(-time.Second), true},
		{"u1", now.Add(time.Second), false},
		{"u2", now.Add(-time.Second), false},
	} {
		if got := m.Revoked(c.user, c.created.UnixNano()); got != c.want {
			t.Errorf("%s created %v: revoked %v, want %v", c.user, c.created.Sub(now), got, c.want)
		}
	}
}

func TestAnotherInstanceLearnsAMarkWhenItRereads(t *testing.T) {
	t.Parallel()
	storage := newStorage(t)
	a, b := newMarks(t, storage, secretA), newMarks(t, storage, secretA)
	now := time.Now()
	created := now.Add(-time.Hour).UnixNano()
	if err := a.Revoke(context.Background(), "u1", now); err != nil {
		t.Fatal(err)
	}
	if b.Revoked("u1", created) {
		t.Fatal("revoked before the re-read: the test proves nothing")
	}
	if err := b.Reread(context.Background(), now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if !b.Revoked("u1", created) {
		t.Fatal("the re-read missed the mark")
	}
}

func TestSiblingsLearnARevocationAtOnce(t *testing.T) {
	t.Parallel()
	storage := newStorage(t)
	sibling := newMarks(t, storage, secretA)
	m := newMarks(t, storage, secretA)
	m.cfg.Siblings = func() []*Marks { return []*Marks{sibling} }
	now := time.Now()
	if err := m.Revoke(context.Background(), "u1", now); err != nil {
		t.Fatal(err)
	}
	if !sibling.Revoked("u1", now.Add(-time.Second).UnixNano()) {
		t.Fatal("the sibling waits for its re-read")
	}
}

func TestAMarkDatedInTheFutureCountsAsNow(t *testing.T) {
	t.Parallel()
	storage := newStorage(t)
	skewed, reader := newMarks(t, storage, secretA), newMarks(t, storage, secretA)
	now := time.Now()
	if err := skewed.Revoke(context.Background(), "u1", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := reader.Reread(context.Background(), now); err != nil {
		t.Fatal(err)
	}
	if reader.Revoked("u1", now.Add(time.Minute).UnixNano()) {
		t.Fatal("a login after the re-read is void: a future mark locks the user out")
	}
	if !reader.Revoked("u1", now.Add(-time.Minute).UnixNano()) {
		t.Fatal("the mark was dropped instead of counted as now")
	}
}

func TestAMarkGoesOnceEverySessionItVoidedHasEnded(t *testing.T) {
	t.Parallel()
	storage := newStorage(t)
	m := newMarks(t, storage, secretA)
	now := time.Now()
	if err := m.Revoke(context.Background(), "u1", now); err != nil {
		t.Fatal(err)
	}
	if err := m.Reread(context.Background(), now.Add(keep-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if n := marksIn(t, storage); n != 1 {
		t.Fatalf("%d marks while sessions it voids may live", n)
	}
	if err := m.Reread(context.Background(), now.Add(keep+time.Minute)); err != nil {
		t.Fatal(err)
	}
	if n := marksIn(t, storage); n != 0 {
		t.Fatalf("%d marks after every session they void has ended", n)
	}
}

func TestAMarkThisInstanceWroteOutlivesItsLossFromStorage(t *testing.T) {
	t.Parallel()
	storage := newStorage(t)
	m := newMarks(t, storage, secretA)
	now := time.Now()
	if err := m.Revoke(context.Background(), "u1", now); err != nil {
		t.Fatal(err)
	}
	keys, _ := storage.List(context.Background(), storagekeys.Revoked, false)
	for _, k := range keys {
		_ = storage.Delete(context.Background(), k)
	}
	if err := m.Reread(context.Background(), now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if !m.Revoked("u1", now.Add(-time.Second).UnixNano()) {
		t.Fatal("storage lost the mark and this instance forgot it")
	}
}

func TestMarksOfOtherKeysAreLeftAlone(t *testing.T) {
	t.Parallel()
	storage := newStorage(t)
	a, b := newMarks(t, storage, secretA), newMarks(t, storage, secretB)
	now := time.Now()
	if err := a.Revoke(context.Background(), "u1", now); err != nil {
		t.Fatal(err)
	}
	// Long after: b would delete a mark of its own by now.
	if err := b.Reread(context.Background(), now.Add(2*keep)); err != nil {
		t.Fatal(err)
	}
	if b.Revoked("u1", now.Add(-time.Second).UnixNano()) {
		t.Fatal("a mark sealed with other keys counted")
	}
	if n := marksIn(t, storage); n != 1 {
		t.Fatal("another block's mark was deleted")
	}
}

func TestTheZeroValueRevokesNothing(t *testing.T) {
	t.Parallel()
	var m Marks
	if m.Revoked("u1", 0) {
		t.Fatal("revoked")
	}
}

func TestAMarkLastsForTheLongestSessionsOfTheBlocksThatReadIt(t *testing.T) {
	t.Parallel()
	storage := newStorage(t)
	short, long := newMarks(t, storage, secretA), newMarks(t, storage, secretA)
	short.cfg.Keep = time.Hour + Margin
	now := time.Now()
	if err := short.Revoke(context.Background(), "u1", now); err != nil {
		t.Fatal(err)
	}
	if err := long.Reread(context.Background(), now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	// Past the short block's keep, well within the long block's.
	if err := short.Reread(context.Background(), now.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n := marksIn(t, storage); n != 1 {
		t.Fatal("the short block deleted a mark the long block's sessions still need")
	}
}

// An older copy of a mark put back in storage (a replay by whoever can
// write there) does not bring back the sessions the newer one voided.
func TestAReplayedOlderMarkBringsNothingBack(t *testing.T) {
	t.Parallel()
	storage := newStorage(t)
	a, b := newMarks(t, storage, secretA), newMarks(t, storage, secretA)
	t0 := time.Now().Add(-2 * time.Hour)
	if err := a.Revoke(context.Background(), "u1", t0); err != nil {
		t.Fatal(err)
	}
	keys, err := storage.List(context.Background(), storagekeys.Revoked, true)
	if err != nil || len(keys) == 0 {
		t.Fatalf("no mark in storage: %v", err)
	}
	var key string
	for _, k := range keys {
		if info, err := storage.Stat(context.Background(), k); err == nil && info.IsTerminal {
			key = k
		}
	}
	older, err := storage.Load(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	if err := a.Revoke(context.Background(), "u1", t1); err != nil {
		t.Fatal(err)
	}
	if err := b.Reread(context.Background(), t1); err != nil {
		t.Fatal(err)
	}
	between := t1.Add(-time.Hour).UnixNano() // voided by the newer mark only
	if !b.Revoked("u1", between) {
		t.Fatal("the newer mark was not learnt: the test proves nothing")
	}
	time.Sleep(10 * time.Millisecond) // a new modification time for the replay
	if err := storage.Store(context.Background(), key, older); err != nil {
		t.Fatal(err)
	}
	if err := b.Reread(context.Background(), t1.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if !b.Revoked("u1", between) {
		t.Fatal("a replayed older mark brought a revoked session back")
	}
}

// countingLoads counts storage loads and can fail them.
type countingLoads struct {
	certmagic.Storage
	loads atomic.Int32
	fail  atomic.Bool
}

func (c *countingLoads) Load(ctx context.Context, key string) ([]byte, error) {
	c.loads.Add(1)
	if c.fail.Load() {
		return nil, errors.New("storage down")
	}
	return c.Storage.Load(ctx, key)
}

// A mark this handler's keys do not open (another app's, or anything a
// site sharing the storage writes there) is loaded once, not on every
// re-read; it is loaded again when it changes or this handler's keys do.
// A storage failure is not taken for such a mark.
func TestAMarkThatDoesNotOpenIsNotLoadedAgainUntilSomethingChanges(t *testing.T) {
	t.Parallel()
	storage := &countingLoads{Storage: newStorage(t)}
	if err := newMarks(t, storage, secretB).Revoke(context.Background(), "u1", time.Now()); err != nil {
		t.Fatal(err)
	}
	sealer := newSealer(t, secretA)
	m := New(Config{Storage: storage, Sealer: func() *seal.Sealer { return sealer }, App: "app", Keep: keep, Logger: zap.NewNop()})
	reread := func() int32 {
		t.Helper()
		before := storage.loads.Load()
		if err := m.Reread(context.Background(), time.Now()); err != nil {
			t.Fatal(err)
		}
		return storage.loads.Load() - before
	}
	storage.fail.Store(true)
	if n := reread(); n != 1 {
		t.Fatalf("%d loads with the storage down, want 1", n)
	}
	storage.fail.Store(false)
	if n := reread(); n != 1 {
		t.Fatalf("%d loads after a failed one, want 1 (a failure is tried again)", n)
	}
	if n := reread(); n != 0 {
		t.Fatalf("%d loads of an unchanged mark that does not open, want 0", n)
	}
	sealer = newSealer(t, secretB) // the keys changed: it may open now
	if n := reread(); n != 1 || !m.Revoked("u1", time.Now().Add(-time.Minute).UnixNano()) {
		t.Fatalf("%d loads after a key change; revoked: %v", n, m.Revoked("u1", time.Now().Add(-time.Minute).UnixNano()))
	}
}
