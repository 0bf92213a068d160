package spotifyauth_test

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// TestTheUpstreamGetsSpotifysAccountIDAndNoClientsThroughCaddy: with
// account_id in /v1/me, a real Caddy passes it on as X-Spotify-Account-Id
// and as {http.auth.user.account_id}, admits by it in allow_users, and
// tells it in userinfo; what a client sends under that name goes nowhere,
// gated path or not (the spoofs of upstream_trust_test.go cover every
// path, the strip route and handle_errors).
func TestTheUpstreamGetsSpotifysAccountIDAndNoClientsThroughCaddy(t *testing.T) {
	const accountID = "5pAcCoUnT1dOfTeStUsEr"
	fake := newFake(t)
	user := spotifytest.DefaultUser()
	user.AccountID = accountID
	fake.AddUser(user)
	upstream := newRecordingUpstream(t)
	tc := caddytest.NewTester(t)
	tc.InitServer(globalOptions(caddyStorage(t))+site+` {
	spotify_auth /app/* {
		`+fakeOptions(fake)+`
		allow_users `+accountID+`
	}
	reverse_proxy `+upstream.URL+` {
		header_up X-Linked-Account /accounts/{http.auth.user.account_id}
	}
}`, "caddyfile")
	c := caddyBrowser(tc)
	loginThroughCaddy(t, c, fake, "/app/")

	get := func(path string) seenRequest {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, site+path, nil)
		req.Header.Set("Accept", "text/html")
		req.Header.Set("X-Spotify-Account-Id", "admins-account")
		req.Header.Set("X_Spotify_Account_Id", "admins-account")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d, want 200 (allow_users lists the account id)", path, resp.StatusCode)
		}
		return upstream.last(t)
	}
	got := get("/app/page")
	if v := got.Header.Values("X-Spotify-Account-Id"); len(v) != 1 || v[0] != accountID {
		t.Errorf("gated: X-Spotify-Account-Id %q, want only Spotify's %q", v, accountID)
	}
	if v := got.Header.Values("X_Spotify_Account_Id"); len(v) != 0 {
		t.Errorf("gated: the client's X_Spotify_Account_Id got through: %q", v)
	}
	if v := got.Header.Get("X-Linked-Account"); v != "/accounts/"+accountID {
		t.Errorf("{http.auth.user.account_id} in header_up gave %q", v)
	}
	got = get("/public/page")
	for _, name := range []string{"X-Spotify-Account-Id", "X_Spotify_Account_Id"} {
		if v := got.Header.Values(name); len(v) != 0 {
			t.Errorf("ungated: the client's %s got through: %q", name, v)
		}
	}

	req, _ := http.NewRequest(http.MethodGet, site+"/oauth2/spotify/userinfo", nil)
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var ui struct {
		ID        string `json:"id"`
		AccountID string `json:"account_id"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &ui) != nil || ui.AccountID != accountID || ui.ID != spotifytest.DefaultUserID {
		t.Fatalf("userinfo: %d %s", resp.StatusCode, body)
	}
}
