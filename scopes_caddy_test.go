package spotifyauth_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"
)

// TestOpenAccessScopesStartWithANoteInCaddysLog: partner-only scopes load,
// and the log says at startup that they need Spotify's approval.
func TestOpenAccessScopesStartWithANoteInCaddysLog(t *testing.T) {
	fake := newFake(t)
	logDir := t.TempDir()
	tc := caddytest.NewTester(t)
	tc.InitServer(globalOptions(caddyStorage(t), "log {\n\t\toutput file "+logDir+"/caddy.log\n\t\tlevel INFO\n\t}")+site+` {
	spotify_auth /app/* {
		`+fakeOptions(fake)+`
		scopes user-read-email user-soa-link
	}
	respond "app"
}`, "caddyfile")
	b, err := os.ReadFile(filepath.Join(logDir, "caddy.log"))
	if err != nil {
		t.Fatal(err)
	}
	var note string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "approved as partners") {
			note = line
		}
	}
	if !strings.Contains(note, `"option":"scopes"`) || !strings.Contains(note, `"partner_scopes":["user-soa-link"]`) {
		t.Fatalf("no startup note naming user-soa-link in scopes; the log:\n%s", b)
	}
}
