package spotifyauth

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"go.uber.org/zap"
)

// Profile fields come from Spotify's /v1/me and reach upstream headers
// and placeholders (which operators may put into headers or paths). Each
// is checked or cleaned once, when the session is made, so no value can
// break a header (a CR/LF makes Go's reverse proxy refuse the request:
// a 502 on every request of that user) or walk out of a path.

// maxUserIDLen bounds a Spotify user id. Ids are base-62 strings today;
// older accounts have user names, which Spotify restricted to letters,
// digits, '.', '_' and '-'.
const maxUserIDLen = 128

// Bounds on the free-text fields.
const (
	maxDisplayNameLen = 256
	maxEmailLen       = 256
	maxProductLen     = 32
)

// validUserID reports whether id is a plausible Spotify user id: ASCII
// letters and digits, with '.', '_' and '-' inside. It never holds '/',
// '%', a space or a control character, and never starts with '.', so it
// is safe in a header and as one path segment.
func validUserID(id string) bool {
	if id == "" || len(id) > maxUserIDLen || !isAlnum(id[0]) {
		return false
	}
	for i := 1; i < len(id); i++ {
		if c := id[i]; !isAlnum(c) && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

// accountID is the profile's account_id if it is usable. It is an
// identifier like id (Spotify recommends it over id for linking accounts),
// so it reaches the same places and must pass the same check: a header
// value, and one path segment through {http.auth.user.account_id}. One
// that fails is dropped, not mended: an altered id would name someone
// else. The user still logs in; allow_users can still match the id.
func (f *loginFlow) accountID(p userProfile) string {
	if p.AccountID == "" || validUserID(p.AccountID) {
		return p.AccountID
	}
	f.h.logger.Warn("Spotify sent an account_id this site cannot use (Spotify ids are ASCII letters, digits, '.', '_' "+
		"and '-'); the session goes without it", zap.String("user_id", p.ID), zap.Int("account_id_length", len(p.AccountID)))
	return ""
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// profileText cleans a free-text field shown, never compared (the display
// name): valid
// UTF-8, no control characters (C0, DEL, C1), at most n bytes.
func profileText(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	s = strings.ToValidUTF8(s, "")
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r >= 0x7f && r < 0xa0 || r == utf8.RuneError {
			return -1
		}
		return r
	}, s)
}

// profileEmail keeps the email only as Spotify sent it: allow_emails
// compares it, so it is never cleaned into another address ("ka\x00te@"
// must not become "kate@"). One that is too long, not valid UTF-8 (JSON
// decoding turned it into U+FFFD), or holds a control or format
// character (U+200B, U+202E, U+FEFF...) is no email: it matches no rule
// and reaches no header.
func profileEmail(s string) string {
	if len(s) > maxEmailLen {
		return ""
	}
	for _, r := range s {
		if r < 0x20 || r >= 0x7f && r < 0xa0 || r == utf8.RuneError || unicode.Is(unicode.Cf, r) {
			return ""
		}
	}
	return s
}

// profileWord keeps a one-word field (product, country) only if it is
// ASCII letters, digits, '_' and '-', at most n bytes; else it is
// dropped, as Spotify's optional fields may be.
func profileWord(s string, n int) string {
	if len(s) > n {
		return ""
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '_' && c != '-' {
			return ""
		}
	}
	return s
}

// cleanScopes keeps the well-formed scope tokens of a space-separated
// list (RFC 6749 section 3.3: printable ASCII but '"' and '\').
func cleanScopes(list string) string {
	ok := true
	for i := 0; i < len(list) && ok; i++ {
		ok = isScopeChar(list[i]) || list[i] == ' '
	}
	if ok {
		return list
	}
	var kept []string
	for _, sc := range strings.Fields(list) {
		good := true
		for i := 0; i < len(sc) && good; i++ {
			good = isScopeChar(sc[i])
		}
		if good {
			kept = append(kept, sc)
		}
	}
	return strings.Join(kept, " ")
}

func isScopeChar(c byte) bool {
	return c == 0x21 || c >= 0x23 && c <= 0x5b || c >= 0x5d && c <= 0x7e
}
