package spotifyauth

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// Validation, written once. Each option's check is in optionChecks;
// checks that relate options to one another are in checkCombinations.
// Provision runs both on the resolved config (Validate reports what it
// found), and the Caddyfile parser runs an option's check as soon as it
// has read the option (unless a placeholder is still in it), and the
// combinations at the end of the block, so `caddy adapt` names the line.

// Validate reports what Provision found wrong with the config. Provision
// validates first, before it writes keys to storage or starts any work,
// and does nothing more when the config is invalid.
func (h *Handler) Validate() error {
	return h.invalid
}

// validateConfig checks every option and their combinations.
func validateConfig(h *Handler) error {
	for _, c := range optionChecks {
		if err := c.check(h); err != nil {
			return err
		}
	}
	return checkCombinations(h)
}

// optionCheck checks one option's value, by its Caddyfile name.
type optionCheck struct {
	option string
	check  func(h *Handler) error
}

var optionChecks = []optionCheck{
	{"scopes", func(h *Handler) error { return checkScopes("scopes", h.Scopes) }},
	{"required_scopes", func(h *Handler) error { return checkScopes("required_scopes", h.RequiredScopes) }},
	{"redirect_uri", func(h *Handler) error { return checkRedirectURI(h.RedirectURI) }},
	{"authorize_url", func(h *Handler) error { return checkEndpointURL("authorize_url", h.AuthorizeURL) }},
	{"token_url", func(h *Handler) error { return checkEndpointURL("token_url", h.TokenURL) }},
	{"api_url", func(h *Handler) error { return checkEndpointURL("api_url", h.APIURL) }},
	{"cookie_secret", func(h *Handler) error { return checkCookieSecrets(h.CookieSecrets) }},
	{"cookie_name", func(h *Handler) error { return checkCookieName(h.CookieName) }},
	{"token_header", func(h *Handler) error { return checkTokenHeader(h.TokenHeader) }},
	{"session_lifetime", func(h *Handler) error { return checkNotNegative("session_lifetime", h.SessionLifetime) }},
	{"timeout", func(h *Handler) error { return checkNotNegative("timeout", h.Timeout) }},
	{"refresh_leeway", func(h *Handler) error {
		if h.RefreshLeeway < 0 || time.Duration(h.RefreshLeeway) > maxRefreshLeeway {
			return fmt.Errorf("refresh_leeway must be between 0 and %s", maxRefreshLeeway)
		}
		return nil
	}},
	{"key_rotation", func(h *Handler) error {
		if h.KeyRotation != 0 && time.Duration(h.KeyRotation) < minKeyRotation {
			return fmt.Errorf("key_rotation must be at least %s", minKeyRotation)
		}
		return nil
	}},
	{"allow_users", func(h *Handler) error { return checkNoEmptyValue("allow_users", h.AllowUsers) }},
	{"allow_emails", func(h *Handler) error { return checkNoEmptyValue("allow_emails", h.AllowEmails) }},
	{"allow_products", func(h *Handler) error { return checkNoEmptyValue("allow_products", h.AllowProducts) }},
	{"allow_countries", func(h *Handler) error {
		for _, c := range h.AllowCountries {
			if len(c) != 2 {
				return fmt.Errorf("allow_countries: %q is not an ISO 3166-1 alpha-2 code", c)
			}
		}
		return nil
	}},
	{"mode", func(h *Handler) error {
		if h.Mode != "" && h.Mode != modeUser && h.Mode != modeApp {
			return fmt.Errorf("mode %q: want user or app", h.Mode)
		}
		return nil
	}},
	{"session_store", func(h *Handler) error {
		if h.SessionStore != "" && h.SessionStore != sessionStoreCookie && h.SessionStore != sessionStoreStorage {
			return fmt.Errorf("session_store %q: must be %s or %s", h.SessionStore, sessionStoreCookie, sessionStoreStorage)
		}
		return nil
	}},
	{"web_api", func(h *Handler) error {
		if err := checkWebAPIPrefix(h.webAPIRoutePrefix); err != nil {
			return err
		}
		return checkWebAPIPrefix(h.WebAPIPrefix) // a JSON config's web_api gate
	}},
	{"storage", func(h *Handler) error { return checkStorageConfig(h.StorageRaw) }},
}

// checkOption runs the check of one option, if it has one.
func checkOption(h *Handler, option string) error {
	for _, c := range optionChecks {
		if c.option == option {
			return c.check(h)
		}
	}
	return nil
}

// checkCombinations checks what one option needs of others.
func checkCombinations(h *Handler) error {
	if h.ClientID == "" {
		return errors.New("client_id is required (and must not resolve to an empty value)")
	}
	// Rules that can never match, because Spotify would not tell us the field.
	granted := append(slices.Clone(h.Scopes), h.RequiredScopes...)
	if len(h.AllowEmails) > 0 && !slices.Contains(granted, "user-read-email") {
		return errors.New("allow_emails needs the user-read-email scope (add it to scopes): without it Spotify does not tell the email")
	}
	if (len(h.AllowProducts) > 0 || len(h.AllowCountries) > 0) && !slices.Contains(granted, "user-read-private") {
		return errors.New("allow_products and allow_countries need the user-read-private scope (add it to scopes): without it Spotify does not tell product or country")
	}
	if err := checkWebAPIRoute(h); err != nil {
		return err
	}
	if h.KeyRotation != 0 && len(h.CookieSecrets) > 0 {
		return errors.New("key_rotation applies only to generated keys; with cookie_secret, rotate by putting a new secret first and removing the old one later")
	}
	if h.Mode != modeApp {
		return nil
	}
	if h.ClientSecret == "" {
		return errors.New("mode app (client credentials) needs client_secret")
	}
	// Without a user, these would hand the app's token to any visitor.
	if h.WebAPI || h.webAPIRoutePrefix != "" {
		return errors.New("web_api needs a logged-in user: it is not available with mode app")
	}
	if h.AuthEndpoint {
		return errors.New("auth_endpoint needs a logged-in user: it is not available with mode app")
	}
	return nil
}

// checkNoEmptyValue refuses an empty rule value: a field Spotify sent in
// a form the plugin does not keep (a product with a control character)
// is dropped at login, and must then match no rule.
func checkNoEmptyValue(option string, values []string) error {
	if slices.Contains(values, "") {
		return fmt.Errorf("%s: an empty value would admit users whose field is missing", option)
	}
	return nil
}

func checkNotNegative(option string, d caddy.Duration) error {
	if d < 0 {
		return fmt.Errorf("%s must not be negative (0 or leaving it out means the default)", option)
	}
	return nil
}

// Spotify's scopes as its Web API documents them in 2026. Anything else makes
// Spotify show its own "Illegal scope" page at /authorize, with no way
// back to the site (new development-mode apps refuse the whole request),
// so it is a config error.
var (
	// userScopes are the 19 documented user scopes.
	userScopes = map[string]bool{
		"ugc-image-upload": true, "user-read-playback-state": true,
		"user-modify-playback-state": true, "user-read-currently-playing": true,
		"app-remote-control": true, "streaming": true,
		"playlist-read-private": true, "playlist-read-collaborative": true,
		"playlist-modify-private": true, "playlist-modify-public": true,
		"user-follow-modify": true, "user-follow-read": true,
		"user-read-playback-position": true, "user-top-read": true,
		"user-read-recently-played": true, "user-library-modify": true,
		"user-library-read": true, "user-read-email": true,
		"user-read-private": true,
	}
	// partnerScopes are Spotify's Open Access scopes: documented, but
	// granted only to apps Spotify has approved as partners. Accepted,
	// with a note at startup (notePartnerScopes).
	partnerScopes = map[string]bool{
		"user-soa-link": true, "user-soa-unlink": true, "soa-manage-entitlements": true,
		"soa-manage-partner": true, "soa-create-partner": true,
	}
)

func checkCookieName(name string) error {
	if name != "" && !validCookieName(name) {
		return fmt.Errorf("cookie_name %q: only letters, digits, '-' and '_' are allowed", name)
	}
	return nil
}

func checkTokenHeader(name string) error {
	if name != "" && !validHeaderName(name) {
		return fmt.Errorf("token_header %q is not a valid header name", name)
	}
	return nil
}

func checkScopes(option string, scopes []string) error {
	for _, s := range scopes {
		if userScopes[s] || partnerScopes[s] {
			continue
		}
		why := "Spotify would answer the login with its own \"Illegal scope\" page"
		if s == "user-personalized" {
			// It appears in Spotify's own clients' grants, so people copy it.
			why = "it is not a documented scope (only Spotify's own apps get it), and " + why
		}
		return fmt.Errorf("%s: unknown Spotify scope %q: %s", option, s, why)
	}
	return nil
}

// notePartnerScopes says at startup that Open Access scopes work only for
// apps Spotify has made partners: otherwise every login ends on Spotify's
// error page, and nothing in the config looks wrong.
func notePartnerScopes(h *Handler) {
	for _, opt := range []struct {
		name   string
		scopes []string
	}{{"scopes", h.Scopes}, {"required_scopes", h.RequiredScopes}} {
		var partner []string
		for _, s := range opt.scopes {
			if partnerScopes[s] {
				partner = append(partner, s)
			}
		}
		if len(partner) > 0 {
			h.logger.Warn("Spotify grants Open Access scopes only to apps it has approved as partners; "+
				"without that approval every login ends on Spotify's \"Illegal scope\" page",
				zap.String("option", opt.name), zap.Strings("partner_scopes", partner))
		}
	}
}

func checkRedirectURI(raw string) error {
	if raw == "" {
		return nil // derived from each request
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("redirect_uri: %v", err)
	}
	if !u.IsAbs() {
		if !strings.HasPrefix(raw, "/") || strings.HasPrefix(raw, "//") || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("redirect_uri %q: must be a full URL or an absolute path without query", raw)
		}
		return nil
	}
	if u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("redirect_uri %q: must be an http(s) URL", raw)
	}
	if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		return fmt.Errorf("redirect_uri %q: Spotify accepts only https, or http on a loopback IP literal such as http://127.0.0.1:8080/oauth2/spotify/callback", raw)
	}
	if u.Path == "" || u.Fragment != "" || u.RawQuery != "" {
		return fmt.Errorf("redirect_uri %q: must have a path and no query or fragment", raw)
	}
	return nil
}

func checkEndpointURL(option, raw string) error {
	if raw == "" {
		return nil // Spotify's
	}
	if u, err := url.Parse(raw); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%s: %q must be an absolute http(s) URL", option, raw)
	}
	return nil
}

// maxRefreshLeeway keeps refreshes well apart: Spotify tokens live 1h.
const maxRefreshLeeway = 30 * time.Minute

// minSecretLen keeps cookie secrets out of brute-force range.
const minSecretLen = 32

// minSecretBits is the least estimated entropy a cookie secret may have.
// The estimate (length × per-character Shannon entropy) is crude but
// catches repeated words and keyboard runs; random base64 or hex of 32
// characters passes easily.
const minSecretBits = 96

func checkCookieSecrets(secrets []string) error {
	for i, s := range secrets {
		if len(s) < minSecretLen {
			return fmt.Errorf("cookie_secret #%d: must be at least %d characters (got %d); generate one with `openssl rand -base64 32`", i+1, minSecretLen, len(s))
		}
		if bits := estimateEntropyBits(s); bits < minSecretBits {
			return fmt.Errorf("cookie_secret #%d: is too predictable (about %.0f bits of entropy, want %d); generate one with `openssl rand -base64 32`", i+1, bits, minSecretBits)
		}
	}
	return nil
}

func estimateEntropyBits(s string) float64 {
	var counts [256]int
	for i := 0; i < len(s); i++ {
		counts[s[i]]++
	}
	perChar := 0.0
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / float64(len(s))
			perChar -= p * math.Log2(p)
		}
	}
	return perChar * float64(len(s))
}

func validCookieName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return s != ""
}

func validHeaderName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return s != ""
}

// checkWebAPIPrefix checks the web_api path prefix: a plain path that no
// endpoint of the plugin lives under.
func checkWebAPIPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if len(prefix) < 2 || prefix[0] != '/' || strings.HasSuffix(prefix, "/") || strings.ContainsAny(prefix, "*?#{}% \\") {
		return fmt.Errorf("web_api %q: want a path such as /spotify-api (no trailing slash, wildcard or placeholder)", prefix)
	}
	// In any case: Caddy's path matcher ignores it, so `web_api /OAUTH2`
	// would take the login endpoints' requests.
	if lower := strings.ToLower(prefix); hasPathPrefix(EndpointPrefix, lower) || strings.HasPrefix(lower+"/", EndpointPrefix) {
		return fmt.Errorf("web_api %q overlaps the login endpoints under %s", prefix, EndpointPrefix)
	}
	return nil
}

// checkWebAPIRoute checks what web_api needs of the other options: a
// JSON config's web_api gate must know its prefix, and the route (which
// comes first) must not take the callback, whose code it would send to
// the Web API.
func checkWebAPIRoute(h *Handler) error {
	if h.WebAPI && h.WebAPIPrefix == "" {
		return errors.New("web_api needs web_api_prefix: the path prefix its route matches, e.g. /spotify-api (the Caddyfile's web_api <prefix> sets both)")
	}
	prefix := cmp.Or(h.webAPIRoutePrefix, h.WebAPIPrefix)
	if prefix == "" {
		return nil
	}
	if cb, err := configuredCallbackPath(h); err == nil && hasPathPrefix(strings.ToLower(cb), strings.ToLower(prefix)) {
		return fmt.Errorf("web_api %q overlaps the callback %s (redirect_uri)", prefix, cb)
	}
	return nil
}

// checkStorageConfig checks the storage option names an installed
// storage module.
func checkStorageConfig(raw json.RawMessage) error {
	if raw == nil {
		return nil // Caddy's configured storage
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return fmt.Errorf("storage: %v", err)
	}
	name, _ := cfg["module"].(string)
	if name == "" {
		return errors.New(`storage: the "module" field names the storage module, e.g. {"module": "file_system", "root": "/var/lib/caddy"}`)
	}
	return checkStorageModule(name)
}

// checkStorageModule names what is wrong with a storage option's module.
func checkStorageModule(name string) error {
	mod, err := caddy.GetModule("caddy.storage." + name)
	if err != nil {
		var installed []string
		for _, m := range caddy.GetModules("caddy.storage") {
			installed = append(installed, m.ID.Name())
		}
		return fmt.Errorf("storage: unknown storage module %q (installed: %s)", name, strings.Join(installed, ", "))
	}
	if _, ok := mod.New().(caddy.StorageConverter); !ok {
		return fmt.Errorf("storage: module %q is not a storage module", name)
	}
	return nil
}
