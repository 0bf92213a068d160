package spotifyauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"time"

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

// errNoSession: the request carries no usable session.
var errNoSession = errors.New("no session")

// userDir is where a user's stored sessions live. The client id keeps
// sites with different Spotify apps apart in a shared storage.
func (h *Handler) userDir(userID string) string {
	return storagekeys.UserSessions(h.ClientID, userID, refUserLen)
}

func (h *Handler) newRef(userID string) []byte {
	sum := sha256.Sum256([]byte(h.ClientID + "\x00" + userID))
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

// loadStored returns the session a reference points to. A storage
// failure is an error of its own: the session may well exist.
func (h *Handler) loadStored(ctx context.Context, ref []byte) (session, error) {
	if len(ref) != refLen {
		return session{}, errNoSession
	}
	key := storeKeyOf(ref)
	if s, ok := h.opened.loadStored(key, time.Now()); ok {
		return s, nil
	}
	began := h.opened.beginStoredRead()
	data, err := h.storage.Load(ctx, key)
	if errors.Is(err, fs.ErrNotExist) {
		return session{}, errNoSession
	}
	if err != nil {
		return session{}, &authError{Kind: kindStoreUnavailable, Message: "Sessions cannot be read right now", Err: err}
	}
	pt, err := h.sealers().stored.Open(string(data), []byte(key))
	if err != nil {
		return session{}, errNoSession
	}
	s, err := unmarshalSession(pt)
	if err != nil {
		return session{}, errNoSession
	}
	s.storeKey = key
	s.up = h.upstreamValues(&s)
	h.opened.putStored(key, s, began, time.Now())
	return s, nil
}

// storeSession writes s to storage, under a new reference if it has
// none, and returns the reference the cookie must then carry (nil if the
// cookie stays as it is). An update to a session that no longer exists
// (logged out meanwhile) fails with errNoSession rather than bring it back.
func (h *Handler) storeSession(ctx context.Context, s *session) ([]byte, error) {
	ctx = context.WithoutCancel(ctx) // a client hanging up must not lose a refresh
	var ref []byte
	key := s.storeKey
	if key == "" {
		ref = h.newRef(s.UserID)
		key = storeKeyOf(ref)
	} else if !h.storage.Exists(ctx, key) {
		return nil, errNoSession
	}
	sealed := h.sealers().stored.Seal(s.marshal(), []byte(key))
	err := h.storage.Store(ctx, key, []byte(sealed))
	h.forgetStored(key)
	if err != nil {
		return nil, &authError{Kind: kindStoreUnavailable, Message: "Sessions cannot be saved right now", Err: err}
	}
	if ref != nil {
		h.capStoredSessions(ctx, s.UserID, key)
	}
	s.storeKey = key
	return ref, nil
}

// deleteStored ends stored sessions: this one, or with everywhere all of
// the user's. It returns how many it ended.
func (h *Handler) deleteStored(ctx context.Context, s *session, everywhere bool) (int, error) {
	keys := []string{s.storeKey}
	if everywhere {
		var err error
		if keys, err = h.storage.List(ctx, h.userDir(s.UserID), false); errors.Is(err, fs.ErrNotExist) {
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
		err := h.storage.Delete(ctx, k)
		h.forgetStored(k)
		if err == nil {
			n++
		} else if !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return n, errors.Join(errs...)
}

// storedSessionExpired reports whether the stored session at key has
// ended. One it cannot open may belong to a site with other keys sharing
// the storage, so it is left to that site.
func (h *Handler) storedSessionExpired(ctx context.Context, key string, now time.Time) bool {
	data, err := h.storage.Load(ctx, key)
	if err != nil {
		return false
	}
	pt, err := h.sealers().stored.Open(string(data), []byte(key))
	if err != nil {
		return false
	}
	s, err := unmarshalSession(pt)
	return err == nil && s.Expires <= now.Unix()
}
