package spotifyauth

import (
	"context"

	"github.com/caddyspotify/caddy-spotify-auth/internal/records"
	"github.com/caddyspotify/caddy-spotify-auth/internal/seal"
)

// storeRecord keeps v at key in this config's storage, sealed by s
// (internal/records).
func (h *Handler) storeRecord(ctx context.Context, s *seal.Sealer, key string, v any) error {
	return records.Store(ctx, h.storage, s, key, v)
}

// loadRecord reads into v what storeRecord kept at key.
func (h *Handler) loadRecord(ctx context.Context, s *seal.Sealer, key string, v any) error {
	return records.Load(ctx, h.storage, s, key, v)
}
