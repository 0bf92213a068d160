package spotifyauth

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// keyStorageKey is where the generated session key lives in Caddy's
// storage; instances sharing the storage share the key.
const keyStorageKey = "spotify_auth/session_keys.json"

type storedKeys struct {
	Keys []storedKey `json:"keys"`
}

type storedKey struct {
	Key     []byte    `json:"key"` // base64 in JSON
	Created time.Time `json:"created"`
}

// loadOrCreateKey returns the session keys kept in storage, creating one
// under the storage's lock if there is none, so that instances starting
// together agree on a single key. The newest key comes first.
func loadOrCreateKey(ctx context.Context, storage certmagic.Storage, logger *zap.Logger) ([][]byte, error) {
	if keys, err := loadKeys(ctx, storage); err == nil {
		return keys, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}

	if err := storage.Lock(ctx, keyStorageKey); err != nil {
		return nil, fmt.Errorf("locking %s: %w", keyStorageKey, err)
	}
	defer func() {
		if err := storage.Unlock(context.WithoutCancel(ctx), keyStorageKey); err != nil {
			logger.Warn("unlocking session key storage", zap.Error(err))
		}
	}()

	// Another instance may have created it while we waited for the lock.
	keys, err := loadKeys(ctx, storage)
	if err == nil {
		return keys, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	data, err := json.Marshal(storedKeys{Keys: []storedKey{{Key: key, Created: time.Now().UTC()}}})
	if err != nil {
		return nil, err
	}
	if err := storage.Store(ctx, keyStorageKey, data); err != nil {
		return nil, fmt.Errorf("storing %s: %w", keyStorageKey, err)
	}
	logger.Info("generated a session key and stored it; set cookie_secret to manage keys yourself",
		zap.String("storage_key", keyStorageKey))
	return [][]byte{key}, nil
}

func loadKeys(ctx context.Context, storage certmagic.Storage) ([][]byte, error) {
	data, err := storage.Load(ctx, keyStorageKey)
	if err != nil {
		return nil, err
	}
	var sk storedKeys
	if err := json.Unmarshal(data, &sk); err != nil {
		return nil, fmt.Errorf("%s is corrupt: %w", keyStorageKey, err)
	}
	var keys [][]byte
	// Newest first: it seals; the others only open.
	for i := len(sk.Keys) - 1; i >= 0; i-- {
		if len(sk.Keys[i].Key) != 32 {
			return nil, fmt.Errorf("%s holds a key of the wrong size", keyStorageKey)
		}
		keys = append(keys, sk.Keys[i].Key)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s holds no key", keyStorageKey)
	}
	return keys, nil
}
