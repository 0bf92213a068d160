package spotifyauth

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/caddyspotify/caddy-spotify-auth/internal/seal"
	"github.com/caddyspotify/caddy-spotify-auth/internal/storedsession"
)

// Sessions live behind one interface, chosen once at Provision from
// session_store, so that nothing on the request path asks which mode it
// is in (oauth2-proxy's SessionStore is the model):
//
//   - cookieStore (cookiestore.go) seals the whole session into the
//     cookie;
//   - storageStore (storagestore.go) keeps the sealed session in storage
//     (storedSessions in store.go, over internal/storedsession) and a
//     sealed reference in the cookie.
//
// Both open references (sessions made under storage survive a switch
// back to cookies), and both write and honour revocation marks
// (internal/revocation), which also end copies of a session that
// storage does not hold.

// errNoSession: the request carries no usable session.
var errNoSession = errors.New("no session")

type sessionStore interface {
	// load returns the request's session: errNoSession if it has none
	// usable, or a storage error, which must fail closed.
	load(r *http.Request, now time.Time) (session, error)
	// adopt takes in a session the store does not hold yet (a cookie
	// session under session_store storage), pointing the cookie at it,
	// and returns the store's copy, which may be newer. By value: a
	// pointer through an interface would move every request's session
	// to the heap.
	adopt(w http.ResponseWriter, r *http.Request, s session) (session, error)
	// save writes s (a login or a refresh) where it lives and returns
	// it as saved (a new stored session knows its key). Updating a
	// stored session that was logged out meanwhile fails with
	// errNoSession rather than bring it back. By value, as adopt.
	save(w http.ResponseWriter, r *http.Request, s session) (session, error)
	// clear expires the session cookie and its chunks.
	clear(w http.ResponseWriter, r *http.Request)
	// revoke voids every session of userID that began before now, cookie
	// or stored, on every instance (internal/revocation).
	revoke(ctx context.Context, userID string, now time.Time) error
	// delete ends stored sessions: s's, or with everywhere all of its
	// user's, and returns how many.
	delete(ctx context.Context, s session, everywhere bool) (int, error)
	// sweep deletes the expired stored sessions this store's keys open,
	// if turn gives it the turn of those keys.
	sweep(ctx context.Context, now time.Time, turn sweepTurn, sweep sweepFunc)
	// forget drops a stored session that another handler of the app
	// wrote or deleted from this store's cache.
	forget(key string)
}

// sweepTurn reports whether this instance sweeps now the stored sessions
// that the keys named keysID open (no instance has lately).
type sweepTurn func(keysID string) bool

// sweepFunc deletes the storage entries under prefix that expired says
// are done (maintainer.sweep).
type sweepFunc func(ctx context.Context, prefix string, recursive bool, expired func(key string, modified time.Time) bool)

// newSessionStore builds the store session_store names.
func newSessionStore(h *Handler) sessionStore {
	cache := newSessionCache()
	keys := h.keys
	stored := &storedSessions{
		store: storedsession.New(storedsession.Config{
			Storage:  h.storage,
			ClientID: h.ClientID,
			Sealer:   func() *seal.Sealer { return keys.Load().stored },
			Created:  sessionCreated,
			// A write or delete here must end the session in the caches
			// of every handler of the app in this config (the site's
			// gate, its web_api gate, the same app on other sites) at
			// once.
			Changed: func(key string) {
				cache.forgetStored(key)
				for _, o := range configSiblings(h) {
					if o.sessions != nil {
						o.sessions.forget(key)
					}
				}
			},
			Logger: h.logger,
		}),
		cache:       cache,
		bearer:      h.bearer,
		userHeaders: h.userHeaders,
		logger:      h.logger,
	}
	cookies := &cookieStore{
		names:       h.cookies,
		domain:      h.CookieDomain,
		keys:        h.keys,
		cache:       cache,
		stored:      stored,
		marks:       h.revocations,
		bearer:      h.bearer,
		userHeaders: h.userHeaders,
	}
	if h.SessionStore == sessionStoreStorage {
		return &storageStore{cookieStore: cookies, lifetime: time.Duration(h.SessionLifetime)}
	}
	return cookies
}
