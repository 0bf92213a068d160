// Package revocation keeps session revocation marks: "every session of
// this user that began before T is void". Logging out everywhere and the
// operator's revoke write one into storage; every instance honours it, for
// cookie sessions as for stored ones. The request path reads only an
// in-memory copy (Revoked, lock-free), which each instance re-reads from
// storage every RereadInterval.
package revocation

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

	"github.com/caddyspotify/caddy-spotify-auth/internal/records"
	"github.com/caddyspotify/caddy-spotify-auth/internal/seal"
	"github.com/caddyspotify/caddy-spotify-auth/internal/storagekeys"
)

const (
	// RereadInterval bounds how long another instance keeps accepting a
	// revoked session (the README states it).
	RereadInterval = 30 * time.Second
	// Margin is added to the session lifetime for how long a mark
	// matters, so a session made just before it is surely over.
	Margin = 10 * time.Minute
	// userHashLen is how much of the hash of app, key and user names a
	// mark in storage.
	userHashLen = 16
)

// mark is what storage holds, sealed for the app, under
// storagekeys.Revocation.
type mark struct {
	UserID string `json:"u"`
	Before int64  `json:"b"` // unix nanoseconds
	// Keep is how long the sessions it voids may live: the longest
	// session lifetime of the blocks that have read it. A block with
	// shorter sessions must not delete a mark that another block of the
	// app, sharing its keys and storage, still needs.
	Keep time.Duration `json:"k,omitempty"`
}

// Config is what Marks are built from.
type Config struct {
	Storage certmagic.Storage
	// Sealer is the current marks sealer (keys may be re-read).
	Sealer func() *seal.Sealer
	// App is what the keys are bound to: marks are per app and key.
	App string
	// Keep is how long a mark matters: the session lifetime plus Margin.
	Keep time.Duration
	// Siblings are the marks of the app's other handlers in this config
	// (a site's web_api gate, the same app on other sites), which a
	// revocation here reaches at once.
	Siblings func() []*Marks
	Logger   *zap.Logger
}

// Marks is one handler's view of the marks. The zero value revokes
// nothing and cannot write.
type Marks struct {
	// byUser: user id → sessions created before this (unix nanoseconds)
	// are void. Replaced whole, read lock-free.
	byUser atomic.Pointer[map[string]int64]
	mu     sync.Mutex // serializes replacing byUser
	// seen (Reread only, which one goroutine runs) is what each storage
	// key held at its last reading, so unchanged marks are not loaded
	// again; unopened, the marks this handler's keys did not open then
	// (another app's, or anything written there), so they are not loaded
	// again either until they change or the keys do.
	seen     map[string]seenMark
	unopened map[string]unopenedMark
	cfg      Config
}

type seenMark struct {
	modified time.Time
	mark     mark
}

type unopenedMark struct {
	modified time.Time
	sealer   *seal.Sealer
}

// New returns empty marks; Reread fills them from storage.
func New(cfg Config) *Marks { return &Marks{cfg: cfg} }

// Revoked reports whether a session of userID created at created (unix
// nanoseconds) began before a revocation of its user.
func (m *Marks) Revoked(userID string, created int64) bool {
	byUser := m.byUser.Load()
	if byUser == nil {
		return false
	}
	before, ok := (*byUser)[userID]
	return ok && created < before
}

// KeyID names the key this block seals marks with.
func (m *Marks) KeyID() string {
	id := m.cfg.Sealer().SealingKey()
	return hex.EncodeToString(id[:])
}

// key names the user's mark as this block writes it: by app and sealing
// key, so blocks of one client with other Spotify URLs or other keys (a
// staging site, a secret beside generated keys) each write their own and
// none overwrites another's. Readers take every mark that opens for them.
func (m *Marks) key(userID string) string {
	return storagekeys.Revocation(m.cfg.App, m.KeyID(), userID, userHashLen)
}

// Revoke voids every session of userID that began before now, on this
// instance at once and on the others at their next re-read.
func (m *Marks) Revoke(ctx context.Context, userID string, now time.Time) error {
	ctx = context.WithoutCancel(ctx)
	mk := mark{UserID: userID, Before: now.UnixNano(), Keep: m.cfg.Keep}
	if err := records.Store(ctx, m.cfg.Storage, m.cfg.Sealer(), m.key(userID), mk); err != nil {
		return err
	}
	apply := func(byUser map[string]int64) { byUser[userID] = max(byUser[userID], mk.Before) }
	m.apply(apply)
	if m.cfg.Siblings != nil {
		for _, o := range m.cfg.Siblings() {
			o.apply(apply)
		}
	}
	return nil
}

func (m *Marks) apply(change func(map[string]int64)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	next := map[string]int64{}
	if cur := m.byUser.Load(); cur != nil {
		maps.Copy(next, *cur)
	}
	change(next)
	m.byUser.Store(&next)
}

// load reads the mark at key. ok is false if there is none to honour:
// unopened says that is what the key holds (another app's or block's,
// or not a mark), not that storage failed, which is tried again.
func (m *Marks) load(ctx context.Context, s *seal.Sealer, key string) (mk mark, ok, unopened bool) {
	// Sealed to its storage key, a mark cannot be moved to another.
	err := records.Load(ctx, m.cfg.Storage, s, key, &mk)
	if err == nil && mk.UserID != "" {
		return mk, true, false
	}
	return mk, false, err == nil || errors.Is(err, seal.ErrUnsealable)
}

// Reread refreshes the in-memory copy from storage, loading only marks
// that changed, and deletes marks older than any session. A mark dated in
// the future (clock skew, or a forged one) counts as now, so it can never
// lock a user out of logging in again.
func (m *Marks) Reread(ctx context.Context, now time.Time) error {
	keys, err := m.cfg.Storage.List(ctx, storagekeys.Revoked, false)
	if errors.Is(err, fs.ErrNotExist) {
		keys, err = nil, nil
	}
	if err != nil {
		return err
	}
	keep := m.cfg.Keep
	seen := make(map[string]seenMark, len(keys))
	unopened := make(map[string]unopenedMark)
	sealer := m.cfg.Sealer()
	byUser := make(map[string]int64, len(keys))
	for _, k := range keys {
		info, err := m.cfg.Storage.Stat(ctx, k)
		if err != nil || !info.IsTerminal {
			continue
		}
		if u, ok := m.unopened[k]; ok && u.modified.Equal(info.Modified) && u.sealer == sealer {
			unopened[k] = u
			continue
		}
		sm, ok := m.seen[k]
		if !ok || !sm.modified.Equal(info.Modified) {
			mk, ok, notOurs := m.load(ctx, sealer, k)
			if !ok {
				if notOurs {
					unopened[k] = unopenedMark{modified: info.Modified, sealer: sealer}
				}
				continue
			}
			sm = seenMark{modified: info.Modified, mark: mk}
		}
		if now.Sub(time.Unix(0, sm.mark.Before)) > max(sm.mark.Keep, keep) {
			_ = m.cfg.Storage.Delete(ctx, k) // every session it voided has expired
			continue
		}
		if sm.mark.Keep < keep {
			sm.mark.Keep = keep // this block's sessions live longer
			if err := records.Store(ctx, m.cfg.Storage, m.cfg.Sealer(), k, sm.mark); err != nil {
				m.cfg.Logger.Warn("keeping a session revocation for this block's session_lifetime", zap.Error(err))
			}
		}
		seen[k] = sm
		byUser[sm.mark.UserID] = max(byUser[sm.mark.UserID], min(sm.mark.Before, now.UnixNano()))
	}
	m.seen, m.unopened = seen, unopened
	// Marks this instance wrote itself stay, even if storage lost them,
	// for as long as its own sessions live; what storage holds decides
	// the rest.
	m.apply(func(cur map[string]int64) {
		for u, b := range cur {
			if _, stored := byUser[u]; stored || now.Sub(time.Unix(0, b)) <= keep {
				byUser[u] = max(byUser[u], b)
			}
		}
		clear(cur)
		maps.Copy(cur, byUser)
	})
	return nil
}

// Tick re-reads the marks, as the background loop does every
// RereadInterval, and returns when it is due again.
func (m *Marks) Tick(ctx context.Context, now time.Time) (next time.Time) {
	if err := m.Reread(ctx, now); err != nil && ctx.Err() == nil {
		m.cfg.Logger.Warn("re-reading session revocations from storage; keeping the ones known", zap.Error(err))
	}
	return now.Add(RereadInterval)
}
