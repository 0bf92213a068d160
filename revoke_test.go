package spotifyauth

import (
	"context"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddyspotify/caddy-spotify-auth/internal/storagekeys"
)

// TestARevocationOutlivesABlockWithShorterSessions: two blocks of one app
// share keys and storage, one with 30-day sessions, one with 1-day ones.
// Whichever block writes a user's mark, the other's re-reads neither
// delete nor forget it before the 30-day sessions it voids have ended, so
// a revoked long session stays revoked, also after a reload.
func TestARevocationOutlivesABlockWithShorterSessions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const day = 24 * time.Hour
	for _, writer := range []string{"long", "short"} {
		t.Run("written by the "+writer+" block", func(t *testing.T) {
			hs := newHarness(t)
			lifetime := func(d time.Duration) func(*Handler) {
				return func(h *Handler) { h.SessionLifetime = caddy.Duration(d) }
			}
			long, _ := hs.sameConfig(lifetime(30 * day))
			short, _ := hs.sameConfig(lifetime(day))
			now := time.Now()
			revoked := session{UserID: "u1", Created: now.Add(-time.Hour).UnixNano()}

			w := long
			if writer == "short" {
				w = short
			}
			if err := w.sessions.revoke(ctx, "u1", now); err != nil {
				t.Fatal(err)
			}
			reread := func(h *Handler, at time.Time) {
				t.Helper()
				if err := h.revocations.Reread(ctx, at); err != nil {
					t.Fatal(err)
				}
			}
			reread(long, now.Add(time.Minute))
			reread(short, now.Add(time.Minute))

			// Two days on: past the short block's keep, well within the long one's.
			later := now.Add(2 * day)
			reread(short, later)
			if !short.revocations.Revoked(revoked.UserID, revoked.Created) {
				t.Error("the short block forgot the revocation of a session the long block issued")
			}
			reloaded, _ := hs.sameConfig(lifetime(30 * day))
			reread(reloaded, later)
			if !reloaded.revocations.Revoked(revoked.UserID, revoked.Created) {
				t.Fatal("after the short block's re-read, a reloaded long block no longer knows the revocation")
			}

			// Once every session it voids has ended, the mark goes.
			reread(reloaded, now.Add(31*day))
			if keys, _ := hs.h.storage.List(ctx, storagekeys.Revoked, false); len(keys) != 0 {
				t.Errorf("%d marks left after the longest session ended", len(keys))
			}
		})
	}
}

// TestBlocksWithOtherKeysKeepTheirOwnMarks: two blocks of one client_id
// on one storage seal with different keys (cookie_secret beside another
// secret, or a staging site's own). Each logout everywhere writes its
// own mark: one block's never replaces the other's, so a revocation
// survives a reload.
func TestBlocksWithOtherKeysKeepTheirOwnMarks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	hs := newHarness(t)
	other, _ := hs.sameConfig(func(h *Handler) { h.CookieSecrets = []string{secretB} })
	now := time.Now()
	revoked := session{UserID: "u1", Created: now.Add(-time.Hour).UnixNano()}
	if err := hs.h.sessions.revoke(ctx, "u1", now); err != nil {
		t.Fatal(err)
	}
	if err := other.sessions.revoke(ctx, "u1", now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	reloaded, _ := hs.sameConfig(nil)
	if err := reloaded.revocations.Reread(ctx, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if !reloaded.revocations.Revoked(revoked.UserID, revoked.Created) {
		t.Fatal("the other block's mark replaced this block's: the revocation is lost after a reload")
	}
}
