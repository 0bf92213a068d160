package spotifyauth

import (
	"net/http"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

func TestAllowEmailsComparesInASCIIOnly(t *testing.T) {
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

func TestAllowEmailsAloneWarnsThatEmailsAreUnverified(t *testing.T) {
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
			tc.h.newAccessRules()
			if got := logs.FilterMessageSnippet("allow_users").Len() > 0; got != tc.warn {
				t.Fatalf("warned: %v, want %v (%v)", got, tc.warn, logs.All())
			}
		})
	}
}
