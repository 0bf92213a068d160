package spotifytest

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"time"
)

// issuedClientID is the client IssueToken's tokens belong to. It is not a
// registered app: such tokens cannot be refreshed.
const issuedClientID = "spotifytest"

// Token is what the token endpoint answers to a code exchange.
type Token struct {
	AccessToken  string
	RefreshToken string // "" from IssueToken
	Scopes       []string
	Expiry       time.Time
}

// IssueToken returns a valid access token of the user with the scopes,
// without any HTTP, for unit tests of code that calls the Web API. The
// scopes are capped by the user's GrantScopes, as at consent. It panics if
// the user is unknown or a scope is not one of Spotify's.
func (s *Server) IssueToken(userID string, scopes ...string) string {
	return s.issue(issuedClientID, userID, scopes, false).AccessToken
}

// IssueTokens is IssueToken with a refresh token too, issued to the
// registered app clientID, so that the app can refresh it at the token
// endpoint. It panics if the app or the user is unknown or a scope is not
// one of Spotify's.
func (s *Server) IssueTokens(clientID, userID string, scopes ...string) Token {
	return s.issue(clientID, userID, scopes, true)
}

func (s *Server) issue(clientID, userID string, scopes []string, refreshable bool) Token {
	for _, sc := range scopes {
		if _, ok := scopeDescriptions[sc]; !ok {
			panic("spotifytest: IssueToken: unknown scope " + sc)
		}
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[userID]
	if !ok {
		panic("spotifytest: IssueToken: unknown user " + userID)
	}
	granted := []string{}
	for _, sc := range scopes {
		if !slices.Contains(granted, sc) && (u.GrantScopes == nil || slices.Contains(u.GrantScopes, sc)) {
			granted = append(granted, sc)
		}
	}
	tok := Token{AccessToken: s.newAccessToken(clientID, userID, granted, now), Scopes: granted, Expiry: now.Add(s.accessLifetime)}
	if refreshable {
		c, ok := s.clients[clientID]
		if !ok {
			panic("spotifytest: IssueTokens: unknown client " + clientID)
		}
		tok.RefreshToken = s.newRefreshToken(refreshToken{clientID: clientID, userID: userID, scopes: granted, granted: s.refreshNow(), public: c.secret == ""})
	}
	return tok
}

// ExpireAccessToken expires one access token: the Web API answers it 401
// "Missing/invalid/expired access token" with error="invalid_token", and
// AccessTokenInfo says it is not valid. It reports whether the token was
// known.
func (s *Server) ExpireAccessToken(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.accessTokens[token]
	if ok {
		at.expired = true
	}
	return ok
}

// ExpireUserAccessTokens expires every access token of the user issued so
// far; other users' tokens and later ones are not affected.
func (s *Server) ExpireUserAccessTokens(userID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, at := range s.accessTokens {
		if at.userID == userID {
			at.expired = true
		}
	}
}

// RevokeAccessToken revokes one access token: the Web API answers it 401,
// as if it had never been issued (Spotify does so
// when it drops a token before its time). It reports whether the token was
// known.
func (s *Server) RevokeAccessToken(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.accessTokens[token]
	if ok {
		at.revoked = true
	}
	return ok
}

// RevokeUserAccessTokens revokes every access token of the user issued so
// far, as RevokeAccessToken does one.
func (s *Server) RevokeUserAccessTokens(userID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, at := range s.accessTokens {
		if at.userID == userID {
			at.revoked = true
		}
	}
}

// RevokeRefreshToken revokes one refresh token: refreshing with it answers
// invalid_grant. It reports whether the token was known.
func (s *Server) RevokeRefreshToken(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refreshTokens[token]
	if ok {
		rt.revoked = true
	}
	return ok
}

// Forwarded is what the spotify_auth plugin adds to a request it lets
// through to the upstream, for unit tests of an upstream handler without
// Caddy. Apply sets the headers exactly as the plugin does.
type Forwarded struct {
	AccessToken string
	Expires     time.Time // X-Spotify-Token-Expires, RFC 3339 UTC, whole seconds
	// The identity headers. Email and Product are what /v1/me gave the
	// plugin at login: only with the user-read-email and user-read-private
	// scopes.
	UserID, DisplayName, Email, Product string
	// AccountID is /v1/me's account_id (X-Spotify-Account-Id).
	AccountID string
	Scopes    []string
	// TokenHeader is the plugin's token_header: "" or "Authorization"
	// sends "Bearer <token>" in Authorization, any other header the bare
	// token.
	TokenHeader string
	// NoUserHeaders is the plugin's user_headers off: only the token and
	// its expiry are sent.
	NoUserHeaders bool
}

// Forward issues a token of the user with the scopes (as IssueToken) and
// returns what the plugin would forward for the user's session.
func (s *Server) Forward(userID string, scopes ...string) Forwarded {
	f, _ := s.ForwardedFor(s.IssueToken(userID, scopes...))
	return f
}

// ForwardedFor returns what the plugin forwards for a session holding this
// access token (issued by s), with its user's profile as /v1/me gives it
// for the token's scopes (no email or product in development mode). ok is false for an unknown token or an app token.
func (s *Server) ForwardedFor(accessToken string) (f Forwarded, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	at, known := s.accessTokens[accessToken]
	if !known || at.userID == "" {
		return Forwarded{}, false
	}
	u := s.users[at.userID]
	f = Forwarded{AccessToken: accessToken, Expires: at.expires.Truncate(time.Second), UserID: u.ID, AccountID: u.accountID(), DisplayName: u.DisplayName, Scopes: slices.Clone(at.scopes)}
	if s.developmentMode {
		return f, true // /v1/me gives neither
	}
	if slices.Contains(at.scopes, "user-read-email") {
		f.Email = u.Email
	}
	if slices.Contains(at.scopes, "user-read-private") {
		f.Product = u.Product
	}
	return f, true
}

// NewForwardedRequest is httptest.NewRequest(method, target, nil) as the
// upstream receives it from the plugin for the user: Forward(userID,
// scopes...).Apply(req). Serve it to the handler under test with an
// httptest.ResponseRecorder.
func (s *Server) NewForwardedRequest(method, target, userID string, scopes ...string) *http.Request {
	req := httptest.NewRequest(method, target, nil)
	s.Forward(userID, scopes...).Apply(req)
	return req
}

// Apply removes any token or X-Spotify-* header from r, as the plugin
// does with incoming ones, and sets the headers the plugin forwards.
func (f Forwarded) Apply(r *http.Request) {
	tokenHeader := http.CanonicalHeaderKey(f.TokenHeader)
	if tokenHeader == "" {
		tokenHeader = "Authorization"
	}
	for name := range r.Header {
		if name == tokenHeader || strings.HasPrefix(name, "X-Spotify-") {
			delete(r.Header, name)
		}
	}
	if tokenHeader == "Authorization" {
		r.Header.Set(tokenHeader, "Bearer "+f.AccessToken)
	} else {
		r.Header.Set(tokenHeader, f.AccessToken)
	}
	r.Header.Set("X-Spotify-Token-Expires", f.Expires.UTC().Format(time.RFC3339))
	if f.NoUserHeaders {
		return
	}
	for _, h := range [...]struct{ name, value string }{
		{"X-Spotify-User-Id", f.UserID},
		{"X-Spotify-Account-Id", f.AccountID},
		{"X-Spotify-User-Name", EncodeHeaderText(f.DisplayName)},
		{"X-Spotify-User-Email", headerSafe(f.Email)},
		{"X-Spotify-Product", f.Product},
		{"X-Spotify-Scopes", strings.Join(f.Scopes, " ")},
	} {
		if h.value != "" {
			r.Header.Set(h.name, h.value)
		}
	}
}

// EncodeHeaderText encodes text as the plugin does for
// X-Spotify-User-Name: url.PathEscape, with "+" escaped too, so that any
// UTF-8 name is header-safe and no decoder reads "+" as a space. Decode it
// with url.PathUnescape (or decodeURIComponent, urllib.parse.unquote).
func EncodeHeaderText(s string) string {
	return strings.ReplaceAll(url.PathEscape(s), "+", "%2B")
}

// headerSafe passes an ASCII value on if it is printable, else encodes it,
// as the plugin does for X-Spotify-User-Email.
func headerSafe(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			return EncodeHeaderText(s)
		}
	}
	return s
}
