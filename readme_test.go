package spotifyauth_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// minDocCaddyfiles is how many Caddyfile snippets README.md and docs/ held
// when the README was split into docs/ pages: a pattern or a move that
// loses some fails the test instead of testing fewer.
const minDocCaddyfiles = 10

// docSnippet is one fenced code block of the documentation.
type docSnippet struct {
	file string // README.md or docs/<page>.md
	text string
}

// docSnippets returns every ```lang block of README.md and docs/*.md, the
// pages readers copy from, in file order.
func docSnippets(t *testing.T, lang string) []docSnippet {
	t.Helper()
	pages, err := filepath.Glob(filepath.Join("docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	if len(pages) == 0 {
		t.Fatal("no docs/*.md pages found")
	}
	fence := regexp.MustCompile("(?s)```" + regexp.QuoteMeta(lang) + "\n(.*?)```")
	var snippets []docSnippet
	for _, file := range append([]string{"README.md"}, pages...) {
		page, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range fence.FindAllStringSubmatch(string(page), -1) {
			snippets = append(snippets, docSnippet{file: filepath.ToSlash(file), text: m[1]})
		}
	}
	return snippets
}

// TestReadmeCaddyfilesAreFormatted keeps every Caddyfile snippet of the
// README and of docs/ as `caddy fmt` writes it: readers copy them, and
// Caddy warns "Caddyfile input is not formatted" about anything else.
func TestReadmeCaddyfilesAreFormatted(t *testing.T) {
	snippets := docSnippets(t, "caddyfile")
	perFile := map[string]int{}
	for _, s := range snippets {
		perFile[s.file]++
	}
	if len(snippets) < minDocCaddyfiles || perFile["README.md"] == 0 {
		t.Fatalf("found %d caddyfile blocks (%v), want at least %d with one in README.md; the pattern is broken or a snippet was lost",
			len(snippets), perFile, minDocCaddyfiles)
	}
	for _, s := range snippets {
		if got := string(caddyfile.Format([]byte(s.text))); strings.TrimSpace(got) != strings.TrimSpace(s.text) {
			t.Errorf("%s snippet is not caddy fmt clean:\n%s\ncaddy fmt gives:\n%s", s.file, s.text, got)
		}
	}
	t.Logf("%d caddyfile snippets checked: %v", len(snippets), perFile)
}
