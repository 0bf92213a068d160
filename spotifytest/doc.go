// Package spotifytest is a fake Spotify accounts service and Web API on
// loopback, for tests and offline demos, in the spirit of net/http/httptest.
// It behaves like the real service rather than like a client expects:
// exact redirect URI matching, a consent page, single-use short-lived
// codes, PKCE, Basic or body client authentication, refresh token rotation
// or not, expiry and revocation, nested Web API errors, injected faults and
// counters of every call. It models Spotify as it is in late 2026:
// development mode with its user list, the owner's Premium, refresh tokens
// that die six months after consent, account_id. It uses only the standard
// library and never logs tokens.
//
// # Usage
//
//	s := spotifytest.NewServer() // listens on 127.0.0.1:0; knows DefaultUser()
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
// any HTTP. LogIn(client, start, userID) walks a whole login of the app
// under test: start's redirect to /authorize, the approval, the callback.
//
// # HTTP surface
//
//   - GET /authorize: client_id (unknown: 400 page "INVALID_CLIENT: Invalid
//     client"), redirect_uri (must equal a registered one; else 400 page
//     "INVALID_CLIENT: Invalid redirect URI", never a redirect),
//     response_type=code, scope (Spotify's 19 user scopes and the Open
//     Access ones, user-soa-link, user-soa-unlink, soa-manage-entitlements,
//     soa-manage-partner, soa-create-partner; any other, user-personalized
//     included, gets a 400 page "INVALID_SCOPE: Illegal scope" and no
//     redirect, as from Spotify), code_challenge_method=S256 with code_challenge
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
//     {"error":"...","error_description":"..."}, 400, in Spotify's words:
//     invalid_client (400, not RFC 6749's 401) "Invalid client" or
//     "Invalid client secret"; invalid_grant "Invalid authorization code"
//     (unknown, reused or another app's code), "Authorization code
//     expired", "Invalid redirect URI" (not the one of /authorize),
//     "Invalid refresh token" (unknown, or rotated away) and "Refresh token
//     revoked" (revoked or expired). Codes are consumed by the first
//     exchange attempt, successful or not.
//   - The Web API, with "Authorization: Bearer <token>", from each user's
//     own data (User.TopTracks and friends; nil fields get the canned
//     defaults, DefaultTopTracks and DefaultTopArtists):
//     GET /v1/me (account_id always, User.AccountID or one derived from
//     the ID; email only with scope user-read-email; country, product and
//     explicit_content only with user-read-private; no email, country,
//     product or followers in development mode);
//     GET /v1/me/top/{artists,tracks} (user-top-read);
//     GET /v1/me/player (user-read-playback-state; 204 without an active
//     device, User.Device), PUT /v1/me/player/play and /pause
//     (user-modify-playback-state; 404 reason NO_ACTIVE_DEVICE without a
//     device, 403 PREMIUM_REQUIRED for other products, 403 when pausing a
//     paused player);
//     GET /v1/me/player/recently-played (user-read-recently-played; cursor
//     paging with before/after);
//     GET /v1/me/playlists (private ones only with playlist-read-private);
//     GET /v1/me/tracks (user-library-read);
//     and, for user and app tokens alike, GET /v1/search (q, type
//     track,artist,album) and GET /v1/{tracks,artists,albums}/{id} over
//     every track the server knows. Lists use Spotify's paging object
//     (limit, offset, total, next, previous). A missing scope is 403
//     "Insufficient client scope". Errors are nested, {"error":{"status":
//     401,"message":"Missing/invalid/expired access token"}} (the one 401
//     text since 2026, whether the token is missing, unknown, revoked or
//     expired); a 401 carries WWW-Authenticate: Bearer realm="spotify",
//     with error="invalid_token" only when a token was sent (RFC 6750
//     §3.1). An app token (client credentials) gets 401
//     "Unauthorized." on user endpoints, as from Spotify. Unknown /v1
//     paths: 404 "Service not found".
//
// # Development mode and the owner's Premium
//
// A new Server runs in extended quota, so that tests written before 2026
// keep their meaning. SetDevelopmentMode(true) switches to development
// mode, where almost every site's app runs: only the users on the list
// (SetDevelopmentUsers, AddDevelopmentUser; at most MaxDevelopmentUsers,
// 5, else ErrDevelopmentUserLimit) may use the Web API. Anyone else can
// consent, exchange the code and refresh, but then /v1/me and every Web
// API call answer 403 with a plain-text body, UserNotRegistered ("User
// not registered in the Developer Dashboard") unless
// SetUnregisteredUserBody chooses another of Spotify's wordings
// (UserNotApproved, UserMayNotBeRegistered, UserNotRegisteredForApp) or a
// JSON form (APIErrorJSON). /v1/me then has no email, country, product or
// followers for anyone, whatever the scopes. The mode and the list are the
// server's, shared by every app registered. (The endpoints Spotify took
// away from development-mode apps are still served.)
//
// SetOwnerPremiumLapsed(true) makes every Web API call, of users and app
// tokens alike, answer 403 {"error":{"status":403,"message":
// OwnerPremiumRequired}} ("Active premium subscription required for the
// owner of the app. ..."), in either mode, until it is switched off.
// /authorize and the token endpoint are not affected: logins and
// refreshes succeed, as Spotify's users report.
//
// # Faults and counters
//
// InjectFault makes an endpoint (EndpointAuthorize, EndpointToken,
// EndpointAPI), or one path of it (Fault.Path), slow (Delay), fail
// (Status, with RetryAfter and Body; the default body is Spotify-shaped,
// with a "reason" such as "QUOTA_EXCEEDED" if Fault.Reason says so)
// or drop the connection (Drop), for the next Times requests or until
// ClearFaults. Faulted requests still count. Counts, TokenRequests,
// AuthorizeRequests, APIRequests (method, path, query, user) and
// APIRequestCount (per path) record every call, so tests can assert, say,
// that exactly one refresh happened and how the client authenticated.
//
// # Unit tests of an upstream app
//
// IssueToken returns a working access token of a user in one line
// (IssueTokens adds a refresh token for a registered app).
// NewForwardedRequest builds a request exactly as the spotify_auth plugin
// forwards it to the upstream (token header, X-Spotify-* identity headers
// with the display name percent-encoded, X-Spotify-Token-Expires), for
// testing a handler with httptest.NewRecorder and no Caddy. For
// end-to-end tests through a real Caddy, see package spotifyauthtest.
//
// # Control API, for tests in any language
//
// Every Server also answers a control API under ControlPrefix,
// "/_spotifytest/", a path Spotify never uses, so that tests that are not
// written in Go (against `caddy spotify-fake`, which serves a Server on a
// given address with NewServerOn) can do what Go tests do. JSON in and
// out; errors are 400 {"error":"..."}, unknown fields included. Each
// operation calls the method named:
//
//	POST   clients         {"id","secret","redirect_uris"}            AddClient
//	POST   users           UserJSON: {"id","display_name",...,"top_tracks"} AddUser
//	POST   tokens          {"user","scopes","client"}                 IssueToken; IssueTokens with client
//	POST   forwarded       {"user","scopes"} or {"access_token"},      Forward or ForwardedFor, then Apply:
//	                       "token_header","user_headers"               {"headers":{...}}; ?format=headers: lines
//	POST   token-info      {"token"}                                  AccessTokenInfo
//	POST   expire          {"token"}, {"user"} or {}                  ExpireAccessToken(s), ExpireUserAccessTokens
//	POST   revoke-access   {"token"} or {"user"}                      RevokeAccessToken, RevokeUserAccessTokens
//	POST   revoke-refresh  {"token"} or {"user"}                      RevokeRefreshToken, RevokeRefreshTokens
//	POST   advance         {"by":"4400h"}                             Advance
//	POST   faults          {"endpoint","path","status","retry_after", InjectFault
//	                       "body","reason","delay","drop","times"}
//	DELETE faults                                                     ClearFaults
//	PUT    settings        {"auto_approve","access_token_lifetime",   the Set methods
//	                       "rotate_refresh_tokens_every",
//	                       "development_mode","development_users",...}
//	GET    requests                                                   APIRequests, TokenRequests, AuthorizeRequests
//	GET    counts          ?path=/v1/me*                              Counts, APIRequestCount
//	POST   reset                                                      ResetCounts
//
// The Go methods' panics on bad arguments (an unknown user or scope)
// are 400s there. The README's "Testing your app" has the fields of each
// operation and the recipes.
//
// # Tokens
//
// Access tokens are 200 random URL-safe characters by default
// (SetTokenLength), refresh tokens 131. Access tokens live an hour
// (SetAccessTokenLifetime), codes ten minutes (SetCodeLifetime), both on
// real time. Refresh tokens live six months from the user's consent,
// DefaultRefreshTokenLifetime (SetRefreshTokenLifetime; negative: for
// ever), on a refresh clock the test controls: Advance(d) moves it ahead,
// SetClock replaces it, so a test sees a refresh token die without
// waiting while the access tokens the code under test holds stay good.
// Refreshing does not extend that life; an expired refresh token answers
// invalid_grant "Refresh token revoked". Refresh answers omit
// refresh_token by default, as Spotify's do since June 2026, and the old
// one keeps working; SetRotateRefreshTokens(true) rotates on every
// refresh (the old one dies at once), SetRotateRefreshTokensEvery(n) on
// every n-th refresh of a consent (2: alternating).
// RevokeRefreshTokens and ExpireAccessTokens simulate a user revoking the
// app and tokens timing out; ExpireAccessToken, ExpireUserAccessTokens,
// RevokeAccessToken, RevokeUserAccessTokens and RevokeRefreshToken target
// one token or one user. AccessTokenInfo tells whom a token belongs to.
package spotifytest
