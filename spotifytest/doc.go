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
//   - The Web API, /v1/..., with "Authorization: Bearer <token>": see
//     the next section.
//
// # Web API
//
// Answers follow Spotify's documented shapes (testdata/shapes holds the
// ones the tests compare against) and its 2026 endpoint set. Data comes
// from each user's fields (User.TopTracks and friends); a user added
// without them gets five artists and tracks derived from the ID, stable
// and different from every other user's, while DefaultUser keeps the
// canned DefaultTopTracks and DefaultTopArtists. Every href, next and
// previous in an answer is a URL of the fake that it serves (in
// development mode, the ones Spotify took away answer 403 there too).
//
// Served in both modes (scope in brackets):
//
//	GET  /v1/me                          account_id always; email [user-read-email]; country, product,
//	                                     explicit_content [user-read-private]; none of email, country,
//	                                     product, followers in development mode
//	GET  /v1/me/top/{artists,tracks}     [user-top-read]
//	GET  /v1/me/player                   [user-read-playback-state]; 204 without an active device
//	PUT  /v1/me/player                   transfer, {"device_ids":[one id],"play":bool} [user-modify-playback-state]
//	PUT  /v1/me/player/{play,pause}      play takes {"uris":[...],"position_ms":N}
//	POST /v1/me/player/{next,previous}
//	PUT  /v1/me/player/volume?volume_percent=, /shuffle?state=, /repeat?state=, /seek?position_ms=
//	POST /v1/me/player/queue?uri=        [user-modify-playback-state]
//	GET  /v1/me/player/queue             [user-read-currently-playing and user-read-playback-state]
//	GET  /v1/me/player/currently-playing [user-read-currently-playing]; 204 without a device
//	GET  /v1/me/player/devices           [user-read-playback-state]
//	GET  /v1/me/player/recently-played   [user-read-recently-played]; cursor paging
//	GET  /v1/me/playlists                private ones only with [playlist-read-private]
//	POST /v1/me/playlists                201 [playlist-modify-public, or -private for "public":false]
//	GET  /v1/playlists/{id}              items (first 100) only for the owner's or collaborative
//	                                     playlists in development mode
//	GET  /v1/playlists/{id}/items        the track under "item"; 403 for others' playlists in
//	                                     development mode
//	POST /v1/playlists/{id}/items        up to 100 track URIs, owner only; 201 {"snapshot_id"}
//	PUT, DELETE /v1/me/library?uris=     up to 40 track, album, episode, show or audiobook URIs
//	                                     [user-library-modify]; 200, empty body
//	GET  /v1/me/library/contains?uris=   [true,false,...] [user-library-read]
//	GET  /v1/me/tracks                   the saved tracks of that library [user-library-read]
//	GET  /v1/search                      q, type track,artist,album; user and app tokens
//	GET  /v1/{tracks,artists,albums}/{id}, /v1/albums/{id}/tracks: user and app tokens
//
// Player commands check, in Spotify's order, the scope (403 "Insufficient
// client scope"), then Premium (403 reason PREMIUM_REQUIRED: a Free user
// hears this whether or not a device is on), then an active device,
// User.Device (404 reason NO_ACTIVE_DEVICE), then a device_id parameter,
// if given (404 "Device not found"). Pausing a paused player is 403. The
// fake has one device per user; its position does not advance with time.
// PlayerState returns the player (device, current track, queue,
// position, volume, shuffle, repeat) for a test to assert.
//
// Served in extended quota only; development mode answers 403
// {"error":{"status":403,"message":"Forbidden"}}, as Spotify does since
// February 2026:
//
//	GET  /v1/users/{id}, /v1/users/{id}/playlists; POST /v1/users/{id}/playlists
//	GET  /v1/tracks?ids= (50), /v1/albums?ids= (20), /v1/artists?ids= (50): null for unknown IDs
//	GET  /v1/artists/{id}/top-tracks
//	GET  /v1/playlists/{id}/tracks       the old shape, the track under "track"
//	PUT, DELETE /v1/me/tracks?ids=; GET /v1/me/tracks/contains?ids=
//
// 403 "Forbidden" in both modes, as for every app created since November
// 2024: /v1/recommendations, /v1/audio-features, /v1/audio-analysis,
// /v1/artists/{id}/related-artists, /v1/browse/featured-playlists and
// category playlists.
//
// Not served: 403 in development mode (Spotify took them away there too),
// 404 "Service not found" in extended quota, where Spotify would answer:
// /v1/browse/new-releases and categories, /v1/markets, several episodes,
// shows or audiobooks, /v1/me/albums, /v1/me/following. Not served at all
// (404): episodes, shows, audiobooks and chapters by ID, artists' albums,
// playlist images, following playlists; nor (405) reordering or removing
// playlist items or changing a playlist's details; nor play's
// context_uri and offset. Nor does the fake model development mode's smaller search limit
// or the fields Spotify stopped sending (popularity, label and others).
//
// Lists use Spotify's paging object (limit, offset, total, next,
// previous). Errors are nested, {"error":{"status":401,"message":
// "Missing/invalid/expired access token"}} (the one 401 text since 2026,
// whether the token is missing, unknown, revoked or expired); a 401
// carries WWW-Authenticate: Bearer realm="spotify", with
// error="invalid_token" only when a token was sent (RFC 6750 §3.1). An
// app token (client credentials) gets 401 "Unauthorized." on user
// endpoints, as from Spotify. Unknown /v1 paths: 404 "Service not
// found".
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
// followers for anyone, whatever the scopes, and the endpoints Spotify
// took away from development-mode apps answer 403 (see Web API). The mode
// and the list are the server's, shared by every app registered.
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
// EndpointAPI), or one path, method or user of it (Fault.Path,
// Fault.Method, Fault.UserID), slow (Delay), fail
// (Status, with RetryAfter and Body; the default body is Spotify-shaped,
// with a "reason" such as "QUOTA_EXCEEDED" if Fault.Reason says so)
// or drop the connection (Drop), for the next Times requests or until
// ClearFaults. Faulted requests still count. Counts, TokenRequests,
// AuthorizeRequests, APIRequests (method, path, query, user, the body's
// first 16 KiB and the status answered) and
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
// testing a handler with httptest.NewRecorder and no Caddy;
// Forward(userID, scopes...).NewRequest(method, target, body) does the
// same for a request with a body. For
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
//	                       "body","reason","delay","drop","times",
//	                       "method","user"}
//	DELETE faults                                                     ClearFaults
//	PUT    settings        {"auto_approve","access_token_lifetime",   the Set methods
//	                       "rotate_refresh_tokens_every",
//	                       "development_mode","development_users",...}
//	GET    requests                                                   APIRequests, TokenRequests, AuthorizeRequests
//	GET    counts          ?path=/v1/me*                              Counts, APIRequestCount
//	POST   reset                                                      ResetCounts
//
// The Go methods' panics on bad arguments (an unknown user or scope)
// are 400s there. The repository's docs/testing-your-app.md has the fields of each
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
