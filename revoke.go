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

	"go.uber.org/zap"

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

// revocations is the in-memory copy: user id → sessions created before
// this (unix nanoseconds) are void. Replaced whole, read lock-free.
type revocations struct {
	byUser atomic.Pointer[map[string]int64]
	mu     sync.Mutex // serializes replacing byUser
	// seen (maintenance goroutine only) is what each storage key held at
	// its last reading, so unchanged marks are not loaded again.
	seen map[string]seenMark
}

type seenMark struct {
	modified time.Time
	mark     revocationMark
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

// revocationKey names the user's mark as this block writes it: by app
// and sealing key, so blocks of one client_id with other Spotify URLs or
// other keys (a staging site, a cookie_secret beside generated keys) each
// write their own and none overwrites another's. Readers take every mark
// that opens for them.
func (h *Handler) revocationKey(userID string) string {
	return storagekeys.Revocation(h.app, h.marksKeyID(), userID, refUserLen)
}

// marksKeyID names the key this block seals revocation marks with.
func (h *Handler) marksKeyID() string {
	id := h.sealers().marks.SealingKey()
	return hex.EncodeToString(id[:])
}

// revokeSessions voids every session of userID that began before now, on
// this instance at once and on the others at their next re-read.
func (h *Handler) revokeSessions(ctx context.Context, userID string, now time.Time) error {
	ctx = context.WithoutCancel(ctx)
	key := h.revocationKey(userID)
	mark := revocationMark{UserID: userID, Before: now.UnixNano(), Keep: h.revocationKeep()}
	if err := h.storeRecord(ctx, h.sealers().marks, key, mark); err != nil {
		return err
	}
	// At once on every handler of this app in this config: the site's
	// gate, its web_api gate, the same app on other sites.
	apply := func(m map[string]int64) { m[userID] = max(m[userID], mark.Before) }
	h.applyRevocations(apply)
	for _, o := range configSiblings(h) {
		o.applyRevocations(apply)
	}
	return nil
}

func (h *Handler) applyRevocations(change func(map[string]int64)) {
	h.revocations.mu.Lock()
	defer h.revocations.mu.Unlock()
	next := map[string]int64{}
	if cur := h.revocations.byUser.Load(); cur != nil {
		maps.Copy(next, *cur)
	}
	change(next)
	h.revocations.byUser.Store(&next)
}

func (h *Handler) loadMark(ctx context.Context, key string) (revocationMark, bool) {
	var mark revocationMark
	// Sealed to its storage key, a mark cannot be moved to another.
	if err := h.loadRecord(ctx, h.sealers().marks, key, &mark); err != nil || mark.UserID == "" {
		return mark, false // another app's or block's, or not a mark
	}
	return mark, true
}

// rereadRevocations refreshes the in-memory copy from storage, loading
// only marks that changed, and deletes marks older than any session. A
// mark dated in the future (clock skew, or a forged one) counts as now,
// so it can never lock a user out of logging in again.
func (h *Handler) rereadRevocations(ctx context.Context, now time.Time) error {
	keys, err := h.storage.List(ctx, storagekeys.Revoked, false)
	if errors.Is(err, fs.ErrNotExist) {
		keys, err = nil, nil
	}
	if err != nil {
		return err
	}
	r := h.revocations
	seen := make(map[string]seenMark, len(keys))
	byUser := make(map[string]int64, len(keys))
	for _, k := range keys {
		info, err := h.storage.Stat(ctx, k)
		if err != nil || !info.IsTerminal {
			continue
		}
		sm, ok := r.seen[k]
		if !ok || !sm.modified.Equal(info.Modified) {
			mark, ok := h.loadMark(ctx, k)
			if !ok {
				continue
			}
			sm = seenMark{modified: info.Modified, mark: mark}
		}
		if now.Sub(time.Unix(0, sm.mark.Before)) > max(sm.mark.Keep, h.revocationKeep()) {
			_ = h.storage.Delete(ctx, k) // every session it voided has expired
			continue
		}
		if sm.mark.Keep < h.revocationKeep() {
			sm.mark.Keep = h.revocationKeep() // this block's sessions live longer
			if err := h.storeRecord(ctx, h.sealers().marks, k, sm.mark); err != nil {
				h.logger.Warn("keeping a session revocation for this block's session_lifetime", zap.Error(err))
			}
		}
		seen[k] = sm
		byUser[sm.mark.UserID] = max(byUser[sm.mark.UserID], min(sm.mark.Before, now.UnixNano()))
	}
	r.seen = seen
	// Marks this instance wrote itself stay, even if storage lost them,
	// for as long as its own sessions live; what storage holds decides
	// the rest.
	h.applyRevocations(func(m map[string]int64) {
		for u, b := range m {
			if _, stored := byUser[u]; stored || now.Sub(time.Unix(0, b)) <= h.revocationKeep() {
				byUser[u] = max(byUser[u], b)
			}
		}
		clear(m)
		maps.Copy(m, byUser)
	})
	return nil
}

// revocationKeep is how long a mark matters: sessions it voids end by then.
func (h *Handler) revocationKeep() time.Duration {
	return time.Duration(h.SessionLifetime) + 10*time.Minute
}

// watchRevocations re-reads the marks until ctx ends.
func (h *Handler) watchRevocations(ctx context.Context) {
	runUntilDone(ctx, time.Now().Add(revocationReread), func(now time.Time) time.Time {
		if err := h.rereadRevocations(ctx, now); err != nil && ctx.Err() == nil {
			h.logger.Warn("re-reading session revocations from storage; keeping the ones known", zap.Error(err))
		}
		return now.Add(revocationReread)
	})
}
