package spotifyauth

import (
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddyspotify/caddy-spotify-auth/internal/fifo"
)

// A per-instance cache of opened sessions, so a valid session's request
// skips the base64 decode, AES-GCM open and decode (cookie sessions) or
// the storage read (session_store storage) it has already paid for.
//
// What keeps it as safe as no cache:
//   - Only a cookie that opened is cached (a flood of invalid cookies
//     caches nothing), keyed by its exact sealed value, and only with the
//     keyring that opened it: keys re-read or rotated empty it in effect.
//   - Expiry and revocation marks are checked on every request, hit or
//     not (cookieStore.load), so logout everywhere still ends a cached
//     session at once here and at the next re-read elsewhere.
//   - A stored session is kept at most storedSessionCacheTTL; this
//     instance forgets it at once, in every handler of the app, when it
//     writes or deletes it (refresh, logout), so a logout is immediate
//     where it was served (web_api included) and takes
//     effect within storedSessionCacheTTL (plus the request in flight) on
//     the others.
//   - Both maps are bounded (oldest out first), cookies longer than
//     maxCachedCookieLen are not cached: with Spotify's token lengths a
//     full map of opened cookie sessions holds about 22 MB
//     (BenchmarkSessionCacheFull: 2.3 KB a session); with session_store
//     storage the opened map holds short references and the stored map
//     the sessions, about as much. Per spotify_auth handler.
const (
	maxOpenedSessions     = 10_000
	maxStoredSessions     = 10_000
	maxCachedCookieLen    = 1536
	storedSessionCacheTTL = time.Second
	// openedSessionCacheTTL bounds how long an opened cookie stays cached
	// without use of the session's own expiry (checked anyway).
	openedSessionCacheTTL = 10 * time.Minute
)

type sessionCache struct {
	mu     sync.RWMutex           // reads (every request) share it
	opened *fifo.Map[openedEntry] // sealed cookie value → what it opened to
	stored *fifo.Map[storedEntry] // storage key → the stored session
	kr     *keyring               // the keyring the entries were opened with
	// writes counts this instance's writes and deletes of stored
	// sessions: a read that began before one is not cached (it may be
	// older than the write).
	writes uint64
}

type openedEntry struct {
	sess session // a cookie session, or (key) nothing
	// key is where the stored session a reference cookie points to lives:
	// worked out once (a SHA-256) per opened cookie, not per request.
	key string
}

type storedEntry struct{ sess session }

func newSessionCache() *sessionCache {
	return &sessionCache{
		opened: fifo.New[openedEntry](maxOpenedSessions),
		stored: fifo.New[storedEntry](maxStoredSessions),
	}
}

// open returns what the cookie value opened to before, if it was opened
// with kr.
func (c *sessionCache) open(value string, kr *keyring, now time.Time) (openedEntry, bool) {
	if c == nil {
		return openedEntry{}, false
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.kr != kr {
		return openedEntry{}, false
	}
	return c.opened.Get(value, now)
}

func (c *sessionCache) putOpened(value string, kr *keyring, e openedEntry, now time.Time) {
	if c == nil || len(value) > maxCachedCookieLen {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kr != kr {
		// New keys: nothing opened with the old ones is kept.
		c.kr = kr
		c.opened = fifo.New[openedEntry](maxOpenedSessions)
	}
	// Cloned: the value is a substring of the request's Cookie header.
	c.opened.Put(string([]byte(value)), e, now.Add(openedSessionCacheTTL))
}

func (c *sessionCache) loadStored(key string, now time.Time) (session, bool) {
	if c == nil {
		return session{}, false
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.stored.Get(key, now)
	return e.sess, ok
}

// beginStoredRead is called before reading a stored session; its result
// goes to putStored with it.
func (c *sessionCache) beginStoredRead() uint64 {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes
}

func (c *sessionCache) putStored(key string, s session, began uint64, readAt time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.writes != began {
		return // this instance wrote or deleted a stored session meanwhile
	}
	c.stored.Put(key, storedEntry{s}, readAt.Add(storedSessionCacheTTL))
}

// forgetStored drops a stored session from this cache.
func (c *sessionCache) forgetStored(key string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	c.stored.Delete(key)
}

// upstreamValues is what passUpstream sends for a session, worked out
// once per opened session instead of on every request. Immutable.
type upstreamValues struct {
	accessToken  string // what it was worked out for
	tokenExpires int64

	// The header values in the order passUpstream sets them: the token,
	// its expiry, then those of userHeaderNames (with user_headers on),
	// made header-safe here once rather than on every request.
	values       headerValues
	placeholders caddy.ReplacerFunc // bound once: a method value per request would allocate
}

// headerValues holds a passed request's header values: the token header,
// X-Spotify-Token-Expires, then those of userHeaderNames.
type headerValues [2 + len(userHeaderNames)]string

// isFor reports whether the values were worked out for s's token (a
// refresh changes the token and expiry, and copies the stale pointer).
func (up *upstreamValues) isFor(s *session) bool {
	return up != nil && up.tokenExpires == s.TokenExpires && up.accessToken == s.AccessToken
}

// newUpstreamValues works them out: bearer and userHeaders are the
// handler's token_header and user_headers settings.
func newUpstreamValues(s *session, bearer, userHeaders bool) *upstreamValues {
	// One allocation for the token and expiry values.
	var b strings.Builder
	b.Grow(len("Bearer ") + len(s.AccessToken) + len(time.RFC3339))
	if bearer {
		b.WriteString("Bearer ")
	}
	b.WriteString(s.AccessToken)
	tokenEnd := b.Len()
	var tbuf [len(time.RFC3339) + 8]byte
	b.Write(time.Unix(s.TokenExpires, 0).UTC().AppendFormat(tbuf[:0], time.RFC3339))
	built := b.String()
	up := &upstreamValues{accessToken: s.AccessToken, tokenExpires: s.TokenExpires}
	up.values[0], up.values[1] = built[:tokenEnd], built[tokenEnd:]
	if userHeaders {
		// Sessions made before profile fields were cleaned at login may
		// still hold control characters: headerSafe encodes those.
		user := [...]string{headerSafe(s.UserID), headerSafe(s.AccountID), encodeHeaderText(s.DisplayName), headerSafe(s.Email), headerSafe(s.Product), headerSafe(s.Scopes)}
		copy(up.values[2:], user[:])
	}
	ps := *s
	ps.up = nil
	up.placeholders = (&placeholders{s: ps}).get
	return up
}
