package spotifyauth

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// TestAdminRevokeReachesOtherInstancesAtTheirReread: the admin revoke
// ends a user's sessions at once on the instance that received it, and on
// another instance sharing the storage at its next re-read of the marks
// (every revocation.RereadInterval), which is the bound docs/admin-api.md states.
func TestAdminRevokeReachesOtherInstancesAtTheirReread(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	hs := newHarness(t, withStoredSessions())
	other, _ := hs.addInstance()
	hs.login(hs.browser, "/")
	thief := newBrowser(t)
	setCookieIn(t, hs, thief, "spotify_auth", cookieIn(t, hs, hs.browser, "spotify_auth"))
	// A cookie-mode session of the same user, which storage does not hold.
	cookieMode, _ := hs.sameConfig(func(h *Handler) { h.SessionStore = "" })
	hs.instances = append(hs.instances, cookieMode)
	laptop := newBrowser(t)
	hs.login(laptop, "/", onInstance(2)...)
	for _, c := range []*http.Client{hs.browser, thief} {
		if resp, _ := hs.get(c, "/app/", onInstance(1)...); resp.StatusCode != http.StatusOK {
			t.Fatalf("before the revoke: %d", resp.StatusCode)
		}
	}

	res, err := revokeUser(ctx, []*Handler{hs.h}, spotifytest.DefaultUserID, time.Now())
	if err != nil || len(res.Apps) != 1 || res.Apps[0].StoredSessionsDeleted != 1 {
		t.Fatalf("revoke: %+v, %v; want one app, one stored session deleted", res, err)
	}
	if resp, _ := hs.get(laptop, "/app/"); resp.StatusCode != http.StatusFound {
		t.Errorf("a cookie-mode session on the revoking instance: %d, want 302 at once", resp.StatusCode)
	}
	if resp, _ := hs.get(thief, "/app/"); resp.StatusCode != http.StatusFound {
		t.Errorf("a stored session on the revoking instance: %d, want 302 at once", resp.StatusCode)
	}
	if err := other.revocations.Reread(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if resp, _ := hs.get(laptop, "/app/", onInstance(1)...); resp.StatusCode != http.StatusFound {
		t.Errorf("a cookie-mode session on the other instance after its re-read: %d, want 302", resp.StatusCode)
	}
	storageHoldsNone(t, hs.h.storage, spotifytest.DefaultUserID)
	hs.login(laptop, "/")
	if resp, _ := hs.get(laptop, "/app/", onInstance(1)...); resp.StatusCode != http.StatusOK {
		t.Errorf("a new login after the revoke: %d, want 200", resp.StatusCode)
	}
}

// failingStore refuses every write once told to.
type failingStore struct {
	certmagic.Storage
	failWrites atomic.Bool
}

func (s *failingStore) Store(ctx context.Context, key string, value []byte) error {
	if s.failWrites.Load() {
		return errors.New("disk full")
	}
	return s.Storage.Store(ctx, key, value)
}

// TestAdminRevokeFailsClosed: a revocation storage cannot record is an
// error, never a success.
func TestAdminRevokeFailsClosed(t *testing.T) {
	t.Parallel()
	store := &failingStore{Storage: &certmagic.FileStorage{Path: t.TempDir()}}
	hs := newHarness(t, withStorage(store))
	hs.login(hs.browser, "/")
	store.failWrites.Store(true)
	if _, err := revokeUser(context.Background(), []*Handler{hs.h}, spotifytest.DefaultUserID, time.Now()); err == nil {
		t.Fatal("revoke with a storage that cannot write succeeded")
	}
}
