package refresher

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/caddyspotify/caddy-spotify-auth/internal/storagekeys"
)

// The one answer to "may Spotify be called now?". Spotify's rate limit is
// per app, and the owner's lapsed Premium fails every call: what one
// instance learns, the others honour (through storage), so N instances
// make one call, not N. Storage is read only when about to call Spotify,
// never on the request path of a valid session.

// Scope is what kind of call is about to be made.
type Scope int

const (
	// Calls are refreshes and app tokens: paused by the app's back-off.
	Calls Scope = iota
	// Logins are code exchanges (and the login's /v1/me): paused by the
	// app's back-off and by the logins' own, which a login's 429 starts
	// (it leaves refreshes of existing sessions going).
	Logins
	// WebAPI calls are paused only by the owner's lapsed Premium, as this
	// instance knows it: no storage is read on that path.
	WebAPI
)

// Pause is Spotify's request to wait: what the gate answers while it
// holds, and what Note is told.
type Pause struct {
	// Premium: the app owner's Premium has lapsed (else a 429).
	Premium bool
	// LoginsOnly: the logins' own back-off (a login's 429).
	LoginsOnly bool
	// Wait is how long the pause lasts (from now).
	Wait time.Duration
	// Asked is what Spotify asked for, if longer than Wait (capped).
	Asked time.Duration
	Said  string // Spotify's words, for the answer and the log
}

func (p *Pause) Error() string {
	if p.Premium {
		return "Spotify refuses this app (the owner's Premium has lapsed); calls paused"
	}
	return "Spotify is rate limiting this app; calls paused"
}

// backoff is one pause: its end (unix nanoseconds) and cause.
type backoff struct {
	until atomic.Int64
	cause atomic.Pointer[cause]
}

type cause struct {
	p  Pause
	at time.Time
}

// extend moves the end to now+p.Wait, never earlier than it is.
func (b *backoff) extend(p Pause, now time.Time) {
	end := now.Add(p.Wait).UnixNano()
	for {
		cur := b.until.Load()
		if cur >= end {
			return
		}
		if b.until.CompareAndSwap(cur, end) {
			b.cause.Store(&cause{p: p, at: now})
			return
		}
	}
}

// check returns the pause if it holds at now, with the wait left.
func (b *backoff) check(now time.Time) *Pause {
	wait := time.Duration(b.until.Load() - now.UnixNano())
	if wait <= 0 {
		return nil
	}
	p := &Pause{Wait: wait}
	if c := b.cause.Load(); c != nil {
		p.Premium, p.LoginsOnly, p.Said = c.p.Premium, c.p.LoginsOnly, c.p.Said
		if asked := c.p.Asked - now.Sub(c.at); asked > wait {
			p.Asked = asked
		}
	}
	return p
}

// EndPause forgets the pause of scope's own back-off (Calls: the app's;
// Logins: the logins' own) as this instance knows it in memory, not in
// storage: for when the cause is known to be gone.
func (s *State) EndPause(scope Scope) {
	if scope == Logins {
		s.logins.until.Store(0)
		return
	}
	s.app.until.Store(0)
}

// sharedPause is what storage holds (sealed) for a pause.
type sharedPause struct {
	Until int64  `json:"u"`           // unix nanoseconds
	Kind  string `json:"k"`           // the failure kind
	Said  string `json:"s,omitempty"` // Spotify's words, for the log
	// AskedUntil (unix nanoseconds): a 429 asked for longer than Until.
	AskedUntil int64 `json:"a,omitempty"`
}

// Kinds a shared pause records (the root package's failure kinds, so
// instances of older versions read them alike).
const (
	kindRateLimited  = "rate_limited"
	kindOwnerPremium = "owner_premium_required"
	kindForced       = "forced"
	kindFailed       = "spotify_unavailable"
)

// Check answers whether Spotify may be called now for scope: nil if so,
// else the pause that holds (as this instance knows, or as another
// published).
func (c *Coordinator) Check(ctx context.Context, scope Scope, now time.Time) *Pause {
	if scope == WebAPI {
		if p := c.state.app.check(now); p != nil && p.Premium {
			return p
		}
		return nil
	}
	if p := c.state.app.check(now); p != nil {
		return p
	}
	for _, key := range c.backoffKeys() {
		sp, ok := c.loadPause(ctx, key, now)
		if !ok {
			continue
		}
		p := Pause{Premium: sp.Kind == kindOwnerPremium, Wait: time.Duration(sp.Until - now.UnixNano()), Said: sp.Said}
		if asked := time.Duration(sp.AskedUntil - now.UnixNano()); asked > p.Wait {
			p.Asked = asked
		}
		c.state.app.extend(p, now)
		return c.state.app.check(now)
	}
	if scope == Logins {
		return c.state.logins.check(now)
	}
	return nil
}

// Note records a pause Spotify asked for. A login's 429 pauses logins
// only, in this instance; anything else (a 429 elsewhere, the owner's
// lapsed Premium from any call) pauses every call, here and, through
// storage, on the other instances.
func (c *Coordinator) Note(ctx context.Context, scope Scope, p Pause, now time.Time) {
	if scope == Logins && !p.Premium {
		p.LoginsOnly = true
		c.state.logins.extend(p, now)
		return
	}
	p.LoginsOnly = false
	c.obs.Paused(p)
	c.state.app.extend(p, now)
	sp := sharedPause{Until: now.Add(p.Wait).UnixNano(), Kind: kindRateLimited, Said: p.Said}
	if p.Premium {
		sp.Kind = kindOwnerPremium
	}
	if p.Asked > p.Wait {
		sp.AskedUntil = now.Add(p.Asked).UnixNano()
	}
	c.storePause(ctx, c.backoffKeys()[0], sp)
}

// backoffKeys names the app's back-off record as each key this instance
// holds would seal it, the sealing key's first (where Note writes). A
// record written before a key rotation is still found; sites of the app
// with other keys, which could not open it, neither read nor overwrite it.
func (c *Coordinator) backoffKeys() []string {
	ids := c.cfg.Sealer().KeyIDs()
	names := make([]string, len(ids))
	for i, id := range ids {
		names[i] = storagekeys.AppBackoff(c.cfg.TokenURL, c.cfg.ClientID, string(id[:]))
	}
	return names
}
