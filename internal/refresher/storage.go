package refresher

import (
	"context"
	"errors"
	"io/fs"
	"time"

	"github.com/caddyspotify/caddy-spotify-auth/internal/records"
	"github.com/caddyspotify/caddy-spotify-auth/internal/seal"
	"github.com/caddyspotify/caddy-spotify-auth/internal/storagekeys"
)

// Coordination through storage: the lock of one refresh, the published
// result, the published pauses. Records are JSON sealed with the app's
// keys and bound to their storage key, so a record of another app, or
// one moved to another key, does not open.

// result is a refresh's result as published (sealed) in storage.
type result struct {
	AccessToken  string `json:"a"`
	RefreshToken string `json:"r"`
	TokenExpires int64  `json:"e"`
	Scopes       string `json:"s"`
}

// acrossInstances refreshes once for all instances sharing the storage.
// The first to take the storage lock (named by the refresh's key) calls
// Spotify and publishes the result; the others pick that result up. If
// the storage can't lock (or the holder vanished for longer than a
// refresh can take), this instance refreshes on its own rather than fail
// a session that can be saved. published says the result came from
// another instance (and so may be due again).
func (c *Coordinator) acrossInstances(ctx context.Context, key, id string, cur Tokens) (Tokens, bool, error) {
	if t, published, err := c.elsewhere(ctx, key, id, cur); published || err != nil {
		return t, published, err
	}
	lockName := storagekeys.RefreshLock(key)
	lockCtx, cancel := context.WithTimeout(ctx, c.cfg.LockWait)
	defer cancel()
	locked := make(chan error, 1)
	go func() { locked <- c.cfg.Storage.Lock(lockCtx, lockName) }()
	poll := time.NewTicker(resultPollInterval)
	defer poll.Stop()
	for {
		select {
		case err := <-locked:
			if err != nil {
				c.warnCoordination(err)
			} else {
				defer c.unlock(ctx, lockName)
			}
			// Another instance may have refreshed while this one waited.
			if t, published, err := c.elsewhere(ctx, key, id, cur); published || err != nil {
				return t, published, err
			}
			t, err := c.call(ctx, id, cur)
			if err == nil {
				c.publish(ctx, key, t)
			}
			return t, false, err
		case <-poll.C:
			if t, ok := c.published(ctx, key); ok {
				cancel()
				if <-locked == nil {
					c.unlock(ctx, lockName)
				}
				return t, true, nil
			}
		}
	}
}

// elsewhere returns the result another instance published, or ErrPaused
// while another instance's pause holds and the token still works.
func (c *Coordinator) elsewhere(ctx context.Context, key, id string, cur Tokens) (Tokens, bool, error) {
	if t, ok := c.published(ctx, key); ok {
		return t, true, nil
	}
	now := c.cfg.Now()
	if cur.Usable(now) {
		if p, ok := c.loadPause(ctx, storagekeys.Paused+id, now); ok {
			c.state.set(c.state.paused, id, time.Unix(0, p.Until), now)
			return Tokens{}, false, ErrPaused
		}
	}
	return Tokens{}, false, nil
}

func (c *Coordinator) publish(ctx context.Context, key string, t Tokens) {
	r := result{AccessToken: t.AccessToken, RefreshToken: t.RefreshToken, TokenExpires: t.Expires, Scopes: t.Scopes}
	if err := c.store(ctx, storagekeys.RefreshResults+key, r); err != nil {
		c.warnCoordination(err)
	}
}

// published returns another instance's result for this refresh while its
// access token lives; one that is due again is followed by the caller.
func (c *Coordinator) published(ctx context.Context, key string) (Tokens, bool) {
	var r result
	if err := c.load(ctx, storagekeys.RefreshResults+key, &r); err != nil || r.AccessToken == "" {
		if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, seal.ErrUnsealable) {
			c.warnCoordination(err)
		}
		return Tokens{}, false
	}
	if r.TokenExpires <= c.cfg.Now().Unix() {
		return Tokens{}, false
	}
	c.obs.Reused()
	return Tokens{AccessToken: r.AccessToken, RefreshToken: r.RefreshToken, Expires: r.TokenExpires, Scopes: r.Scopes}, true
}

func (c *Coordinator) unlock(ctx context.Context, name string) {
	// Bounded: a hung storage must not hold the single flight, and with it
	// every request of the session. (An unreleased lock expires.)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), records.Timeout)
	defer cancel()
	if err := c.cfg.Storage.Unlock(ctx, name); err != nil {
		c.warnCoordination(err)
	}
}

// warnCoordination tells the observer the storage failed at
// coordinating, at most once a minute (a broken lock must not flood the log).
func (c *Coordinator) warnCoordination(err error) {
	now := c.cfg.Now().Unix()
	last := c.state.coordinationWarned.Load()
	if now-last < int64(coordinationWarnInterval/time.Second) || !c.state.coordinationWarned.CompareAndSwap(last, now) {
		return
	}
	c.obs.Uncoordinated(err)
}

func (c *Coordinator) storePause(ctx context.Context, key string, p sharedPause) {
	if err := c.store(ctx, key, p); err != nil {
		c.warnCoordination(err)
	}
}

// loadPause reads a published pause that has not ended. Anything that
// does not open (another app's, tampered, a storage error) counts as
// none: this instance then calls Spotify, as it would alone.
func (c *Coordinator) loadPause(ctx context.Context, key string, now time.Time) (sharedPause, bool) {
	var p sharedPause
	if err := c.load(ctx, key, &p); err != nil {
		return p, false // none, another app's, or unreadable: call Spotify as alone
	}
	// Never honoured for longer than Spotify may ask.
	if p.Until <= now.UnixNano() || time.Duration(p.Until-now.UnixNano()) > c.cfg.MaxPause {
		return p, false
	}
	return p, true
}

// store and load outlive the request that calls them: a record half
// written because a browser went away would help nobody.
func (c *Coordinator) store(ctx context.Context, key string, v any) error {
	return records.Store(context.WithoutCancel(ctx), c.cfg.Storage, c.cfg.Sealer(), key, v)
}

func (c *Coordinator) load(ctx context.Context, key string, v any) error {
	return records.Load(context.WithoutCancel(ctx), c.cfg.Storage, c.cfg.Sealer(), key, v)
}
