package spotifyauth

import (
	"context"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyspotify/caddy-spotify-auth/internal/refresher"
	"go.uber.org/zap"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// appToken is a client-credentials token, shared by every request of one
// app (client id) in this process.
type appToken struct {
	bare    string // for a custom token_header
	bearer  string // "Bearer ...", for Authorization
	expiry  string // RFC 3339
	expires int64  // unix seconds
}

// serveApp is mode app: no user, no login; every request gets the app's
// token. One token request per instance at a time, cached until the
// leeway before its expiry.
func (h *Handler) serveApp(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	tok, err := h.appTokens.token(r.Context())
	if err != nil {
		h.logger.Error("app token unavailable", zap.Error(err))
		h.fail(w, r, asAuthError(err), "")
		return nil
	}
	vals := make([]string, 2)
	vals[0], vals[1] = tok.bare, tok.expiry
	if h.bearer {
		vals[0] = tok.bearer
	}
	r.Header[h.tokenHeader] = vals[0:1:1]
	r.Header["X-Spotify-Token-Expires"] = vals[1:2:2]
	markPassed(r, h.passMark)
	return next.ServeHTTP(w, r)
}

// appTokens is mode app's token source: the client credentials flow, one
// token for every route of the app (client id) in this process.
type appTokens struct {
	cc         clientcredentials.Config
	current    *atomic.Pointer[appToken] // in the state shared across reloads
	refresh    *refresher.Coordinator
	httpClient *http.Client
	leeway     int64 // seconds
	metrics    *metrics
	logger     *zap.Logger
}

// newAppTokens is the app token source of h's config and shared state.
func newAppTokens(h *Handler) *appTokens {
	return &appTokens{
		cc: clientcredentials.Config{
			ClientID:     h.ClientID,
			ClientSecret: h.ClientSecret,
			TokenURL:     h.TokenURL,
			AuthStyle:    oauth2.AuthStyleInHeader,
		},
		current: &h.shared.app, refresh: h.refresh, httpClient: h.httpClient,
		leeway: h.leeway, metrics: h.metrics, logger: h.logger,
	}
}

func (a *appTokens) token(ctx context.Context) (*appToken, error) {
	now := time.Now()
	cur := a.current.Load()
	if cur != nil && cur.expires-a.leeway > now.Unix() {
		return cur, nil
	}
	// As with a user's token: while the current one still works, a failed
	// renewal serves it and is tried again only after a pause.
	usable := cur != nil && (refresher.Tokens{Expires: cur.expires}).Usable(now)
	if usable && a.refresh.RetryPaused(appTokenKey) {
		return cur, nil
	}
	t, err := a.renew(ctx)
	if err != nil && usable {
		a.refresh.PauseRetry(appTokenKey)
		a.logger.Warn("renewing the app token failed; using the current one until it expires", zap.Error(err))
		return cur, nil
	}
	return t, err
}

// appTokenKey names the app token's renewal to the refresh coordinator.
const appTokenKey = "app-token"

// renew gets a new app token: one call per instance at a time.
func (a *appTokens) renew(ctx context.Context) (*appToken, error) {
	fresh := func() *appToken {
		if t := a.current.Load(); t != nil && t.expires-a.leeway > time.Now().Unix() {
			return t
		}
		return nil
	}
	ctx = context.WithValue(context.WithoutCancel(ctx), oauth2.HTTPClient, a.httpClient)
	v, err := a.refresh.Once(appTokenKey, func() (any, error) {
		if t := fresh(); t != nil {
			return t, nil
		}
		now := time.Now()
		if err := mayCallSpotify(ctx, a.refresh, refresher.Calls, now); err != nil {
			return nil, err
		}
		tok, err := a.cc.Token(ctx)
		if err != nil {
			ae := classifyTokenError(err, "client credentials")
			noteSpotify(ctx, a.refresh, refresher.Calls, ae)
			a.metrics.refreshFailures.WithLabelValues(ae.Kind.String()).Inc()
			return nil, ae
		}
		a.metrics.refreshes.Inc()
		exp := tokenExpiry(tok, now)
		// Shared by every route of this client, whatever its token_header.
		t := &appToken{bare: tok.AccessToken, bearer: "Bearer " + tok.AccessToken,
			expiry: time.Unix(exp, 0).UTC().Format(time.RFC3339), expires: exp}
		a.current.Store(t)
		return t, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*appToken), nil
}
