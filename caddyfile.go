package spotifyauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterDirective("spotify_auth", parseCaddyfile)
	// With the other auth directives: ahead of handle, route, respond,
	// reverse_proxy and file_server, so nothing answers before the gate.
	httpcaddyfile.RegisterDirectiveOrder("spotify_auth", httpcaddyfile.After, "basic_auth")
}

// parseCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	spotify_auth [<matcher>] {
//		client_id        <id>
//		client_secret    <secret>
//		scopes           <scope...>
//		show_dialog      [true|false]
//		redirect_uri     <url|path>
//		cookie_secret    <secret...>
//		cookie_name      <name>
//		cookie_domain    <domain>
//		session_lifetime <duration>
//		token_header     <header>
//		authorize_url    <url>
//		token_url        <url>
//		api_url          <url>
//		timeout          <duration>
//		refresh_leeway   <duration>
//		allow_users      <id...>
//		allow_emails     <email...>
//		allow_products   <product...>
//		allow_countries  <code...>
//		required_scopes  <scope...>
//		user_headers     [on|off]
//		token_endpoint   [on|off]
//		mode             user|app
//		session_store    cookie|storage
//		key_rotation     <duration>
//		login_rate_limit <per_client> [<overall>]
//		web_api          <prefix>
//		auth_endpoint    [on|off]
//		storage          <module> [<args...>] { ... }
//	}
//
// The route it emits matches the given matcher OR the handler's own
// endpoints (/oauth2/spotify/* and the redirect URI's path), so login,
// callback and logout work whatever the matcher protects. A second route,
// without matcher, strips managed headers and our cookies from every other
// request of the site (see Strip). With web_api, a route for <prefix>/*
// comes first: the gate in web_api mode, then reverse_proxy to api_url.
func parseCaddyfile(h httpcaddyfile.Helper) ([]httpcaddyfile.ConfigValue, error) {
	if !h.Next() {
		return nil, h.ArgErr()
	}
	userMatcher, err := h.ExtractMatcherSet()
	if err != nil {
		return nil, err
	}
	handler := new(Handler)
	if err := handler.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}

	var matcherSets []caddy.ModuleMap
	if userMatcher != nil && handler.Mode == modeApp {
		matcherSets = []caddy.ModuleMap{userMatcher} // no login, no endpoints
	} else if userMatcher != nil {
		// The exact endpoints, not /oauth2/spotify/*: with several
		// spotify_auth blocks on a site, /oauth2/spotify/token must reach
		// the block that enabled it.
		callbackPath, err := configuredCallbackPath(handler)
		if err != nil {
			return nil, h.Err(err.Error())
		}
		paths := caddyhttp.MatchPath{callbackPath,
			EndpointPrefix + "login", EndpointPrefix + "logout", EndpointPrefix + "userinfo"}
		if handler.TokenEndpoint {
			paths = append(paths, EndpointPrefix+"token")
		}
		if handler.AuthEndpoint {
			paths = append(paths, EndpointPrefix+"auth")
		}
		matcherSets = []caddy.ModuleMap{userMatcher, {"path": h.JSON(paths)}}
	}
	route := caddyhttp.Route{
		MatcherSetsRaw: matcherSets,
		HandlersRaw:    []json.RawMessage{caddyconfig.JSONModuleObject(handler, "handler", "spotify_auth", nil)},
	}
	// Managed headers and our cookies are removed from every request of
	// the site, not only the gated ones. A route without matcher sorts
	// after the gate's own (Caddy puts matched routes of one directive
	// first), which is where it must be: it removes the cookies the gate
	// reads.
	strip := caddyhttp.Route{
		HandlersRaw: []json.RawMessage{caddyconfig.JSONModuleObject(
			Strip{TokenHeader: handler.TokenHeader, CookieName: handler.CookieName}, "handler", "spotify_auth_strip", nil)},
	}
	routes := []httpcaddyfile.ConfigValue{{Class: "route", Value: route}, {Class: "route", Value: strip}}
	if handler.webAPIRoutePrefix != "" {
		// First: the sort keeps routes of one directive that both have
		// matchers in this order, and puts it ahead of a gate without.
		api, err := webAPIRoute(h, *handler, handler.webAPIRoutePrefix)
		if err != nil {
			return nil, err
		}
		routes = append([]httpcaddyfile.ConfigValue{{Class: "route", Value: api}}, routes...)
	}
	return routes, nil
}

// configuredCallbackPath is the callback path as configured, before
// provisioning.
// A placeholder is resolved now, as Provision will ({env.*}, {file.*}):
// the route's path matcher would expand it per request into the whole
// URL, and the callback, code and all, would go to the upstream.
func configuredCallbackPath(h *Handler) (string, error) {
	raw := h.RedirectURI
	if hasPlaceholder(raw) {
		raw = caddy.NewReplacer().ReplaceKnown(raw, "")
	}
	if raw == "" {
		return DefaultCallbackPath, nil
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Path == "":
		return DefaultCallbackPath, nil // Validate names the problem
	case hasPlaceholder(u.Path):
		return "", fmt.Errorf("redirect_uri %q: with a matcher, its path must be known when the Caddyfile is adapted: write the path literally (https://{env.SITE_HOST}/oauth2/spotify/callback)", h.RedirectURI)
	}
	return u.Path, nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. It reads
// the syntax; what the values must be is in validate.go, whose checks it
// runs on each value without placeholders, so `caddy adapt` names the line.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.Errf("spotify_auth takes a matcher and a block, not %q", d.Val())
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		opt := d.Val()
		parse, known := optionParsers[opt]
		parseBlock, isBlock := blockOptionParsers[opt]
		if !known && !isBlock {
			return d.Errf("unknown subdirective %q", opt)
		}
		if seen[opt] {
			return d.Errf("%s: given more than once", opt)
		}
		seen[opt] = true
		if isBlock {
			if err := parseBlock(h, d); err != nil {
				return err
			}
			continue
		}
		args := d.RemainingArgs()
		if err := parse(h, args); err != nil {
			return d.Errf("%s: %v", opt, err)
		}
		if !slices.ContainsFunc(args, hasPlaceholder) {
			if err := checkOption(h, opt); err != nil {
				return d.Err(err.Error())
			}
		}
	}
	if err := checkCombinations(h); err != nil {
		return d.Err(err.Error())
	}
	return nil
}

// blockOptionParsers read subdirectives that take a module's own syntax
// (its arguments and block) from the dispenser.
var blockOptionParsers = map[string]func(h *Handler, d *caddyfile.Dispenser) error{
	"storage": parseStorage,
}

// optionParsers read each subdirective's arguments into the handler.
var optionParsers = map[string]func(h *Handler, args []string) error{
	"client_id":        func(h *Handler, args []string) error { return one(args, &h.ClientID) },
	"client_secret":    func(h *Handler, args []string) error { return one(args, &h.ClientSecret) },
	"scopes":           func(h *Handler, args []string) error { return atLeastOne(args, &h.Scopes) },
	"redirect_uri":     func(h *Handler, args []string) error { return one(args, &h.RedirectURI) },
	"cookie_secret":    func(h *Handler, args []string) error { return atLeastOne(args, &h.CookieSecrets) },
	"cookie_name":      func(h *Handler, args []string) error { return one(args, &h.CookieName) },
	"cookie_domain":    func(h *Handler, args []string) error { return one(args, &h.CookieDomain) },
	"token_header":     func(h *Handler, args []string) error { return one(args, &h.TokenHeader) },
	"authorize_url":    func(h *Handler, args []string) error { return one(args, &h.AuthorizeURL) },
	"token_url":        func(h *Handler, args []string) error { return one(args, &h.TokenURL) },
	"api_url":          func(h *Handler, args []string) error { return one(args, &h.APIURL) },
	"allow_users":      func(h *Handler, args []string) error { return atLeastOne(args, &h.AllowUsers) },
	"allow_emails":     func(h *Handler, args []string) error { return atLeastOne(args, &h.AllowEmails) },
	"allow_products":   func(h *Handler, args []string) error { return atLeastOne(args, &h.AllowProducts) },
	"allow_countries":  func(h *Handler, args []string) error { return atLeastOne(args, &h.AllowCountries) },
	"required_scopes":  func(h *Handler, args []string) error { return atLeastOne(args, &h.RequiredScopes) },
	"mode":             func(h *Handler, args []string) error { return one(args, &h.Mode) },
	"session_store":    func(h *Handler, args []string) error { return one(args, &h.SessionStore) },
	"web_api":          func(h *Handler, args []string) error { return one(args, &h.webAPIRoutePrefix) },
	"session_lifetime": func(h *Handler, args []string) error { return duration(args, &h.SessionLifetime) },
	"timeout":          func(h *Handler, args []string) error { return duration(args, &h.Timeout) },
	"refresh_leeway":   func(h *Handler, args []string) error { return duration(args, &h.RefreshLeeway) },
	"key_rotation":     func(h *Handler, args []string) error { return duration(args, &h.KeyRotation) },
	"show_dialog":      func(h *Handler, args []string) error { return onOff(args, &h.ShowDialog) },
	"token_endpoint":   func(h *Handler, args []string) error { return onOff(args, &h.TokenEndpoint) },
	"auth_endpoint":    func(h *Handler, args []string) error { return onOff(args, &h.AuthEndpoint) },
	"user_headers": func(h *Handler, args []string) error {
		h.UserHeaders = new(bool)
		return onOff(args, h.UserHeaders)
	},
	"login_rate_limit": func(h *Handler, args []string) (err error) {
		h.LoginRateLimit, err = parseLoginRateLimit(args)
		return err
	},
}

// parseStorage reads `storage <module> ...` as Caddy's global storage
// option does: the module parses the rest of the line and its block.
func parseStorage(h *Handler, d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.Err("storage needs a storage module, e.g. storage file_system /var/lib/caddy")
	}
	name := d.Val()
	if err := checkStorageModule(name); err != nil {
		return d.Err(err.Error())
	}
	unm, err := caddyfile.UnmarshalModule(d, "caddy.storage."+name)
	if err != nil {
		return d.Errf("storage %s: %v", name, err)
	}
	h.StorageRaw = caddyconfig.JSONModuleObject(unm, "module", name, nil)
	return nil
}

func one(args []string, dst *string) error {
	if len(args) != 1 {
		return errors.New("takes exactly one value")
	}
	*dst = args[0]
	return nil
}

func atLeastOne(args []string, dst *[]string) error {
	if len(args) == 0 {
		return errors.New("needs at least one value")
	}
	*dst = args
	return nil
}

// onOff reads an optional boolean: no value means on.
func onOff(args []string, dst *bool) error {
	switch {
	case len(args) == 0:
		*dst = true
		return nil
	case len(args) > 1:
		return errors.New("takes on or off")
	}
	switch args[0] {
	case "on", "true":
		*dst = true
	case "off", "false":
		*dst = false
	default:
		return fmt.Errorf("%q: want on or off", args[0])
	}
	return nil
}

// duration reads a duration above zero: leaving the option out is how to
// get its default.
func duration(args []string, dst *caddy.Duration) error {
	if len(args) != 1 {
		return errors.New("takes exactly one duration")
	}
	d, err := caddy.ParseDuration(args[0])
	if err != nil {
		return err
	}
	if d <= 0 {
		return errors.New("must be positive")
	}
	*dst = caddy.Duration(d)
	return nil
}

func hasPlaceholder(s string) bool {
	return strings.Contains(s, "{") && strings.Contains(s, "}")
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)
