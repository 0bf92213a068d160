package spotifyauth

import (
	"context"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/caddyspotify/caddy-spotify-auth/internal/revocation"
	"github.com/caddyspotify/caddy-spotify-auth/internal/storedsession"
)

// cookieStore is session_store cookie (the default): the whole session is
// sealed into the cookie, so no instance keeps any state. It also opens
// references to stored sessions, so switching back from session_store
// storage logs nobody out.
type cookieStore struct {
	names  cookieNames
	domain string // cookie_domain
	keys   *atomic.Pointer[keyring]
	cache  *sessionCache     // cookies already opened (sessioncache.go)
	stored *storedSessions   // where references point
	marks  *revocation.Marks // checked on every request, cached or not
	// What passUpstream sends is worked out once per opened session.
	bearer, userHeaders bool
}

func (c *cookieStore) load(r *http.Request, now time.Time) (session, error) {
	raw, ok := readChunked(r.Header, c.names.session(r))
	if !ok {
		return session{}, errNoSession
	}
	kr := c.keys.Load()
	var s session
	var err error
	if e, hit := c.cache.open(raw, kr, now); hit {
		s = e.sess
		if e.key != "" {
			if s, err = c.stored.loadKey(r.Context(), e.key); err != nil {
				return session{}, err
			}
		}
	} else {
		pt, err := kr.sessions.Open(raw, c.names.aad)
		if err != nil {
			return session{}, errNoSession
		}
		if len(pt) > 0 && pt[0] == storedsession.RefFormat {
			key := storedsession.KeyOf(pt)
			if key == "" {
				return session{}, errNoSession
			}
			if s, err = c.stored.loadKey(r.Context(), key); err != nil {
				return session{}, err
			}
			c.cache.putOpened(raw, kr, openedEntry{key: key}, now)
		} else if s, err = unmarshalSession(pt); err != nil {
			return session{}, errNoSession
		} else {
			s.up = newUpstreamValues(&s, c.bearer, c.userHeaders)
			c.cache.putOpened(raw, kr, openedEntry{sess: s}, now)
		}
	}
	if s.Expires <= now.Unix() || c.marks.Revoked(s.UserID, s.Created) {
		return session{}, errNoSession
	}
	return s, nil
}

// adopt has nothing to do: a cookie store holds whatever the cookie does.
func (c *cookieStore) adopt(_ http.ResponseWriter, _ *http.Request, s session) (session, error) {
	return s, nil
}

func (c *cookieStore) save(w http.ResponseWriter, r *http.Request, s session) (session, error) {
	c.writeCookie(w, r, s.marshal(), s.Expires)
	return s, nil
}

// writeCookie seals plain (a session, or a reference to a stored one)
// into the session cookie, expiring chunks of a longer value.
func (c *cookieStore) writeCookie(w http.ResponseWriter, r *http.Request, plain []byte, expires int64) {
	name := c.names.session(r)
	parts := splitChunks(c.keys.Load().sessions.Seal(plain, c.names.aad))
	maxAge := time.Until(time.Unix(expires, 0))
	for i, p := range parts {
		n := name
		if i > 0 {
			n = chunkName(name, i)
		}
		http.SetCookie(w, cookieTemplate(r, c.domain, n, p, maxAge))
	}
	for i := len(parts); i < maxChunks; i++ {
		if _, ok := cookieValue(r.Header, chunkName(name, i)); ok {
			http.SetCookie(w, cookieTemplate(r, c.domain, chunkName(name, i), "", -1))
		}
	}
}

func (c *cookieStore) clear(w http.ResponseWriter, r *http.Request) {
	name := c.names.session(r)
	for i := 0; i < maxChunks; i++ {
		n := name
		if i > 0 {
			n = chunkName(name, i)
		}
		if _, ok := cookieValue(r.Header, n); !ok {
			continue
		}
		http.SetCookie(w, cookieTemplate(r, c.domain, n, "", -1))
	}
}

func (c *cookieStore) revoke(ctx context.Context, userID string, now time.Time) error {
	return c.marks.Revoke(ctx, userID, now)
}

// delete ends stored sessions even here: sessions made under
// session_store storage may still be in use.
func (c *cookieStore) delete(ctx context.Context, s session, everywhere bool) (int, error) {
	return c.stored.delete(ctx, s, everywhere)
}

// sweep leaves stored sessions alone: sweeping them is the storage
// store's work, on its own schedule.
func (c *cookieStore) sweep(context.Context, time.Time, sweepTurn, sweepFunc) {}

func (c *cookieStore) forget(key string) { c.cache.forgetStored(key) }
