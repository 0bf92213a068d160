package spotifyauth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/caddyspotify/caddy-spotify-auth/internal/revocation"
	"github.com/caddyspotify/caddy-spotify-auth/internal/seal"
	"github.com/caddyspotify/caddy-spotify-auth/internal/storagekeys"
	"github.com/caddyspotify/caddy-spotify-auth/internal/storedsession"
	"github.com/caddyspotify/caddy-spotify-auth/internal/teststorage"
)

// Unit tests of the session stores, without Caddy or the HTTP harness.

// testStores builds both stores over one storage and one key ring, as
// two sites of one app sharing them would have.
func testStores(t *testing.T) (*cookieStore, *storageStore, *teststorage.Storage) {
	t.Helper()
	storage := teststorage.New(t.TempDir())
	keys := new(atomic.Pointer[keyring])
	keys.Store(mustKeyring(t, []byte(secretA), "app"))
	build := func() *cookieStore {
		cache := newSessionCache()
		stored := &storedSessions{cache: cache, bearer: true, userHeaders: true, logger: zap.NewNop(),
			store: storedsession.New(storedsession.Config{Storage: storage, ClientID: testClientID,
				Sealer: func() *seal.Sealer { return keys.Load().stored }, Created: sessionCreated,
				Changed: cache.forgetStored, Logger: zap.NewNop()})}
		return &cookieStore{names: newCookieNames(DefaultCookieName, false), keys: keys, cache: cache,
			stored: stored, bearer: true, userHeaders: true,
			marks: revocation.New(revocation.Config{Storage: storage, Sealer: func() *seal.Sealer { return keys.Load().marks },
				App: "app", Keep: DefaultSessionLifetime + revocation.Margin,
				Logger: zap.NewNop()})}
	}
	return build(), &storageStore{cookieStore: build(), lifetime: DefaultSessionLifetime}, storage
}

// roundTrip returns a request carrying the cookies a response set.
// saveVia saves s through st, as an answer would, and returns what was
// saved and the answer.
func saveVia(t *testing.T, st sessionStore, s session) (session, *httptest.ResponseRecorder) {
	t.Helper()
	rec := httptest.NewRecorder()
	s, err := st.save(rec, httptest.NewRequest(http.MethodGet, "http://example.com/", nil), s)
	if err != nil {
		t.Fatal(err)
	}
	return s, rec
}

func roundTrip(rec *httptest.ResponseRecorder) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://example.com/", nil)
	for _, c := range rec.Result().Cookies() {
		if c.MaxAge >= 0 {
			r.AddCookie(c)
		}
	}
	return r
}

func TestAStoredSessionCookieHoldsOnlyAReference(t *testing.T) {
	t.Parallel()
	_, store, storage := testStores(t)
	s := validSession(time.Hour)
	s, rec := saveVia(t, store, s)
	if s.storeKey == "" || countStoredSessions(t, storage) != 1 {
		t.Fatalf("saved under %q, %d sessions in storage", s.storeKey, countStoredSessions(t, storage))
	}
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 || len(cookies[0].Value) > 200 {
		t.Fatalf("cookies %d, the first %d bytes: a reference should be short", len(cookies), len(cookies[0].Value))
	}
	got, err := store.load(roundTrip(rec), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got.AccessToken != s.AccessToken || got.storeKey != s.storeKey {
		t.Fatalf("loaded %q under %q", got.AccessToken, got.storeKey)
	}
}

func TestTheCookieStoreOpensSessionsMadeUnderStorage(t *testing.T) {
	t.Parallel()
	cookies, store, _ := testStores(t)
	s := validSession(time.Hour)
	s, rec := saveVia(t, store, s)
	if got, err := cookies.load(roundTrip(rec), time.Now()); err != nil || got.UserID != s.UserID {
		t.Fatalf("switched back to cookies, the stored session does not open: %v", err)
	}
}

func TestTheStorageStoreAdoptsACookieSessionOnce(t *testing.T) {
	t.Parallel()
	cookies, store, storage := testStores(t)
	s := validSession(time.Hour)
	_, rec := saveVia(t, cookies, s)
	old := roundTrip(rec)
	var first string
	// A client that ignores the new cookie sends the old one again.
	for range 3 {
		loaded, err := store.load(old, time.Now())
		if err != nil || loaded.storeKey != "" {
			t.Fatalf("the cookie session loads as %q: %v", loaded.storeKey, err)
		}
		moved := httptest.NewRecorder()
		adopted, err := store.adopt(moved, old, loaded)
		if err != nil {
			t.Fatal(err)
		}
		if first == "" {
			first = adopted.storeKey
		}
		if adopted.storeKey == "" || adopted.storeKey != first {
			t.Fatalf("adopted under %q, first under %q", adopted.storeKey, first)
		}
		if got, err := store.load(roundTrip(moved), time.Now()); err != nil || got.storeKey != first {
			t.Fatalf("the new cookie does not point at the stored session: %v", err)
		}
	}
	if n := countStoredSessions(t, storage); n != 1 {
		t.Fatalf("%d stored sessions for one cookie session", n)
	}
}

func TestTheCookieStoreAdoptsNothing(t *testing.T) {
	t.Parallel()
	cookies, _, storage := testStores(t)
	rec := httptest.NewRecorder()
	s, err := cookies.adopt(rec, httptest.NewRequest(http.MethodGet, "http://example.com/", nil), validSession(time.Hour))
	if err != nil || s.storeKey != "" || len(rec.Result().Cookies()) != 0 || countStoredSessions(t, storage) != 0 {
		t.Fatalf("adopt stored %q, set %d cookies: %v", s.storeKey, len(rec.Result().Cookies()), err)
	}
}

func TestAStoredSessionEndedMeanwhileIsNotSavedBack(t *testing.T) {
	t.Parallel()
	_, store, storage := testStores(t)
	ctx := context.Background()
	s := validSession(time.Hour)
	if _, err := store.stored.save(ctx, &s); err != nil {
		t.Fatal(err)
	}
	if n, err := store.delete(ctx, s, false); n != 1 || err != nil {
		t.Fatalf("deleted %d: %v", n, err)
	}
	// A refresh that was in flight during the logout.
	if _, err := store.save(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "http://example.com/", nil), s); err != errNoSession {
		t.Fatalf("saving a logged-out session: %v", err)
	}
	if n := countStoredSessions(t, storage); n != 0 {
		t.Fatalf("a logged-out session came back: %d stored", n)
	}
}

func TestDeletingEverywhereEndsOnlyThatUsersSessions(t *testing.T) {
	t.Parallel()
	cookies, store, storage := testStores(t)
	ctx := context.Background()
	for _, user := range []string{"alice", "alice", "alice", "bob"} {
		s := validSession(time.Hour)
		s.UserID = user
		if _, err := store.stored.save(ctx, &s); err != nil {
			t.Fatal(err)
		}
	}
	// The cookie store ends them too: they may predate a switch to cookies.
	if n, err := cookies.delete(ctx, session{UserID: "alice"}, true); n != 3 || err != nil {
		t.Fatalf("ended %d of alice's 3: %v", n, err)
	}
	if n := countStoredSessions(t, storage); n != 1 {
		t.Fatalf("%d left, want bob's", n)
	}
}

func TestStoredSessionsKeepTheNewestPerUser(t *testing.T) {
	t.Parallel()
	_, store, storage := testStores(t)
	ctx := context.Background()
	var keys []string
	for i := range storedsession.MaxPerUser + 2 {
		s := validSession(time.Hour)
		s.Created = int64(1000 + i)
		if _, err := store.stored.save(ctx, &s); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, s.storeKey)
	}
	if n := countStoredSessions(t, storage); n != storedsession.MaxPerUser {
		t.Fatalf("%d stored, cap %d", n, storedsession.MaxPerUser)
	}
	for i, k := range keys {
		if exists := storage.Exists(ctx, k); exists != (i >= 2) {
			t.Errorf("session %d (created %d): exists %v", i, 1000+i, exists)
		}
	}
}

func TestARevokedSessionDoesNotLoadCachedOrNot(t *testing.T) {
	t.Parallel()
	cookies, _, _ := testStores(t)
	s := validSession(time.Hour)
	s.Created = time.Now().Add(-time.Hour).UnixNano()
	s, rec := saveVia(t, cookies, s)
	r := roundTrip(rec)
	if _, err := cookies.load(r, time.Now()); err != nil { // now cached
		t.Fatal(err)
	}
	if err := cookies.revoke(context.Background(), s.UserID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := cookies.load(r, time.Now()); err != errNoSession {
		t.Fatalf("a revoked session loaded: %v", err)
	}
}

func TestAStorageFailureIsNotALogout(t *testing.T) {
	t.Parallel()
	_, store, storage := testStores(t)
	s := validSession(time.Hour)
	_, rec := saveVia(t, store, s)
	store.cache.reset()
	storage.FailAll.Store(true)
	_, err := store.load(roundTrip(rec), time.Now())
	if err == nil || errors.Is(err, errNoSession) || kindOf(err) != kindStoreUnavailable {
		t.Fatalf("storage down: %v, want the store unavailable (fail closed, not a new login)", err)
	}
}

func TestOnlyTheStorageStoreSweepsStoredSessions(t *testing.T) {
	t.Parallel()
	cookies, store, _ := testStores(t)
	now := time.Now()
	var asked []string
	turn := func(keysID string) bool { asked = append(asked, keysID); return true }
	var prefixes []string
	sweep := func(_ context.Context, prefix string, _ bool, _ func(string, time.Time) bool) {
		prefixes = append(prefixes, prefix)
	}
	cookies.sweep(context.Background(), now, turn, sweep)
	if len(asked) != 0 || len(prefixes) != 0 {
		t.Fatalf("the cookie store asked for turns %v and swept %v: it would use up the storage store's turn", asked, prefixes)
	}
	store.sweep(context.Background(), now, turn, sweep)
	if len(asked) != 1 || asked[0] == "" || len(prefixes) != 1 || !strings.HasPrefix(prefixes[0], storagekeys.Sessions) {
		t.Fatalf("the storage store asked for turns %q and swept %v", asked, prefixes)
	}
}
