package spotifyauth

import (
	"fmt"
	"net/http"
	"runtime"
	"testing"
	"time"
)

// The cache of opened sessions must not change any answer: what opened
// once is reused only with the same keys, and expiry and revocation are
// checked on every request.
func TestOpenedSessionCacheChangesNoAnswer(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	hs.login(hs.browser, "/")
	value := cookieIn(t, hs, hs.browser, "spotify_auth")
	for range 2 {
		if resp, _ := hs.get(hs.browser, "/app/"); resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	cached := func() int {
		cacheOf(hs.h).mu.Lock()
		defer cacheOf(hs.h).mu.Unlock()
		return cacheOf(hs.h).opened.Len()
	}
	if n := cached(); n != 1 {
		t.Fatalf("%d cached sessions after one session's requests, want 1", n)
	}
	// Cookies that don't open are never cached.
	stranger := newBrowser(t)
	for i := range 200 {
		setCookieIn(t, hs, stranger, "spotify_auth", value[:len(value)-8]+string(rune('a'+i%26))+"AAAAAAA")
		if resp, _ := apiGet(hs, stranger, "/app/"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("tampered cookie: status %d", resp.StatusCode)
		}
	}
	if n := cached(); n != 1 {
		t.Fatalf("%d cached sessions after 200 tampered cookies, want still 1", n)
	}

	// New keys (re-read from storage, rotated, or a reload): the cached
	// cookie is opened again, with the new keys, and refused.
	old := hs.h.sealers()
	hs.h.keys.Store(mustKeyring(t, []byte("another-secret-another-secret-another-secret!"), hs.h.app))
	if resp, _ := apiGet(hs, hs.browser, "/app/"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a cached cookie under keys no longer held: status %d, want 401", resp.StatusCode)
	}
	hs.h.keys.Store(old)

	// Expiry: a cached session that has ended is refused.
	s := hs.session(hs.browser)
	s.Expires = time.Now().Add(time.Second).Unix()
	hs.setSession(hs.browser, s)
	if resp, _ := hs.get(hs.browser, "/app/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	time.Sleep(time.Until(time.Unix(s.Expires, 0)) + 50*time.Millisecond)
	if resp, _ := apiGet(hs, hs.browser, "/app/"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a cached session past its end: status %d, want 401", resp.StatusCode)
	}
}

func TestSessionCacheBounds(t *testing.T) {
	t.Parallel()
	c := newSessionCache()
	kr := &keyring{}
	now := time.Now()
	for i := range maxOpenedSessions + 500 {
		c.putOpened(string(rune(i))+"-cookie", kr, openedEntry{}, now)
	}
	c.putOpened(string(make([]byte, maxCachedCookieLen+1)), kr, openedEntry{}, now)
	if n := c.opened.Len(); n != maxOpenedSessions {
		t.Fatalf("%d opened sessions cached, want the bound %d", n, maxOpenedSessions)
	}
	if _, ok := c.open(string(make([]byte, maxCachedCookieLen+1)), kr, now); ok {
		t.Fatal("a cookie longer than maxCachedCookieLen was cached")
	}
	// A stored session: kept storedSessionCacheTTL; a write on this
	// instance during the read keeps the read's result out.
	began := c.beginStoredRead()
	c.putStored("k", session{UserID: "u"}, began, now)
	if _, ok := c.loadStored("k", now.Add(storedSessionCacheTTL-time.Millisecond)); !ok {
		t.Fatal("stored session not cached")
	}
	if _, ok := c.loadStored("k", now.Add(storedSessionCacheTTL)); ok {
		t.Fatal("stored session cached past storedSessionCacheTTL")
	}
	began = c.beginStoredRead()
	c.forgetStored("k")
	c.putStored("k", session{UserID: "u"}, began, now)
	if _, ok := c.loadStored("k", now); ok {
		t.Fatal("a read older than this instance's write was cached")
	}
}

// BenchmarkSessionCacheFull reports the heap held by a full cache of
// opened cookie sessions (the bound, with cookies as long as the fake's,
// which are as long as Spotify's): the per-instance memory in docs/scaling.md.
func BenchmarkSessionCacheFull(b *testing.B) {
	h, _ := benchHandler(b)
	for b.Loop() {
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		cacheOf(h).reset()
		kr := h.sealers()
		now := time.Now()
		for i := range maxOpenedSessions {
			s := validSession(time.Hour)
			s.AccessToken = fmt.Sprintf("%0270d", i) // Spotify's access tokens are about this long
			s.RefreshToken = fmt.Sprintf("%0131d", i)
			value := kr.sessions.Seal(s.marshal(), h.cookies.aad)
			opened, _ := unmarshalSession(mustOpen(b, kr, value, h.cookies.aad))
			opened.up = newUpstreamValues(&opened, h.bearer, h.userHeaders)
			cacheOf(h).putOpened(value, kr, openedEntry{sess: opened}, now)
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/maxOpenedSessions, "heap-B/session")
		b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/(1<<20), "heap-MiB/full")
	}
}

func mustOpen(b *testing.B, kr *keyring, value string, aad []byte) []byte {
	pt, err := kr.sessions.Open(value, aad)
	if err != nil {
		b.Fatal(err)
	}
	return pt
}
