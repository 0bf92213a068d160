package spotifyauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/caddyspotify/caddy-spotify-auth/internal/storagekeys"
)

// Server-side sessions (session_store storage): the cookie holds a sealed
// reference, the sealed session lives in Caddy's storage. Deleting it there
// ends the session on every instance at once.

// A reference is a format byte, a hash naming the user's directory (so
// logging out everywhere finds all of a user's sessions), and a random id.
const (
	refFormat  = 'S' // sessions start with a session format byte, never this
	refUserLen = 16
	refIDLen   = 32
	refLen     = 1 + refUserLen + refIDLen
)

// storedSessions reads and writes sealed sessions in storage, named by
// references. Both session stores hold one: the storage store keeps its
// sessions here, the cookie store opens references made under it.
type storedSessions struct {
	storage  certmagic.Storage
	clientID string
	keys     *atomic.Pointer[keyring]
	cache    *sessionCache
	// forget drops a key this instance wrote or deleted from every
	// cache of the app in this config (sessionstore.go).
	forget              func(key string)
	bearer, userHeaders bool // for the upstream values worked out once per read
	logger              *zap.Logger
}

// userDir is where a user's stored sessions live. The client id keeps
// sites with different Spotify apps apart in a shared storage.
func (st *storedSessions) userDir(userID string) string {
	return storagekeys.UserSessions(st.clientID, userID, refUserLen)
}

func (st *storedSessions) newRef(userID string) []byte {
	sum := sha256.Sum256([]byte(st.clientID + "\x00" + userID))
	ref := make([]byte, refLen)
	ref[0] = refFormat
	copy(ref[1:], sum[:refUserLen])
	_, _ = rand.Read(ref[1+refUserLen:]) // never fails on supported platforms
	return ref
}

// storeKeyOf names a reference's entry. The id is stored only hashed, so
// reading the storage does not yield references.
func storeKeyOf(ref []byte) string {
	idSum := sha256.Sum256(ref[1+refUserLen:])
	return storagekeys.StoredSession(hex.EncodeToString(ref[1:1+refUserLen]), hex.EncodeToString(idSum[:16]))
}

// load returns the session a reference points to. A storage failure is
// an error of its own: the session may well exist.
func (st *storedSessions) load(ctx context.Context, ref []byte) (session, error) {
	if len(ref) != refLen {
		return session{}, errNoSession
	}
	key := storeKeyOf(ref)
	if s, ok := st.cache.loadStored(key, time.Now()); ok {
		return s, nil
	}
	began := st.cache.beginStoredRead()
	s, err := st.read(ctx, key)
	if err != nil {
		return session{}, err
	}
	s.up = newUpstreamValues(&s, st.bearer, st.userHeaders)
	st.cache.putStored(key, s, began, time.Now())
	return s, nil
}

// read loads and opens the session at key, uncached.
func (st *storedSessions) read(ctx context.Context, key string) (session, error) {
	data, err := st.storage.Load(ctx, key)
	if errors.Is(err, fs.ErrNotExist) {
		return session{}, errNoSession
	}
	if err != nil {
		return session{}, &authError{Kind: kindStoreUnavailable, Message: "Sessions cannot be read right now", Err: err}
	}
	// A session that does not open may be another site's, sharing the
	// storage with other keys: to this one it does not exist.
	pt, err := st.keys.Load().stored.Open(string(data), []byte(key))
	if err != nil {
		return session{}, errNoSession
	}
	s, err := unmarshalSession(pt)
	if err != nil {
		return session{}, errNoSession
	}
	s.storeKey = key
	return s, nil
}

// write seals s into storage at key.
func (st *storedSessions) write(ctx context.Context, key string, s *session) error {
	sealed := st.keys.Load().stored.Seal(s.marshal(), []byte(key))
	err := st.storage.Store(ctx, key, []byte(sealed))
	st.forget(key)
	if err != nil {
		return &authError{Kind: kindStoreUnavailable, Message: "Sessions cannot be saved right now", Err: err}
	}
	s.storeKey = key
	return nil
}

// save writes s to storage, under a new reference if it has none, and
// returns the reference the cookie must then carry (nil if the cookie
// stays as it is). An update to a session that no longer exists (logged
// out meanwhile) fails with errNoSession rather than bring it back.
func (st *storedSessions) save(ctx context.Context, s *session) ([]byte, error) {
	ctx = context.WithoutCancel(ctx) // a client hanging up must not lose a refresh
	var ref []byte
	key := s.storeKey
	if key == "" {
		ref = st.newRef(s.UserID)
		key = storeKeyOf(ref)
	} else if !st.storage.Exists(ctx, key) {
		return nil, errNoSession
	}
	if err := st.write(ctx, key, s); err != nil {
		return nil, err
	}
	if ref != nil {
		st.capUser(ctx, s.UserID, key)
	}
	return ref, nil
}

// delete ends stored sessions: this one, or with everywhere all of the
// user's. It returns how many it ended.
func (st *storedSessions) delete(ctx context.Context, s *session, everywhere bool) (int, error) {
	keys := []string{s.storeKey}
	if everywhere {
		var err error
		if keys, err = st.storage.List(ctx, st.userDir(s.UserID), false); errors.Is(err, fs.ErrNotExist) {
			return 0, nil
		} else if err != nil {
			return 0, err
		}
	} else if s.storeKey == "" {
		return 0, nil
	}
	n := 0
	var errs []error
	for _, k := range keys {
		err := st.storage.Delete(ctx, k)
		st.forget(k)
		if err == nil {
			n++
		} else if !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return n, errors.Join(errs...)
}

// expired reports whether the stored session at key has ended. One it
// cannot open may belong to a site with other keys sharing the storage,
// so it is left to that site.
func (st *storedSessions) expired(ctx context.Context, key string, now time.Time) bool {
	s, err := st.read(ctx, key)
	return err == nil && s.Expires <= now.Unix()
}
