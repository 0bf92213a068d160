package spotifyauth

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/caddyspotify/caddy-spotify-auth/internal/seal"
	"github.com/caddyspotify/caddy-spotify-auth/internal/storagekeys"
	"go.uber.org/zap"
)

// keyActivationDelay is how long a new generated key only opens before it
// also seals: longer than maintenanceInterval (how often instances re-read
// keys), so every instance knows the key before any cookie sealed with it
// arrives.
const keyActivationDelay = 2*time.Minute + 30*time.Second

// minKeyRotation keeps rotation far above the reload cadence.
const minKeyRotation = time.Hour

type storedKeys struct {
	Keys []storedKey `json:"keys"` // oldest first
	// Keep is how long a replaced key must keep opening: the longest
	// session_lifetime of the blocks using these keys, so a block with
	// short sessions and key_rotation never drops a key that another
	// block's longer sessions were sealed with.
	Keep time.Duration `json:"keep,omitempty"`
}

type storedKey struct {
	Key     []byte    `json:"key"` // base64 in JSON
	Created time.Time `json:"created"`
}

// keyring holds the sealers derived from the current keys, one per
// purpose. It is replaced whole when the keys change.
type keyring struct {
	sessions *seal.Sealer // session cookies
	states   *seal.Sealer // login state cookies
	results  *seal.Sealer // refresh results published in storage
	stored   *seal.Sealer // server-side sessions in storage
	marks    *seal.Sealer // revocation marks in storage
	secrets  [][]byte
}

// appBinding names the Spotify app a handler logs users into. Every key
// is derived for one app, so whatever is sealed for one (sessions, login
// states, stored sessions, published refreshes) is nothing to another
// that shares the secret or the generated key: a staging site's cookie,
// made against a fake Spotify or another client, never opens production.
func appBinding(clientID, authorizeURL, tokenURL, apiURL string) string {
	return strings.Join([]string{clientID, authorizeURL, tokenURL, apiURL}, "\x00")
}

// newKeyring derives the sealers for one Spotify app (see appBinding).
func newKeyring(secrets [][]byte, app string) (*keyring, error) {
	k := &keyring{secrets: secrets}
	for _, s := range []struct {
		dst     **seal.Sealer
		purpose string
	}{
		{&k.sessions, purposeSession},
		{&k.states, purposeState},
		{&k.results, purposeRefreshResult},
		{&k.stored, purposeStoredSession},
		{&k.marks, purposeRevocation},
	} {
		var err error
		if *s.dst, err = seal.New(secrets, s.purpose+"\x00"+app); err != nil {
			return nil, err
		}
	}
	return k, nil
}

func (k *keyring) sameSecrets(secrets [][]byte) bool {
	return slices.EqualFunc(k.secrets, secrets, bytes.Equal)
}

// sealingOrder lists the keys for a sealer: the newest key that every
// instance has had time to load first (it seals), then all others (they
// only open). Until any key is old enough, the oldest seals.
func (sk storedKeys) sealingOrder(now time.Time) [][]byte {
	active := 0
	for i, k := range sk.Keys {
		if !k.Created.After(now.Add(-keyActivationDelay)) {
			active = i
		}
	}
	order := [][]byte{sk.Keys[active].Key}
	for i := len(sk.Keys) - 1; i >= 0; i-- {
		if i != active {
			order = append(order, sk.Keys[i].Key)
		}
	}
	return order
}

// loadOrCreateKeys returns the keys kept in storage, creating the first
// under the storage's lock if there is none, so that instances starting
// together agree on a single key.
func loadOrCreateKeys(ctx context.Context, storage certmagic.Storage, keep time.Duration, logger *zap.Logger) (storedKeys, error) {
	if sk, err := loadKeys(ctx, storage); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return sk, err
	}
	var sk storedKeys
	err := withStorageLock(ctx, storage, storagekeys.SessionKeys, logger, func() error {
		// Another instance may have created it while we waited.
		var err error
		if sk, err = loadKeys(ctx, storage); !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		sk = storedKeys{Keys: []storedKey{newStoredKey(time.Now())}, Keep: keep}
		if err := storeKeys(ctx, storage, sk); err != nil {
			return err
		}
		logger.Info("generated a session key and stored it; set cookie_secret to manage keys yourself",
			zap.String("storage_key", storagekeys.SessionKeys))
		return nil
	})
	return sk, err
}

// rotateKeys adds a new key when the newest is older than rotation, and
// drops keys nothing still valid can have been sealed with: those
// replaced longer than the longest keep of any block ago. A block whose
// keep is longer than the file says records its own. It changes storage
// only under the lock.
func rotateKeys(ctx context.Context, storage certmagic.Storage, sk storedKeys, rotation, keep time.Duration, now time.Time, logger *zap.Logger) (storedKeys, error) {
	if !rotationDue(sk, rotation, now) && sk.Keep >= keep {
		return sk, nil
	}
	err := withStorageLock(ctx, storage, storagekeys.SessionKeys, logger, func() error {
		var err error
		if sk, err = loadKeys(ctx, storage); err != nil {
			return err
		}
		rotate := rotationDue(sk, rotation, now)
		if !rotate && sk.Keep >= keep {
			return nil // another instance did it while we waited
		}
		sk.Keep = max(sk.Keep, keep)
		if rotate {
			sk.Keys = append(sk.Keys, newStoredKey(now))
			for len(sk.Keys) > 1 && now.Sub(sk.Keys[1].Created) > keyActivationDelay+sk.Keep {
				sk.Keys = sk.Keys[1:]
			}
		}
		if err := storeKeys(ctx, storage, sk); err != nil {
			return err
		}
		if rotate {
			logger.Info("rotated the generated session key", zap.Int("keys_kept", len(sk.Keys)))
		}
		return nil
	})
	return sk, err
}

func rotationDue(sk storedKeys, rotation time.Duration, now time.Time) bool {
	return rotation > 0 && len(sk.Keys) > 0 && now.Sub(sk.Keys[len(sk.Keys)-1].Created) >= rotation
}

func newStoredKey(now time.Time) storedKey {
	key := make([]byte, 32)
	_, _ = rand.Read(key) // never fails on supported platforms
	return storedKey{Key: key, Created: now.UTC()}
}

func storeKeys(ctx context.Context, storage certmagic.Storage, sk storedKeys) error {
	data, err := json.Marshal(sk)
	if err != nil {
		return err
	}
	if err := storage.Store(ctx, storagekeys.SessionKeys, data); err != nil {
		return fmt.Errorf("storing %s: %w", storagekeys.SessionKeys, err)
	}
	return nil
}

func loadKeys(ctx context.Context, storage certmagic.Storage) (storedKeys, error) {
	var sk storedKeys
	data, err := storage.Load(ctx, storagekeys.SessionKeys)
	if err != nil {
		return sk, err
	}
	if err := json.Unmarshal(data, &sk); err != nil {
		return sk, fmt.Errorf("%s is corrupt: %w", storagekeys.SessionKeys, err)
	}
	if len(sk.Keys) == 0 {
		return sk, fmt.Errorf("%s holds no key", storagekeys.SessionKeys)
	}
	for _, k := range sk.Keys {
		if len(k.Key) != 32 {
			return sk, fmt.Errorf("%s holds a key of the wrong size", storagekeys.SessionKeys)
		}
	}
	slices.SortStableFunc(sk.Keys, func(a, b storedKey) int { return a.Created.Compare(b.Created) })
	return sk, nil
}

// withStorageLock runs fn holding the storage lock called name.
func withStorageLock(ctx context.Context, storage certmagic.Storage, name string, logger *zap.Logger, fn func() error) error {
	// Bounded: a hung storage must not hold a request (or a start) for
	// good. Waiting for another holder is allowed as long as a refresh's
	// lock wait.
	lockCtx, cancel := context.WithTimeout(ctx, storageLockWait)
	defer cancel()
	if err := storage.Lock(lockCtx, name); err != nil {
		return fmt.Errorf("locking %s: %w", name, err)
	}
	defer func() {
		unlockCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storageOpTimeout)
		defer cancel()
		if err := storage.Unlock(unlockCtx, name); err != nil {
			logger.Warn("releasing a storage lock", zap.String("lock", name), zap.Error(err))
		}
	}()
	return fn()
}

// reloadKeys re-reads generated keys (another instance may have rotated
// them), rotates them if due, and swaps in new sealers if anything changed.
func (h *Handler) reloadKeys(ctx context.Context, now time.Time) error {
	sk, err := loadKeys(ctx, h.storage)
	if err != nil {
		return err
	}
	if sk, err = rotateKeys(ctx, h.storage, sk, time.Duration(h.KeyRotation), keyKeep(h), now, h.logger); err != nil {
		return err
	}
	order := sk.sealingOrder(now)
	if h.sealers().sameSecrets(order) {
		return nil
	}
	kr, err := newKeyring(order, h.app)
	if err != nil {
		return err
	}
	h.keys.Store(kr)
	return nil
}

// keyKeep is how long a replaced key must keep opening: anything sealed
// with it (sessions, login states) has expired by then.
func keyKeep(h *Handler) time.Duration {
	return time.Duration(h.SessionLifetime) + stateLifetime
}

// sealers returns the current sealers.
func (h *Handler) sealers() *keyring { return h.keys.Load() }

// Key purposes: one derived key per use, so a state cookie can never be
// replayed as a session cookie or the other way round.
const (
	purposeSession = "caddy-spotify-auth session v1"
	purposeState   = "caddy-spotify-auth state v1"
	// Storage entries: published refresh results and stored sessions.
	purposeRefreshResult = "caddy-spotify-auth refresh result v1"
	purposeStoredSession = "caddy-spotify-auth stored session v1"
	purposeRevocation    = "caddy-spotify-auth revocation mark v1"
)
