package spotifyauth

import (
	"context"
	"time"

	"github.com/caddyspotify/caddy-spotify-auth/internal/records"
	"github.com/caddyspotify/caddy-spotify-auth/internal/refresher"
)

// Spotify's pauses (its 429s, the owner's lapsed Premium) are kept and
// shared by the refresh coordinator's one gate; here they become this
// package's failures and back.

// storageOpTimeout bounds a storage call made on the side (a record, the
// sweep's lock), so a hung store cannot hold a request for long.
const storageOpTimeout = records.Timeout

// storageLockWait bounds waiting for a storage lock (keys, a session's
// move to storage): another holder's work takes milliseconds, a stale
// lock of a crashed one a few seconds.
const storageLockWait = 12 * time.Second

// mayCallSpotify answers whether Spotify may be called now for scope, as
// the coordinator c that keeps the pauses says: nil, or the failure to
// answer while the pause holds.
func mayCallSpotify(ctx context.Context, c *refresher.Coordinator, scope refresher.Scope, now time.Time) error {
	if p := c.Check(ctx, scope, now); p != nil {
		return pauseError(p)
	}
	return nil
}

// noteSpotify tells the gate a failure Spotify answered a call of scope
// with, if it pauses calls (a 429, the owner's lapsed Premium).
func noteSpotify(ctx context.Context, c *refresher.Coordinator, scope refresher.Scope, err error) {
	if p := pauseOf(asAuthError(err)); p != nil {
		c.Note(ctx, scope, *p, time.Now())
	}
}

// pausesCalls reports whether a failure stops every call to Spotify for
// a while: a 429, or the app owner's lapsed Premium (every call fails).
func pausesCalls(k failureKind) bool { return k == kindRateLimited || k == kindOwnerPremium }

// pauseOf is the pause a failure asks for, or nil.
func pauseOf(ae *authError) *refresher.Pause {
	if !pausesCalls(ae.Kind) {
		return nil
	}
	return &refresher.Pause{Premium: ae.Kind == kindOwnerPremium, Wait: ae.RetryAfter, Asked: ae.Asked, Said: ae.Said}
}

// pauseError is the answer while a pause holds: its cause's kind and
// words, with the wait left.
func pauseError(p *refresher.Pause) *authError {
	ae := &authError{Kind: kindRateLimited, Message: "Spotify is rate limiting this app", RetryAfter: p.Wait,
		Asked: p.Asked, Said: cleanSpotifyText(p.Said, maxSpotifyText)}
	switch {
	case p.Premium:
		ae.Kind, ae.Message = kindOwnerPremium, ownerPremiumMessage
	case p.LoginsOnly:
		ae.Message = "Spotify is rate limiting logins to this app"
	}
	return ae
}
