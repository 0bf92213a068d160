package spotifyauth

import (
	"io"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(Strip{})
	// For handle_errors: an error raised before the gate (basic_auth,
	// say) reaches the error routes as the client sent it, and neither the
	// gate nor its strip route ran. First, so nothing there sees it.
	httpcaddyfile.RegisterHandlerDirective("spotify_auth_strip", parseStripCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("spotify_auth_strip", httpcaddyfile.Before, "tracing")
}

// parseStripCaddyfile sets up a Strip from Caddyfile tokens. Syntax:
//
//	spotify_auth_strip [<matcher>] {
//		token_header <header>
//		cookie_name  <name>
//	}
func parseStripCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	s := new(Strip)
	err := s.UnmarshalCaddyfile(h.Dispenser)
	return s, err
}

// UnmarshalCaddyfile reads the directive's options.
func (s *Strip) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive's name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		var dst *string
		switch d.Val() {
		case "token_header":
			dst = &s.TokenHeader
		case "cookie_name":
			dst = &s.CookieName
		default:
			return d.Errf("spotify_auth_strip: unknown option %q", d.Val())
		}
		if !d.NextArg() {
			return d.ArgErr()
		}
		*dst = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	return nil
}

// varPassed is the request variable a gate sets when it lets a request
// through, so a Strip that runs after it keeps what the gate put on the
// request: a *passMark naming the token headers the gates set. One
// variable, not one per header: Caddy's vars map starts with two entries
// and stays in its first allocation.
const varPassed = "spotify_auth.passed"

// passMark lists the token headers (canonical) that gates set on a
// request. A gate marks with a mark of its own, made at Provision, so
// the common case of one gate allocates nothing.
type passMark struct {
	tokenHeader string
	next        *passMark // a gate before, with another token header
}

func (m *passMark) has(tokenHeader string) bool {
	for ; m != nil; m = m.next {
		if m.tokenHeader == tokenHeader {
			return true
		}
	}
	return false
}

// Strip keeps everything the plugin manages away from the upstream on
// every request of a site, gated or not: the token header, every
// X-Spotify-* header (also as trailers) and the plugin's cookies. Without
// it a request outside the gate's matcher (`/app` for `/app/*`, `/`, an
// encoded traversal) would reach an upstream with a client's own
// X-Spotify-User-Id.
//
// The Caddyfile directive adds it by itself, in a route with no matcher
// right after the gate's route. In JSON config, add that route yourself:
// `{"handle": [{"handler": "spotify_auth_strip"}]}` after the route of
// every `spotify_auth` handler, with the same `token_header` and
// `cookie_name` if those are not the defaults. It must come after the
// gate, which needs the cookies it removes.
type Strip struct {
	// The token header of the `spotify_auth` handler this belongs to.
	// Default: `Authorization`.
	TokenHeader string `json:"token_header,omitempty"`
	// The session cookie name of that handler. Default: `spotify_auth`.
	CookieName string `json:"cookie_name,omitempty"`

	tokenHeader string
	cookies     cookieNames
}

// CaddyModule returns the Caddy module information.
func (Strip) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.spotify_auth_strip",
		New: func() caddy.Module { return new(Strip) },
	}
}

// Provision sets the defaults.
func (s *Strip) Provision(caddy.Context) error {
	if s.TokenHeader == "" {
		s.TokenHeader = DefaultTokenHeader
	}
	if s.CookieName == "" {
		s.CookieName = DefaultCookieName
	}
	s.tokenHeader = http.CanonicalHeaderKey(s.TokenHeader)
	s.cookies = newCookieNames(s.CookieName, false)
	return nil
}

// Validate checks the names.
func (s *Strip) Validate() error {
	if err := checkTokenHeader(s.TokenHeader); err != nil {
		return err
	}
	return checkCookieName(s.CookieName)
}

// ServeHTTP removes what a client sent under our names, keeping only what
// a gate set on this request.
func (s *Strip) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	stripWhatNoGateSet(r, s.tokenHeader, s.cookies)
	return next.ServeHTTP(w, r)
}

// stripWhatNoGateSet removes from r what a client sent under the names of
// a gate with tokenHeader and cookies: every X-Spotify-* and token header
// unless a gate let r through, and this token header unless a gate with
// it did (that gate removed the client's before it set its own); the
// cookies; managed names in trailers, which are never ours.
func stripWhatNoGateSet(r *http.Request, tokenHeader string, cookies cookieNames) {
	mark, passed := caddyhttp.GetVar(r.Context(), varPassed).(*passMark)
	switch {
	case !passed:
		stripManagedHeaders(r.Header, tokenHeader)
	case !mark.has(tokenHeader):
		for k := range r.Header {
			if headerNameIs(k, tokenHeader) {
				delete(r.Header, k)
			}
		}
	}
	stripOurCookies(r.Header, cookies)
	scrubTrailers(r, tokenHeader)
}

// markPassed records on the request that a gate let it through with the
// token header of own, the gate's mark, for the Strip routes that follow.
func markPassed(r *http.Request, own *passMark) {
	before, _ := caddyhttp.GetVar(r.Context(), varPassed).(*passMark)
	switch {
	case before == nil:
		caddyhttp.SetVar(r.Context(), varPassed, own)
	case !before.has(own.tokenHeader):
		// A second gate, with another token header.
		caddyhttp.SetVar(r.Context(), varPassed, &passMark{tokenHeader: own.tokenHeader, next: before})
	}
}

// scrubTrailers keeps managed names out of the request's trailers, both
// those declared now and those that arrive with the end of the body (the
// reverse proxy forwards what the trailer map holds at EOF).
func scrubTrailers(r *http.Request, tokenHeader string) {
	if r.Trailer == nil {
		return
	}
	stripManagedHeaders(r.Trailer, tokenHeader)
	if r.Body != nil && r.Body != http.NoBody {
		// Wrapped again for a second gate's token header.
		if ts, done := r.Body.(*trailerScrubber); !done || ts.tokenHeader != tokenHeader {
			r.Body = &trailerScrubber{ReadCloser: r.Body, trailer: r.Trailer, tokenHeader: tokenHeader}
		}
	}
}

// trailerScrubber removes managed names from the trailers once they have
// been read, before any reader further out sees the end of the body.
type trailerScrubber struct {
	io.ReadCloser
	trailer     http.Header
	tokenHeader string
}

func (b *trailerScrubber) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		stripManagedHeaders(b.trailer, b.tokenHeader)
	}
	return n, err
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Strip)(nil)
	_ caddy.Validator             = (*Strip)(nil)
	_ caddyhttp.MiddlewareHandler = (*Strip)(nil)
	_ caddyfile.Unmarshaler       = (*Strip)(nil)
)
