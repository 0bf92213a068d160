// Package records keeps the records the instances of an app share through
// Caddy's storage (refresh results, pauses, revocation marks): JSON sealed
// with the app's keys and bound to their storage key, so a record of
// another app, or one moved to another key, does not open.
package records

import (
	"context"
	"encoding/json"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/caddyspotify/caddy-spotify-auth/internal/seal"
)

// Timeout bounds every record call: a hung store must not hold a request.
const Timeout = 2 * time.Second

// Store keeps v at key, sealed by s.
func Store(ctx context.Context, st certmagic.Storage, s *seal.Sealer, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	return st.Store(ctx, key, []byte(s.Seal(data, []byte(key))))
}

// Load reads into v what Store kept at key: an error wrapping
// fs.ErrNotExist if there is none, seal.ErrUnsealable if it does not open.
func Load(ctx context.Context, st certmagic.Storage, s *seal.Sealer, key string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	data, err := st.Load(ctx, key)
	if err != nil {
		return err
	}
	plain, err := s.Open(string(data), []byte(key))
	if err != nil {
		return err
	}
	return json.Unmarshal(plain, v)
}
