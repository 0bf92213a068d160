package spotifyauth

import (
	"errors"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// varHandedOff holds the error an answer became, for ServeHTTP to return.
const varHandedOff = "spotify_auth.error"

// siteHasErrorRoutes tells whether the server being provisioned has a
// handle_errors block: the HTTP app provisions each server's routes with
// that server in the context.
func siteHasErrorRoutes(ctx caddy.Context) bool {
	srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	return ok && srv != nil && srv.Errors != nil && len(srv.Errors.Routes) > 0
}

// handOff lets the site's handle_errors render an answer, as Caddy's own
// auth modules do: if the site has one, it records the answer as a
// caddyhttp.Error and reports true, and the caller writes nothing. The
// headers the caller set (WWW-Authenticate, Retry-After) stay on the
// response; {err.status_code} and {err.message} carry the rest.
func (h *Handler) handOff(w http.ResponseWriter, r *http.Request, status int, message string) bool {
	if !h.errorRoutes {
		return false
	}
	// The operator's page loads its own styles and images: our pages'
	// policy would block them. The others (no-store, no-referrer: the
	// callback's URL holds a code) stay.
	delete(w.Header(), "Content-Security-Policy")
	caddyhttp.SetVar(r.Context(), varHandedOff, caddyhttp.Error(status, errors.New(message)))
	return true
}

// handedOff returns the error handOff recorded for this request, if any.
func handedOff(r *http.Request) error {
	err, _ := caddyhttp.GetVar(r.Context(), varHandedOff).(error)
	return err
}
