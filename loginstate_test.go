package spotifyauth

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

func TestATokenResponseWithoutScopeGrantsWhatWasRequested(t *testing.T) {
	hs := newHarness(t, func(h *Handler, _ *spotifytest.Client) {
		h.Scopes = []string{"user-read-email"}
		h.RequiredScopes = []string{"streaming"}
	})
	hs.fake.SetOmitScope(true)
	if loc := hs.login(hs.browser, "/player/"); loc != "/player/" {
		t.Fatalf("login without scope in the token response landed on %q, want /player/", loc)
	}
	if resp, body := hs.get(hs.browser, "/player/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("after login: %d %s", resp.StatusCode, body)
	}
	if n := hs.fake.Counts().Authorize; n != 1 {
		t.Fatalf("%d consent pages, want 1 (no re-consent loop)", n)
	}
	if got := hs.session(hs.browser).Scopes; !hasScope(got, "streaming") || !hasScope(got, "user-read-email") {
		t.Fatalf("session scopes %q, want the requested ones", got)
	}
}

func TestTheUsedStateMemoryForgetsOnlyItsOldestEntriesWhenFull(t *testing.T) {
	s := newSharedState()
	now := time.Now()
	for i := 0; i < maxUsedStates; i++ {
		if !s.useState("state-"+strconv.Itoa(i), now) {
			t.Fatalf("state %d refused on first use", i)
		}
	}
	// One more than the cap: the oldest goes, the rest stay remembered.
	if !s.useState("one-more", now) {
		t.Fatal("a new state was refused")
	}
	for _, i := range []int{1, maxUsedStates / 2, maxUsedStates - 1} {
		if s.useState("state-"+strconv.Itoa(i), now) {
			t.Fatalf("state %d was forgotten at the cap and could be replayed", i)
		}
	}
	if !s.useState("state-0", now) {
		t.Fatal("the oldest state should have been evicted")
	}
	if n := s.usedStateCount(); n > maxUsedStates {
		t.Fatalf("%d used states remembered, cap %d", n, maxUsedStates)
	}
	// Expired entries are dropped as time passes.
	later := now.Add(usedStateLifetime + time.Second)
	if !s.useState("state-1", later) {
		t.Fatal("an expired used state still blocks")
	}
}
