// Package spotifyauth is a Caddy HTTP handler that puts routes behind
// "Log in with Spotify" and hands the logged-in user's Spotify access token
// to the upstream in a header.
package spotifyauth

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/caddyspotify/caddy-spotify-auth/internal/refresher"
	"github.com/caddyspotify/caddy-spotify-auth/internal/revocation"
	"github.com/caddyspotify/caddy-spotify-auth/internal/storagekeys"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Defaults for the options that have one.
const (
	DefaultAuthorizeURL    = "https://accounts.spotify.com/authorize"
	DefaultTokenURL        = "https://accounts.spotify.com/api/token"
	DefaultAPIURL          = "https://api.spotify.com"
	DefaultCookieName      = "spotify_auth"
	DefaultTokenHeader     = "Authorization"
	DefaultSessionLifetime = 7 * 24 * time.Hour
	DefaultTimeout         = 10 * time.Second
	DefaultRefreshLeeway   = 5 * time.Minute

	// EndpointPrefix is where the handler answers its own endpoints
	// (login, callback, logout), whatever matcher the route has.
	EndpointPrefix = "/oauth2/spotify/"
	// DefaultCallbackPath is the redirect URI path when none is configured.
	DefaultCallbackPath = EndpointPrefix + "callback"
)

// Handler authenticates requests with Spotify (OAuth 2.0 authorization
// code flow with PKCE) and passes the user's access token to the next
// handler. Requests without a valid session are sent to log in (browser
// navigations) or answered with 401 (API calls).
//
// The handler answers its own endpoints under `/oauth2/spotify/`
// (`login`, `callback`, `logout`); the Caddyfile directive makes its route
// match them in addition to the directive's own matcher. In JSON config,
// add a path matcher for `/oauth2/spotify/*` to the route yourself.
type Handler struct {
	// The Spotify app's client ID. Required. Placeholders such as
	// `{env.SPOTIFY_CLIENT_ID}` are resolved at provision time.
	ClientID string `json:"client_id,omitempty"`

	// The Spotify app's client secret. Optional: without it the handler is
	// a public client and relies on PKCE alone. Placeholders are resolved.
	ClientSecret string `json:"client_secret,omitempty"`

	// OAuth scopes to request, e.g. `user-read-email`.
	Scopes []string `json:"scopes,omitempty"`

	// Ask Spotify to show the consent dialog even if the user already
	// approved the app.
	ShowDialog bool `json:"show_dialog,omitempty"`

	// The redirect URI registered with Spotify: a full URL, or a path on
	// the request's own scheme and host. Default: `/oauth2/spotify/callback`.
	// Spotify accepts only HTTPS, or http on a loopback IP literal
	// (`http://127.0.0.1:PORT/...`). Production configs should set a full
	// URL so a forged Host header can't steer the flow.
	RedirectURI string `json:"redirect_uri,omitempty"`

	// Secrets the session cookies are sealed with (32 characters or more).
	// The first seals; all open, so a new secret can be put first and an
	// old one removed later without logging anybody out. If none is set,
	// a random key is generated once and kept in Caddy's storage.
	// Placeholders such as `{file./etc/caddy/cookie-secret}` are resolved.
	CookieSecrets []string `json:"cookie_secret,omitempty"`

	// Rotate the generated session key this often (e.g. `720h`; at least
	// 1h). Only without cookie_secret. A new key is added to storage;
	// instances pick it up within a minute and seal with it a few minutes
	// later, and older keys keep opening until nothing sealed with them
	// can still be valid (session_lifetime), then are dropped.
	// Default: never.
	KeyRotation caddy.Duration `json:"key_rotation,omitempty"`

	// Where the plugin keeps what it keeps: generated session keys,
	// `session_store storage` sessions, revocations, refresh locks and
	// results, back-offs. Any `caddy.storage` module, configured as in
	// Caddy's global `storage` option. Default: Caddy's configured
	// storage. Every instance of an app must use the same storage, or
	// they neither share keys and sessions nor coordinate refreshes.
	StorageRaw json.RawMessage `json:"storage,omitempty" caddy:"namespace=caddy.storage inline_key=module"`

	// Where sessions live: `cookie` (default) seals the whole session
	// into the cookie, so no instance keeps any state. `storage` keeps the
	// sealed session in Caddy's storage and only a reference in the
	// cookie: cookies stay tiny and logout ends the session on every
	// instance at once (and `?everywhere=1` all of the user's sessions),
	// at the cost of one storage read per request.
	SessionStore string `json:"session_store,omitempty"`

	// Name of the session cookie. Default `spotify_auth`; over HTTPS it is
	// given the `__Host-` prefix (or `__Secure-` when cookie_domain is set).
	CookieName string `json:"cookie_name,omitempty"`

	// Domain attribute of the session cookie. Default: none (host only).
	CookieDomain string `json:"cookie_domain,omitempty"`

	// How long a session lasts after login. Default 7 days.
	SessionLifetime caddy.Duration `json:"session_lifetime,omitempty"`

	// Request header the access token is passed in. Default `Authorization`
	// with the value `Bearer <token>`; any other header gets the bare token.
	TokenHeader string `json:"token_header,omitempty"`

	// Spotify's authorize endpoint. Override only to use a fake or a proxy.
	AuthorizeURL string `json:"authorize_url,omitempty"`

	// Spotify's token endpoint. Override only to use a fake or a proxy.
	TokenURL string `json:"token_url,omitempty"`

	// Base URL of the Spotify Web API. Default `https://api.spotify.com`.
	APIURL string `json:"api_url,omitempty"`

	// Time limit for each call to Spotify (token exchange, refresh,
	// /v1/me). Default 10s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// How long before its expiry the access token is refreshed, so the
	// upstream never gets a token about to die mid-call. Default 5m; at
	// most 30m (Spotify tokens live an hour).
	RefreshLeeway caddy.Duration `json:"refresh_leeway,omitempty"`

	// Only these Spotify users may pass, each given by its user id or its
	// account_id. Rules of different kinds must all match; within a kind,
	// any value matches. Empty: anyone.
	AllowUsers []string `json:"allow_users,omitempty"`

	// Only these emails may pass (compared case-insensitively). Needs the
	// user-read-email scope.
	AllowEmails []string `json:"allow_emails,omitempty"`

	// Only these Spotify products (subscription levels), e.g. `premium`,
	// which the Web Playback SDK needs. Needs the user-read-private scope.
	AllowProducts []string `json:"allow_products,omitempty"`

	// Only users of these countries (ISO 3166-1 alpha-2, e.g. `SE`).
	// Needs the user-read-private scope.
	AllowCountries []string `json:"allow_countries,omitempty"`

	// Scopes the user must have granted to use this route. If the grant
	// lacks one, consent is asked for once more (with the dialog shown);
	// if it still lacks it, the answer is 403 naming the scope.
	RequiredScopes []string `json:"required_scopes,omitempty"`

	// Send the identity headers (X-Spotify-User-Id, -Account-Id,
	// -User-Name, -User-Email, -Product, -Scopes) upstream. Default on. Incoming
	// headers of those names are removed either way.
	UserHeaders *bool `json:"user_headers,omitempty"`

	// Serve /oauth2/spotify/token, which gives the page's own scripts a
	// fresh access token (for the Web Playback SDK). Default off: a token
	// readable by script is only as safe as the page is from XSS.
	TokenEndpoint bool `json:"token_endpoint,omitempty"`

	// Bounds the code exchanges (one Spotify token call each) that login
	// callbacks may cause, per client address, per address block and
	// overall, so strangers cannot spend the app's Spotify rate limit and
	// one network cannot lock everyone else out. Default 20 per client and
	// 300 overall per minute.
	LoginRateLimit *LoginRateLimit `json:"login_rate_limit,omitempty"`

	// `user` (default): every request needs a logged-in user. `app`: no
	// login; requests get an app access token from the client
	// credentials flow (needs client_secret), for catalog and search APIs.
	Mode string `json:"mode,omitempty"`

	// Make this handler the gate of a Web API proxy route: every request
	// it sees is a call of the site's own scripts (others get 403), sent
	// on with the user's token and nothing else of the session by the
	// reverse_proxy that must follow it in the route. The Caddyfile's
	// `web_api <prefix>` builds that route; in JSON, match `<prefix>/*`,
	// put it before the gate's route, and follow this handler (with the
	// block's other fields and web_api_prefix) by a reverse_proxy to api_url with
	// `rewrite.strip_path_prefix` `<prefix>`, `Host` set to the API's host
	// and the X-Forwarded-* headers deleted.
	WebAPI bool `json:"web_api,omitempty"`

	// The path prefix the web_api route is matched on (the Caddyfile's
	// `web_api <prefix>`), required with web_api: the gate passes on only
	// `<prefix>/v1/...` spelled exactly so, and answers 404 to anything
	// else under the prefix.
	WebAPIPrefix string `json:"web_api_prefix,omitempty"`

	// Serve /oauth2/spotify/auth for nginx's auth_request and Traefik's
	// forwardAuth: 200 with the upstream's headers as response headers,
	// 401 with the login URL. Default off.
	AuthEndpoint bool `json:"auth_endpoint,omitempty"`

	webAPIRoutePrefix string // Caddyfile `web_api <prefix>`: the route to emit (its gate gets WebAPIPrefix)

	// The runtime state Provision builds, grouped by what it serves. The
	// groups are embedded by value, so a copy of a Handler copies them as
	// it copied the fields before.
	spotifyConn
	storageKeys
	requestSettings
	lifecycle
}

// spotifyConn is how this config talks to Spotify.
type spotifyConn struct {
	oauth      *oauth2.Config
	httpClient *http.Client
	spotify    *spotifyClient
	appTokens  *appTokens // mode app's token source
}

// storageKeys is where this config keeps its state and what it seals
// that state with.
type storageKeys struct {
	keys          *atomic.Pointer[keyring] // a pointer: Handler is copied by value
	generatedKeys bool                     // keys from storage, re-read in the background
	app           string                   // appBinding: what keys are derived for
	storage       certmagic.Storage        // resolved from StorageRaw, or Caddy's
	storageID     string                   // what makes two storage options the same
	revocations   *revocation.Marks
	sessions      sessionStore // where sessions live, as session_store says (sessionstore.go)
}

// requestSettings is what Provision derives from the config once, so
// requests need not.
type requestSettings struct {
	callbackPath string
	// callbackEscaped is the callback's path as the browser sends it,
	// the only spelling it answers at.
	callbackEscaped string
	redirectURL     *url.URL  // nil when derived per request
	tokenHeader     string    // canonical form
	passMark        *passMark // what marks a request this gate let through
	errorRoutes     bool      // the site has handle_errors: answers go there
	leeway          int64     // RefreshLeeway in seconds
	rules           accessRules
	userHeaders     bool
	appMode         bool
	bearer          bool
	cookies         cookieNames
}

// lifecycle is what ties this config to the process: the state shared
// across reloads, the background work, metrics and the log.
type lifecycle struct {
	invalid     error // what validate found, reported by Validate
	shared      *sharedState
	sharedKey   string
	refresh     *refresher.Coordinator // over shared.refresh, with this config's storage and keys
	maintenance *maintainer            // the background work, from Provision to Cleanup
	login       *loginFlow             // the login: start, callback, state cookies (login.go)
	metrics     *metrics
	logger      *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.spotify_auth",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision resolves placeholders, validates, and sets up the keys, the
// Spotify client, the state shared across reloads and the background work.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.errorRoutes = siteHasErrorRoutes(ctx)
	resolvePlaceholders(h)
	setDefaults(h)
	if h.invalid = validateConfig(h); h.invalid != nil {
		return nil // Validate reports it; nothing is written or started
	}
	if err := provisionStorage(h, ctx); err != nil {
		return err
	}
	if err := provisionKeys(h, ctx); err != nil {
		return err
	}
	if err := provisionRequestSettings(h, ctx); err != nil {
		return err
	}
	provisionSpotify(h)
	h.login = newLoginFlow(h)
	if err := provisionShared(h); err != nil {
		return err
	}
	h.revocations = newRevocations(h)
	h.sessions = newSessionStore(h)
	if err := h.revocations.Reread(ctx, time.Now()); err != nil {
		h.logger.Warn("reading session revocations from storage; retrying in the background", zap.Error(err))
	}
	startBackground(h, ctx)
	registerLive(h, ctx.Context)
	return nil
}

// resolvePlaceholders reads secrets and endpoints from the environment or
// files (never from a request).
func resolvePlaceholders(h *Handler) {
	repl := caddy.NewReplacer()
	for _, s := range []*string{&h.ClientID, &h.ClientSecret, &h.AuthorizeURL, &h.TokenURL, &h.APIURL, &h.RedirectURI} {
		*s = repl.ReplaceKnown(*s, "")
	}
	h.ClientID = strings.TrimSpace(h.ClientID)
	h.ClientSecret = strings.TrimSpace(h.ClientSecret)
	secrets := make([]string, len(h.CookieSecrets))
	for i, s := range h.CookieSecrets {
		secrets[i] = strings.TrimSpace(repl.ReplaceKnown(s, ""))
	}
	h.CookieSecrets = secrets
}

// provisionKeys builds the key ring: from cookie_secret, else from keys
// generated once into storage (and rotated there).
func provisionKeys(h *Handler, ctx caddy.Context) error {
	secrets := make([][]byte, len(h.CookieSecrets))
	for i, s := range h.CookieSecrets {
		secrets[i] = []byte(s)
	}
	if len(secrets) == 0 {
		now := time.Now()
		sk, err := loadOrCreateKeys(ctx, h.storage, keyKeep(h), h.logger)
		if err == nil {
			sk, err = rotateKeys(ctx, h.storage, sk, time.Duration(h.KeyRotation), keyKeep(h), now, h.logger)
		}
		if err != nil {
			return fmt.Errorf("session keys from storage: %w", err)
		}
		secrets = sk.sealingOrder(now)
		h.generatedKeys = true
	}
	h.app = appBinding(h.ClientID, h.AuthorizeURL, h.TokenURL, h.APIURL)
	kr, err := newKeyring(secrets, h.app)
	if err != nil {
		return err
	}
	h.keys = new(atomic.Pointer[keyring])
	h.keys.Store(kr)
	return nil
}

// provisionRequestSettings derives what the request path reads from the
// options, once.
func provisionRequestSettings(h *Handler, ctx caddy.Context) error {
	h.callbackPath, h.callbackEscaped = DefaultCallbackPath, DefaultCallbackPath
	if h.RedirectURI != "" {
		u, _ := url.Parse(h.RedirectURI) // validated
		h.callbackPath, h.callbackEscaped = u.Path, u.EscapedPath()
		if u.IsAbs() {
			h.redirectURL = u
		}
	}
	h.leeway = int64(time.Duration(h.RefreshLeeway) / time.Second)
	h.rules = newAccessRules(h)
	notePartnerScopes(h)
	h.userHeaders = h.UserHeaders == nil || *h.UserHeaders
	h.appMode = h.Mode == modeApp
	h.tokenHeader = http.CanonicalHeaderKey(h.TokenHeader)
	h.passMark = &passMark{tokenHeader: h.tokenHeader}
	h.bearer = h.tokenHeader == "Authorization"
	if !h.bearer {
		h.logger.Warn("Caddy redacts only Authorization (and cookies) in its logs: at DEBUG level, reverse_proxy logs "+
			"the upstream request's headers, token included; keep DEBUG off in production or use token_header Authorization",
			zap.String("token_header", h.tokenHeader))
	}
	h.cookies = newCookieNames(h.CookieName, h.CookieDomain != "")
	var err error
	if h.metrics, err = newMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	return nil
}

// provisionSpotify sets up the OAuth and Web API clients.
func provisionSpotify(h *Handler) {
	h.httpClient = newHTTPClient(time.Duration(h.Timeout))
	authStyle := oauth2.AuthStyleInParams
	if h.ClientSecret != "" {
		authStyle = oauth2.AuthStyleInHeader
	}
	h.oauth = &oauth2.Config{
		ClientID:     h.ClientID,
		ClientSecret: h.ClientSecret,
		Scopes:       h.Scopes,
		Endpoint: oauth2.Endpoint{
			AuthURL:   h.AuthorizeURL,
			TokenURL:  h.TokenURL,
			AuthStyle: authStyle,
		},
	}
	h.spotify = &spotifyClient{apiURL: strings.TrimRight(h.APIURL, "/"), http: h.httpClient}
	warnPastSpotifyLimits(h)
}

// warnPastSpotifyLimits tells the operator what Spotify will not do for
// this config.
func warnPastSpotifyLimits(h *Handler) {
	if !h.appMode && time.Duration(h.SessionLifetime) > spotifyGrantLife {
		h.logger.Warn("session_lifetime is longer than Spotify lets a login last: refresh tokens expire 6 months after the user's consent, "+
			"so sessions end then and users are sent through Spotify's consent again",
			zap.Duration("session_lifetime", time.Duration(h.SessionLifetime)), zap.Duration("spotify_refresh_token_life", spotifyGrantLife))
	}
}

// spotifyGrantLife is how long Spotify honours a refresh token: 6 months
// after the user's consent (all apps since July 2026), however often it is
// used. Refreshing then answers invalid_grant.
const spotifyGrantLife = 183 * 24 * time.Hour

// provisionShared takes the state that must survive a config reload
// (refreshes in flight, used states, back-offs, the login limits), kept in
// a pool keyed by what identifies the client: Spotify's limits are per app,
// whatever storage a block uses. Only the maintenance schedule is per
// storage.
func provisionShared(h *Handler) error {
	h.sharedKey = "spotify_auth:" + h.TokenURL + "|" + h.ClientID
	shared, _, err := sharedPool.LoadOrNew(h.sharedKey, func() (caddy.Destructor, error) {
		return newSharedState(), nil
	})
	if err != nil {
		return err
	}
	h.shared = shared.(*sharedState)
	provisionRefresh(h)
	return nil
}

// startBackground starts the work that lives as long as this config:
// Cleanup stops it.
func startBackground(h *Handler, ctx caddy.Context) {
	h.maintenance = &maintainer{
		schedule: h.shared.maintenanceFor(h.storageID),
		storage:  h.storage,
		logger:   h.logger,
		memory:   func() *sharedState { return h.shared },
		sessions: func() sessionStore { return h.sessions },
	}
	if h.generatedKeys {
		h.maintenance.reloadKeys = h.reloadKeys
	}
	marks := h.revocations
	h.maintenance.start(ctx, func(ctx context.Context) {
		runUntilDone(ctx, time.Now().Add(revocation.RereadInterval), func(now time.Time) time.Time { return marks.Tick(ctx, now) })
	})
}

// provisionStorage loads the storage option's module, or takes Caddy's
// configured storage.
func provisionStorage(h *Handler, ctx caddy.Context) error {
	if h.StorageRaw == nil {
		h.storage, h.storageID = ctx.Storage(), ""
		return nil
	}
	h.storageID = storageConfigID(h.StorageRaw) // LoadModule clears StorageRaw
	val, err := ctx.LoadModule(h, "StorageRaw")
	if err != nil {
		return fmt.Errorf("storage: %v", err)
	}
	if h.storage, err = val.(caddy.StorageConverter).CertMagicStorage(); err != nil {
		return fmt.Errorf("storage: %v", err)
	}
	return nil
}

// storageConfigID is the same for the same storage configuration: a hash
// of it with its keys sorted (it may hold a password, so not the config).
func storageConfigID(raw json.RawMessage) string {
	var cfg map[string]any
	_ = json.Unmarshal(raw, &cfg) // validated
	canonical, _ := json.Marshal(cfg)
	return storagekeys.Hash(sha256.Size, string(canonical))
}

// Cleanup stops the background work and releases the shared state taken
// in Provision.
func (h *Handler) Cleanup() error {
	unregisterLive(h)
	if h.maintenance != nil {
		h.maintenance.stopAndWait()
	}
	// The old config's connections to Spotify go with it.
	if h.httpClient != nil {
		h.httpClient.Transport.(*spotifyTransport).closeIdle()
	}
	if h.sharedKey != "" {
		_, err := sharedPool.Delete(h.sharedKey)
		return err
	}
	return nil
}

func setDefaults(h *Handler) {
	if h.AuthorizeURL == "" {
		h.AuthorizeURL = DefaultAuthorizeURL
	}
	if h.TokenURL == "" {
		h.TokenURL = DefaultTokenURL
	}
	if h.APIURL == "" {
		h.APIURL = DefaultAPIURL
	}
	if h.CookieName == "" {
		h.CookieName = DefaultCookieName
	}
	if h.TokenHeader == "" {
		h.TokenHeader = DefaultTokenHeader
	}
	if h.SessionLifetime == 0 {
		h.SessionLifetime = caddy.Duration(DefaultSessionLifetime)
	}
	if h.Timeout == 0 {
		h.Timeout = caddy.Duration(DefaultTimeout)
	}
	if h.RefreshLeeway == 0 {
		h.RefreshLeeway = caddy.Duration(DefaultRefreshLeeway)
	}
}

// session_store values.
const (
	sessionStoreCookie  = "cookie"
	sessionStoreStorage = "storage"
)

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
