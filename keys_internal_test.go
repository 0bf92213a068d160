package spotifyauth

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// Two blocks use the generated keys of one storage: one with 30-day
// sessions and no rotation, one with 1-hour sessions rotating hourly. The
// short block's rotations must not drop the key the long block's
// sessions were sealed with.
func TestRotationKeepsKeysAnotherBlocksSessionsNeed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	log := zap.NewNop()
	now := time.Now()
	const long, short = 30 * 24 * time.Hour, time.Hour

	sk, err := loadOrCreateKeys(ctx, storage, 0, log)
	if err != nil {
		t.Fatal(err)
	}
	first := sk.Keys[0].Key
	// The long block starts: no rotation, but its keep is recorded.
	if _, err := rotateKeys(ctx, storage, sk, 0, long+stateLifetime, now, log); err != nil {
		t.Fatal(err)
	}
	for hour := 1; hour <= 6; hour++ {
		at := now.Add(time.Duration(hour) * time.Hour)
		if sk, err = loadKeys(ctx, storage); err != nil {
			t.Fatal(err)
		}
		if sk, err = rotateKeys(ctx, storage, sk, time.Hour, short+stateLifetime, at, log); err != nil {
			t.Fatal(err)
		}
	}
	if len(sk.Keys) < 6 || !bytes.Equal(sk.Keys[0].Key, first) {
		t.Fatalf("%d keys after hourly rotations, the first kept: %v; want every key, the first among them",
			len(sk.Keys), len(sk.Keys) > 0 && bytes.Equal(sk.Keys[0].Key, first))
	}
}
