package spotifyauth

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// accessRules is who may pass, resolved at provision time. A user must
// match every configured kind of rule; within a kind, any value matches.
type accessRules struct {
	users     []string
	emails    []string // lower case
	products  []string // lower case
	countries []string // upper case
}

func (h *Handler) newAccessRules() accessRules {
	lower := func(in []string) []string {
		out := make([]string, len(in))
		for i, s := range in {
			out[i] = strings.ToLower(s)
		}
		return out
	}
	countries := make([]string, len(h.AllowCountries))
	for i, c := range h.AllowCountries {
		countries[i] = strings.ToUpper(c)
	}
	return accessRules{users: h.AllowUsers, emails: lower(h.AllowEmails), products: lower(h.AllowProducts), countries: countries}
}

func (a *accessRules) allows(s *session) bool {
	return (len(a.users) == 0 || slices.Contains(a.users, s.UserID)) &&
		(len(a.emails) == 0 || s.Email != "" && slices.Contains(a.emails, strings.ToLower(s.Email))) &&
		(len(a.products) == 0 || slices.Contains(a.products, strings.ToLower(s.Product))) &&
		(len(a.countries) == 0 || slices.Contains(a.countries, strings.ToUpper(s.Country)))
}

// checkAccessConfig rejects rules that can never match because Spotify
// would not tell us the field.
func (h *Handler) checkAccessConfig() error {
	granted := append(slices.Clone(h.Scopes), h.RequiredScopes...)
	if len(h.AllowEmails) > 0 && !slices.Contains(granted, "user-read-email") {
		return errors.New("allow_emails needs the user-read-email scope (add it to scopes): without it Spotify does not tell the email")
	}
	if (len(h.AllowProducts) > 0 || len(h.AllowCountries) > 0) && !slices.Contains(granted, "user-read-private") {
		return errors.New("allow_products and allow_countries need the user-read-private scope (add it to scopes): without it Spotify does not tell product or country")
	}
	for _, c := range h.AllowCountries {
		if len(c) != 2 {
			return fmt.Errorf("allow_countries: %q is not an ISO 3166-1 alpha-2 code", c)
		}
	}
	if err := checkScopes(h.RequiredScopes); err != nil {
		return fmt.Errorf("required_scopes: %w", err)
	}
	switch h.Mode {
	case "", modeUser:
	case modeApp:
		if h.ClientSecret == "" {
			return errors.New("mode app (client credentials) needs client_secret")
		}
	default:
		return fmt.Errorf("mode %q: want user or app", h.Mode)
	}
	return nil
}

const (
	modeUser = "user"
	modeApp  = "app"
)

// deny answers a logged-in user whom the rules do not admit: a page that
// says who they are logged in as, with a way out. No redirect, so no loop.
func (h *Handler) deny(w http.ResponseWriter, r *http.Request, s *session) {
	h.metrics.answered(http.StatusForbidden)
	h.logger.Info("access denied by rules", zap.String("user_id", s.UserID))
	if !isNavigation(r) {
		writeJSON(w, http.StatusForbidden, apiError{Error: "forbidden", Description: "this Spotify account is not allowed here"})
		return
	}
	who := s.DisplayName
	if who == "" {
		who = s.UserID
	} else {
		who += " (" + s.UserID + ")"
	}
	writePage(w, http.StatusForbidden, page{
		Title:      "Not allowed",
		Message:    "You are logged in with Spotify as " + who + ", and this account is not allowed here.",
		FormAction: EndpointPrefix + "logout",
		FormRD:     "/",
		ButtonText: "Log out",
		LinkURL:    loginURL(safeReturnPath(r.URL.RequestURI())) + "&switch=1",
		LinkText:   "Use another Spotify account",
	})
}

// neededScopes returns the scopes this route needs that the session lacks:
// required_scopes not granted, and scopes never asked for.
func (h *Handler) neededScopes(s *session) []string {
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
func (h *Handler) askForScopes(w http.ResponseWriter, r *http.Request, s *session, missing []string) {
	returnTo := safeReturnPath(r.URL.RequestURI())
	if !isNavigation(r) {
		h.metrics.answered(http.StatusForbidden)
		writeJSON(w, http.StatusForbidden, apiError{Error: "insufficient_scope",
			Description: "this needs the Spotify scopes " + strings.Join(missing, " "),
			LoginURL:    loginURL(returnTo)})
		return
	}
	h.logger.Info("asking for more scopes", zap.String("user_id", s.UserID), zap.Strings("missing", missing))
	h.startLoginWith(w, r, loginRequest{
		returnTo:  returnTo,
		scopes:    unionScopes(strings.Fields(s.Requested), strings.Fields(s.Scopes), h.Scopes, h.RequiredScopes),
		required:  h.RequiredScopes,
		userHint:  s.UserID,
		reconsent: false,
	})
}

// setPlaceholders makes the user known to later handlers and to Caddy's
// access log ({http.auth.user.id}). A provider answers lazily, so unused
// placeholders cost nothing.
func setPlaceholders(r *http.Request, p *placeholders) {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return
	}
	repl.Map(p.get)
}

type placeholders struct{ s session }

func (p *placeholders) get(key string) (any, bool) {
	rest, ok := strings.CutPrefix(key, "http.auth.")
	if !ok {
		return nil, false
	}
	switch rest {
	case "user.id":
		return p.s.UserID, true
	case "user.display_name":
		return p.s.DisplayName, true
	case "user.email":
		return p.s.Email, true
	case "user.product":
		return p.s.Product, true
	case "user.country":
		return p.s.Country, true
	case "spotify.scopes":
		return p.s.Scopes, true
	case "spotify.expires_at":
		return time.Unix(p.s.TokenExpires, 0).UTC().Format(time.RFC3339), true
	}
	return nil, false
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

// userinfo is what /oauth2/spotify/userinfo tells: who, never tokens.
type userinfo struct {
	ID          string   `json:"id"`
	DisplayName string   `json:"display_name,omitempty"`
	Email       string   `json:"email,omitempty"`
	Product     string   `json:"product,omitempty"`
	Country     string   `json:"country,omitempty"`
	Scopes      []string `json:"scopes"`
	ExpiresAt   string   `json:"expires_at"`
	SessionEnds string   `json:"session_ends"`
}

func (h *Handler) handleUserinfo(w http.ResponseWriter, r *http.Request) {
	s, ok := h.loadSession(r, time.Now())
	if !ok {
		h.metrics.unauthorized.Inc()
		writeJSON(w, http.StatusUnauthorized, apiError{Error: "unauthenticated", LoginURL: loginURL("/")})
		return
	}
	writeJSON(w, http.StatusOK, userinfo{
		ID: s.UserID, DisplayName: s.DisplayName, Email: s.Email, Product: s.Product, Country: s.Country,
		Scopes:      strings.Fields(s.Scopes),
		ExpiresAt:   time.Unix(s.TokenExpires, 0).UTC().Format(time.RFC3339),
		SessionEnds: time.Unix(s.Expires, 0).UTC().Format(time.RFC3339),
	})
}

// tokenResponse is what /oauth2/spotify/token gives a same-origin script.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresAt   string `json:"expires_at"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope"`
}

// handleToken hands a fresh access token to the page's own scripts (the
// Web Playback SDK wants one in JavaScript). Off unless token_endpoint is
// set: a token readable by script is one XSS away from being stolen.
func (h *Handler) handleToken(w http.ResponseWriter, r *http.Request) {
	if !h.TokenEndpoint {
		writePage(w, http.StatusNotFound, page{Title: "Not found", Message: "The token endpoint is not enabled."})
		return
	}
	if r.Method != http.MethodGet || !sameOrigin(r, false) {
		writeJSON(w, http.StatusForbidden, apiError{Error: "forbidden", Description: "same-origin GET only"})
		return
	}
	now := time.Now()
	s, ok := h.loadSession(r, now)
	if !ok {
		h.metrics.unauthorized.Inc()
		writeJSON(w, http.StatusUnauthorized, apiError{Error: "unauthenticated", LoginURL: loginURL("/")})
		return
	}
	if !h.rules.allows(&s) {
		h.deny(w, r, &s)
		return
	}
	s, ok = h.ensureFresh(w, r, s, now)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, tokenResponse{
		AccessToken: s.AccessToken, TokenType: "Bearer",
		ExpiresAt: time.Unix(s.TokenExpires, 0).UTC().Format(time.RFC3339),
		ExpiresIn: s.TokenExpires - now.Unix(), Scope: s.Scopes,
	})
}
