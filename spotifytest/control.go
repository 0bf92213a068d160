package spotifytest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"time"
)

// ControlPrefix is the path under which every Server answers its control
// API: the Go methods over HTTP, JSON in and out, for tests written in
// other languages (see the package doc, "Control API"). Spotify has no
// path starting with an underscore.
const ControlPrefix = "/_spotifytest/"

// maxControlBody bounds a control request's body: users with their
// playlists fit in a fraction of it.
const maxControlBody = 4 << 20

// controlOps is the control API: each operation is a Go method of Server,
// called the same way as a Go test would call it. The help text (GET
// ControlPrefix) is built from it.
var controlOps = []struct {
	pattern, help string
	handle        func(s *Server, r *http.Request) (any, error)
}{
	{"POST clients", `{"id","secret","redirect_uris":[...]}: AddClient`, (*Server).ctlAddClient},
	{"POST users", `a user object: AddUser (adds, or replaces the user with that id)`, (*Server).ctlAddUser},
	{"POST tokens", `{"user","scopes":[...],"client"}: IssueToken, or IssueTokens with "client"`, (*Server).ctlIssue},
	{"POST forwarded", `{"user","scopes","access_token","token_header","user_headers"}: Forward or ForwardedFor, then Apply; ?format=headers: as header lines`, (*Server).ctlForwarded},
	{"POST token-info", `{"token"}: AccessTokenInfo`, (*Server).ctlTokenInfo},
	{"POST expire", `{"token"} or {"user"} or {}: ExpireAccessToken, ExpireUserAccessTokens, ExpireAccessTokens`, (*Server).ctlExpire},
	{"POST revoke-access", `{"token"} or {"user"}: RevokeAccessToken, RevokeUserAccessTokens`, (*Server).ctlRevokeAccess},
	{"POST revoke-refresh", `{"token"} or {"user"}: RevokeRefreshToken, RevokeRefreshTokens`, (*Server).ctlRevokeRefresh},
	{"POST advance", `{"by":"4400h"}: Advance (the refresh-token clock)`, (*Server).ctlAdvance},
	{"POST faults", `a fault object: InjectFault`, (*Server).ctlInjectFault},
	{"DELETE faults", `ClearFaults`, (*Server).ctlClearFaults},
	{"PUT settings", `any of the settings fields: the Set* methods`, (*Server).ctlSettings},
	{"GET requests", `APIRequests, TokenRequests, AuthorizeRequests`, (*Server).ctlRequests},
	{"GET counts", `?path=/v1/me: Counts, and APIRequestCount(path)`, (*Server).ctlCounts},
	{"POST reset", `ResetCounts (counters and request logs)`, (*Server).ctlReset},
}

// routeControl adds the control API to the server's mux.
func (s *Server) routeControl(mux *http.ServeMux) {
	for _, op := range controlOps {
		method, name, _ := strings.Cut(op.pattern, " ")
		handle := op.handle
		mux.HandleFunc(method+" "+ControlPrefix+name, func(w http.ResponseWriter, r *http.Request) {
			r.Body = http.MaxBytesReader(w, r.Body, maxControlBody)
			out, err := handle(s, r)
			if err != nil {
				writeControl(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
				return
			}
			if lines, ok := out.(headerLines); ok {
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				_, _ = io.WriteString(w, string(lines))
				return
			}
			if out == nil {
				out = struct{}{}
			}
			writeControl(w, http.StatusOK, out)
		})
	}
	mux.HandleFunc("GET "+ControlPrefix+"{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, controlHelp())
	})
	mux.HandleFunc(ControlPrefix, func(w http.ResponseWriter, r *http.Request) {
		writeControl(w, http.StatusNotFound, map[string]string{"error": "no control operation " + r.Method + " " + r.URL.Path + "; GET " + ControlPrefix + " lists them"})
	})
}

func controlHelp() string {
	var b strings.Builder
	b.WriteString("spotifytest control API: JSON in and out; errors are 400 {\"error\":\"...\"}\n")
	for _, op := range controlOps {
		method, name, _ := strings.Cut(op.pattern, " ")
		fmt.Fprintf(&b, "%-6s %s%-15s %s\n", method, ControlPrefix, name, op.help)
	}
	return b.String()
}

func writeControl(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// decodeControl reads a JSON body into v, refusing unknown fields so that a
// misspelt one fails the test that sent it instead of being ignored. An
// empty body is {}.
func decodeControl(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("bad JSON body: %w", err)
	}
	return nil
}

// catchPanic turns the panics of the Go methods on bad arguments (an
// unknown user or scope) into errors: a Go test wants the panic, an HTTP
// client a 400 with its message.
func catchPanic(f func()) (err error) {
	defer func() {
		if v := recover(); v != nil {
			msg, ok := v.(string)
			if !ok || !strings.HasPrefix(msg, "spotifytest: ") {
				panic(v)
			}
			err = errors.New(msg)
		}
	}()
	f()
	return nil
}

// duration parses a JSON duration: a Go duration string ("90s", "1h") or
// a number of seconds.
type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	var secs float64
	if err := json.Unmarshal(b, &secs); err == nil {
		*d = duration(secs * float64(time.Second))
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New(`a duration is a string such as "90s" or a number of seconds`)
	}
	v, err := time.ParseDuration(s)
	*d = duration(v)
	return err
}

// clientJSON is a Client in the control API.
type clientJSON struct {
	ID           string   `json:"id"`
	Secret       string   `json:"secret"`
	RedirectURIs []string `json:"redirect_uris"`
}

func (s *Server) ctlAddClient(r *http.Request) (any, error) {
	var c clientJSON
	if err := decodeControl(r, &c); err != nil {
		return nil, err
	}
	//lint:ignore S1016 field by field, so that a field added to the Go type does not break this conversion
	return nil, catchPanic(func() { s.AddClient(Client{ID: c.ID, Secret: c.Secret, RedirectURIs: c.RedirectURIs}) })
}

// UserJSON is a User as the control API and `caddy spotify-fake --users`
// read it: snake_case names of User's fields. A list that is absent or
// null is nil, User's defaults; [] means none.
type UserJSON struct {
	ID             string         `json:"id"`
	DisplayName    string         `json:"display_name,omitempty"`
	Email          string         `json:"email,omitempty"`
	Country        string         `json:"country,omitempty"`
	Product        string         `json:"product,omitempty"`
	AccountID      string         `json:"account_id,omitempty"`
	GrantScopes    []string       `json:"grant_scopes,omitempty"`
	TopArtists     []ArtistJSON   `json:"top_artists,omitempty"`
	TopTracks      []TrackJSON    `json:"top_tracks,omitempty"`
	SavedTracks    []TrackJSON    `json:"saved_tracks,omitempty"`
	RecentlyPlayed []TrackJSON    `json:"recently_played,omitempty"`
	Playlists      []PlaylistJSON `json:"playlists,omitempty"`
	Device         string         `json:"device,omitempty"`
}

// ArtistJSON is an Artist in UserJSON.
type ArtistJSON struct {
	Name       string   `json:"name"`
	Genres     []string `json:"genres,omitempty"`
	Popularity int      `json:"popularity,omitempty"`
	Followers  int      `json:"followers,omitempty"`
}

// TrackJSON is a Track in UserJSON.
type TrackJSON struct {
	Name        string `json:"name"`
	Artist      string `json:"artist"`
	Album       string `json:"album,omitempty"`
	ReleaseDate string `json:"release_date,omitempty"`
	DurationMS  int    `json:"duration_ms,omitempty"`
	Popularity  int    `json:"popularity,omitempty"`
	Explicit    bool   `json:"explicit,omitempty"`
}

// PlaylistJSON is a Playlist in UserJSON.
type PlaylistJSON struct {
	Name        string      `json:"name"`
	Description string      `json:"description,omitempty"`
	Private     bool        `json:"private,omitempty"`
	Tracks      []TrackJSON `json:"tracks"`
}

// User converts u, keeping nil lists nil (defaults) and empty ones empty.
func (u UserJSON) User() User {
	out := User{ID: u.ID, DisplayName: u.DisplayName, Email: u.Email, Country: u.Country, Product: u.Product,
		AccountID: u.AccountID, GrantScopes: u.GrantScopes, Device: u.Device,
		TopTracks: tracks(u.TopTracks), SavedTracks: tracks(u.SavedTracks), RecentlyPlayed: tracks(u.RecentlyPlayed)}
	if u.TopArtists != nil {
		out.TopArtists = make([]Artist, len(u.TopArtists))
		for i, a := range u.TopArtists {
			//lint:ignore S1016 field by field, so that a field added to the Go type does not break this conversion
			out.TopArtists[i] = Artist{Name: a.Name, Genres: a.Genres, Popularity: a.Popularity, Followers: a.Followers}
		}
	}
	if u.Playlists != nil {
		out.Playlists = make([]Playlist, len(u.Playlists))
		for i, p := range u.Playlists {
			out.Playlists[i] = Playlist{Name: p.Name, Description: p.Description, Private: p.Private, Tracks: tracks(p.Tracks)}
		}
	}
	return out
}

func tracks(ts []TrackJSON) []Track {
	if ts == nil {
		return nil
	}
	out := make([]Track, len(ts))
	for i, t := range ts {
		//lint:ignore S1016 field by field, so that a field added to the Go type does not break this conversion
		out[i] = Track{Name: t.Name, Artist: t.Artist, Album: t.Album, ReleaseDate: t.ReleaseDate,
			DurationMS: t.DurationMS, Popularity: t.Popularity, Explicit: t.Explicit}
	}
	return out
}

// ParseUsersJSON reads users as the control API takes them: one UserJSON
// object or an array of them. Unknown fields are errors.
func ParseUsersJSON(data []byte) ([]User, error) {
	var list []UserJSON
	data = []byte(strings.TrimSpace(string(data)))
	if len(data) > 0 && data[0] == '{' {
		data = append(append([]byte{'['}, data...), ']')
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&list); err != nil {
		return nil, err
	}
	users := make([]User, len(list))
	for i, u := range list {
		if u.ID == "" {
			return nil, fmt.Errorf("user %d has no id", i+1)
		}
		users[i] = u.User()
	}
	return users, nil
}

func (s *Server) ctlAddUser(r *http.Request) (any, error) {
	var u UserJSON
	if err := decodeControl(r, &u); err != nil {
		return nil, err
	}
	return nil, catchPanic(func() { s.AddUser(u.User()) })
}

// tokenJSON is an issued token in the control API's answers.
type tokenJSON struct {
	AccessToken  string   `json:"access_token"`
	RefreshToken string   `json:"refresh_token,omitempty"`
	TokenType    string   `json:"token_type"`
	Scopes       []string `json:"scopes"`
	ExpiresIn    int      `json:"expires_in"`
	ExpiresAt    string   `json:"expires_at"` // RFC 3339 UTC
}

func (s *Server) ctlIssue(r *http.Request) (any, error) {
	var in struct {
		User   string   `json:"user"`
		Scopes []string `json:"scopes"`
		Client string   `json:"client"`
	}
	if err := decodeControl(r, &in); err != nil {
		return nil, err
	}
	var tok Token
	err := catchPanic(func() {
		if in.Client == "" {
			// IssueToken is this call with its result cut to the access token.
			tok = s.issue(issuedClientID, in.User, in.Scopes, false)
		} else {
			tok = s.IssueTokens(in.Client, in.User, in.Scopes...)
		}
	})
	if err != nil {
		return nil, err
	}
	return tokenJSON{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, TokenType: "Bearer",
		Scopes: tok.Scopes, ExpiresIn: int(time.Until(tok.Expiry).Round(time.Second) / time.Second),
		ExpiresAt: tok.Expiry.UTC().Truncate(time.Second).Format(time.RFC3339)}, nil
}

func (s *Server) ctlForwarded(r *http.Request) (any, error) {
	var in struct {
		User        string   `json:"user"`
		Scopes      []string `json:"scopes"`
		AccessToken string   `json:"access_token"`
		TokenHeader string   `json:"token_header"`
		UserHeaders *bool    `json:"user_headers"`
	}
	if err := decodeControl(r, &in); err != nil {
		return nil, err
	}
	var f Forwarded
	if in.AccessToken != "" {
		var ok bool
		if f, ok = s.ForwardedFor(in.AccessToken); !ok {
			return nil, errors.New("unknown access token, or an app token")
		}
	} else if err := catchPanic(func() { f = s.Forward(in.User, in.Scopes...) }); err != nil {
		return nil, err
	}
	f.TokenHeader = in.TokenHeader
	f.NoUserHeaders = in.UserHeaders != nil && !*in.UserHeaders
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	f.Apply(req)
	if r.URL.Query().Get("format") == "headers" {
		var b strings.Builder
		for _, name := range slices.Sorted(maps.Keys(req.Header)) {
			b.WriteString(name + ": " + req.Header.Get(name) + "\n")
		}
		return headerLines(b.String()), nil
	}
	headers := make(map[string]string, len(req.Header))
	for name, vs := range req.Header {
		headers[name] = vs[0]
	}
	return map[string]any{"headers": headers, "access_token": f.AccessToken,
		"expires_at": f.Expires.UTC().Format(time.RFC3339)}, nil
}

// headerLines is an answer in HTTP header syntax, "Name: value" lines,
// which curl reads with -H @file.
type headerLines string

// tokenOrUser is the body of the operations on one token or one user's.
type tokenOrUser struct {
	Token string `json:"token"`
	User  string `json:"user"`
}

func (s *Server) ctlTokenInfo(r *http.Request) (any, error) {
	var in tokenOrUser
	if err := decodeControl(r, &in); err != nil {
		return nil, err
	}
	user, scopes, valid := s.AccessTokenInfo(in.Token)
	return map[string]any{"user": user, "scopes": nonNil(scopes), "valid": valid}, nil
}

func (s *Server) ctlExpire(r *http.Request) (any, error) {
	var in tokenOrUser
	if err := decodeControl(r, &in); err != nil {
		return nil, err
	}
	switch {
	case in.Token != "":
		return map[string]bool{"known": s.ExpireAccessToken(in.Token)}, nil
	case in.User != "":
		s.ExpireUserAccessTokens(in.User)
	default:
		s.ExpireAccessTokens()
	}
	return nil, nil
}

func (s *Server) ctlRevokeAccess(r *http.Request) (any, error) {
	var in tokenOrUser
	if err := decodeControl(r, &in); err != nil {
		return nil, err
	}
	switch {
	case in.Token != "":
		return map[string]bool{"known": s.RevokeAccessToken(in.Token)}, nil
	case in.User != "":
		s.RevokeUserAccessTokens(in.User)
		return nil, nil
	}
	return nil, errors.New(`"token" or "user" is required`)
}

func (s *Server) ctlRevokeRefresh(r *http.Request) (any, error) {
	var in tokenOrUser
	if err := decodeControl(r, &in); err != nil {
		return nil, err
	}
	switch {
	case in.Token != "":
		return map[string]bool{"known": s.RevokeRefreshToken(in.Token)}, nil
	case in.User != "":
		s.RevokeRefreshTokens(in.User)
		return nil, nil
	}
	return nil, errors.New(`"token" or "user" is required`)
}

func (s *Server) ctlAdvance(r *http.Request) (any, error) {
	var in struct {
		By duration `json:"by"`
	}
	if err := decodeControl(r, &in); err != nil {
		return nil, err
	}
	s.Advance(time.Duration(in.By))
	return nil, nil
}

// faultJSON is a Fault in the control API.
type faultJSON struct {
	Endpoint   Endpoint `json:"endpoint"`
	Status     int      `json:"status"`
	RetryAfter string   `json:"retry_after"`
	Body       string   `json:"body"`
	Reason     string   `json:"reason"`
	Delay      duration `json:"delay"`
	Drop       bool     `json:"drop"`
	Times      int      `json:"times"`
	Path       string   `json:"path"`
	Method     string   `json:"method"`
	User       string   `json:"user"`
}

func (s *Server) ctlInjectFault(r *http.Request) (any, error) {
	var in faultJSON
	if err := decodeControl(r, &in); err != nil {
		return nil, err
	}
	switch in.Endpoint {
	case EndpointAuthorize, EndpointToken, EndpointAPI:
	default:
		return nil, fmt.Errorf(`"endpoint" must be %q, %q or %q`, EndpointAuthorize, EndpointToken, EndpointAPI)
	}
	s.InjectFault(in.Endpoint, Fault{Status: in.Status, RetryAfter: in.RetryAfter, Body: in.Body, Reason: in.Reason,
		Delay: time.Duration(in.Delay), Drop: in.Drop, Times: in.Times, Path: in.Path, Method: in.Method, UserID: in.User})
	return nil, nil
}

func (s *Server) ctlClearFaults(*http.Request) (any, error) {
	s.ClearFaults()
	return nil, nil
}

// settingsJSON holds the switches of the Set methods; absent fields are
// left as they are.
type settingsJSON struct {
	AutoApprove              *string   `json:"auto_approve"`
	AutoDeny                 *bool     `json:"auto_deny"`
	AccessTokenLifetime      *duration `json:"access_token_lifetime"`
	RefreshTokenLifetime     *duration `json:"refresh_token_lifetime"`
	CodeLifetime             *duration `json:"code_lifetime"`
	RotateRefreshTokensEvery *int      `json:"rotate_refresh_tokens_every"`
	OmitScope                *bool     `json:"omit_scope"`
	TokenLength              *int      `json:"token_length"`
	DevelopmentMode          *bool     `json:"development_mode"`
	DevelopmentUsers         []string  `json:"development_users"`
	UnregisteredUserBody     *string   `json:"unregistered_user_body"`
	OwnerPremiumLapsed       *bool     `json:"owner_premium_lapsed"`
}

// apply calls the Set method of each field present. Development users go
// first: they are the one setting that can be refused.
func (c settingsJSON) apply(s *Server) error {
	if c.DevelopmentUsers != nil {
		if err := s.SetDevelopmentUsers(c.DevelopmentUsers...); err != nil {
			return err
		}
	}
	if c.AutoApprove != nil {
		s.SetAutoApprove(*c.AutoApprove)
	}
	if c.AutoDeny != nil {
		s.SetAutoDeny(*c.AutoDeny)
	}
	if c.AccessTokenLifetime != nil {
		s.SetAccessTokenLifetime(time.Duration(*c.AccessTokenLifetime))
	}
	if c.RefreshTokenLifetime != nil {
		s.SetRefreshTokenLifetime(time.Duration(*c.RefreshTokenLifetime))
	}
	if c.CodeLifetime != nil {
		s.SetCodeLifetime(time.Duration(*c.CodeLifetime))
	}
	if c.RotateRefreshTokensEvery != nil {
		s.SetRotateRefreshTokensEvery(*c.RotateRefreshTokensEvery)
	}
	if c.OmitScope != nil {
		s.SetOmitScope(*c.OmitScope)
	}
	if c.TokenLength != nil {
		s.SetTokenLength(*c.TokenLength)
	}
	if c.DevelopmentMode != nil {
		s.SetDevelopmentMode(*c.DevelopmentMode)
	}
	if c.UnregisteredUserBody != nil {
		s.SetUnregisteredUserBody(*c.UnregisteredUserBody)
	}
	if c.OwnerPremiumLapsed != nil {
		s.SetOwnerPremiumLapsed(*c.OwnerPremiumLapsed)
	}
	return nil
}

func (s *Server) ctlSettings(r *http.Request) (any, error) {
	var in settingsJSON
	if err := decodeControl(r, &in); err != nil {
		return nil, err
	}
	return nil, in.apply(s)
}

func (s *Server) ctlRequests(*http.Request) (any, error) {
	type apiJSON struct {
		Method string      `json:"method"`
		Path   string      `json:"path"`
		Query  url.Values  `json:"query"`
		User   string      `json:"user"`
		Header http.Header `json:"header"`
		Status int         `json:"status"`
		Body   string      `json:"body"`
		// BodyTruncated says Body is the first 16 KiB only.
		BodyTruncated bool `json:"body_truncated"`
	}
	type tokenReqJSON struct {
		GrantType  string     `json:"grant_type"`
		ClientAuth string     `json:"client_auth"`
		Form       url.Values `json:"form"`
	}
	api := []apiJSON{}
	for _, ar := range s.APIRequests() {
		api = append(api, apiJSON{ar.Method, ar.Path, ar.Query, ar.UserID, ar.Header, ar.Status, string(ar.Body), ar.BodyTruncated})
	}
	token := []tokenReqJSON{}
	for _, tr := range s.TokenRequests() {
		//lint:ignore S1016 field by field, so that a field added to the Go type does not break this conversion
		token = append(token, tokenReqJSON{tr.GrantType, tr.ClientAuth, tr.Form})
	}
	return map[string]any{"api": api, "token": token, "authorize": nonNil(s.AuthorizeRequests())}, nil
}

func (s *Server) ctlCounts(r *http.Request) (any, error) {
	c := s.Counts()
	out := map[string]int{
		"authorize": c.Authorize, "approvals": c.Approvals, "denials": c.Denials,
		"code_exchanges": c.CodeExchanges, "refreshes": c.Refreshes, "client_credentials": c.ClientCredentials,
		"token_errors": c.TokenErrors, "me": c.Me, "api_calls": c.APICalls,
	}
	if p := r.URL.Query().Get("path"); p != "" {
		out["path"] = s.APIRequestCount(p)
	}
	return out, nil
}

func (s *Server) ctlReset(*http.Request) (any, error) {
	s.ResetCounts()
	return nil, nil
}

// nonNil makes a nil list encode as [], which clients in any language can
// iterate.
func nonNil[T any](v []T) []T {
	if v == nil {
		return []T{}
	}
	return v
}
