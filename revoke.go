package spotifyauth

import (
	"context"
	"encoding/hex"
	"errors"
	"io/fs"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/caddyspotify/caddy-spotify-auth/internal/seal"
	"github.com/caddyspotify/caddy-spotify-auth/internal/storagekeys"
)

// Revocation marks: "every session of this user that began before T is
// void". Logging out everywhere and the operator's revoke write one into
// storage; every instance honours it, for cookie sessions as for stored
// ones. The request path reads only an in-memory copy, which each
// instance re-reads from storage every revocationReread.

const (
	// revocationReread bounds how long another instance keeps accepting
	// a revoked session (README states it).
	revocationReread = 30 * time.Second
	// revocationMargin is added to session_lifetime for how long a mark
	// matters, so a session made just before it is surely over.
	revocationMargin = 10 * time.Minute
)

// revocationMark is what storage holds, sealed for the app, under
// storagekeys.Revoked + a hash of client and user.
type revocationMark struct {
	UserID string `json:"u"`
	Before int64  `json:"b"` // unix nanoseconds
	// Keep is how long the sessions it voids may live: the longest
	// session_lifetime of the blocks that have read it. A block with
	// shorter sessions must not delete a mark that another block of the
	// app, sharing its keys and storage, still needs.
	Keep time.Duration `json:"k,omitempty"`
}

// revocations holds a handler's marks: the in-memory copy the session
// stores check on every request, and the storage they are written to and
// re-read from.
type revocations struct {
	// byUser: user id → sessions created before this (unix nanoseconds)
	// are void. Replaced whole, read lock-free.
	byUser atomic.Pointer[map[string]int64]
	mu     sync.Mutex // serializes replacing byUser
	// seen (maintenance goroutine only) is what each storage key held at
	// its last reading, so unchanged marks are not loaded again.
	seen map[string]seenMark

	storage certmagic.Storage
	keys    *atomic.Pointer[keyring]
	app     string        // appBinding: marks are per app and key
	keep    time.Duration // how long a mark matters: sessions it voids end by then
	// siblings are the marks of the app's other handlers in this config
	// (the site's web_api gate, the same app on other sites), which a
	// revocation here reaches at once.
	siblings func() []*revocations
	// storeRecord and loadRecord keep sealed records (records.go).
	storeRecord func(ctx context.Context, s *seal.Sealer, key string, v any) error
	loadRecord  func(ctx context.Context, s *seal.Sealer, key string, v any) error
	logger      *zap.Logger
}

type seenMark struct {
	modified time.Time
	mark     revocationMark
}

// newRevocations builds h's marks; reread fills them.
func (h *Handler) newRevocations() *revocations {
	return &revocations{
		storage: h.storage,
		keys:    h.keys,
		app:     h.app,
		keep:    time.Duration(h.SessionLifetime) + revocationMargin,
		siblings: func() []*revocations {
			var out []*revocations
			for _, o := range configSiblings(h) {
				if o.revocations != nil {
					out = append(out, o.revocations)
				}
			}
			return out
		},
		storeRecord: h.storeRecord,
		loadRecord:  h.loadRecord,
		logger:      h.logger,
	}
}

// revoked reports whether s began before a revocation of its user.
func (rv *revocations) revoked(s *session) bool {
	m := rv.byUser.Load()
	if m == nil {
		return false
	}
	before, ok := (*m)[s.UserID]
	return ok && s.Created < before
}

// key names the user's mark as this block writes it: by app and sealing
// key, so blocks of one client_id with other Spotify URLs or other keys
// (a staging site, a cookie_secret beside generated keys) each write
// their own and none overwrites another's. Readers take every mark that
// opens for them.
func (rv *revocations) key(userID string) string {
	return storagekeys.Revocation(rv.app, rv.keyID(), userID, refUserLen)
}

// keyID names the key this block seals revocation marks with.
func (rv *revocations) keyID() string {
	id := rv.keys.Load().marks.SealingKey()
	return hex.EncodeToString(id[:])
}

// revoke voids every session of userID that began before now, on this
// instance at once and on the others at their next re-read.
func (rv *revocations) revoke(ctx context.Context, userID string, now time.Time) error {
	ctx = context.WithoutCancel(ctx)
	key := rv.key(userID)
	mark := revocationMark{UserID: userID, Before: now.UnixNano(), Keep: rv.keep}
	if err := rv.storeRecord(ctx, rv.keys.Load().marks, key, mark); err != nil {
		return err
	}
	apply := func(m map[string]int64) { m[userID] = max(m[userID], mark.Before) }
	rv.apply(apply)
	for _, o := range rv.siblings() {
		o.apply(apply)
	}
	return nil
}

func (rv *revocations) apply(change func(map[string]int64)) {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	next := map[string]int64{}
	if cur := rv.byUser.Load(); cur != nil {
		maps.Copy(next, *cur)
	}
	change(next)
	rv.byUser.Store(&next)
}

func (rv *revocations) loadMark(ctx context.Context, key string) (revocationMark, bool) {
	var mark revocationMark
	// Sealed to its storage key, a mark cannot be moved to another.
	if err := rv.loadRecord(ctx, rv.keys.Load().marks, key, &mark); err != nil || mark.UserID == "" {
		return mark, false // another app's or block's, or not a mark
	}
	return mark, true
}

// reread refreshes the in-memory copy from storage, loading only marks
// that changed, and deletes marks older than any session. A mark dated
// in the future (clock skew, or a forged one) counts as now, so it can
// never lock a user out of logging in again.
func (rv *revocations) reread(ctx context.Context, now time.Time) error {
	keys, err := rv.storage.List(ctx, storagekeys.Revoked, false)
	if errors.Is(err, fs.ErrNotExist) {
		keys, err = nil, nil
	}
	if err != nil {
		return err
	}
	seen := make(map[string]seenMark, len(keys))
	byUser := make(map[string]int64, len(keys))
	for _, k := range keys {
		info, err := rv.storage.Stat(ctx, k)
		if err != nil || !info.IsTerminal {
			continue
		}
		sm, ok := rv.seen[k]
		if !ok || !sm.modified.Equal(info.Modified) {
			mark, ok := rv.loadMark(ctx, k)
			if !ok {
				continue
			}
			sm = seenMark{modified: info.Modified, mark: mark}
		}
		if now.Sub(time.Unix(0, sm.mark.Before)) > max(sm.mark.Keep, rv.keep) {
			_ = rv.storage.Delete(ctx, k) // every session it voided has expired
			continue
		}
		if sm.mark.Keep < rv.keep {
			sm.mark.Keep = rv.keep // this block's sessions live longer
			if err := rv.storeRecord(ctx, rv.keys.Load().marks, k, sm.mark); err != nil {
				rv.logger.Warn("keeping a session revocation for this block's session_lifetime", zap.Error(err))
			}
		}
		seen[k] = sm
		byUser[sm.mark.UserID] = max(byUser[sm.mark.UserID], min(sm.mark.Before, now.UnixNano()))
	}
	rv.seen = seen
	// Marks this instance wrote itself stay, even if storage lost them,
	// for as long as its own sessions live; what storage holds decides
	// the rest.
	rv.apply(func(m map[string]int64) {
		for u, b := range m {
			if _, stored := byUser[u]; stored || now.Sub(time.Unix(0, b)) <= rv.keep {
				byUser[u] = max(byUser[u], b)
			}
		}
		clear(m)
		maps.Copy(m, byUser)
	})
	return nil
}

// watch re-reads the marks until ctx ends.
func (rv *revocations) watch(ctx context.Context) {
	runUntilDone(ctx, time.Now().Add(revocationReread), func(now time.Time) time.Time {
		if err := rv.reread(ctx, now); err != nil && ctx.Err() == nil {
			rv.logger.Warn("re-reading session revocations from storage; keeping the ones known", zap.Error(err))
		}
		return now.Add(revocationReread)
	})
}
