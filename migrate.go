package spotifyauth

import (
	"context"
	"crypto/sha256"
	"errors"
	"io/fs"
	"net/http"
	"slices"

	"go.uber.org/zap"

	"github.com/caddyspotify/caddy-spotify-auth/internal/storagekeys"
)

// Moving cookie-mode sessions into storage (session_store storage).
//
// A cookie-mode session (from before the switch, or from a cookie-mode
// site of the same app) is moved on its first request. A client that
// ignores the new cookie sends the old one again, so the move must be
// idempotent: the same cookie session always maps to the same stored
// session, named by a hash of the session itself. And every user's
// stored sessions are capped, the oldest going first, so no client can
// fill the storage with one user's sessions.

// maxStoredSessionsPerUser bounds one user's stored sessions (browsers
// and devices logged in at once).
const maxStoredSessionsPerUser = 16

const migrationPurpose = "caddy-spotify-auth migrated session v1\x00"

// migrationRef is the reference a cookie-mode session is stored under.
// The session holds its tokens, so the hash cannot be guessed, and the
// encoding is canonical, so one cookie always gives one reference.
func (st *storedSessions) migrationRef(s *session) []byte {
	ref := st.newRef(s.UserID)
	id := sha256.Sum256(append([]byte(migrationPurpose), s.marshal()...))
	copy(ref[1+refUserLen:], id[:])
	return ref
}

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
	ref := st.migrationRef(s)
	key := storeKeyOf(ref)
	store := func() error {
		stored, err := st.load(ctx, ref)
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
		st.capUser(ctx, s.UserID, key)
		return nil
	}
	// The lock keeps a replay that raced past the check from writing the
	// cookie session over the stored one after a refresh updated it.
	lock := storagekeys.MigrateLock(key)
	err := withStorageLock(ctx, st.storage, lock, st.logger, store)
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

// capUser deletes a user's oldest stored sessions beyond
// maxStoredSessionsPerUser, never keep (the one just stored). Failures
// only leave extra sessions, which expire on their own.
func (st *storedSessions) capUser(ctx context.Context, userID, keep string) {
	keys, err := st.storage.List(ctx, st.userDir(userID), false)
	if err != nil || len(keys) <= maxStoredSessionsPerUser {
		return
	}
	type aged struct {
		key     string
		created int64
	}
	var live []aged
	for _, k := range keys {
		if k == keep {
			continue
		}
		s, err := st.read(ctx, k)
		if err != nil {
			continue // gone, or not a session of this site's keys: not ours to delete
		}
		live = append(live, aged{k, s.Created})
	}
	slices.SortFunc(live, func(a, b aged) int { return int(a.created - b.created) })
	for i := 0; i < len(live)-(maxStoredSessionsPerUser-1); i++ {
		if err := st.storage.Delete(ctx, live[i].key); err != nil && !errors.Is(err, fs.ErrNotExist) {
			st.logger.Warn("deleting a user's oldest stored session", zap.String("user_id", userID), zap.Error(err))
		}
	}
}
