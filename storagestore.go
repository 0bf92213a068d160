package spotifyauth

import (
	"context"
	"net/http"
	"time"

	"github.com/caddyspotify/caddy-spotify-auth/internal/storagekeys"
)

// storageStore is session_store storage: the sealed session lives in
// storage (storedSessions), the cookie holds a sealed reference to it.
// Reading, clearing and deleting are the cookie store's, which already
// resolves references; saving, adopting cookie sessions (migrate.go)
// and sweeping are its own.
type storageStore struct {
	*cookieStore
	lifetime time.Duration // session_lifetime: no stored session is older
}

func (ss *storageStore) save(w http.ResponseWriter, r *http.Request, s session) (session, error) {
	ref, err := ss.stored.save(r.Context(), &s)
	if err != nil || ref == nil {
		return s, err // on success, the cookie already points at s
	}
	ss.writeCookie(w, r, ref, s.Expires)
	return s, nil
}

func (ss *storageStore) sweep(ctx context.Context, now time.Time, turn sweepTurn, sweep sweepFunc) {
	if !turn(ss.stored.store.KeysID()) {
		return
	}
	sweep(ctx, storagekeys.Sessions, true, func(key string, modified time.Time) bool {
		return now.Sub(modified) > ss.lifetime && ss.stored.expired(ctx, key, now)
	})
}
