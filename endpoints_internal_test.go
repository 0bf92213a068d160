package spotifyauth

import (
	"context"
	"errors"
	"net/http"
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
	store := &unreadableStore{Storage: &certmagic.FileStorage{Path: t.TempDir()}}
	hs := newHarness(t, withStorage(store), withStoredSessions(), func(h *Handler, _ *spotifytest.Client) { h.TokenEndpoint = true })
	hs.login(hs.browser, "/")
	store.failReads.Store(true)
	for _, path := range []string{"userinfo", "token"} {
		hs.h.opened = newSessionCache() // not read a moment ago
		req, _ := http.NewRequest(http.MethodGet, hs.url(EndpointPrefix+path), nil)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		resp, body := hs.do(hs.browser, req)
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("%s with the store out: %d %s, want 503", path, resp.StatusCode, body)
		}
	}
}
