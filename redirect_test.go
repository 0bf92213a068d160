package spotifyauth

import (
	"bufio"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
)

func loadRedirectPayloads(t testing.TB) []string {
	t.Helper()
	f, err := os.Open("testdata/open_redirect_payloads.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 64*1024)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		p, err := strconv.Unquote(line)
		if err != nil {
			t.Fatalf("bad corpus line %q: %v", line, err)
		}
		out = append(out, p)
	}
	return out
}

// assertSameOrigin fails unless rd, used as a Location on
// https://example.com, stays on that origin in every reading a browser or
// a decoding proxy could give it.
func assertSameOrigin(t testing.TB, payload, rd string) {
	t.Helper()
	if rd == "" || rd[0] != '/' || strings.HasPrefix(rd, "//") || strings.HasPrefix(rd, "/\\") {
		t.Fatalf("%q -> %q: not a rooted path", payload, rd)
	}
	base, _ := url.Parse("https://example.com/some/page")
	if strings.ContainsAny(rd, " ") {
		t.Fatalf("%q -> %q: contains a space", payload, rd)
	}
	v := rd
	for range 4 {
		if strings.ContainsAny(v, "\\\t\r\n\x00") {
			t.Fatalf("%q -> %q: contains characters browsers strip or reinterpret", payload, rd)
		}
		ref, err := url.Parse(v)
		if err != nil {
			t.Fatalf("%q -> %q: unparsable: %v", payload, rd, err)
		}
		if got := base.ResolveReference(ref); got.Host != "example.com" || got.Scheme != "https" {
			t.Fatalf("%q -> %q: resolves to another origin %s", payload, rd, got)
		}
		dec, err := url.PathUnescape(v)
		if err != nil || dec == v {
			break
		}
		v = dec
	}
}

func TestOpenRedirectCorpusNeverLeavesTheOrigin(t *testing.T) {
	payloads := loadRedirectPayloads(t)
	if len(payloads) < 300 {
		t.Fatalf("corpus has %d payloads, want at least 300", len(payloads))
	}
	for _, p := range payloads {
		assertSameOrigin(t, p, safeReturnPath(p))
	}
}

func TestSafeReturnPathKeepsOrdinaryPaths(t *testing.T) {
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
