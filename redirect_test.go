package spotifyauth

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestOpenRedirectCorpusNeverLeavesTheOrigin(t *testing.T) {
	t.Parallel()
	payloads := loadRedirectPayloads(t)
	if len(payloads) < 300 {
		t.Fatalf("corpus has %d payloads, want at least 300", len(payloads))
	}
	for _, p := range payloads {
		assertSameOrigin(t, p, safeReturnPath(p))
	}
}

func TestSafeReturnPathKeepsOrdinaryPaths(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"/", "/app/", "/app/page?x=1&y=%2F", "/a/b.c-d_e~f", "/search?q=caf%C3%A9"} {
		if got := safeReturnPath(p); got != p {
			t.Errorf("safeReturnPath(%q) = %q, want it kept", p, got)
		}
	}
}

func FuzzSafeReturnPath(f *testing.F) {
	// Every 8th payload seeds the fuzzer: a few dozen cover the shapes,
	// and the whole corpus is checked by the test above.
	for i, p := range loadRedirectPayloads(f) {
		if i%8 == 0 {
			f.Add(p)
		}
	}
	f.Add("/app/?a=b")
	f.Fuzz(func(t *testing.T, p string) {
		rd := safeReturnPath(p)
		assertSameOrigin(t, p, rd)
		if rd != "/" && rd != p {
			t.Fatalf("%q rewritten to %q: must be kept or replaced by /", p, rd)
		}
	})
}

// A plain-http redirect URI Spotify would refuse is warned about at most
// once a minute: on a catch-all site the client picks the Host, and each
// login start would log.
func TestAPlainHTTPRedirectURIIsWarnedAboutOnceAMinute(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	core, logs := observer.New(zap.WarnLevel)
	hs.h.logger = zap.New(core)
	for _, host := range []string{"a.example", "b.example", "c.example"} {
		r := httptest.NewRequest(http.MethodGet, "http://"+host+"/app/", nil)
		if _, err := hs.h.login.redirectURIFor(r); err != nil {
			t.Fatal(err) // a fake Spotify: warned, not refused
		}
	}
	if n := len(logs.FilterMessageSnippet("will be refused by Spotify").All()); n != 1 {
		t.Fatalf("%d warnings for three login starts within a minute, want 1", n)
	}
}
