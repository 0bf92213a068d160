package spotifytest

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// oauthError is an error answer of the token endpoint.
type oauthError struct {
	status      int
	code        string
	description string
}

func errInvalidRequest(desc string) *oauthError {
	return &oauthError{http.StatusBadRequest, "invalid_request", desc}
}

func errInvalidGrant(desc string) *oauthError {
	return &oauthError{http.StatusBadRequest, "invalid_grant", desc}
}

// errInvalidClient is 400, not RFC 6749's 401: Spotify answers bad client
// credentials so.
func errInvalidClient(desc string) *oauthError {
	return &oauthError{http.StatusBadRequest, "invalid_client", desc}
}

// handleToken serves /api/token.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	form := url.Values{}
	var formErr *oauthError
	switch mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); {
	case r.Method != http.MethodPost:
		formErr = &oauthError{http.StatusMethodNotAllowed, "invalid_request", "the token endpoint accepts only POST"}
	case err != nil || mt != "application/x-www-form-urlencoded":
		formErr = errInvalidRequest("Content-Type must be application/x-www-form-urlencoded")
	default:
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			formErr = errInvalidRequest("malformed form body")
		} else {
			form = r.PostForm // never the query: Spotify reads the body only
		}
	}

	grant := form.Get("grant_type")
	s.mu.Lock()
	switch grant {
	case "authorization_code":
		s.counts.CodeExchanges++
	case "refresh_token":
		s.counts.Refreshes++
	case "client_credentials":
		s.counts.ClientCredentials++
	}
	s.tokenRequests = append(s.tokenRequests, TokenRequest{GrantType: grant, ClientAuth: clientAuthKind(r, form), Form: cloneValues(form)})
	s.mu.Unlock()

	if s.applyFault(w, r, EndpointToken, s.countTokenError) {
		return
	}

	var body map[string]any
	oerr := formErr
	if oerr == nil {
		body, oerr = s.token(r, form)
	}
	if oerr != nil {
		s.countTokenError()
		writeOAuthError(w, oerr)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(body)
}

func (s *Server) countTokenError() {
	s.mu.Lock()
	s.counts.TokenErrors++
	s.mu.Unlock()
}

func writeOAuthError(w http.ResponseWriter, e *oauthError) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	if e.status == http.StatusMethodNotAllowed {
		h.Set("Allow", "POST")
	}
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": e.code, "error_description": e.description})
}

// clientAuthKind is how a token request identifies its client, for
// TokenRequest.ClientAuth.
func clientAuthKind(r *http.Request, form url.Values) string {
	if scheme, _, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Basic") {
		return "basic"
	}
	if form.Get("client_secret") != "" {
		return "body"
	}
	return "none"
}

// token answers a well-formed token request.
func (s *Server) token(r *http.Request, form url.Values) (map[string]any, *oauthError) {
	for k, vs := range form {
		if len(vs) > 1 {
			return nil, errInvalidRequest("parameter " + k + " repeated")
		}
	}
	grant := form.Get("grant_type")
	switch grant {
	case "authorization_code", "refresh_token", "client_credentials":
	case "":
		return nil, &oauthError{http.StatusBadRequest, "unsupported_grant_type", "grant_type parameter is missing"}
	default:
		return nil, &oauthError{http.StatusBadRequest, "unsupported_grant_type", "grant_type must be client_credentials, authorization_code or refresh_token"}
	}
	clientID, authenticated, oerr := s.authenticateClient(r, form)
	if oerr != nil {
		return nil, oerr
	}
	switch grant {
	case "authorization_code":
		return s.exchangeCode(form, clientID, authenticated)
	case "refresh_token":
		return s.refresh(form, clientID, authenticated)
	default:
		return s.clientCredentials(clientID, authenticated)
	}
}

// authenticateClient identifies the client from HTTP Basic or the form.
// authenticated is true if it proved its secret; false if it sent only
// its client_id (public client, PKCE).
func (s *Server) authenticateClient(r *http.Request, form url.Values) (clientID string, authenticated bool, _ *oauthError) {
	var id, secret string
	bodyID, bodySecret := form.Get("client_id"), form.Get("client_secret")
	if r.Header.Get("Authorization") != "" {
		user, pass, ok := r.BasicAuth()
		if !ok {
			return "", false, errInvalidClient("Invalid client")
		}
		// RFC 6749 §2.3.1: both parts are form-encoded first (x/oauth2 does so).
		id, secret = formUnescape(user), formUnescape(pass)
		if bodySecret != "" {
			return "", false, errInvalidRequest("only one client authentication method may be used")
		}
		if bodyID != "" && bodyID != id {
			return "", false, errInvalidClient("Invalid client")
		}
	} else {
		id, secret = bodyID, bodySecret
	}
	if id == "" {
		return "", false, errInvalidClient("Invalid client")
	}
	s.mu.Lock()
	c, ok := s.clients[id]
	var want string
	if ok {
		want = c.secret
	}
	s.mu.Unlock()
	if !ok {
		return "", false, errInvalidClient("Invalid client")
	}
	if secret == "" {
		return id, false, nil
	}
	if want == "" || subtle.ConstantTimeCompare([]byte(secret), []byte(want)) != 1 {
		return "", false, errInvalidClient("Invalid client secret")
	}
	return id, true, nil
}

func formUnescape(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func expiresIn(d time.Duration) int {
	return int(math.Ceil(d.Seconds()))
}

// exchangeCode serves grant_type=authorization_code. A code is consumed by
// the first exchange that presents it, whatever the outcome: a failed
// exchange cannot be retried with the same code.
func (s *Server) exchangeCode(form url.Values, clientID string, authenticated bool) (map[string]any, *oauthError) {
	code := form.Get("code")
	if code == "" {
		return nil, errInvalidRequest("code must be supplied")
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	ac, ok := s.codes[code]
	if !ok {
		return nil, errInvalidGrant("Invalid authorization code")
	}
	delete(s.codes, code)
	switch {
	case !now.Before(ac.expires):
		return nil, errInvalidGrant("Authorization code expired")
	case ac.clientID != clientID:
		return nil, errInvalidGrant("Invalid authorization code")
	case form.Get("redirect_uri") != ac.redirectURI:
		return nil, errInvalidGrant("Invalid redirect URI")
	}
	verifier := form.Get("code_verifier")
	if ac.challenge != "" {
		if verifier == "" {
			return nil, errInvalidRequest("code_verifier required")
		}
		if !isPKCEString(verifier) || subtle.ConstantTimeCompare([]byte(s256(verifier)), []byte(ac.challenge)) != 1 {
			return nil, errInvalidGrant("code_verifier was incorrect")
		}
	} else {
		if verifier != "" {
			return nil, errInvalidRequest("code_verifier given, but the authorization request had no code_challenge")
		}
		if !authenticated {
			return nil, errInvalidClient("Invalid client")
		}
	}
	at := s.newAccessToken(clientID, ac.userID, ac.scopes, now)
	rt := s.newRefreshToken(refreshToken{clientID: clientID, userID: ac.userID, scopes: ac.scopes, granted: s.refreshNow(), public: !authenticated})
	resp := map[string]any{
		"access_token":  at,
		"token_type":    "Bearer",
		"scope":         strings.Join(ac.scopes, " "),
		"expires_in":    expiresIn(s.accessLifetime),
		"refresh_token": rt,
	}
	if s.omitScope {
		delete(resp, "scope")
	}
	return resp, nil
}

// refresh serves grant_type=refresh_token.
func (s *Server) refresh(form url.Values, clientID string, authenticated bool) (map[string]any, *oauthError) {
	old := form.Get("refresh_token")
	if old == "" {
		return nil, errInvalidRequest("refresh_token must be supplied")
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refreshTokens[old]
	switch {
	case !ok || rt.clientID != clientID:
		return nil, errInvalidGrant("Invalid refresh token")
	case rt.revoked, s.refreshLifetime > 0 && !s.refreshNow().Before(rt.granted.Add(s.refreshLifetime)):
		// Spotify gives an expired token the same words as a revoked one.
		return nil, errInvalidGrant("Refresh token revoked")
	case !authenticated && !rt.public:
		// Issued to a client that proved its secret: refreshing needs it too.
		return nil, errInvalidClient("Invalid client")
	}
	at := s.newAccessToken(clientID, rt.userID, rt.scopes, now)
	resp := map[string]any{
		"access_token": at,
		"token_type":   "Bearer",
		"scope":        strings.Join(rt.scopes, " "),
		"expires_in":   expiresIn(s.accessLifetime),
	}
	if s.omitScope {
		delete(resp, "scope")
	}
	rt.refreshes++
	if s.rotateEvery > 0 && rt.refreshes%s.rotateEvery == 0 {
		delete(s.refreshTokens, old)
		resp["refresh_token"] = s.newRefreshToken(*rt)
	}
	return resp, nil
}

// clientCredentials serves grant_type=client_credentials: an app token,
// no user, no scopes, no refresh token.
func (s *Server) clientCredentials(clientID string, authenticated bool) (map[string]any, *oauthError) {
	if !authenticated {
		return nil, errInvalidClient("Invalid client")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	at := s.newAccessToken(clientID, "", nil, time.Now())
	return map[string]any{
		"access_token": at,
		"token_type":   "Bearer",
		"expires_in":   expiresIn(s.accessLifetime),
	}, nil
}
