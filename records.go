package spotifyauth

import (
	"context"
	"encoding/json"

	"github.com/caddyspotify/caddy-spotify-auth/internal/seal"
)

// Records the instances of an app share through Caddy's storage (refresh
// results, back-offs, revocation marks): JSON sealed with the app's keys
// and bound to their storage key, so a record of another app, or one
// moved to another key, does not open.

// storeRecord keeps v at key, sealed by s. Like every record call, it
// gives up after storageOpTimeout: a hung store must not hold a request.
func (h *Handler) storeRecord(ctx context.Context, s *seal.Sealer, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, storageOpTimeout)
	defer cancel()
	return h.storage.Store(ctx, key, []byte(s.Seal(data, []byte(key))))
}

// loadRecord reads into v what storeRecord kept at key: an error wrapping
// fs.ErrNotExist if there is none, seal.ErrUnsealable if it does not open.
func (h *Handler) loadRecord(ctx context.Context, s *seal.Sealer, key string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, storageOpTimeout)
	defer cancel()
	data, err := h.storage.Load(ctx, key)
	if err != nil {
		return err
	}
	plain, err := s.Open(string(data), []byte(key))
	if err != nil {
		return err
	}
	return json.Unmarshal(plain, v)
}
