// Package testkit holds the test helpers that the plugin's tests and the
// example module's tests share. It uses the standard library and
// spotifytest only, so it adds nothing to either go.mod.
package testkit

import (
	"io"
	"net/http"
	"testing"

	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// NewFake starts a fake Spotify that closes when the test ends.
func NewFake(t testing.TB) *spotifytest.Server {
	fake := spotifytest.NewServer()
	t.Cleanup(fake.Close)
	return fake
}

// Get requests rawURL with c and returns the answer and its body.
func Get(t testing.TB, c *http.Client, rawURL string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	return Do(t, c, req)
}

// Do sends req with c and returns the answer, its body read and closed.
// A request that gets no answer fails the test.
func Do(t testing.TB, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}
