package spotifyauth

import (
	"context"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddyspotify/caddy-spotify-auth/internal/seal"
	"github.com/caddyspotify/caddy-spotify-auth/internal/storagekeys"
	"github.com/caddyspotify/caddy-spotify-auth/internal/teststorage"
	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// In-process instances: handlers with the same config and storage but
// nothing shared in memory, as separate Caddy processes would be. The
// two-process version of these tests is in multiprocess_test.go.

func TestOneRefreshAcrossInstances(t *testing.T) {
	t.Parallel()
	runAtOnce(t, storageKinds, storageKindName, func(t *testing.T, kind storageKind) {
		storage := kind.new(t)
		hs := newHarness(t, withStorage(storage))
		// With rotation, a second refresh with the old refresh token
		// would fail: the test would see it as well as count it.
		hs.fake.SetRotateRefreshTokens(true)
		_, regB := hs.addInstance()
		hs.login(hs.browser, "/")
		old := hs.nearlyExpire(hs.browser)
		before := hs.fake.Counts().Refreshes

		results := hs.burst(hs.browser, "/app/", 40, 2)
		var slowest time.Duration
		for i, r := range results {
			if r.status != http.StatusOK {
				t.Fatalf("request %d: status %d", i, r.status)
			}
			if r.token == old.AccessToken || r.token != results[0].token {
				t.Fatalf("request %d got token %.8s…, want the one new token %.8s…", i, r.token, results[0].token)
			}
			slowest = max(slowest, r.took)
		}
		if _, _, valid := hs.fake.AccessTokenInfo(results[0].token); !valid {
			t.Fatal("the new token is not valid at Spotify")
		}
		storageHoldsNone(t, storage, results[0].token, old.RefreshToken, hs.session(hs.browser).RefreshToken)
		if n := hs.fake.Counts().Refreshes - before; n != 1 {
			t.Fatalf("%d refreshes at Spotify for 40 requests on 2 instances, want 1", n)
		}
		refreshed := hs.metric("caddy_spotify_auth_refreshes_total") + metricValue(t, regB, "caddy_spotify_auth_refreshes_total")
		shared := hs.metric("caddy_spotify_auth_refreshes_shared_total") + metricValue(t, regB, "caddy_spotify_auth_refreshes_shared_total")
		if refreshed != 1 || shared != 1 {
			t.Fatalf("refreshes_total %v, refreshes_shared_total %v; want 1 and 1 (one instance refreshed, the other reused it)", refreshed, shared)
		}
		if rec, ok := storage.(*teststorage.Storage); ok {
			calls := rec.Calls()
			if calls["Lock"] < 1 || calls["Unlock"] < 1 || calls["Store"] != 1 {
				t.Fatalf("storage calls %v: want a lock taken and released, and one published result", calls)
			}
			t.Logf("storage calls: %v", calls)
		}
		if locks, _ := storage.List(context.Background(), "", true); slices.ContainsFunc(locks, func(k string) bool { return strings.HasSuffix(k, ".lock") }) {
			t.Fatalf("a lock was left behind: %v", locks)
		}
		t.Logf("40 requests over 2 instances: 1 refresh, slowest answer %v", slowest.Round(time.Millisecond))
	})
}

func TestAStorageThatCannotLockStillRefreshesAndWarns(t *testing.T) {
	t.Parallel()
	storage := teststorage.New(t.TempDir())
	storage.NoLock = true
	hs := newHarness(t, withStorage(storage))
	b, _ := hs.addInstance()
	core, logs := observer.New(zap.WarnLevel)
	hs.h.logger, b.logger = zap.New(core), zap.New(core)
	hs.login(hs.browser, "/")
	hs.nearlyExpire(hs.browser)
	due := cookieIn(t, hs, hs.browser, "spotify_auth")

	// One after the other, with the same due cookie: the first publishes
	// its result even without the lock, and the second reuses it.
	for i := range 2 {
		setCookieIn(t, hs, hs.browser, "spotify_auth", due)
		if resp, _ := hs.get(hs.browser, "/app/", onInstance(i)...); resp.StatusCode != http.StatusOK {
			t.Fatalf("instance %d: status %d", i, resp.StatusCode)
		}
	}
	if n := hs.fake.Counts().Refreshes; n != 1 {
		t.Fatalf("%d refreshes, want 1", n)
	}
	if n := logs.FilterMessageSnippet("failed to coordinate").Len(); n < 1 {
		t.Fatalf("no warning that storage could not coordinate; logs: %v", logs.All())
	}
}

func TestGeneratedKeysRotateWithoutLoggingAnyoneOut(t *testing.T) {
	t.Parallel()
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	hs := newHarness(t, withStorage(storage), func(h *Handler, _ *spotifytest.Client) {
		h.CookieSecrets = nil
		h.KeyRotation = caddy.Duration(time.Hour)
		h.SessionLifetime = caddy.Duration(time.Hour)
	})
	b, _ := hs.addInstance()
	ctx := context.Background()
	keys := func() storedKeys {
		sk, err := loadKeys(ctx, storage)
		if err != nil {
			t.Fatal(err)
		}
		return sk
	}
	firstKey := keys().Keys[0].Key
	hs.login(hs.browser, "/")
	oldSession := hs.session(hs.browser)
	t0 := time.Now()
	serves := func(when string, c *http.Client) {
		t.Helper()
		for i := range 2 {
			if resp, _ := hs.get(c, "/app/", onInstance(i)...); resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: instance %d answered %d", when, i, resp.StatusCode)
			}
		}
	}
	sealingKey := func(h *Handler) seal.KeyID { return h.sealers().sessions.SealingKey() }
	reload := func(when string, at time.Time, hs ...*Handler) {
		t.Helper()
		for _, h := range hs {
			if err := h.reloadKeys(ctx, at); err != nil {
				t.Fatalf("%s: %v", when, err)
			}
		}
	}

	// An hour on, A rotates; B has not re-read the keys yet. The new key
	// does not seal yet, so what A seals now still opens on B.
	reload("rotation", t0.Add(time.Hour+time.Second), hs.h)
	if n := len(keys().Keys); n != 2 {
		t.Fatalf("%d keys after rotation, want 2", n)
	}
	oldID := sealingKey(hs.h)
	if oldID != sealingKey(b) {
		t.Fatal("A seals with the new key before B can know it")
	}
	early := newBrowser(t)
	hs.login(early, "/")
	serves("a login on A right after rotation", early)

	// Past the activation delay, both (having re-read) seal with the new
	// key, and cookies sealed with the old one still open.
	reload("activation", t0.Add(time.Hour+keyActivationDelay+2*time.Second), hs.h, b)
	if sealingKey(hs.h) == oldID || sealingKey(hs.h) != sealingKey(b) {
		t.Fatal("the new key does not seal on both instances")
	}
	serves("a cookie from before the rotation", hs.browser)
	fresh := newBrowser(t)
	hs.login(fresh, "/")
	serves("a cookie sealed with the new key", fresh)

	// Once nothing sealed with the old key can still be valid (the
	// session lifetime has passed since it stopped sealing), it is dropped
	// and no longer opens.
	reload("aging out", t0.Add(3*time.Hour+keyActivationDelay+3*time.Second), hs.h, b)
	for _, k := range keys().Keys {
		if string(k.Key) == string(firstKey) {
			t.Fatal("the first key is still kept after aging out")
		}
	}
	u, _ := url.Parse(hs.srv.URL)
	hs.browser.Jar.SetCookies(u, []*http.Cookie{{Name: "spotify_auth", Value: mustKeyring(t, firstKey, hs.h.app).sessions.Seal(oldSession.marshal(), hs.h.cookies.aad), Path: "/"}})
	if resp, _ := apiGet(hs, hs.browser, "/app/"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a cookie under the aged-out key: status %d, want 401", resp.StatusCode)
	}
}

func TestStoredSessionsEndEverywhereOnLogout(t *testing.T) {
	t.Parallel()
	runAtOnce(t, storageKinds, storageKindName, func(t *testing.T, kind storageKind) {
		storage := kind.new(t)
		hs := newHarness(t, withStorage(storage), withStoredSessions())
		hs.addInstance()
		hs.login(hs.browser, "/")
		value := cookieIn(t, hs, hs.browser, "spotify_auth")
		if len(value) > 200 {
			t.Fatalf("session cookie is %d bytes; with session_store storage it should hold only a reference", len(value))
		}
		if n := countStoredSessions(t, storage); n != 1 {
			t.Fatalf("%d stored sessions after one login, want 1", n)
		}
		// What the storage holds is sealed: no token, and not the
		// reference a cookie would need.
		sess := hs.session(hs.browser)
		ref, _ := hs.h.sealers().sessions.Open(value, hs.h.cookies.aad)
		storageHoldsNone(t, storage, sess.AccessToken, sess.RefreshToken, value, string(refID(ref)), hex.EncodeToString(refID(ref)))

		// A copy of the cookie works on the other instance...
		thief := newBrowser(t)
		setCookieIn(t, hs, thief, "spotify_auth", value)
		if resp, _ := hs.get(thief, "/app/", onInstance(1)...); resp.StatusCode != http.StatusOK {
			t.Fatalf("copied cookie on instance 2: status %d", resp.StatusCode)
		}
		// ...until the owner logs out on the first: then at once not
		// there, and on the other once its cache of stored sessions
		// (storedSessionCacheTTL, sessioncache.go) has let it go.
		logout(t, hs, hs.browser, "")
		if resp, _ := hs.get(thief, "/app/"); resp.StatusCode != http.StatusFound {
			t.Fatalf("copied cookie after logout, on the instance that served it: status %d, want 302 to login", resp.StatusCode)
		}
		time.Sleep(storedSessionCacheTTL)
		if resp, _ := hs.get(thief, "/app/", onInstance(1)...); resp.StatusCode != http.StatusFound {
			t.Fatalf("copied cookie %v after logout, on the other instance: status %d, want 302 to login", storedSessionCacheTTL, resp.StatusCode)
		}
		if n := countStoredSessions(t, storage); n != 0 {
			t.Fatalf("%d stored sessions after logout, want 0", n)
		}

		// Logout everywhere ends the user's other sessions too.
		other := newBrowser(t)
		hs.login(hs.browser, "/")
		hs.login(other, "/")
		if n := countStoredSessions(t, storage); n != 2 {
			t.Fatalf("%d stored sessions after two logins, want 2", n)
		}
		body := logout(t, hs, hs.browser, "?everywhere=1")
		if !strings.Contains(body, "logged out everywhere") {
			t.Fatalf("logout page: %s", body)
		}
		if resp, _ := hs.get(other, "/app/"); resp.StatusCode != http.StatusFound {
			t.Fatalf("other browser after logout everywhere: status %d, want 302", resp.StatusCode)
		}
		if n := countStoredSessions(t, storage); n != 0 {
			t.Fatalf("%d stored sessions after logout everywhere, want 0", n)
		}
	})
}

func TestStoredSessionRefreshUpdatesStorageNotTheCookie(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, withStoredSessions())
	hs.addInstance()
	hs.login(hs.browser, "/")
	old := hs.nearlyExpire(hs.browser)
	resp, _ := hs.get(hs.browser, "/app/")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for _, c := range resp.Cookies() {
		if c.Name == "spotify_auth" {
			t.Fatal("a refresh re-set the cookie; only the stored session should change")
		}
	}
	if s := hs.session(hs.browser); s.AccessToken == old.AccessToken {
		t.Fatal("the stored session still has the old token")
	}
	// The other instance reads the new token from storage: no refresh.
	forgetRefreshes(t, hs.h)
	if resp, _ := hs.get(hs.browser, "/app/", onInstance(1)...); resp.StatusCode != http.StatusOK {
		t.Fatalf("instance 2: status %d", resp.StatusCode)
	}
	if n := hs.fake.Counts().Refreshes; n != 1 {
		t.Fatalf("%d refreshes, want 1", n)
	}
}

func TestALogoutDuringARefreshIsNotUndone(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, withStoredSessions())
	hs.login(hs.browser, "/")
	hs.nearlyExpire(hs.browser)
	hs.fake.InjectFault(spotifytest.EndpointToken, spotifytest.Fault{Delay: 300 * time.Millisecond, Times: 1})
	done := make(chan *http.Response)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, hs.url("/app/"), nil)
		resp, err := hs.browser.Do(req)
		if err != nil {
			close(done)
			return
		}
		resp.Body.Close()
		done <- resp
	}()
	time.Sleep(100 * time.Millisecond) // the refresh is under way
	logout(t, hs, hs.browser, "")
	resp := <-done
	if resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("request whose session was logged out mid-refresh: %v, want 401", resp)
	}
	if n := countStoredSessions(t, hs.h.storage); n != 0 {
		t.Fatalf("the refresh brought the logged-out session back (%d stored)", n)
	}
}

func TestStoredSessionsFailClosedWhenStorageFails(t *testing.T) {
	t.Parallel()
	storage := teststorage.New(t.TempDir())
	hs := newHarness(t, withStorage(storage), withStoredSessions())
	hs.login(hs.browser, "/")
	storage.FailAll.Store(true)
	resp, body := apiGet(hs, hs.browser, "/app/")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "store_unavailable") {
		t.Fatalf("status %d, Retry-After %q, body %s; want 503 store_unavailable", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if n := hs.upstreamCount(); n != 0 {
		t.Fatalf("%d requests reached the upstream while storage failed", n)
	}
	// Logout can't end the stored session: it says so instead of
	// pretending.
	if body := logout(t, hs, hs.browser, ""); !strings.Contains(body, "unavailable") {
		t.Fatalf("logout while storage fails: %s", body)
	}
	storage.FailAll.Store(false)
	if resp, _ := hs.get(hs.browser, "/app/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("after storage recovered: status %d; the session should have survived", resp.StatusCode)
	}
}

func TestCookieSessionsMoveToStorageWhenSwitchedOn(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	hs.login(hs.browser, "/")
	before := cookieIn(t, hs, hs.browser, "spotify_auth")
	// Same secret, now with session_store storage: as after a reload.
	hs.h, _ = hs.sameConfig(func(h *Handler) { h.SessionStore = sessionStoreStorage })
	if resp, _ := hs.get(hs.browser, "/app/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	after := cookieIn(t, hs, hs.browser, "spotify_auth")
	if after == before || len(after) > 200 || countStoredSessions(t, hs.h.storage) != 1 {
		t.Fatalf("cookie session not moved to storage (cookie %d → %d bytes)", len(before), len(after))
	}
	// And back: a reference still resolves with the default store.
	hs.h, _ = hs.sameConfig(func(h *Handler) { h.SessionStore = "" })
	if resp, _ := hs.get(hs.browser, "/app/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("back to cookie sessions: status %d", resp.StatusCode)
	}
}

// TestLogoutEverywhereEndsEveryCopyOnEveryInstance: with cookie sessions a
// copied cookie dies at once on the instance that served the logout and
// at the other's next re-read; with session_store storage a copy of a
// cookie-mode session (from before the switch) is not moved in again.
func TestLogoutEverywhereEndsEveryCopyOnEveryInstance(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("cookie sessions", func(t *testing.T) {
		hs := newHarness(t)
		other, _ := hs.addInstance()
		hs.login(hs.browser, "/")
		thief := newBrowser(t)
		setCookieIn(t, hs, thief, "spotify_auth", cookieIn(t, hs, hs.browser, "spotify_auth"))
		for n := range 2 {
			if resp, _ := hs.get(thief, "/app/", onInstance(n)...); resp.StatusCode != http.StatusOK {
				t.Fatalf("copied cookie on instance %d: %d", n, resp.StatusCode)
			}
		}
		body := logout(t, hs, hs.browser, "?everywhere=1")
		if !strings.Contains(body, "logged out everywhere") {
			t.Fatalf("page: %s", body)
		}
		if resp, _ := hs.get(thief, "/app/"); resp.StatusCode != http.StatusFound {
			t.Fatalf("copied cookie on the instance that logged out: %d, want 302", resp.StatusCode)
		}
		// The other instance learns at its next re-read (every
		// revocation.RereadInterval); this is that re-read.
		if err := other.revocations.Reread(ctx, time.Now()); err != nil {
			t.Fatal(err)
		}
		if resp, _ := hs.get(thief, "/app/", onInstance(1)...); resp.StatusCode != http.StatusFound {
			t.Fatalf("copied cookie on the other instance after its re-read: %d, want 302", resp.StatusCode)
		}
		storageHoldsNone(t, hs.h.storage, spotifytest.DefaultUserID)
		// The user logs in again, and that session works everywhere.
		hs.login(thief, "/")
		for n := range 2 {
			if resp, _ := hs.get(thief, "/app/", onInstance(n)...); resp.StatusCode != http.StatusOK {
				t.Fatalf("a new login on instance %d after logout everywhere: %d", n, resp.StatusCode)
			}
		}
	})
	t.Run("a cookie-mode copy under session_store storage", func(t *testing.T) {
		hs := newHarness(t, withStoredSessions())
		cookieMode, _ := hs.sameConfig(func(h *Handler) { h.SessionStore = "" })
		hs.instances = append(hs.instances, cookieMode)
		// A session made before the switch, and a copy of it.
		hs.login(hs.browser, "/", onInstance(1)...)
		thief := newBrowser(t)
		setCookieIn(t, hs, thief, "spotify_auth", cookieIn(t, hs, hs.browser, "spotify_auth"))
		if resp, _ := hs.get(hs.browser, "/app/"); resp.StatusCode != http.StatusOK {
			t.Fatalf("moving in: %d", resp.StatusCode)
		}
		logout(t, hs, hs.browser, "?everywhere=1")
		if resp, _ := hs.get(thief, "/app/"); resp.StatusCode != http.StatusFound {
			t.Fatalf("the cookie-mode copy after logout everywhere: %d, want 302", resp.StatusCode)
		}
		if n := countStoredSessions(t, hs.h.storage); n != 0 {
			t.Fatalf("%d stored sessions after logout everywhere and a replay, want 0", n)
		}
	})
}

func TestSweepDeletesOnlyWhatHasExpired(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, withStoredSessions())
	hs.login(hs.browser, "/")
	hs.nearlyExpire(hs.browser)
	if resp, _ := hs.get(hs.browser, "/app/"); resp.StatusCode != http.StatusOK { // publishes a result
		t.Fatalf("status %d", resp.StatusCode)
	}
	ctx := context.Background()
	results := func() int {
		keys, _ := hs.h.storage.List(ctx, storagekeys.RefreshResults, false)
		return len(keys)
	}
	if results() != 1 {
		t.Fatalf("%d published refresh results, want 1", results())
	}
	now := time.Now()
	hs.h.maintenance.maintainOnce(ctx, now)
	if results() != 1 || countStoredSessions(t, hs.h.storage) != 1 {
		t.Fatal("the sweep removed live entries")
	}
	hs.h.maintenance.maintainOnce(ctx, now.Add(refreshResultKeep+time.Minute))
	if results() != 0 || countStoredSessions(t, hs.h.storage) != 1 {
		t.Fatalf("after the result's window: %d results, %d sessions; want 0 and 1", results(), countStoredSessions(t, hs.h.storage))
	}
	hs.h.maintenance.maintainOnce(ctx, now.Add(time.Duration(hs.h.SessionLifetime)+time.Hour))
	if n := countStoredSessions(t, hs.h.storage); n != 0 {
		t.Fatalf("%d stored sessions after their lifetime, want 0", n)
	}
}

// Helpers.

// Each app sharing the storage sweeps the stored sessions its keys open,
// on a turn of its own. The sweep turn used to be one for all apps, and
// only an app's own keys open its sessions: the app whose maintenance ran
// first after each turn swept its sessions and no other's, for good.
func TestEveryAppSharingTheStorageSweepsItsOwnStoredSessions(t *testing.T) {
	t.Parallel()
	shared := &certmagic.FileStorage{Path: t.TempDir()}
	a := newHarness(t, withStoredSessions(), withStorage(shared))
	b := newHarness(t, withStoredSessions(), withStorage(shared)) // another fake: another app, other keys
	for _, hs := range []*harness{a, b} {
		hs.h.maintenance.stopAndWait() // the test drives the schedule
		hs.login(hs.browser, "/")
	}
	if n := countStoredSessions(t, shared); n != 2 {
		t.Fatalf("%d stored sessions after two apps' logins, want 2", n)
	}
	ctx := context.Background()
	start := time.Now().Add(time.Duration(a.h.SessionLifetime) + time.Hour)
	for minute := range 3 * 60 {
		now := start.Add(time.Duration(minute) * time.Minute)
		a.h.maintenance.maintainOnce(ctx, now) // a always first
		b.h.maintenance.maintainOnce(ctx, now.Add(time.Second))
	}
	if n := countStoredSessions(t, shared); n != 0 {
		t.Fatalf("%d expired stored sessions left after three hours of both apps' maintenance, want 0", n)
	}
}
