package spotifyauth

import (
	"context"

	"github.com/caddyserver/certmagic"

	"github.com/caddyspotify/caddy-spotify-auth/internal/records"
	"github.com/caddyspotify/caddy-spotify-auth/internal/seal"
)

// recordStore is this config's storage as a keeper of sealed records
// (internal/records); its methods are what revocation marks store with.
type recordStore struct{ storage certmagic.Storage }

// storeRecord keeps v at key in the storage, sealed by s.
func (rs recordStore) storeRecord(ctx context.Context, s *seal.Sealer, key string, v any) error {
	return records.Store(ctx, rs.storage, s, key, v)
}

// loadRecord reads into v what storeRecord kept at key.
func (rs recordStore) loadRecord(ctx context.Context, s *seal.Sealer, key string, v any) error {
	return records.Load(ctx, rs.storage, s, key, v)
}
