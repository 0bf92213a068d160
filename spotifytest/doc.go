// Package spotifytest is a fake Spotify accounts service and Web API on
// loopback, for tests and offline demos, in the spirit of net/http/httptest.
// It behaves like the real service rather than like a client expects:
// exact redirect URI matching, a consent page, single-use short-lived
// codes, PKCE, Basic or body client authentication, refresh token rotation
// or not, expiry and revocation, nested Web API errors, injected faults and
// counters of every call. It uses only the standard library and never logs
// tokens.
//
// # Usage
//
//	s := spotifytest.NewServer() // listens on 127.0.0.1:0; knows DefaultUser
//	defer s.Close()
//	s.AddClient(spotifytest.Client{ID: "app", Secret: "shh",
//		RedirectURIs: []string{"http://127.0.0.1:8080/callback"}})
//	// point the code under test at s.AuthorizeURL(), s.TokenURL(), s.APIURL()
//
// A browser (or an HTTP client following the flow) gets a consent page at
// GET /authorize listing the requested scopes, a picker of known users and
// Approve / Deny buttons. Tests can skip the page: SetAutoApprove(userID)
// or SetAutoDeny(true) make GET /authorize redirect at once, and
// Approve(authURL, userID) / Deny(authURL) return the callback URL without
// any HTTP.
//
// # HTTP surface
//
//   - GET /authorize: client_id (unknown: 400 page "INVALID_CLIENT: Invalid
//     client"), redirect_uri (must equal a registered one; else 400 page
//     "INVALID_CLIENT: Invalid redirect URI", never a redirect),
//     response_type=code, scope (known Spotify scopes only, else
//     error=invalid_scope), code_challenge_method=S256 with code_challenge
//     (required for clients without secret), state (echoed exactly, omitted
//     if absent), show_dialog (accepted; the page is always shown unless an
//     auto mode is set). Errors after the redirect URI check redirect with
//     ?error=...&state=...
//   - POST /authorize: the consent form (original parameters as hidden
//     fields, user, action=approve|deny); re-validated. Approve redirects
//     with ?code=...&state=..., Deny with ?error=access_denied&state=...
//   - POST /api/token, form encoded only (else 400 invalid_request; other
//     methods 405): grant types authorization_code (with PKCE check),
//     refresh_token and client_credentials. The client authenticates with
//     HTTP Basic, client_id+client_secret in the body, or client_id alone
//     (PKCE codes, and refresh tokens issued to such exchanges). Errors are
//     {"error":"...","error_description":"..."}: 400, or 401 for
//     invalid_client. Codes are consumed by the first exchange attempt,
//     successful or not.
//   - GET /v1/me, GET /v1/me/top/artists, GET /v1/me/top/tracks with
//     "Authorization: Bearer <token>". /v1/me shows email only with scope
//     user-read-email, and country, product and explicit_content only with
//     user-read-private. The top endpoints need user-top-read (else 403
//     "Insufficient client scope") and return canned items in Spotify's
//     paging shape. Errors are nested, {"error":{"status":401,"message":
//     "The access token expired"}}; a 401 carries WWW-Authenticate. An app
//     token (client credentials) gets 401 "Unauthorized." on these user
//     endpoints, as from Spotify. Unknown /v1 paths: 404 "Service not found".
//
// # Faults and counters
//
// InjectFault makes an endpoint (EndpointAuthorize, EndpointToken,
// EndpointAPI) slow (Delay), fail (Status, with RetryAfter and Body; the
// default body is Spotify-shaped) or drop the connection (Drop), for the
// next Times requests or until ClearFaults. Faulted requests still count.
// Counts, TokenRequests and AuthorizeRequests record every call, so tests
// can assert, say, that exactly one refresh happened and how the client
// authenticated.
//
// # Tokens
//
// Access tokens are 200 random URL-safe characters by default
// (SetTokenLength), refresh tokens 131. Access tokens live an hour
// (SetAccessTokenLifetime), refresh tokens forever unless
// SetRefreshTokenLifetime bounds them; codes ten minutes (SetCodeLifetime).
// SetRotateRefreshTokens chooses between rotating refresh tokens (the old
// one dies at once) and omitting refresh_token from refresh answers.
// RevokeRefreshTokens and ExpireAccessTokens simulate a user revoking the
// app and tokens timing out; AccessTokenInfo tells whom a token belongs to.
package spotifytest
