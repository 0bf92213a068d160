package spotifyauth

import (
	"time"

	"github.com/caddyspotify/caddy-spotify-auth/internal/revocation"
	"github.com/caddyspotify/caddy-spotify-auth/internal/seal"
)

// Revocation marks ("every session of this user that began before T is
// void") live in internal/revocation; the session stores write them and
// check them on every request. This builds a handler's.
func newRevocations(h *Handler) *revocation.Marks {
	return revocation.New(revocation.Config{
		Storage: h.storage,
		Sealer:  func() *seal.Sealer { return h.sealers().marks },
		App:     h.app,
		Keep:    time.Duration(h.SessionLifetime) + revocation.Margin,
		Siblings: func() []*revocation.Marks {
			var out []*revocation.Marks
			for _, o := range configSiblings(h) {
				if o.revocations != nil {
					out = append(out, o.revocations)
				}
			}
			return out
		},
		Logger: h.logger,
	})
}
