package spotifyauth

import (
	"context"
	"net/http"

	"go.uber.org/zap"

	"github.com/caddyspotify/caddy-spotify-auth/internal/storagekeys"
	"github.com/caddyspotify/caddy-spotify-auth/internal/storedsession"
)

// Moving cookie-mode sessions into storage (session_store storage).
//
// A cookie-mode session (from before the switch, or from a cookie-mode
// site of the same app) is moved on its first request. A client that
// ignores the new cookie sends the old one again, so the move must be
// idempotent: the same cookie session always maps to the same stored
// session (storedsession.MigrationRef, a hash of the session itself).
// And every user's stored sessions are capped (storedsession.MaxPerUser),
// the oldest going first, so no client can fill the storage with one
// user's sessions.

// adopt moves a cookie-mode session to storage, or finds it already
// moved, and points the browser's cookie at the stored one. It returns
// the stored session, which may have been refreshed since.
func (ss *storageStore) adopt(w http.ResponseWriter, r *http.Request, s session) (session, error) {
	if s.storeKey != "" {
		return s, nil // stored already
	}
	err := ss.migrate(w, r, &s)
	return s, err
}

func (ss *storageStore) migrate(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := context.WithoutCancel(r.Context())
	st := ss.stored
	ref := st.store.MigrationRef(s.UserID, s.marshal())
	key := storedsession.KeyOf(ref)
	store := func() error {
		stored, err := st.loadKey(ctx, key)
		if err == nil {
			*s = stored
			return nil
		}
		if err != errNoSession {
			return err
		}
		if err := st.write(ctx, key, s); err != nil {
			return err
		}
		st.store.Cap(ctx, s.UserID, key)
		return nil
	}
	// A replayed cookie session moved before (its client ignores our
	// Set-Cookie) is found without the lock, from the cache: a lock on
	// every such request would cost the storage dearly.
	if stored, err := st.loadKey(ctx, key); err == nil {
		*s = stored
		ss.writeCookie(w, r, ref, s.Expires)
		return nil
	}
	// The lock keeps a replay that raced past the check from writing the
	// cookie session over the stored one after a refresh updated it.
	lock := storagekeys.MigrateLock(key)
	err := withStorageLock(ctx, st.store.Storage(), lock, st.logger, store)
	if err != nil && kindOf(err) == 0 {
		// Only taking the lock failed: a storage without locks.
		st.logger.Debug("moving a session to storage without a lock", zap.Error(err))
		err = store()
	}
	if err != nil {
		return err
	}
	ss.writeCookie(w, r, ref, s.Expires)
	return nil
}
