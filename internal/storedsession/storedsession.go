// Package storedsession keeps sealed sessions in a certmagic.Storage for
// session_store storage. A browser's cookie holds a reference; the
// session, sealed and bound to its storage key, lives under the key the
// reference names. Deleting it there ends the session on every instance
// at once. The package deals in encoded sessions (bytes): the codec, the
// cache of opened sessions and the answers stay with the plugin.
package storedsession

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"slices"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/caddyspotify/caddy-spotify-auth/internal/records"
	"github.com/caddyspotify/caddy-spotify-auth/internal/seal"
	"github.com/caddyspotify/caddy-spotify-auth/internal/storagekeys"
)

// A reference is a format byte, a hash naming the user's directory (so
// logging out everywhere finds all of a user's sessions), and a random id.
const (
	RefFormat  = 'S' // encoded sessions start with a format byte, never this
	refUserLen = 16
	refIDLen   = 32
	RefLen     = 1 + refUserLen + refIDLen

	// MaxPerUser bounds one user's stored sessions (browsers and devices
	// logged in at once), the oldest going first, so no client can fill
	// the storage with one user's sessions.
	MaxPerUser = 16

	migrationPurpose = "caddy-spotify-auth migrated session v1\x00"
)

// ErrNotFound: no session of this store's keys at the key (none, gone,
// or another site's sharing the storage).
var ErrNotFound = errors.New("no stored session")

// Config is what a Store is built from.
type Config struct {
	Storage certmagic.Storage
	// ClientID keeps sites with different Spotify apps apart in a shared
	// storage.
	ClientID string
	// Sealer is the current sealer of stored sessions (keys may be
	// re-read).
	Sealer func() *seal.Sealer
	// Created reads an encoded session's creation time, for the cap.
	Created func(plain []byte) (int64, bool)
	// Changed is told of every key this store writes or deletes (caches
	// must forget it).
	Changed func(key string)
	Logger  *zap.Logger
}

// Store reads and writes sealed sessions. It holds no state of its own
// beyond its configuration: every instance sees the same storage.
type Store struct{ cfg Config }

// New returns a store.
func New(cfg Config) *Store { return &Store{cfg: cfg} }

// KeysID names the keys this store seals with, and so the sessions it
// can open (and sweep): each app sharing the storage has its own.
func (s *Store) KeysID() string {
	id := s.cfg.Sealer().SealingKey()
	return storagekeys.Hash(16, string(id[:]))
}

// Storage is where the sessions live (for locks around a move).
func (s *Store) Storage() certmagic.Storage { return s.cfg.Storage }

// NewRef returns a new, random reference for a session of userID.
func (s *Store) NewRef(userID string) []byte {
	ref := s.userRef(userID)
	_, _ = rand.Read(ref[1+refUserLen:]) // never fails on supported platforms
	return ref
}

// MigrationRef is the reference a cookie-mode session (plain, its
// encoding) is stored under. The session holds its tokens, so the hash
// cannot be guessed, and the encoding is canonical, so one cookie always
// gives one reference: a client that replays the old cookie finds its
// session already moved.
func (s *Store) MigrationRef(userID string, plain []byte) []byte {
	ref := s.userRef(userID)
	id := sha256.Sum256(append([]byte(migrationPurpose), plain...))
	copy(ref[1+refUserLen:], id[:])
	return ref
}

func (s *Store) userRef(userID string) []byte {
	sum := sha256.Sum256([]byte(s.cfg.ClientID + "\x00" + userID))
	ref := make([]byte, RefLen)
	ref[0] = RefFormat
	copy(ref[1:], sum[:refUserLen])
	return ref
}

// KeyOf names a reference's entry ("" if ref is not a reference). The id
// is stored only hashed, so reading the storage does not yield
// references.
func KeyOf(ref []byte) string {
	if len(ref) != RefLen || ref[0] != RefFormat {
		return ""
	}
	idSum := sha256.Sum256(ref[1+refUserLen:])
	return storagekeys.StoredSession(hex.EncodeToString(ref[1:1+refUserLen]), hex.EncodeToString(idSum[:16]))
}

// list names userID's stored sessions (of every site of the client).
func (s *Store) list(ctx context.Context, userID string) ([]string, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	return s.cfg.Storage.List(ctx, s.userDir(userID), false)
}

func (s *Store) userDir(userID string) string {
	return storagekeys.UserSessions(s.cfg.ClientID, userID, refUserLen)
}

// Read returns the encoded session at key: ErrNotFound if there is none
// this store can open, another error if the storage failed (the session
// may well exist).
func (s *Store) Read(ctx context.Context, key string) ([]byte, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	data, err := s.cfg.Storage.Load(ctx, key)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	plain, err := s.cfg.Sealer().Open(string(data), []byte(key))
	if err != nil {
		return nil, ErrNotFound
	}
	return plain, nil
}

// Exists reports whether key holds anything.
func (s *Store) Exists(ctx context.Context, key string) bool {
	ctx, cancel := bounded(ctx)
	defer cancel()
	return s.cfg.Storage.Exists(ctx, key)
}

// bounded bounds one storage call as records does: a hung storage must
// not hold a request (callers may have cut the request's cancellation).
func bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, records.Timeout)
}

// Write seals plain into storage at key.
func (s *Store) Write(ctx context.Context, key string, plain []byte) error {
	ctx, cancel := bounded(ctx)
	defer cancel()
	err := s.cfg.Storage.Store(ctx, key, []byte(s.cfg.Sealer().Seal(plain, []byte(key))))
	s.cfg.Changed(key)
	return err
}

// Delete ends the sessions at keys and returns how many it ended.
func (s *Store) Delete(ctx context.Context, keys ...string) (int, error) {
	n := 0
	var errs []error
	for _, k := range keys {
		callCtx, cancel := bounded(ctx)
		err := s.cfg.Storage.Delete(callCtx, k)
		cancel()
		s.cfg.Changed(k)
		if err == nil {
			n++
		} else if !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return n, errors.Join(errs...)
}

// DeleteUser ends all of userID's sessions and returns how many it ended.
func (s *Store) DeleteUser(ctx context.Context, userID string) (int, error) {
	keys, err := s.list(ctx, userID)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	// Only what this site's keys open: the folder is named by client id
	// alone, and another site of the same client (other keys, another
	// Spotify) keeps its own sessions there, as Cap leaves them be.
	var ours []string
	for _, k := range keys {
		if _, err := s.Read(ctx, k); err == nil {
			ours = append(ours, k)
		} else if !errors.Is(err, ErrNotFound) {
			return 0, err
		}
	}
	return s.Delete(ctx, ours...)
}

// Cap deletes userID's oldest sessions beyond MaxPerUser, never keep
// (the one just stored). Failures only leave extra sessions, which
// expire on their own.
func (s *Store) Cap(ctx context.Context, userID, keep string) {
	keys, err := s.list(ctx, userID)
	if err != nil || len(keys) <= MaxPerUser {
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
		plain, err := s.Read(ctx, k)
		if err != nil {
			continue // gone, or not a session of this site's keys: not ours to delete
		}
		if created, ok := s.cfg.Created(plain); ok {
			live = append(live, aged{k, created})
		}
	}
	slices.SortFunc(live, func(a, b aged) int { return cmp.Compare(a.created, b.created) })
	var oldest []string
	for i := 0; i < len(live)-(MaxPerUser-1); i++ {
		oldest = append(oldest, live[i].key)
	}
	// Through Delete, so the caches hear of it at once.
	if _, err := s.Delete(ctx, oldest...); err != nil {
		s.cfg.Logger.Warn("deleting a user's oldest stored sessions", zap.String("user_id", userID), zap.Error(err))
	}
}
