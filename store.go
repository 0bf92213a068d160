package spotifyauth

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/caddyspotify/caddy-spotify-auth/internal/storedsession"
)

// Server-side sessions (session_store storage): the cookie holds a sealed
// reference, the sealed session lives in storage (internal/storedsession).
// storedSessions adds what the plugin keeps around it: the codec, the
// cache of opened sessions, and the answers to storage failures.

// storedSessions is held by both session stores: the storage store keeps
// its sessions here, the cookie store opens references made under it.
type storedSessions struct {
	store               *storedsession.Store
	cache               *sessionCache
	bearer, userHeaders bool // for the upstream values worked out once per read
	logger              *zap.Logger
}

// loadKey returns the session at key (storedsession.KeyOf of the
// cookie's reference). A storage failure is an error of its own: the
// session may well exist.
func (st *storedSessions) loadKey(ctx context.Context, key string) (session, error) {
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

// read loads and decodes the session at key, uncached.
func (st *storedSessions) read(ctx context.Context, key string) (session, error) {
	plain, err := st.store.Read(ctx, key)
	if errors.Is(err, storedsession.ErrNotFound) {
		return session{}, errNoSession
	}
	if err != nil {
		return session{}, &authError{Kind: kindStoreUnavailable, Message: "Sessions cannot be read right now", Err: err}
	}
	s, err := unmarshalSession(plain)
	if err != nil {
		return session{}, errNoSession
	}
	s.storeKey = key
	return s, nil
}

// write stores s at key.
func (st *storedSessions) write(ctx context.Context, key string, s *session) error {
	if err := st.store.Write(ctx, key, s.marshal()); err != nil {
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
		ref = st.store.NewRef(s.UserID)
		key = storedsession.KeyOf(ref)
	} else if !st.store.Exists(ctx, key) {
		return nil, errNoSession
	}
	if err := st.write(ctx, key, s); err != nil {
		return nil, err
	}
	if ref != nil {
		st.store.Cap(ctx, s.UserID, key)
	}
	return ref, nil
}

// delete ends stored sessions: this one, or with everywhere all of the
// user's. It returns how many it ended.
func (st *storedSessions) delete(ctx context.Context, s session, everywhere bool) (int, error) {
	switch {
	case everywhere:
		return st.store.DeleteUser(ctx, s.UserID)
	case s.storeKey == "":
		return 0, nil
	}
	return st.store.Delete(ctx, s.storeKey)
}

// expired reports whether the stored session at key has ended. One it
// cannot open may belong to a site with other keys sharing the storage,
// so it is left to that site.
func (st *storedSessions) expired(ctx context.Context, key string, now time.Time) bool {
	s, err := st.read(ctx, key)
	return err == nil && s.Expires <= now.Unix()
}

// sessionCreated reads an encoded session's creation time, for the cap
// on a user's stored sessions.
func sessionCreated(plain []byte) (int64, bool) {
	s, err := unmarshalSession(plain)
	return s.Created, err == nil
}
