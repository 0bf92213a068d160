package records

import (
	"context"
	"errors"
	"io/fs"
	"testing"

	"github.com/caddyserver/certmagic"

	"github.com/caddyspotify/caddy-spotify-auth/internal/seal"
)

func TestARecordOpensOnlyAtItsKeyWithItsAppsKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := &certmagic.FileStorage{Path: t.TempDir()}
	mine, _ := seal.New([][]byte{[]byte("0123456789abcdef0123456789abcdef")}, "records")
	theirs, _ := seal.New([][]byte{[]byte("another app's secret, 32 bytes long")}, "records")
	type rec struct{ N int }
	if err := Store(ctx, st, mine, "a", rec{7}); err != nil {
		t.Fatal(err)
	}
	var got rec
	if err := Load(ctx, st, mine, "a", &got); err != nil || got.N != 7 {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	if err := Load(ctx, st, theirs, "a", &got); !errors.Is(err, seal.ErrUnsealable) {
		t.Fatalf("another app's keys: %v, want ErrUnsealable", err)
	}
	data, _ := st.Load(ctx, "a")
	if err := st.Store(ctx, "b", data); err != nil {
		t.Fatal(err)
	}
	if err := Load(ctx, st, mine, "b", &got); !errors.Is(err, seal.ErrUnsealable) {
		t.Fatalf("a record moved to another key: %v, want ErrUnsealable", err)
	}
	if err := Load(ctx, st, mine, "none", &got); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("no record: %v, want fs.ErrNotExist", err)
	}
}
