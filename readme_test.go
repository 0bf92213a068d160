package spotifyauth_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// TestReadmeCaddyfilesAreFormatted keeps every Caddyfile snippet in the
// README as `caddy fmt` writes it: readers copy them, and Caddy warns
// "Caddyfile input is not formatted" about anything else.
func TestReadmeCaddyfilesAreFormatted(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```caddyfile\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	if len(blocks) < 3 {
		t.Fatalf("found %d caddyfile blocks in README.md; the pattern is broken", len(blocks))
	}
	for _, b := range blocks {
		snippet := b[1]
		if got := string(caddyfile.Format([]byte(snippet))); strings.TrimSpace(got) != strings.TrimSpace(snippet) {
			t.Errorf("README snippet is not caddy fmt clean:\n%s\ncaddy fmt gives:\n%s", snippet, got)
		}
	}
}
