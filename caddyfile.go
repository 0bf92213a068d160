package spotifyauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

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
		paths := caddyhttp.MatchPath{handler.configuredCallbackPath(),
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
	if handler.webAPIPrefix != "" {
		// First: the sort keeps routes of one directive that both have
		// matchers in this order, and puts it ahead of a gate without.
		api, err := webAPIRoute(h, *handler, handler.webAPIPrefix)
		if err != nil {
			return nil, err
		}
		routes = append([]httpcaddyfile.ConfigValue{{Class: "route", Value: api}}, routes...)
	}
	return routes, nil
}

// configuredCallbackPath is the callback path as configured, before
// provisioning.
func (h *Handler) configuredCallbackPath() string {
	if h.RedirectURI == "" {
		return DefaultCallbackPath
	}
	if u, err := url.Parse(h.RedirectURI); err == nil && u.Path != "" {
		return u.Path
	}
	return DefaultCallbackPath
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Values
// without placeholders are checked here, so `caddy adapt` names the
// offending option.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.Errf("spotify_auth takes a matcher and a block, not %q", d.Val())
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		opt := d.Val()
		if seen[opt] {
			return d.Errf("%s: given more than once", opt)
		}
		seen[opt] = true
		if opt == "storage" { // a module's own syntax: it reads its args and block
			if err := h.parseStorage(d); err != nil {
				return err
			}
			continue
		}
		args := d.RemainingArgs()
		one := func() (string, error) {
			if len(args) != 1 {
				return "", d.Errf("%s takes exactly one value", opt)
			}
			return args[0], nil
		}
		var err error
		switch opt {
		case "client_id":
			h.ClientID, err = one()
		case "client_secret":
			h.ClientSecret, err = one()
		case "scopes":
			if len(args) == 0 {
				return d.Errf("scopes needs at least one scope")
			}
			h.Scopes = args
			if err := checkScopes(args); err != nil {
				return d.Err(err.Error())
			}
		case "show_dialog":
			switch len(args) {
			case 0:
				h.ShowDialog = true
			case 1:
				if h.ShowDialog, err = strconv.ParseBool(args[0]); err != nil {
					return d.Errf("show_dialog: %q is not true or false", args[0])
				}
			default:
				return d.Errf("show_dialog takes at most one value")
			}
		case "redirect_uri":
			if h.RedirectURI, err = one(); err == nil {
				err = checkRedirectURI(h.RedirectURI)
			}
		case "cookie_secret":
			if len(args) == 0 {
				return d.Errf("cookie_secret needs at least one secret")
			}
			for i, s := range args {
				if !hasPlaceholder(s) {
					if err := checkCookieSecret(s); err != nil {
						return d.Errf("cookie_secret #%d: %v", i+1, err)
					}
				}
			}
			h.CookieSecrets = args
		case "cookie_name":
			if h.CookieName, err = one(); err == nil && !validCookieName(h.CookieName) {
				err = fmt.Errorf("cookie_name %q: only letters, digits, '-' and '_' are allowed", h.CookieName)
			}
		case "cookie_domain":
			h.CookieDomain, err = one()
		case "session_lifetime":
			err = parseDuration(opt, args, &h.SessionLifetime)
		case "timeout":
			err = parseDuration(opt, args, &h.Timeout)
		case "refresh_leeway":
			if err = parseDuration(opt, args, &h.RefreshLeeway); err == nil && time.Duration(h.RefreshLeeway) > maxRefreshLeeway {
				err = fmt.Errorf("must be at most %s", maxRefreshLeeway)
			}
		case "allow_users":
			h.AllowUsers, err = atLeastOne(args)
		case "allow_emails":
			h.AllowEmails, err = atLeastOne(args)
		case "allow_products":
			h.AllowProducts, err = atLeastOne(args)
		case "allow_countries":
			h.AllowCountries, err = atLeastOne(args)
		case "required_scopes":
			if h.RequiredScopes, err = atLeastOne(args); err == nil {
				err = checkScopes(args)
			}
		case "user_headers":
			var on bool
			if on, err = onOff(args); err == nil {
				h.UserHeaders = &on
			}
		case "token_endpoint":
			h.TokenEndpoint, err = onOff(args)
		case "auth_endpoint":
			h.AuthEndpoint, err = onOff(args)
		case "web_api":
			if h.webAPIPrefix, err = one(); err == nil {
				err = checkWebAPIPrefix(h.webAPIPrefix)
			}
		case "mode":
			if h.Mode, err = one(); err == nil && h.Mode != modeUser && h.Mode != modeApp {
				err = fmt.Errorf("%q: want user or app", h.Mode)
			}
		case "session_store":
			h.SessionStore, err = one()
		case "key_rotation":
			err = parseDuration(opt, args, &h.KeyRotation)
		case "login_rate_limit":
			h.LoginRateLimit, err = parseLoginRateLimit(args)
		case "token_header":
			if h.TokenHeader, err = one(); err == nil && !validHeaderName(h.TokenHeader) {
				err = fmt.Errorf("token_header %q is not a valid header name", h.TokenHeader)
			}
		case "authorize_url":
			h.AuthorizeURL, err = oneURL(opt, args)
		case "token_url":
			h.TokenURL, err = oneURL(opt, args)
		case "api_url":
			h.APIURL, err = oneURL(opt, args)
		default:
			return d.Errf("unknown subdirective %q", opt)
		}
		if err != nil {
			return d.Errf("%s: %v", opt, strings.TrimPrefix(err.Error(), opt+": "))
		}
	}
	if h.ClientID == "" {
		return d.Err("client_id is required")
	}
	// Rules that need a scope or a secret are checked now, so `caddy
	// adapt` names them.
	if err := h.checkAccessConfig(); err != nil {
		return d.Err(err.Error())
	}
	if err := h.checkStoreConfig(); err != nil {
		return d.Err(err.Error())
	}
	if err := h.checkEndpointsConfig(); err != nil {
		return d.Err(err.Error())
	}
	return nil
}

// parseStorage reads `storage <module> ...` as Caddy's global storage
// option does: the module parses the rest of the line and its block.
func (h *Handler) parseStorage(d *caddyfile.Dispenser) error {
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

func atLeastOne(args []string) ([]string, error) {
	if len(args) == 0 {
		return nil, errors.New("needs at least one value")
	}
	return args, nil
}

// onOff reads an optional boolean: no value means on.
func onOff(args []string) (bool, error) {
	switch len(args) {
	case 0:
		return true, nil
	case 1:
		switch args[0] {
		case "on", "true":
			return true, nil
		case "off", "false":
			return false, nil
		}
	}
	return false, errors.New("takes on or off")
}

func oneURL(opt string, args []string) (string, error) {
	if len(args) != 1 {
		return "", fmt.Errorf("takes exactly one URL")
	}
	if hasPlaceholder(args[0]) {
		return args[0], nil
	}
	return args[0], checkEndpointURL(args[0])
}

func parseDuration(opt string, args []string, dst *caddy.Duration) error {
	if len(args) != 1 {
		return fmt.Errorf("takes exactly one duration")
	}
	dur, err := caddy.ParseDuration(args[0])
	if err != nil {
		return err
	}
	if dur <= 0 {
		return fmt.Errorf("%s must be positive", opt)
	}
	*dst = caddy.Duration(dur)
	return nil
}

func hasPlaceholder(s string) bool {
	return strings.Contains(s, "{") && strings.Contains(s, "}")
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)
