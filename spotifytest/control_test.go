package spotifytest_test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// ctl calls a control operation as a test in another language would.
func ctl(t *testing.T, s *spotifytest.Server, method, op, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+spotifytest.ControlPrefix+op, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: not a JSON object: %s", method, op, raw)
	}
	return resp.StatusCode, out
}

// mustCtl is ctl for an operation that must succeed.
func mustCtl(t *testing.T, s *spotifytest.Server, method, op, body string) map[string]any {
	t.Helper()
	status, out := ctl(t, s, method, op, body)
	if status != http.StatusOK {
		t.Fatalf("%s %s %s: %d %v", method, op, body, status, out)
	}
	return out
}

// ctlRefresh posts a refresh grant for the confidential app "app".
func ctlRefresh(t *testing.T, s *spotifytest.Server, refreshToken string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.TokenURL(), strings.NewReader(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("app", "shh")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func newControlled(t *testing.T) *spotifytest.Server {
	s := spotifytest.NewServer()
	t.Cleanup(s.Close)
	mustCtl(t, s, "POST", "clients", `{"id":"app","secret":"shh","redirect_uris":["http://127.0.0.1:8080/cb"]}`)
	return s
}

const ctlAuthQuery = "/authorize?client_id=app&response_type=code&redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Fcb&scope=user-read-email&state=xyz"

func TestControlAddClientRegistersTheAppAndItsRedirectURIs(t *testing.T) {
	s := newControlled(t)
	cb, err := s.Approve(s.URL+ctlAuthQuery, "")
	if err != nil || !strings.Contains(cb, "code=") {
		t.Fatalf("Approve for the app added over HTTP = %q, %v; want a callback with a code", cb, err)
	}
	if _, err := s.Approve(strings.Replace(s.URL+ctlAuthQuery, "client_id=app", "client_id=other", 1), ""); err == nil {
		t.Error("an app never added was approved")
	}
}

func TestControlAddUserGivesTheUserTheirOwnData(t *testing.T) {
	s := newControlled(t)
	mustCtl(t, s, "POST", "users", `{"id":"alice","display_name":"Alice","product":"premium","device":"Kitchen",
		"top_tracks":[{"name":"Gopher Groove","artist":"The Channels","duration_ms":1000}],
		"top_artists":[],"playlists":[{"name":"Road","private":true,"tracks":[]}]}`)
	tok := s.IssueToken("alice", "user-top-read", "user-read-playback-state", "playlist-read-private")

	if got := names(callAPI(t, s, "GET", "/v1/me/top/tracks", tok, "").body); !slices.Equal(got, []string{"Gopher Groove"}) {
		t.Errorf("top tracks = %v, want alice's one track", got)
	}
	if got := names(callAPI(t, s, "GET", "/v1/me/top/artists", tok, "").body); len(got) != 0 {
		t.Errorf("top artists = %v, want none ([] is none, not the defaults)", got)
	}
	if got := names(callAPI(t, s, "GET", "/v1/me/playlists", tok, "").body); !slices.Equal(got, []string{"Road"}) {
		t.Errorf("playlists = %v, want [Road]", got)
	}
	if res := callAPI(t, s, "GET", "/v1/me/player", tok, ""); res.status != http.StatusOK {
		t.Errorf("player with a device = %d, want 200", res.status)
	}

	// Replacing the user: absent lists are the canned defaults again.
	mustCtl(t, s, "POST", "users", `{"id":"alice"}`)
	if got := names(callAPI(t, s, "GET", "/v1/me/top/tracks", tok, "").body); len(got) < 2 {
		t.Errorf("top tracks after replacing alice without any = %v, want the defaults", got)
	}
	if status, out := ctl(t, s, "POST", "users", `{"display_name":"nobody"}`); status != http.StatusBadRequest || !strings.Contains(out["error"].(string), "empty user ID") {
		t.Errorf("a user without id = %d %v, want 400 naming the empty ID", status, out)
	}
}

func TestControlTokensIssuesWorkingTokens(t *testing.T) {
	s := newControlled(t)
	out := mustCtl(t, s, "POST", "tokens", `{"user":"testuser","scopes":["user-read-email","user-top-read"]}`)
	tok, _ := out["access_token"].(string)
	user, scopes, valid := s.AccessTokenInfo(tok)
	if user != "testuser" || !valid || !slices.Equal(scopes, []string{"user-read-email", "user-top-read"}) {
		t.Errorf("AccessTokenInfo of the issued token = %q %v %v", user, scopes, valid)
	}
	if res := callAPI(t, s, "GET", "/v1/me", tok, ""); res.status != http.StatusOK || res.body["email"] != "test@example.com" {
		t.Errorf("/v1/me with it = %d %v", res.status, res.body)
	}
	if _, ok := out["refresh_token"]; ok {
		t.Error("a token without client has a refresh token")
	}
	if exp, err := time.Parse(time.RFC3339, out["expires_at"].(string)); err != nil || exp.Before(time.Now().Add(50*time.Minute)) {
		t.Errorf("expires_at = %v (%v), want about an hour from now", out["expires_at"], err)
	}

	withRefresh := mustCtl(t, s, "POST", "tokens", `{"user":"testuser","scopes":["user-read-email"],"client":"app"}`)
	if status, body := ctlRefresh(t, s, withRefresh["refresh_token"].(string)); status != http.StatusOK {
		t.Errorf("refreshing the issued refresh token = %d %v", status, body)
	}

	for body, want := range map[string]string{
		`{"user":"nobody"}`:                           "unknown user nobody",
		`{"user":"testuser","scopes":["user-lurk"]}`:  "unknown scope user-lurk",
		`{"user":"testuser","client":"unregistered"}`: "unknown client unregistered",
	} {
		if status, out := ctl(t, s, "POST", "tokens", body); status != http.StatusBadRequest || !strings.Contains(out["error"].(string), want) {
			t.Errorf("tokens %s = %d %v, want 400 %q", body, status, out, want)
		}
	}
}

func TestControlForwardedIsWhatThePluginSends(t *testing.T) {
	s := newControlled(t)
	mustCtl(t, s, "POST", "users", `{"id":"zoe","account_id":"acc-zoe","display_name":"Zoë","email":"zoe@example.com","product":"free"}`)
	out := mustCtl(t, s, "POST", "forwarded", `{"user":"zoe","scopes":["user-read-email"]}`)
	h := out["headers"].(map[string]any)
	tok := out["access_token"].(string)
	want := map[string]any{
		"Authorization":           "Bearer " + tok,
		"X-Spotify-User-Id":       "zoe",
		"X-Spotify-Account-Id":    "acc-zoe",
		"X-Spotify-User-Name":     "Zo%C3%AB",
		"X-Spotify-User-Email":    "zoe@example.com",
		"X-Spotify-Scopes":        "user-read-email",
		"X-Spotify-Token-Expires": out["expires_at"],
	}
	for k, v := range want {
		if h[k] != v {
			t.Errorf("%s = %v, want %v", k, h[k], v)
		}
	}
	if _, ok := h["X-Spotify-Product"]; ok {
		t.Error("X-Spotify-Product sent without user-read-private")
	}
	if len(h) != len(want) {
		t.Errorf("headers = %v, want exactly %v", h, want)
	}
	if _, _, valid := s.AccessTokenInfo(tok); !valid {
		t.Error("the forwarded token is not valid at the fake")
	}

	// Options: another token header, no identity headers, an existing token.
	out = mustCtl(t, s, "POST", "forwarded", `{"access_token":"`+tok+`","token_header":"X-Access-Token","user_headers":false}`)
	h = out["headers"].(map[string]any)
	if h["X-Access-Token"] != tok || h["Authorization"] != nil || h["X-Spotify-User-Id"] != nil || h["X-Spotify-Token-Expires"] == nil {
		t.Errorf("with token_header and user_headers false: %v", h)
	}
	if status, _ := ctl(t, s, "POST", "forwarded", `{"access_token":"not-issued"}`); status != http.StatusBadRequest {
		t.Errorf("an unknown access token = %d, want 400", status)
	}

	resp, err := http.Post(s.URL+spotifytest.ControlPrefix+"forwarded?format=headers", "application/json", strings.NewReader(`{"user":"zoe"}`))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(raw), "\nX-Spotify-User-Id: zoe\n") || !strings.HasPrefix(string(raw), "Authorization: Bearer BQ") {
		t.Errorf("format=headers:\n%s", raw)
	}
}

func TestControlExpireAndRevoke(t *testing.T) {
	s := newControlled(t)
	mustCtl(t, s, "POST", "users", `{"id":"alice"}`)
	valid := func(tok string) bool { _, _, v := s.AccessTokenInfo(tok); return v }
	a1, a2, b := s.IssueToken("alice"), s.IssueToken("alice"), s.IssueToken("testuser")

	if out := mustCtl(t, s, "POST", "expire", `{"token":"`+a1+`"}`); out["known"] != true || valid(a1) || !valid(a2) {
		t.Errorf("expire one token: %v; a1 valid %v, a2 valid %v", out, valid(a1), valid(a2))
	}
	if out := mustCtl(t, s, "POST", "expire", `{"token":"never-issued"}`); out["known"] != false {
		t.Errorf("expire an unknown token: %v, want known false", out)
	}
	mustCtl(t, s, "POST", "expire", `{"user":"alice"}`)
	if valid(a2) || !valid(b) {
		t.Errorf("expire alice's: a2 valid %v, testuser's valid %v", valid(a2), valid(b))
	}
	mustCtl(t, s, "POST", "expire", `{}`)
	if valid(b) {
		t.Error("expire all left testuser's token valid")
	}

	c1, c2 := s.IssueToken("alice"), s.IssueToken("testuser")
	mustCtl(t, s, "POST", "revoke-access", `{"token":"`+c1+`"}`)
	mustCtl(t, s, "POST", "revoke-access", `{"user":"testuser"}`)
	if valid(c1) || valid(c2) {
		t.Error("revoked access tokens are still valid")
	}
	if status, _ := ctl(t, s, "POST", "revoke-access", `{}`); status != http.StatusBadRequest {
		t.Errorf("revoke-access without token or user = %d, want 400", status)
	}

	r1 := s.IssueTokens("app", "alice").RefreshToken
	r2 := s.IssueTokens("app", "testuser").RefreshToken
	mustCtl(t, s, "POST", "revoke-refresh", `{"token":"`+r1+`"}`)
	mustCtl(t, s, "POST", "revoke-refresh", `{"user":"testuser"}`)
	for _, rt := range []string{r1, r2} {
		if status, out := ctlRefresh(t, s, rt); status != http.StatusBadRequest || out["error"] != "invalid_grant" {
			t.Errorf("refresh with a revoked refresh token = %d %v, want invalid_grant", status, out)
		}
	}
}

func TestControlAdvanceEndsRefreshTokensLife(t *testing.T) {
	s := newControlled(t)
	rt := s.IssueTokens("app", "testuser").RefreshToken
	mustCtl(t, s, "POST", "advance", `{"by":"4000h"}`)
	if status, out := ctlRefresh(t, s, rt); status != http.StatusOK {
		t.Fatalf("refresh before six months = %d %v", status, out)
	}
	mustCtl(t, s, "POST", "advance", `{"by":1440000}`) // 400 hours, in seconds
	if status, out := ctlRefresh(t, s, rt); status != http.StatusBadRequest || out["error"] != "invalid_grant" {
		t.Errorf("refresh after six months = %d %v, want invalid_grant", status, out)
	}
	if status, _ := ctl(t, s, "POST", "advance", `{"by":"soon"}`); status != http.StatusBadRequest {
		t.Errorf("a bad duration = %d, want 400", status)
	}
}

func TestControlFaults(t *testing.T) {
	s := newControlled(t)
	tok := s.IssueToken("testuser")
	mustCtl(t, s, "POST", "faults", `{"endpoint":"api","path":"/v1/me","status":429,"retry_after":"7","reason":"QUOTA_EXCEEDED","times":1}`)
	res := callAPI(t, s, "GET", "/v1/me", tok, "")
	if res.status != http.StatusTooManyRequests || res.header.Get("Retry-After") != "7" || !strings.Contains(res.raw, "QUOTA_EXCEEDED") {
		t.Errorf("first /v1/me = %d %v %s, want the injected 429", res.status, res.header, res.raw)
	}
	if res := callAPI(t, s, "GET", "/v1/me", tok, ""); res.status != http.StatusOK {
		t.Errorf("second /v1/me = %d, want 200 (times 1)", res.status)
	}

	mustCtl(t, s, "POST", "faults", `{"endpoint":"api","status":500}`)
	if res := callAPI(t, s, "GET", "/v1/me/top/tracks", tok, ""); res.status != http.StatusInternalServerError {
		t.Errorf("/v1/me/top/tracks = %d, want the lasting 500", res.status)
	}
	mustCtl(t, s, "DELETE", "faults", "")
	if res := callAPI(t, s, "GET", "/v1/me", tok, ""); res.status != http.StatusOK {
		t.Errorf("/v1/me after DELETE faults = %d, want 200", res.status)
	}

	mustCtl(t, s, "POST", "faults", `{"endpoint":"api","method":"PUT","user":"testuser","status":502}`)
	if res := callAPI(t, s, "GET", "/v1/me", tok, ""); res.status != http.StatusOK {
		t.Errorf("GET /v1/me under a PUT-only fault = %d, want 200", res.status)
	}
	if res := callAPI(t, s, "PUT", "/v1/me/player/pause", tok, ""); res.status != http.StatusBadGateway {
		t.Errorf("testuser's PUT under the fault = %d, want 502", res.status)
	}
	s.AddUser(spotifytest.User{ID: "bob"})
	if res := callAPI(t, s, "PUT", "/v1/me/player/pause", s.IssueToken("bob", "user-modify-playback-state"), ""); res.status == http.StatusBadGateway {
		t.Error("bob's PUT got testuser's fault")
	}
	mustCtl(t, s, "DELETE", "faults", "")

	mustCtl(t, s, "POST", "faults", `{"endpoint":"token","drop":true,"delay":"1ms","times":1}`)
	if _, err := http.PostForm(s.TokenURL(), url.Values{"grant_type": {"client_credentials"}}); err == nil {
		t.Error("the dropped token request got an answer")
	}
	if status, _ := ctl(t, s, "POST", "faults", `{"endpoint":"web","status":500}`); status != http.StatusBadRequest {
		t.Errorf("an unknown endpoint = %d, want 400", status)
	}
}

func TestControlSettings(t *testing.T) {
	s := newControlled(t)
	mustCtl(t, s, "POST", "users", `{"id":"alice"}`)
	mustCtl(t, s, "PUT", "settings", `{"auto_approve":"alice","access_token_lifetime":"90s","rotate_refresh_tokens_every":1}`)

	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(s.URL + ctlAuthQuery)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || !strings.Contains(loc, "code=") {
		t.Errorf("/authorize with auto_approve = %d %q, want a redirect with a code", resp.StatusCode, loc)
	}
	out := mustCtl(t, s, "POST", "tokens", `{"user":"alice","client":"app"}`)
	if out["expires_in"] != float64(90) {
		t.Errorf("expires_in = %v, want 90", out["expires_in"])
	}
	if _, body := ctlRefresh(t, s, out["refresh_token"].(string)); body["refresh_token"] == nil {
		t.Errorf("refresh with rotation every time = %v, want a new refresh_token", body)
	}

	mustCtl(t, s, "PUT", "settings", `{"development_mode":true,"development_users":["testuser"]}`)
	req, _ := http.NewRequest(http.MethodGet, s.APIURL()+"/v1/me", nil)
	req.Header.Set("Authorization", "Bearer "+s.IssueToken("alice"))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("/v1/me of a user off the development list = %v %v, want 403", resp, err)
	} else {
		resp.Body.Close()
	}
	status, errOut := ctl(t, s, "PUT", "settings", `{"development_users":["a","b","c","d","e","f"],"auto_approve":""}`)
	if status != http.StatusBadRequest || errOut["error"] != spotifytest.ErrDevelopmentUserLimit.Error() {
		t.Errorf("six development users = %d %v, want 400 with ErrDevelopmentUserLimit", status, errOut)
	}
	if resp, err := noRedirect.Get(s.URL + ctlAuthQuery); err != nil || resp.StatusCode != http.StatusFound {
		t.Errorf("a refused settings call changed other settings: /authorize = %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if status, out := ctl(t, s, "PUT", "settings", `{"auto_aprove":"alice"}`); status != http.StatusBadRequest || !strings.Contains(out["error"].(string), "auto_aprove") {
		t.Errorf("a misspelt setting = %d %v, want 400 naming it", status, out)
	}
}

func TestControlRequestsCountsAndReset(t *testing.T) {
	s := newControlled(t)
	tok := s.IssueToken("testuser")
	callAPI(t, s, "GET", "/v1/me?market=SE", tok, "")
	callAPI(t, s, "GET", "/v1/me/top/tracks", tok, "")
	_, _ = http.PostForm(s.TokenURL(), url.Values{"grant_type": {"client_credentials"}})

	out := mustCtl(t, s, "GET", "requests", "")
	api := out["api"].([]any)
	if len(api) != 2 {
		t.Fatalf("api requests = %v, want 2", api)
	}
	first := api[0].(map[string]any)
	if first["method"] != "GET" || first["path"] != "/v1/me" || first["user"] != "testuser" ||
		first["query"].(map[string]any)["market"].([]any)[0] != "SE" {
		t.Errorf("first API request = %v", first)
	}
	if hdr := first["header"].(map[string]any); hdr["Authorization"] != nil {
		t.Error("the request log holds the bearer token")
	}
	if first["status"] != float64(http.StatusOK) {
		t.Errorf("first API request's status = %v, want 200", first["status"])
	}
	if tr := out["token"].([]any); len(tr) != 1 || tr[0].(map[string]any)["grant_type"] != "client_credentials" {
		t.Errorf("token requests = %v", tr)
	}

	counts := mustCtl(t, s, "GET", "counts?path=/v1/me*", "")
	if counts["me"] != float64(1) || counts["api_calls"] != float64(2) || counts["client_credentials"] != float64(1) || counts["path"] != float64(2) {
		t.Errorf("counts = %v", counts)
	}
	mustCtl(t, s, "POST", "reset", "")
	if c := s.Counts(); c != (spotifytest.Counts{}) || len(s.APIRequests()) != 0 {
		t.Errorf("after reset: %+v, %d API requests", c, len(s.APIRequests()))
	}
}

func TestControlHelpAndUnknownOperations(t *testing.T) {
	s := newControlled(t)
	resp, err := http.Get(s.URL + spotifytest.ControlPrefix)
	if err != nil {
		t.Fatal(err)
	}
	help, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, op := range []string{"clients", "users", "tokens", "forwarded", "token-info", "expire", "revoke-access", "revoke-refresh", "advance", "faults", "settings", "requests", "counts", "reset"} {
		if !strings.Contains(string(help), spotifytest.ControlPrefix+op) {
			t.Errorf("help lacks %s:\n%s", op, help)
		}
	}
	if status, out := ctl(t, s, "GET", "users", ""); status != http.StatusNotFound || out["error"] == nil {
		t.Errorf("GET users = %d %v, want a JSON 404", status, out)
	}
	if status, _ := ctl(t, s, "POST", "tokens", `{"user":`); status != http.StatusBadRequest {
		t.Errorf("broken JSON = %d, want 400", status)
	}
	if c := s.Counts(); c.APICalls != 0 || c.Authorize != 0 {
		t.Errorf("control calls were counted as Spotify calls: %+v", c)
	}
}

func TestControlTokenInfo(t *testing.T) {
	s := newControlled(t)
	tok := s.IssueToken("testuser", "user-top-read")
	out := mustCtl(t, s, "POST", "token-info", `{"token":"`+tok+`"}`)
	if out["user"] != "testuser" || out["valid"] != true || len(out["scopes"].([]any)) != 1 {
		t.Errorf("token-info = %v", out)
	}
	if out := mustCtl(t, s, "POST", "token-info", `{"token":"nope"}`); out["valid"] != false || out["user"] != "" {
		t.Errorf("token-info of an unknown token = %v", out)
	}
}

func TestParseUsersJSON(t *testing.T) {
	users, err := spotifytest.ParseUsersJSON([]byte(`[{"id":"a","top_tracks":[]},{"id":"b","saved_tracks":[{"name":"x","artist":"y"}]}]`))
	if err != nil || len(users) != 2 || users[0].TopTracks == nil || len(users[0].TopTracks) != 0 || users[1].SavedTracks[0].Name != "x" || users[1].TopTracks != nil {
		t.Errorf("array: %+v, %v", users, err)
	}
	if users, err := spotifytest.ParseUsersJSON([]byte(` {"id":"solo"} `)); err != nil || len(users) != 1 || users[0].ID != "solo" {
		t.Errorf("one object: %+v, %v", users, err)
	}
	for _, bad := range []string{`[{"display_name":"x"}]`, `[{"id":"a","nickname":"x"}]`, `nope`} {
		if _, err := spotifytest.ParseUsersJSON([]byte(bad)); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestNewServerOnListensOnTheAddress(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if _, err := spotifytest.NewServerOn(addr); err == nil {
		t.Fatal("NewServerOn a busy address: no error")
	}
	l.Close()
	s, err := spotifytest.NewServerOn(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.URL != "http://"+addr {
		t.Errorf("URL = %q, want http://%s", s.URL, addr)
	}
	if res := callAPI(t, s, "GET", "/v1/me", s.IssueToken("testuser"), ""); res.status != http.StatusOK {
		t.Errorf("/v1/me = %d", res.status)
	}
}
