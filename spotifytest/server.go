package spotifytest

import (
	"crypto/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Defaults of a new Server.
const (
	defaultAccessTokenLifetime = time.Hour
	defaultCodeLifetime        = 10 * time.Minute
	defaultAccessTokenLength   = 200 // Spotify's access tokens are about this long
	refreshTokenLength         = 131 // and its refresh tokens about this long
	codeLength                 = 160
	minTokenLength             = 16 // anything shorter would be guessable or collide
)

// DefaultRefreshTokenLifetime is how long refresh tokens live by default,
// counted from the user's consent: Spotify's six months (since 2026), as
// 183 days so that no six calendar months are longer.
const DefaultRefreshTokenLifetime = 183 * 24 * time.Hour

// Server is a fake Spotify accounts service and Web API listening on
// loopback. Create one with NewServer and stop it with Close. All methods
// are safe for concurrent use.
type Server struct {
	// URL is the base URL of the server, "http://127.0.0.1:PORT", with no
	// trailing slash.
	URL string

	ts        *httptest.Server
	done      chan struct{} // closed by Close: aborts injected delays
	closeOnce sync.Once

	mu              sync.Mutex
	clients         map[string]*client
	users           map[string]User
	userOrder       []string // IDs in the order first added, for the consent page
	defaultUserID   string
	autoApprove     string
	autoDeny        bool
	accessLifetime  time.Duration
	refreshLifetime time.Duration
	codeLifetime    time.Duration
	rotateEvery     int // rotate on every rotateEvery-th refresh of a consent; 0 never
	omitScope       bool
	tokenLength     int
	codes           map[string]*authCode
	accessTokens    map[string]*accessToken
	refreshTokens   map[string]*refreshToken
	faults          map[Endpoint][]*activeFault
	counts          Counts
	tokenRequests   []TokenRequest
	authRequests    []url.Values
	apiRequests     []APIRequest
	pathCounts      map[string]int
	players         map[string]*player // by user ID
	started         time.Time          // anchors the fake listening history

	clock       func() time.Time // refresh tokens age on clock() + clockOffset
	clockOffset time.Duration

	developmentMode    bool
	developmentUsers   []string
	unregisteredBody   string // the 403 answer to users not on the list
	ownerPremiumLapsed bool
}

// Client is an app registered with the fake, as in Spotify's developer
// dashboard.
type Client struct {
	ID string
	// Secret is the client secret. Empty means a public client: it can only
	// use the authorization code flow with PKCE and authenticates with its
	// client_id alone.
	Secret string
	// RedirectURIs are the registered redirect URIs. /authorize accepts a
	// redirect_uri only if it equals one of them exactly (no normalisation,
	// no prefix matching).
	RedirectURIs []string
}

// User is a Spotify account known to the fake.
type User struct {
	ID          string
	DisplayName string // "" is sent as null, as Spotify does
	Email       string // in /v1/me only with scope user-read-email
	Country     string // in /v1/me only with scope user-read-private
	Product     string // "premium" or "free"; in /v1/me only with scope user-read-private
	// AccountID is the account_id of /v1/me (public, immutable,
	// pseudonymous; Spotify recommends it over ID for linking accounts).
	// "" means one derived from a hash of ID: stable and distinct per user.
	AccountID string
	// GrantScopes, if non-nil, caps what this user grants: the granted
	// scopes are the requested ones that are also in GrantScopes. A non-nil
	// empty slice grants nothing.
	GrantScopes []string

	// The user's listening data, served by the Web API. nil means data
	// derived from the ID: five artists and a track by each, stable for
	// the ID and different from any other user's (DefaultUser's are the
	// canned DefaultTopArtists and DefaultTopTracks); a non-nil empty
	// slice means none, as for a new account.
	TopArtists []Artist // /v1/me/top/artists
	TopTracks  []Track  // /v1/me/top/tracks
	// SavedTracks (/v1/me/tracks) and RecentlyPlayed
	// (/v1/me/player/recently-played, most recent first); nil: the top
	// tracks.
	SavedTracks    []Track
	RecentlyPlayed []Track
	// Playlists (/v1/me/playlists); nil: one public playlist, "<display
	// name or ID>'s Mix", holding the top tracks.
	Playlists []Playlist
	// Device is the name of the user's active Spotify Connect device. ""
	// (the default) means none: GET /v1/me/player answers 204 and player
	// commands 404 NO_ACTIVE_DEVICE, as from Spotify.
	Device string
}

// DefaultUserID is the ID of DefaultUser().
const DefaultUserID = "testuser"

// DefaultUser returns the user every new Server knows: "testuser", "Test
// User", test@example.com, SE, premium, with the canned listening data. It
// is preselected on the consent page and is the user of Approve(authURL,
// ""). Each call returns a fresh copy, so no test can change what another
// test's server knows.
func DefaultUser() User {
	return User{ID: DefaultUserID, DisplayName: "Test User", Email: "test@example.com", Country: "SE", Product: "premium"}
}

type client struct {
	id           string
	secret       string
	redirectURIs []string
}

type authCode struct {
	clientID    string
	redirectURI string
	userID      string
	scopes      []string
	challenge   string // S256 code_challenge; "" if none was sent
	expires     time.Time
}

type accessToken struct {
	clientID string
	userID   string // "" for client credentials (app) tokens
	scopes   []string
	expires  time.Time
	expired  bool // set by ExpireAccessTokens and friends
	revoked  bool // set by RevokeAccessToken(s): answered as unknown
}

type refreshToken struct {
	clientID string
	userID   string
	scopes   []string
	granted  time.Time // when the user approved, on the refresh clock: lifetime counts from here, across rotations
	public   bool      // issued to an exchange without client secret: may refresh with client_id alone
	revoked  bool
	// refreshes counts the refreshes of this consent, across rotations,
	// for SetRotateRefreshTokensEvery.
	refreshes int
}

// NewServer starts a fake Spotify on 127.0.0.1 at a free port. It knows
// DefaultUser() and no clients: register apps with AddClient. Like
// httptest.NewServer it panics if it cannot listen.
func NewServer() *Server {
	s := newServer()
	s.ts = httptest.NewServer(s.handler())
	s.URL = s.ts.URL
	return s
}

// NewServerOn is NewServer listening on addr ("127.0.0.1:8090"; port 0
// picks a free one), for a fake that other processes must find at a
// known address, as `caddy spotify-fake` does. It is a test tool: listen
// on loopback only.
func NewServerOn(addr string) (*Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := newServer()
	s.ts = httptest.NewUnstartedServer(s.handler())
	_ = s.ts.Listener.Close() // httptest's own 127.0.0.1:0 listener
	s.ts.Listener = l
	s.ts.Start()
	s.URL = s.ts.URL
	return s, nil
}

func newServer() *Server {
	s := &Server{
		done:             make(chan struct{}),
		clients:          make(map[string]*client),
		users:            make(map[string]User),
		accessLifetime:   defaultAccessTokenLifetime,
		refreshLifetime:  DefaultRefreshTokenLifetime,
		codeLifetime:     defaultCodeLifetime,
		tokenLength:      defaultAccessTokenLength,
		codes:            make(map[string]*authCode),
		accessTokens:     make(map[string]*accessToken),
		refreshTokens:    make(map[string]*refreshToken),
		faults:           make(map[Endpoint][]*activeFault),
		pathCounts:       make(map[string]int),
		players:          make(map[string]*player),
		started:          time.Now().UTC().Truncate(time.Second),
		clock:            time.Now,
		unregisteredBody: UserNotRegistered,
	}
	s.AddUser(DefaultUser())
	s.defaultUserID = DefaultUserID
	return s
}

func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/authorize", s.handleAuthorize)
	mux.HandleFunc("/api/token", s.handleToken)
	mux.HandleFunc("/v1/", s.handleAPI)
	mux.HandleFunc("/", s.handleRoot)
	s.routeControl(mux) // control.go
	return mux
}

// Close shuts the server down: injected delays end at once, then it waits
// for the requests in flight to finish. Close may be called more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		s.ts.Close()
	})
}

// AuthorizeURL is the authorization endpoint, s.URL + "/authorize".
func (s *Server) AuthorizeURL() string { return s.URL + "/authorize" }

// TokenURL is the token endpoint, s.URL + "/api/token".
func (s *Server) TokenURL() string { return s.URL + "/api/token" }

// APIURL is the Web API base URL (s.URL); /v1/me lives under it.
func (s *Server) APIURL() string { return s.URL }

// AddClient registers an app, replacing any app with the same ID. It panics
// if c.ID is empty.
func (s *Server) AddClient(c Client) {
	if c.ID == "" {
		panic("spotifytest: AddClient: empty client ID")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clients[c.ID] = &client{id: c.ID, secret: c.Secret, redirectURIs: slices.Clone(c.RedirectURIs)}
}

// AddRedirectURI registers one more redirect URI for an app added with
// AddClient. It panics if the app is unknown.
func (s *Server) AddRedirectURI(clientID, uri string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[clientID]
	if !ok {
		panic("spotifytest: AddRedirectURI: unknown client " + clientID)
	}
	if !slices.Contains(c.redirectURIs, uri) {
		c.redirectURIs = append(c.redirectURIs, uri)
	}
}

// AddUser adds a user, or replaces the user with the same ID. It panics if
// u.ID is empty.
func (s *Server) AddUser(u User) {
	if u.ID == "" {
		panic("spotifytest: AddUser: empty user ID")
	}
	u = u.clone()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.users[u.ID]; !ok {
		s.userOrder = append(s.userOrder, u.ID)
	}
	s.users[u.ID] = u
}

// SetAutoApprove makes every valid GET /authorize redirect at once with a
// code, as if userID had pressed Approve. "" restores the consent page.
// SetAutoDeny takes precedence.
func (s *Server) SetAutoApprove(userID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.autoApprove = userID
}

// SetAutoDeny makes every valid GET /authorize redirect at once with
// error=access_denied, as if the user had pressed Deny.
func (s *Server) SetAutoDeny(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.autoDeny = on
}

// SetAccessTokenLifetime sets the lifetime of access tokens issued from now
// on (expires_in). d <= 0 restores the default, one hour. Sub-second
// lifetimes are reported as expires_in 1 but expire on time.
func (s *Server) SetAccessTokenLifetime(d time.Duration) {
	if d <= 0 {
		d = defaultAccessTokenLifetime
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accessLifetime = d
}

// SetRefreshTokenLifetime sets how long refresh tokens live, counted from
// the user's approval on the refresh clock (see Advance): refreshing, with
// or without rotation, does not extend that life, as with Spotify. It
// applies to tokens already issued too. d == 0 restores the default,
// DefaultRefreshTokenLifetime (six months); d < 0 means refresh tokens
// never expire. An expired refresh token answers 400 invalid_grant
// "Refresh token revoked", Spotify's words.
func (s *Server) SetRefreshTokenLifetime(d time.Duration) {
	if d == 0 {
		d = DefaultRefreshTokenLifetime
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refreshLifetime = d
}

// SetClock sets the clock refresh tokens age on; nil restores time.Now.
// Advance shifts it further. Only refresh-token life reads this clock:
// codes and access tokens keep real time, because the code under test
// lives on real time and must agree with the fake about them. now is
// called with the server's lock held: it must not call the Server.
func (s *Server) SetClock(now func() time.Time) {
	if now == nil {
		now = time.Now
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clock = now
}

// Advance moves the refresh clock d ahead (see SetClock), say
// Advance(DefaultRefreshTokenLifetime) to let every refresh token issued
// so far reach the end of its life at once, with no waiting. Advances add
// up; a negative d moves the clock back.
func (s *Server) Advance(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clockOffset += d
}

// refreshNow is the time on the refresh clock. s.mu must be held.
func (s *Server) refreshNow() time.Time {
	return s.clock().Add(s.clockOffset)
}

// SetRotateRefreshTokens switches refresh token rotation. On: every
// refresh returns a new refresh_token and the old one stops working at
// once. Off (the default, and what Spotify does since June 2026): refresh
// answers omit refresh_token and the old one keeps working. It is
// SetRotateRefreshTokensEvery(1) or (0).
func (s *Server) SetRotateRefreshTokens(on bool) {
	n := 0
	if on {
		n = 1
	}
	s.SetRotateRefreshTokensEvery(n)
}

// SetRotateRefreshTokensEvery makes Spotify rotate sometimes: the n-th,
// 2n-th, 3n-th... refresh of each consent (counted across rotations)
// returns a new refresh_token and ends the old one; the others omit
// refresh_token. n == 2 alternates: without, with, without... n <= 0
// never rotates (the default); 1 always does.
func (s *Server) SetRotateRefreshTokensEvery(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rotateEvery = max(n, 0)
}

// SetOmitScope makes token responses leave out "scope", which RFC 6749
// section 5.1 allows when the granted scopes are the requested ones.
// Off (the default): every token response lists the granted scopes.
func (s *Server) SetOmitScope(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.omitScope = on
}

// SetCodeLifetime sets how long authorization codes issued from now on stay
// valid. d <= 0 restores the default, ten minutes.
func (s *Server) SetCodeLifetime(d time.Duration) {
	if d <= 0 {
		d = defaultCodeLifetime
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codeLifetime = d
}

// SetTokenLength sets the length in characters of access tokens issued
// from now on (default 200, like Spotify's). n <= 0 restores the default;
// lengths below 16 are raised to 16. Large values (thousands) are fine,
// for testing cookie size limits.
func (s *Server) SetTokenLength(n int) {
	if n <= 0 {
		n = defaultAccessTokenLength
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokenLength = max(n, minTokenLength)
}

// RevokeRefreshTokens revokes every refresh token of the user: refreshing
// with any of them answers invalid_grant. Access tokens stay valid until
// they expire, as with Spotify.
func (s *Server) RevokeRefreshTokens(userID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rt := range s.refreshTokens {
		if rt.userID == userID {
			rt.revoked = true
		}
	}
}

// ExpireAccessTokens expires every access token issued so far: the Web API
// answers them 401, as ExpireAccessToken does. Tokens issued later are
// not affected.
func (s *Server) ExpireAccessTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, at := range s.accessTokens {
		at.expired = true
	}
}

// AccessTokenInfo reports whom an access token was issued to ("" for an
// app token from client credentials), its scopes, and whether the Web API
// would accept it now. An unknown token gives "", nil, false.
func (s *Server) AccessTokenInfo(token string) (userID string, scopes []string, valid bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.accessTokens[token]
	if !ok {
		return "", nil, false
	}
	return at.userID, slices.Clone(at.scopes), at.valid(time.Now())
}

func (at *accessToken) valid(now time.Time) bool {
	return !at.expired && !at.revoked && now.Before(at.expires)
}

// Counts counts the requests a Server has seen, whatever their outcome and
// including requests answered by an injected fault.
type Counts struct {
	// Authorize counts GET and POST /authorize requests. A call of Approve
	// or Deny stands for a whole browser visit and counts as one.
	Authorize int
	// Approvals and Denials count consent decisions: consent form posts,
	// Approve and Deny calls, and auto-approve/auto-deny redirects.
	Approvals, Denials int
	CodeExchanges      int // token requests with grant_type=authorization_code (any outcome)
	Refreshes          int // grant_type=refresh_token (any outcome)
	ClientCredentials  int // grant_type=client_credentials (any outcome)
	TokenErrors        int // token requests answered with an error, an injected fault or a dropped connection
	Me                 int // requests for /v1/me
	APICalls           int // every /v1/* request, including Me
}

// Counts returns the counters.
func (s *Server) Counts() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts
}

// ResetCounts zeroes the counters and forgets the recorded TokenRequests,
// AuthorizeRequests and APIRequests.
func (s *Server) ResetCounts() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts = Counts{}
	s.tokenRequests = nil
	s.authRequests = nil
	s.apiRequests = nil
	clear(s.pathCounts)
}

// TokenRequest is a request to the token endpoint as the server saw it.
type TokenRequest struct {
	GrantType string // grant_type from the form ("" if absent or unreadable)
	// ClientAuth is how the client identified itself: "basic" (Authorization
	// header), "body" (client_secret in the form) or "none" (client_id
	// alone, or nothing at all).
	ClientAuth string
	// Form is the parsed form, exactly as sent (secrets, codes, verifiers
	// and tokens included: tests need them). Empty if the body was not a form.
	Form url.Values
}

// TokenRequests returns every request to the token endpoint, oldest first.
func (s *Server) TokenRequests() []TokenRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]TokenRequest, len(s.tokenRequests))
	for i, tr := range s.tokenRequests {
		out[i] = TokenRequest{GrantType: tr.GrantType, ClientAuth: tr.ClientAuth, Form: cloneValues(tr.Form)}
	}
	return out
}

// AuthorizeRequests returns the parameters of every /authorize request,
// oldest first: the query of a GET, the form of a POST (including its
// "user" and "action" fields), the query of the URL given to Approve or
// Deny.
func (s *Server) AuthorizeRequests() []url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]url.Values, len(s.authRequests))
	for i, v := range s.authRequests {
		out[i] = cloneValues(v)
	}
	return out
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}

// tokenAlphabet is base64url's: every issued string is URL, cookie and
// header safe.
const tokenAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// randomString returns prefix followed by random characters, n in all
// (n >= minTokenLength).
func randomString(prefix string, n int) string {
	b := make([]byte, n-len(prefix))
	_, _ = rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	for i := range b {
		b[i] = tokenAlphabet[b[i]&63] // 64 symbols: uniform
	}
	return prefix + string(b)
}

// newAccessToken issues an access token. s.mu must be held.
func (s *Server) newAccessToken(clientID, userID string, scopes []string, now time.Time) string {
	tok := randomString("BQ", s.tokenLength)
	s.accessTokens[tok] = &accessToken{clientID: clientID, userID: userID, scopes: slices.Clone(scopes), expires: now.Add(s.accessLifetime)}
	return tok
}

// newRefreshToken issues a refresh token. s.mu must be held.
func (s *Server) newRefreshToken(rt refreshToken) string {
	tok := randomString("AQ", refreshTokenLength)
	rt.scopes = slices.Clone(rt.scopes)
	s.refreshTokens[tok] = &rt
	return tok
}

func (s *Server) handleRoot(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte(strings.Join([]string{
		"spotifytest: a fake Spotify accounts service and Web API",
		"GET/POST /authorize, POST /api/token, and the Web API under /v1/:",
		"the list of what is served in each quota mode is in the package doc (go doc spotifytest)",
		"",
	}, "\n")))
}
