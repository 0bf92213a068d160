package spotifyauth

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddyspotify/caddy-spotify-auth/internal/fifo"
)

// accessRules is who may pass, resolved at provision time. A user must
// match every configured kind of rule; within a kind, any value matches.
type accessRules struct {
	users     []string
	emails    []string // lower case
	products  []string // lower case
	countries []string // upper case
}

func newAccessRules(h *Handler) accessRules {
	lower := func(in []string) []string {
		out := make([]string, len(in))
		for i, s := range in {
			out[i] = asciiLower(s)
		}
		return out
	}
	countries := make([]string, len(h.AllowCountries))
	for i, c := range h.AllowCountries {
		countries[i] = asciiUpper(c)
	}
	if len(h.AllowEmails) > 0 && len(h.AllowUsers) == 0 {
		h.logger.Warn("allow_emails without allow_users: Spotify does not verify the email it reports, so anyone can " +
			"create an account claiming an allowed address that has no Spotify account yet; " +
			"allow_emails is a convenience, allow_users (Spotify user ids) is the identity check")
	}
	return accessRules{users: h.AllowUsers, emails: lower(h.AllowEmails), products: lower(h.AllowProducts), countries: countries}
}

// allows compares case-insensitively in ASCII only. Unicode case folding
// would let look-alikes in: the Kelvin sign K (U+212A) lowercases to "k".
// allow_users takes a user's id or account_id: Spotify recommends the
// latter for linking accounts, and both are Spotify's, never the user's
// choice today (only accounts made long ago chose their id).
func (a *accessRules) allows(s *session) bool {
	return a.allowsUser(s) &&
		(len(a.emails) == 0 || s.Email != "" && slices.Contains(a.emails, asciiLower(s.Email))) &&
		(len(a.products) == 0 || slices.Contains(a.products, asciiLower(s.Product))) &&
		(len(a.countries) == 0 || slices.Contains(a.countries, asciiUpper(s.Country)))
}

// asciiLower maps A-Z to a-z and leaves every other byte as it is, so a
// non-ASCII character never equals an ASCII one.
func asciiLower(s string) string { return asciiMap(s, 'A', 'Z', 'a'-'A') }

// asciiUpper maps a-z to A-Z and leaves every other byte as it is.
func asciiUpper(s string) string { return asciiMap(s, 'a', 'z', 'A'-'a') }

func asciiMap(s string, from, to byte, delta int) string {
	i := 0
	for i < len(s) && (s[i] < from || s[i] > to) {
		i++
	}
	if i == len(s) {
		return s
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		if b[i] >= from && b[i] <= to {
			b[i] = byte(int(b[i]) + delta)
		}
	}
	return string(b)
}

// allowsUser reports whether allow_users, if set, names the session's
// user id or account id.
func (a *accessRules) allowsUser(s *session) bool {
	return len(a.users) == 0 || slices.Contains(a.users, s.UserID) ||
		s.AccountID != "" && slices.Contains(a.users, s.AccountID)
}

// unsharedField names a rule that cannot admit the session because
// Spotify did not send the field it checks (development-mode apps get no
// email, product or country since 2026), and that field in plain words.
// It returns "" when that is not why the session is refused: when a rule
// on a field Spotify did send refuses it, that rule is the reason.
func (a *accessRules) unsharedField(s *session) (rule, field string) {
	if !a.allowsUser(s) {
		return "", ""
	}
	checks := []struct {
		rule, field string
		values      []string
		have        string
	}{
		{"allow_emails", "email address", a.emails, asciiLower(s.Email)},
		{"allow_products", "subscription type (product)", a.products, asciiLower(s.Product)},
		{"allow_countries", "country", a.countries, asciiUpper(s.Country)},
	}
	for _, c := range checks {
		if len(c.values) > 0 && c.have != "" && !slices.Contains(c.values, c.have) {
			return "", ""
		}
	}
	for _, c := range checks {
		if len(c.values) > 0 && c.have == "" {
			return c.rule, c.field
		}
	}
	return "", ""
}

// What a user's requests repeat (a refusal, a missing field) is logged
// once per user and topic within logOnceKeep, so no client can flood the
// log; the memory of them holds at most maxLoggedOnce.
const (
	maxLoggedOnce = 10_000
	logOnceKeep   = 24 * time.Hour
)

// firstLog reports whether this user and topic have not been logged
// within logOnceKeep, and marks them logged.
func (s *sharedState) firstLog(topic, userID string, now time.Time) bool {
	key := topic + "\x00" + userID
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loggedOnce == nil {
		s.loggedOnce = fifo.New[struct{}](maxLoggedOnce)
	}
	if _, seen := s.loggedOnce.Get(key, now); seen {
		return false
	}
	s.loggedOnce.Put(key, struct{}{}, now.Add(logOnceKeep))
	return true
}

const (
	modeUser = "user"
	modeApp  = "app"
)

// denyAccess answers a logged-in user whom the rules do not admit: a page that
// says who they are logged in as, with a way out. No redirect, so no loop.
func denyAccess(h *Handler, w http.ResponseWriter, r *http.Request, s *session) {
	h.metrics.answered(http.StatusForbidden)
	if rule, field := h.rules.unsharedField(s); rule != "" {
		denyUnshared(h, w, r, s, rule, field)
		return
	}
	// Once a day per user: a refused user's polling must not flood the
	// log (the metrics count every refusal).
	if h.shared.firstLog("access rules", s.UserID, time.Now()) {
		h.logger.Info("access denied by rules", zap.String("user_id", s.UserID), zap.String("account_id", s.AccountID))
	}
	if h.handOff(w, r, http.StatusForbidden, "this Spotify account is not allowed here") {
		return
	}
	if !isNavigation(r) {
		writeJSON(w, http.StatusForbidden, apiError{Error: "forbidden", Description: "this Spotify account is not allowed here"})
		return
	}
	writePage(w, http.StatusForbidden, page{
		Title:      "Not allowed",
		Message:    "You are logged in with Spotify as " + displayWho(s) + ", and this account is not allowed here.",
		FormAction: EndpointPrefix + "logout",
		FormRD:     "/",
		ButtonText: "Log out",
		LinkURL:    switchAccountURL(safeReturnPath(r.URL.RequestURI())),
		LinkText:   "Use another Spotify account",
	})
}

// denyUnshared answers a user whom a rule cannot admit because Spotify
// did not send the field it checks: trying another account would not
// help, so the page says what is missing, and the operator learns (once
// per user and rule) that development mode is the cause.
func denyUnshared(h *Handler, w http.ResponseWriter, r *http.Request, s *session, rule, field string) {
	if h.shared.firstLog(rule, s.UserID, time.Now()) {
		h.logger.Warn("access rule cannot admit this user: Spotify did not send the profile field it checks; "+
			"development-mode Spotify apps no longer receive email, product or country from /v1/me (since 2026), "+
			"so only allow_users works for them (extended quota brings the fields back)",
			zap.String("rule", rule), zap.String("user_id", s.UserID))
	}
	ans := answers[kindFieldNotShared]
	desc := "Spotify did not share this account's " + field + ", which this site's access rules check"
	if h.handOff(w, r, ans.status, desc) {
		return
	}
	if !isNavigation(r) {
		writeJSON(w, ans.status, apiError{Error: ans.code, Description: desc})
		return
	}
	writePage(w, ans.status, page{
		Title: ans.title,
		Message: "You are logged in with Spotify as " + displayWho(s) + ", but Spotify did not share your " + field +
			" with this site, and this site admits accounts by their " + field + ". " +
			"Spotify no longer shares it with apps in development mode; " +
			"the site's owner can admit accounts by their Spotify user id instead.",
		FormAction: EndpointPrefix + "logout",
		FormRD:     "/",
		ButtonText: "Log out",
	})
}

// displayWho names the user on a page: display name and id, or the id.
func displayWho(s *session) string {
	if s.DisplayName == "" {
		return s.UserID
	}
	return s.DisplayName + " (" + s.UserID + ")"
}

// neededScopes returns the scopes this route needs that the session lacks:
// required_scopes not granted, and scopes never asked for.
func neededScopes(h *Handler, s *session) []string {
	var missing []string
	for _, sc := range h.RequiredScopes {
		if !hasScope(s.Scopes, sc) {
			missing = append(missing, sc)
		}
	}
	for _, sc := range h.Scopes {
		if !hasScope(s.Requested, sc) && !hasScope(s.Scopes, sc) && !slices.Contains(missing, sc) {
			missing = append(missing, sc)
		}
	}
	return missing
}

// hasScope reports whether a space-separated list holds scope.
func hasScope(list, scope string) bool {
	for list != "" {
		var s string
		s, list, _ = strings.Cut(list, " ")
		if s == scope {
			return true
		}
	}
	return false
}

// unionScopes merges space-separated lists and slices, without repeats.
func unionScopes(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		for _, s := range l {
			if s != "" && !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

// askForScopes sends a browser through consent again for the union of
// what the session has and what this route needs (incremental consent);
// an API call gets 403 with the URL that does it.
func askForScopes(h *Handler, w http.ResponseWriter, r *http.Request, s *session, missing []string) {
	returnTo := returnPath(r)
	if !isNavigation(r) {
		h.metrics.answered(http.StatusForbidden)
		if h.handOff(w, r, http.StatusForbidden, "this needs the Spotify scopes "+strings.Join(missing, " ")) {
			return
		}
		writeJSON(w, http.StatusForbidden, apiError{Error: "insufficient_scope",
			Description: "this needs the Spotify scopes " + strings.Join(missing, " "),
			LoginURL:    loginURL(returnTo)})
		return
	}
	h.logger.Info("asking for more scopes", zap.String("user_id", s.UserID), zap.Strings("missing", missing))
	h.login.startLoginWith(w, r, loginRequest{
		returnTo:  returnTo,
		scopes:    unionScopes(strings.Fields(s.Requested), strings.Fields(s.Scopes), h.Scopes, h.RequiredScopes),
		required:  h.RequiredScopes,
		reconsent: false,
	})
}

// setPlaceholders makes the user known to later handlers and to Caddy's
// access log ({http.auth.user.id}). A provider answers lazily, so unused
// placeholders cost nothing.
func setPlaceholders(r *http.Request, provide caddy.ReplacerFunc) {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return
	}
	repl.Map(provide)
}

type placeholders struct{ s session }

func (p *placeholders) get(key string) (any, bool) {
	rest, ok := strings.CutPrefix(key, "http.auth.")
	if !ok {
		return nil, false
	}
	if value, ok := sessionPlaceholders[rest]; ok {
		return value(&p.s), true
	}
	return nil, false
}

// sessionPlaceholders are the {http.auth.*} placeholders, by the rest of
// their name.
var sessionPlaceholders = map[string]func(s *session) any{
	"user.id":           func(s *session) any { return s.UserID },
	"user.account_id":   func(s *session) any { return s.AccountID },
	"user.display_name": func(s *session) any { return s.DisplayName },
	"user.email":        func(s *session) any { return s.Email },
	"user.product":      func(s *session) any { return s.Product },
	"user.country":      func(s *session) any { return s.Country },
	"spotify.scopes":    func(s *session) any { return s.Scopes },
	"spotify.expires_at": func(s *session) any {
		return time.Unix(s.TokenExpires, 0).UTC().Format(time.RFC3339)
	},
}

// encodeHeaderText makes any UTF-8 text header-safe: RFC 3986
// percent-encoding of everything but unreserved characters, so the
// upstream decodes it with its URL-decoding function (decodeURIComponent,
// urllib.parse.unquote, url.PathUnescape).
func encodeHeaderText(s string) string {
	return strings.ReplaceAll(url.PathEscape(s), "+", "%2B")
}

// headerSafe passes an ASCII value on if it is printable, else encodes it.
func headerSafe(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			return encodeHeaderText(s)
		}
	}
	return s
}
