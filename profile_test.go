package spotifyauth

import (
	"net/http"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

func TestAllowEmailsComparesInASCIIOnly(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, func(h *Handler, _ *spotifytest.Client) {
		h.AllowEmails = []string{"kate@example.com", "Anna@Example.COM"}
	})
	for _, tc := range []struct {
		id, email string
		want      int
	}{
		{"kate1", "kate@example.com", http.StatusOK},
		{"kate2", "KATE@EXAMPLE.COM", http.StatusOK},
		{"anna", "anna@example.com", http.StatusOK},
		{"kelvin", "\u212Aate@example.com", http.StatusForbidden},            // Kelvin sign, lowercases to k in Unicode
		{"dotted-capital-i", "kate@example.\u0130com", http.StatusForbidden}, // dotted capital I
		{"e-with-dot", "kate@exampl\u0117.com", http.StatusForbidden},        // ė
		{"fullwidth", "\uFF4Bate@example.com", http.StatusForbidden},         // fullwidth k
		{"turkish", "ANNA@EXAMPLE.\u0043OM", http.StatusOK},                  // plain ASCII C
		{"zero-width-space", "kate@example.com\u200b", http.StatusForbidden}, // zero-width space
		{"kelvinupper", "\u212AATE@EXAMPLE.COM", http.StatusForbidden},       // Kelvin sign in upper case
		{"kelvin-anna", "\u212Anna@example.com", http.StatusForbidden},       // not anna either
		{"other", "mallory@example.com", http.StatusForbidden},
	} {
		t.Run(tc.id, func(t *testing.T) {
			hs.fake.AddUser(spotifytest.User{ID: tc.id, Email: tc.email})
			c := newBrowser(t)
			if resp := hs.loginAs(c, "/", tc.id); resp.StatusCode != http.StatusFound {
				t.Fatalf("login: %d", resp.StatusCode)
			}
			if resp, _ := hs.get(c, "/"); resp.StatusCode != tc.want {
				t.Fatalf("%q against allow_emails: %d, want %d", tc.email, resp.StatusCode, tc.want)
			}
		})
	}
}

// An email is compared as Spotify sent it: one holding a control or
// format character, or bytes that are not UTF-8, is no email at all, so
// it cannot become an allowed one by losing that character.
func TestAllowEmailsComparesWhatSpotifySent(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, func(h *Handler, _ *spotifytest.Client) {
		h.Scopes = []string{"user-read-email"}
		h.AllowEmails = []string{"kate@example.com"}
	})
	for _, tc := range []struct {
		id, email string
		want      int
	}{
		{"plain", "kate@example.com", http.StatusOK},
		{"nul", "ka\x00te@example.com", http.StatusForbidden},
		{"del", "k\x7fate@example.com", http.StatusForbidden},
		{"c1-byte", "kate\x85@example.com", http.StatusForbidden}, // not UTF-8: JSON makes it U+FFFD
		{"c1-rune", "kate\u0085@example.com", http.StatusForbidden},
		{"tab", "\tkate@example.com", http.StatusForbidden},
		{"newline", "kate@example.com\n", http.StatusForbidden},
		{"escape", "\x1bkate@example.com", http.StatusForbidden},
		{"zero-width-space", "ka\u200bte@example.com", http.StatusForbidden},
		{"right-to-left-override", "\u202ekate@example.com", http.StatusForbidden},
		{"byte-order-mark", "\ufeffkate@example.com", http.StatusForbidden},
		{"soft-hyphen", "ka\u00adte@example.com", http.StatusForbidden},
		{"replacement", "ka\ufffdte@example.com", http.StatusForbidden},
		{"padded", "kate@example.com" + strings.Repeat("\x00", 300), http.StatusForbidden},
	} {
		t.Run(tc.id, func(t *testing.T) {
			hs.fake.AddUser(spotifytest.User{ID: tc.id, Email: tc.email})
			c := newBrowser(t)
			if resp := hs.loginAs(c, "/", tc.id); resp.StatusCode != http.StatusFound {
				t.Fatalf("login: %d", resp.StatusCode)
			}
			if resp, _ := hs.get(c, "/"); resp.StatusCode != tc.want {
				t.Fatalf("%s email against allow_emails kate@example.com: %d, want %d", tc.id, resp.StatusCode, tc.want)
			}
		})
	}
	if n := hs.upstreamCount(); n != 1 {
		t.Fatalf("%d requests reached the upstream, want 1 (the plain email's)", n)
	}
}

// A value the rules hold can only be matched by what Spotify sent: an
// empty one would match a field dropped at login.
func TestAllowRulesRefuseEmptyValues(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ block, want string }{
		{"scopes user-read-private\nallow_products premium \"\"", "allow_products"},
		{"scopes user-read-email\nallow_emails \"\"", "allow_emails"},
		{"allow_users alice \"\"", "allow_users"},
	} {
		_, err := adapt(t, ":8080 {\n\tspotify_auth {\n\t\tclient_id a\n"+tc.block+"\n\t}\n}")
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "empty") {
			t.Errorf("%q: error %v, want one naming %s and the empty value", tc.block, err, tc.want)
		}
	}
}

func TestAllowEmailsAloneWarnsThatEmailsAreUnverified(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		h    Handler
		warn bool
	}{
		{"allow_emails alone", Handler{AllowEmails: []string{"a@example.com"}}, true},
		{"allow_emails with allow_products", Handler{AllowEmails: []string{"a@example.com"}, AllowProducts: []string{"premium"}}, true},
		{"allow_emails with allow_users", Handler{AllowEmails: []string{"a@example.com"}, AllowUsers: []string{"alice"}}, false},
		{"allow_users alone", Handler{AllowUsers: []string{"alice"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zap.WarnLevel)
			tc.h.logger = zap.New(core)
			newAccessRules(&tc.h)
			if got := logs.FilterMessageSnippet("allow_users").Len() > 0; got != tc.warn {
				t.Fatalf("warned: %v, want %v (%v)", got, tc.warn, logs.All())
			}
		})
	}
}

func TestHostileProfileFieldsCannotBreakOrInjectHeaders(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, func(h *Handler, _ *spotifytest.Client) {
		h.Scopes = []string{"user-read-email", "user-read-private"}
	})
	hs.fake.AddUser(spotifytest.User{ID: "hostile", DisplayName: "Eve\r\nX-Injected: 1",
		Email: "eve@example.com\r\nX-Injected: 2", Product: "premium\r\nX-Injected: 3", Country: "S\nE"})
	if resp := hs.loginAs(hs.browser, "/", "hostile"); resp.StatusCode != http.StatusFound {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	if resp, body := hs.get(hs.browser, "/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("request after login: %d %s", resp.StatusCode, body)
	}
	up := hs.lastUpstream()
	for name, vals := range up.Header {
		for _, v := range vals {
			if strings.ContainsAny(v, "\r\n\x00") {
				t.Errorf("upstream header %s carries a control character: %q", name, v)
			}
		}
	}
	if got := up.Header.Get("X-Injected"); got != "" {
		t.Errorf("a profile field injected a header: %q", got)
	}
	if got := up.Header.Get("X-Spotify-User-Id"); got != "hostile" {
		t.Errorf("user id header %q", got)
	}
	// Placeholders are what operators put into header_up or paths.
	hs.mu.Lock()
	repl := hs.repl[len(hs.repl)-1]
	hs.mu.Unlock()
	for _, p := range []string{"user.id", "user.display_name", "user.email", "user.product", "user.country", "spotify.scopes"} {
		v, _ := repl.GetString("http.auth." + p)
		if strings.ContainsAny(v, "\r\n\x00") {
			t.Errorf("placeholder %s carries a control character: %q", p, v)
		}
	}
}

func TestImplausibleUserIDsAreRefusedWithAClearPage(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	for _, id := range []string{"../admin", "..", "a/b", "a%2Fb", "a b", "a\\b", ".hidden", "a?b", "a\u00e9", strings.Repeat("a", 200)} {
		t.Run(id, func(t *testing.T) {
			hs.fake.AddUser(spotifytest.User{ID: id})
			c := newBrowser(t)
			callback, err := hs.fake.Approve(hs.startLogin(c, "/"), id)
			if err != nil {
				t.Fatal(err)
			}
			resp, body := hs.get(c, callback)
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "user id") {
				t.Fatalf("login as %q: %d %s, want 403 naming the user id", id, resp.StatusCode, body)
			}
			if resp, _ := hs.get(c, "/"); resp.StatusCode != http.StatusFound {
				t.Fatalf("after the refused login: %d, want a new login", resp.StatusCode)
			}
		})
	}
	if n := hs.upstreamCount(); n != 0 {
		t.Fatalf("%d requests reached the upstream", n)
	}
	for _, id := range []string{"wizzler", "31l77y2al5lnn7mxfrmd4bpfhqke", "1234567890", "some.user_name-1"} {
		hs.fake.AddUser(spotifytest.User{ID: id})
		c := newBrowser(t)
		if resp := hs.loginAs(c, "/", id); resp.StatusCode != http.StatusFound {
			t.Fatalf("login as %q: %d, want 302", id, resp.StatusCode)
		}
	}
}
