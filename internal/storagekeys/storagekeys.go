// Package storagekeys names everything the plugin keeps in Caddy's storage
// (or the storage its `storage` option names), in one place.
//
// # Layout
//
//	spotify_auth/session_keys.json        generated session keys (JSON, not sealed: they are the keys)
//	    written by: the first instance to start without cookie_secret, under its own lock;
//	    key_rotation adds keys in place. Lives: until deleted by hand.
//	spotify_auth/sessions/<user>/<ref>    session_store storage: one sealed session per login
//	    <user> is a hash of client_id and user id, <ref> a hash of the cookie's random reference.
//	    written by: login, refresh, migration of a cookie session; deleted by logout, the admin
//	    revoke and the hourly sweep. Lives: session_lifetime.
//	spotify_auth/revoked/<hash>           a "void every session of this user before T" mark (sealed)
//	    <hash> of app, marks key and user id. written by: logout?everywhere=1, the admin revoke.
//	    Lives: until every session it voids has ended (the mark says how long).
//	spotify_auth/refresh/<key>            a refresh's result (sealed), for the other instances
//	    <key> (RefreshKey) names one refresh: the access token it replaced and the refresh token.
//	    written by: the instance that refreshed. Lives: swept 2 h after it was written.
//	spotify_auth/paused/<session>         a session's refresh failed: no retry before the end (sealed)
//	spotify_auth/paused/forced-<session>  a refresh on the upstream's 401: no other for 5 minutes
//	    <session> (SessionID) names the session across its refreshes: app, user, login time.
//	    Lives: swept an hour after it was written (a pause never outlasts an hour).
//	spotify_auth/backoff/<app>            Spotify asked the app to wait (a 429, the owner's
//	    lapsed Premium): no call before the end (sealed). <app> hashes token_url, client_id and
//	    the sealing key's id (read under each key held, so a rotation keeps it).
//	    Lives: as the pauses.
//	spotify_auth/last_sweep               when an instance last swept results, pauses and back-offs
//	    (unix nanoseconds, plain): one turn every 10 minutes for all apps sharing the storage.
//	spotify_auth/session_sweeps/<keys>    when stored sessions that one key set opens were last swept
//	    (unix nanoseconds, plain): one turn an hour per app, as only its keys open its sessions.
//	    <keys> hashes the key id. written by: the instance taking the turn. Lives: swept 2 h after it was written.
//
// Locks (names passed to the storage's Lock):
//
//	spotify_auth/session_keys.json        generating or rotating the keys
//	spotify_auth_refresh_<key>            one refresh across instances
//	spotify_auth_migrate_<user>_<ref>     moving one cookie session into storage
//	spotify_auth_sweep                    taking the sweep turn
//	spotify_auth_sweep_sessions_<keys>    taking one key set's turn at sweeping stored sessions
//
// Every sealed record is bound to its key (the key is the sealing's
// associated data) and to the app (its keys are derived per app), so a
// record moved to another name, or written by another app sharing the
// storage, does not open.
package storagekeys

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
)

// Names and prefixes of the layout above.
const (
	SessionKeys    = "spotify_auth/session_keys.json"
	Sessions       = "spotify_auth/sessions/"
	Revoked        = "spotify_auth/revoked/"
	RefreshResults = "spotify_auth/refresh/"
	Paused         = "spotify_auth/paused/"
	// ForcedPaused sits in Paused's folder, so the same sweep deletes it.
	ForcedPaused = Paused + "forced-"
	Backoff      = "spotify_auth/backoff/"
	LastSweep    = "spotify_auth/last_sweep"
	// SessionSweeps holds each key set's last sweep of stored sessions.
	SessionSweeps = "spotify_auth/session_sweeps/"

	SweepLock = "spotify_auth_sweep"
)

// Hash names what belongs to parts without revealing them: the hex of
// the first n bytes of their SHA-256.
func Hash(n int, parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(sum[:n])
}

// RefreshKey names one refresh: of this access token, with this refresh
// token. It changes with every refresh, whether or not Spotify rotates
// the refresh token (since June 2026 it does not on refresh).
func RefreshKey(refreshToken, accessToken string) string {
	return Hash(16, refreshToken, accessToken)
}

// SessionID names a session across its refreshes and its copies: the
// app, the user and when they logged in (unix nanoseconds).
func SessionID(app, userID string, created int64) string {
	return Hash(16, app, userID, strconv.FormatInt(created, 10))
}

// RefreshLock is the lock of one refresh (RefreshKey) across instances.
func RefreshLock(key string) string { return "spotify_auth_refresh_" + key }

// AppBackoff is where Spotify's request to wait is kept for the app, as
// one key set seals it: sites of one Spotify app with different keys
// (staging and production) cannot open each other's, and must not
// overwrite them, or neither would keep to its pause.
func AppBackoff(tokenURL, clientID, keysID string) string {
	return Backoff + Hash(16, tokenURL, clientID, keysID)
}

// SessionSweep records when the stored sessions the keys named keysID
// open were last swept; SessionSweepLock is the lock of taking that turn.
func SessionSweep(keysID string) string     { return SessionSweeps + keysID }
func SessionSweepLock(keysID string) string { return SweepLock + "_sessions_" + keysID }

// UserSessions is the folder of a user's stored sessions; userLen bytes
// of the hash of client and user name it.
func UserSessions(clientID, userID string, userLen int) string {
	return Sessions + Hash(userLen, clientID, userID) + "/"
}

// StoredSession names a stored session from the user part and the
// hashed id of its reference (both hex).
func StoredSession(userHex, idHex string) string {
	return Sessions + userHex + "/" + idHex
}

// MigrateLock is the lock of moving one cookie session to key, a
// StoredSession name.
func MigrateLock(key string) string {
	return "spotify_auth_migrate_" + strings.ReplaceAll(strings.TrimPrefix(key, Sessions), "/", "_")
}

// Revocation names a user's revocation mark as one key set writes it.
func Revocation(app, marksKeyID, userID string, n int) string {
	return Revoked + Hash(n, app, marksKeyID, userID)
}
