package spotifyauth

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/caddyserver/certmagic"
	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// unreadableStore fails every read once told to.
type unreadableStore struct {
	certmagic.Storage
	failReads atomic.Bool
}

func (s *unreadableStore) Load(ctx context.Context, key string) ([]byte, error) {
	if s.failReads.Load() {
		return nil, errors.New("storage unreachable")
	}
	return s.Storage.Load(ctx, key)
}

// With session_store storage and the store unreachable, the page's
// scripts learn that sessions are unavailable (503), not that the user
// must log in again (401), from userinfo and the token endpoint alike.
func TestEndpointsSayTheStoreIsOutNotLogIn(t *testing.T) {
	t.Parallel()
	store := &unreadableStore{Storage: &certmagic.FileStorage{Path: t.TempDir()}}
	hs := newHarness(t, withStorage(store), withStoredSessions(), func(h *Handler, _ *spotifytest.Client) { h.TokenEndpoint = true })
	hs.login(hs.browser, "/")
	store.failReads.Store(true)
	for _, path := range []string{"userinfo", "token"} {
		cacheOf(hs.h).reset() // not read a moment ago
		req, _ := http.NewRequest(http.MethodGet, hs.url(EndpointPrefix+path), nil)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		resp, body := hs.do(hs.browser, req)
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("%s with the store out: %d %s, want 503", path, resp.StatusCode, body)
		}
	}
}

// In process, without Caddy's matcher in front: every endpoint, the
// callback at a configured path too, answers at its unencoded path only,
// and every other spelling of it is 404, without reaching the upstream
// or Spotify.
func TestEndpointsAnswerOnlyAtTheirExactPath(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, func(h *Handler, c *spotifytest.Client) {
		h.AuthEndpoint, h.TokenEndpoint = true, true
		h.RedirectURI = "/auth/cb"
		c.RedirectURIs = []string{strings.TrimSuffix(c.RedirectURIs[0], DefaultCallbackPath) + "/auth/cb"}
	})
	hs.login(hs.browser, "/")
	sameOrigin := []string{"Sec-Fetch-Site", "same-origin", "Accept", "application/json"}
	if resp, _ := hs.get(hs.browser, EndpointPrefix+"auth", sameOrigin...); resp.StatusCode != http.StatusOK {
		t.Fatalf("the auth endpoint at its path: %d", resp.StatusCode)
	}
	token := hs.session(hs.browser).AccessToken
	hs.fake.ResetCounts()
	before := hs.upstreamCount()
	for _, p := range []string{
		"/oauth2/spotify/%61uth", "/oauth2%2Fspotify%2Fauth", "/%6fauth2/spotify/auth", "/Oauth2/Spotify/Auth",
		"/oauth2/spotify/./token", "/oauth2/spotify//token", "/x/../oauth2/spotify/token", "/oauth2/spotify/token/",
		"/oauth2/spotify/userinf%6F", "/auth/c%62?state=x&code=y", "/AUTH/CB?state=x&code=y", "/auth//cb?state=x&code=y",
		"/oauth2/spotify/callback?state=x&code=y", "/oauth2/spotify/logi%6e",
	} {
		resp, body := hs.get(hs.browser, p, sameOrigin...)
		if resp.StatusCode != http.StatusNotFound || strings.Contains(body, token) || strings.Contains(resp.Header.Get("Authorization"), token) {
			t.Errorf("%s: %d %s; want 404 without the token", p, resp.StatusCode, body)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, hs.url("/oauth2/spotify/logou%74"), strings.NewReader(""))
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if resp, _ := hs.do(hs.browser, req); resp.StatusCode != http.StatusNotFound {
		t.Errorf("logout at a look-alike path: %d, want 404", resp.StatusCode)
	}
	if n := hs.upstreamCount() - before; n != 0 {
		t.Errorf("%d look-alikes reached the upstream", n)
	}
	if c := hs.fake.Counts(); c != (spotifytest.Counts{}) {
		t.Errorf("look-alikes cost Spotify %+v", c)
	}
	if resp, _ := hs.get(hs.browser, EndpointPrefix+"userinfo", sameOrigin...); resp.StatusCode != http.StatusOK {
		t.Errorf("the session did not survive the look-alikes: %d", resp.StatusCode)
	}
}
