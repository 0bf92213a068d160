package spotifytest_test

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// rawAPI calls the Web API and keeps the body as it came: the 403 of a
// development-mode app is often not JSON.
func (h *harness) rawAPI(path, accessToken string) (status int, contentType, body string) {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, h.s.APIURL()+path, nil)
	req.Header.Set("Authorization", "Bearer "+accessToken)
	resp, err := h.http.Do(req)
	if err != nil {
		h.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

// loginAs logs userID in with the confidential client and returns the
// token answer, which must succeed.
func (h *harness) loginAs(userID, scope string) tokenResult {
	h.t.Helper()
	code := h.codeFor(authQuery(confID, scope, "st", challengeOf(verifier)), userID)
	res := h.token(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI}, "code_verifier": {verifier}}, confID, confSecret)
	if res.status != http.StatusOK {
		h.t.Fatalf("code exchange of %s: %d %v", userID, res.status, res.body)
	}
	return res
}

func (h *harness) refresh(rt string) tokenResult {
	h.t.Helper()
	return h.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, confID, confSecret)
}

func TestDevelopmentModeAdmitsOnlyListedUsers(t *testing.T) {
	const scopes = "user-read-email user-top-read"
	paths := []string{"/v1/me", "/v1/me/top/artists", "/v1/search?q=loop&type=track"}
	cases := []struct {
		name        string
		development bool
		listed      []string
		user        string
		wantStatus  int
	}{
		{"extended quota admits anyone", false, nil, "friend", http.StatusOK},
		{"development mode admits a listed user", true, []string{spotifytest.DefaultUserID, "friend"}, "friend", http.StatusOK},
		{"development mode refuses a user not on the list", true, []string{spotifytest.DefaultUserID}, "friend", http.StatusForbidden},
		{"development mode with an empty list refuses everyone", true, nil, spotifytest.DefaultUserID, http.StatusForbidden},
		{"the list means nothing in extended quota", false, []string{spotifytest.DefaultUserID}, "friend", http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.s.AddUser(spotifytest.User{ID: "friend", DisplayName: "Friend"})
			h.s.SetDevelopmentMode(tc.development)
			if err := h.s.SetDevelopmentUsers(tc.listed...); err != nil {
				t.Fatal(err)
			}
			// Consent, the code exchange and a refresh succeed for anyone.
			login := h.loginAs(tc.user, scopes)
			if res := h.refresh(login.str("refresh_token")); res.status != http.StatusOK {
				t.Fatalf("refresh: %d %v", res.status, res.body)
			}
			for _, path := range paths {
				status, ctype, body := h.rawAPI(path, login.str("access_token"))
				if status != tc.wantStatus {
					t.Errorf("GET %s: %d, want %d: %s", path, status, tc.wantStatus, body)
				}
				if tc.wantStatus == http.StatusForbidden && (body != spotifytest.UserNotRegistered || !strings.HasPrefix(ctype, "text/plain")) {
					t.Errorf("GET %s: 403 %q %q, want the plain-text %q", path, ctype, body, spotifytest.UserNotRegistered)
				}
			}
		})
	}
	t.Run("an app token has no user and is not refused", func(t *testing.T) {
		h := newHarness(t)
		h.s.SetDevelopmentMode(true)
		app := h.token(url.Values{"grant_type": {"client_credentials"}}, confID, confSecret)
		if status, _, body := h.rawAPI("/v1/search?q=loop&type=track", app.str("access_token")); status != http.StatusOK {
			t.Errorf("search with an app token: %d %s", status, body)
		}
	})
	t.Run("a bad token is still 401, not 403", func(t *testing.T) {
		h := newHarness(t)
		h.s.SetDevelopmentMode(true)
		if status, _, body := h.rawAPI("/v1/me", "BQnope"); status != http.StatusUnauthorized {
			t.Errorf("unknown token: %d %s", status, body)
		}
	})
}

func TestUnregisteredUserBodyTakesEachOfSpotifysWordings(t *testing.T) {
	cases := []struct {
		name      string
		body      string
		wantBody  string
		wantCType string
	}{
		{"the default", "", spotifytest.UserNotRegistered, "text/plain"},
		{"not approved", spotifytest.UserNotApproved, spotifytest.UserNotApproved, "text/plain"},
		{"may not be registered", spotifytest.UserMayNotBeRegistered, spotifytest.UserMayNotBeRegistered, "text/plain"},
		{"not registered for this application", spotifytest.UserNotRegisteredForApp, spotifytest.UserNotRegisteredForApp, "text/plain"},
		{"the JSON form", spotifytest.APIErrorJSON(403, spotifytest.UserNotRegistered),
			`{"error":{"status":403,"message":"User not registered in the Developer Dashboard"}}`, "application/json"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.s.AddUser(spotifytest.User{ID: "friend"})
			h.s.SetDevelopmentMode(true)
			h.s.SetUnregisteredUserBody(tc.body)
			status, ctype, body := h.rawAPI("/v1/me", h.loginAs("friend", "").str("access_token"))
			if status != http.StatusForbidden || body != tc.wantBody || !strings.HasPrefix(ctype, tc.wantCType) {
				t.Errorf("got %d %q %q, want 403 %q %q", status, ctype, body, tc.wantCType, tc.wantBody)
			}
		})
	}
}

func TestDevelopmentUserListHoldsAtMostFive(t *testing.T) {
	h := newHarness(t)
	h.s.SetDevelopmentMode(true)
	five := []string{"u1", "u2", "u3", "u4", spotifytest.DefaultUserID}
	if err := h.s.SetDevelopmentUsers(five...); err != nil {
		t.Fatalf("five users: %v", err)
	}
	if err := h.s.SetDevelopmentUsers("a", "b", "c", "d", "e", "f"); !errors.Is(err, spotifytest.ErrDevelopmentUserLimit) {
		t.Errorf("six users: %v, want ErrDevelopmentUserLimit", err)
	}
	if err := h.s.AddDevelopmentUser("u6"); !errors.Is(err, spotifytest.ErrDevelopmentUserLimit) {
		t.Errorf("a sixth user added: %v, want ErrDevelopmentUserLimit", err)
	}
	if err := h.s.AddDevelopmentUser("u1"); err != nil {
		t.Errorf("adding a listed user again: %v", err)
	}
	if err := h.s.SetDevelopmentUsers("u1", "u1", "u1", "u2", "u3", "u4", "u5"); err != nil {
		t.Errorf("five distinct users, some twice: %v", err)
	}
	if err := h.s.SetDevelopmentUsers(""); err == nil {
		t.Error("an empty user ID was accepted")
	}
	if err := h.s.AddDevelopmentUser(""); err == nil {
		t.Error("an empty user ID was added")
	}
	// The refused calls left the last good list in place: u1..u5, not
	// the default user.
	if status, _, _ := h.rawAPI("/v1/me", h.loginConf("").str("access_token")); status != http.StatusForbidden {
		t.Errorf("the default user after the list changed to u1..u5: %d, want 403", status)
	}
	if err := h.s.SetDevelopmentUsers(); err != nil {
		t.Fatal(err)
	}
	if err := h.s.AddDevelopmentUser(spotifytest.DefaultUserID); err != nil {
		t.Fatal(err)
	}
	if status, _, body := h.rawAPI("/v1/me", h.loginConf("").str("access_token")); status != http.StatusOK {
		t.Errorf("the default user once added: %d %s", status, body)
	}
}

func TestMeInDevelopmentModeHasNoEmailCountryProductOrFollowers(t *testing.T) {
	h := newHarness(t)
	h.s.SetDevelopmentMode(true)
	if err := h.s.AddDevelopmentUser(spotifytest.DefaultUserID); err != nil {
		t.Fatal(err)
	}
	token := h.loginConf("user-read-email user-read-private").str("access_token")
	me := h.api("/v1/me", token)
	if me.status != http.StatusOK {
		t.Fatalf("got %d %v", me.status, me.body)
	}
	for _, k := range []string{"email", "country", "product", "followers"} {
		if v, ok := me.body[k]; ok {
			t.Errorf("%s = %v in development mode", k, v)
		}
	}
	for _, k := range []string{"id", "account_id", "display_name", "uri", "href", "external_urls", "images", "explicit_content"} {
		if _, ok := me.body[k]; !ok {
			t.Errorf("%s missing in development mode", k)
		}
	}
	if f, ok := h.s.ForwardedFor(token); !ok || f.Email != "" || f.Product != "" || f.UserID != spotifytest.DefaultUserID {
		t.Errorf("ForwardedFor = %+v, %v; want the user without email or product", f, ok)
	}

	h.s.SetDevelopmentMode(false)
	me = h.api("/v1/me", token)
	for _, k := range []string{"email", "country", "product", "followers"} {
		if _, ok := me.body[k]; !ok {
			t.Errorf("%s missing in extended quota", k)
		}
	}
}

func TestAccountIDIsStableDistinctAndSettable(t *testing.T) {
	h := newHarness(t)
	h.s.AddUser(spotifytest.User{ID: "friend"})
	h.s.AddUser(spotifytest.User{ID: "named", AccountID: "acc-42"})
	accountOf := func(userID string) string {
		t.Helper()
		me := h.api("/v1/me", h.loginAs(userID, "").str("access_token"))
		id, _ := me.body["account_id"].(string)
		return id
	}
	d, f := accountOf(spotifytest.DefaultUserID), accountOf("friend")
	if d == "" || f == "" || d == f || d == spotifytest.DefaultUserID || f == "friend" {
		t.Errorf("derived account_ids %q and %q: want two distinct ones, neither the user ID", d, f)
	}
	if again := accountOf(spotifytest.DefaultUserID); again != d {
		t.Errorf("account_id changed from %q to %q", d, again)
	}
	other := spotifytest.NewServer()
	defer other.Close()
	req, _ := http.NewRequest(http.MethodGet, other.APIURL()+"/v1/me", nil)
	req.Header.Set("Authorization", "Bearer "+other.IssueToken(spotifytest.DefaultUserID))
	if got := h.do(req).str("account_id"); got != d {
		t.Errorf("another server derives %q, want %q: account_id must not depend on the server", got, d)
	}
	if got := accountOf("named"); got != "acc-42" {
		t.Errorf("User.AccountID gave %q, want acc-42", got)
	}
}

func TestOwnerPremiumLapsedRefusesEveryWebAPICall(t *testing.T) {
	h := newHarness(t)
	user := h.loginConf("user-top-read")
	app := h.token(url.Values{"grant_type": {"client_credentials"}}, confID, confSecret)
	h.s.SetOwnerPremiumLapsed(true)
	cases := []struct{ name, path, token string }{
		{"the profile", "/v1/me", user.str("access_token")},
		{"a user endpoint", "/v1/me/top/artists", user.str("access_token")},
		{"the catalogue with a user token", "/v1/search?q=loop&type=track", user.str("access_token")},
		{"the catalogue with an app token", "/v1/search?q=loop&type=track", app.str("access_token")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := h.api(tc.path, tc.token)
			wantAPIError(t, res, http.StatusForbidden, spotifytest.OwnerPremiumRequired)
			if !strings.HasPrefix(spotifytest.OwnerPremiumRequired, "Active premium subscription required for the owner of the app") {
				t.Errorf("message %q lacks Spotify's words", spotifytest.OwnerPremiumRequired)
			}
		})
	}
	t.Run("it wins over the development-mode list", func(t *testing.T) {
		h.s.SetDevelopmentMode(true)
		defer h.s.SetDevelopmentMode(false)
		wantAPIError(t, h.api("/v1/me", user.str("access_token")), http.StatusForbidden, spotifytest.OwnerPremiumRequired)
	})
	t.Run("logins and refreshes still succeed", func(t *testing.T) {
		again := h.loginConf("user-top-read")
		if res := h.refresh(again.str("refresh_token")); res.status != http.StatusOK {
			t.Errorf("refresh: %d %v", res.status, res.body)
		}
		if res := h.token(url.Values{"grant_type": {"client_credentials"}}, confID, confSecret); res.status != http.StatusOK {
			t.Errorf("client credentials: %d %v", res.status, res.body)
		}
	})
	t.Run("renewing Premium lets the same tokens through", func(t *testing.T) {
		h.s.SetOwnerPremiumLapsed(false)
		if res := h.api("/v1/me", user.str("access_token")); res.status != http.StatusOK {
			t.Errorf("after renewal: %d %v", res.status, res.body)
		}
	})
}

func TestRefreshTokensDieSixMonthsAfterConsent(t *testing.T) {
	t.Run("by default a refresh token works until six months after consent, refreshing or not", func(t *testing.T) {
		h := newHarness(t)
		rt := h.loginConf("").str("refresh_token")
		h.s.Advance(spotifytest.DefaultRefreshTokenLifetime - time.Hour)
		if res := h.refresh(rt); res.status != http.StatusOK {
			t.Fatalf("an hour before the end: %d %v", res.status, res.body)
		}
		h.s.Advance(time.Hour)
		res := h.refresh(rt)
		wantOAuthError(t, res, http.StatusBadRequest, "invalid_grant")
		if d := res.str("error_description"); d != "Refresh token revoked" {
			t.Errorf("error_description %q, want Spotify's %q", d, "Refresh token revoked")
		}
		if res := h.refresh(h.loginConf("").str("refresh_token")); res.status != http.StatusOK {
			t.Errorf("a new consent's token: %d %v", res.status, res.body)
		}
	})
	t.Run("a rotated refresh token keeps its consent's life", func(t *testing.T) {
		h := newHarness(t)
		h.s.SetRotateRefreshTokens(true)
		h.s.SetRefreshTokenLifetime(24 * time.Hour)
		rt := h.loginConf("").str("refresh_token")
		h.s.Advance(23 * time.Hour)
		res := h.refresh(rt)
		rotated := res.str("refresh_token")
		if res.status != http.StatusOK || rotated == "" {
			t.Fatalf("rotation: %d %v", res.status, res.body)
		}
		h.s.Advance(time.Hour)
		wantOAuthError(t, h.refresh(rotated), http.StatusBadRequest, "invalid_grant")
	})
	t.Run("SetClock sets the refresh clock and access tokens keep real time", func(t *testing.T) {
		h := newHarness(t)
		now := time.Date(2026, 7, 20, 12, 0, 0, 0, time.UTC)
		h.s.SetClock(func() time.Time { return now })
		h.s.SetRefreshTokenLifetime(time.Minute)
		login := h.loginConf("")
		now = now.Add(time.Minute)
		wantOAuthError(t, h.refresh(login.str("refresh_token")), http.StatusBadRequest, "invalid_grant")
		if res := h.api("/v1/me", login.str("access_token")); res.status != http.StatusOK {
			t.Errorf("the access token died with the refresh clock: %d %v", res.status, res.body)
		}
	})
	t.Run("a negative lifetime never expires and 0 restores six months", func(t *testing.T) {
		h := newHarness(t)
		rt := h.loginConf("").str("refresh_token")
		h.s.SetRefreshTokenLifetime(-1)
		h.s.Advance(10 * 365 * 24 * time.Hour)
		if res := h.refresh(rt); res.status != http.StatusOK {
			t.Errorf("never-expiring token after ten years: %d %v", res.status, res.body)
		}
		h.s.SetRefreshTokenLifetime(0)
		wantOAuthError(t, h.refresh(rt), http.StatusBadRequest, "invalid_grant")
	})
}

func TestRotateRefreshTokensEvery(t *testing.T) {
	cases := []struct {
		name  string
		every int
		want  string // per refresh: R rotated, - refresh_token omitted
	}{
		{"never rotates by default", 0, "------"},
		{"every refresh rotates", 1, "RRRRRR"},
		{"every second refresh rotates: alternating", 2, "-R-R-R"},
		{"every third refresh rotates", 3, "--R--R"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			if tc.every != 0 {
				h.s.SetRotateRefreshTokensEvery(tc.every)
			}
			rt := h.loginConf("").str("refresh_token")
			var got strings.Builder
			for i := range len(tc.want) {
				res := h.refresh(rt)
				if res.status != http.StatusOK {
					t.Fatalf("refresh %d: %d %v", i+1, res.status, res.body)
				}
				next := res.str("refresh_token")
				if next == "" {
					got.WriteByte('-')
					continue
				}
				got.WriteByte('R')
				wantOAuthError(t, h.refresh(rt), http.StatusBadRequest, "invalid_grant") // the old one died
				rt = next
			}
			if got.String() != tc.want {
				t.Errorf("refreshes %s, want %s", got.String(), tc.want)
			}
		})
	}
}

func TestTokenErrorsSayWhatSpotifySays(t *testing.T) {
	exchange := func(h *harness, code, redirect string) tokenResult {
		return h.token(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}, "code_verifier": {verifier}}, confID, confSecret)
	}
	cases := []struct {
		name       string
		do         func(h *harness) tokenResult
		wantStatus int
		wantError  string
		wantDesc   string
	}{
		{"a reused code", func(h *harness) tokenResult {
			code := h.codeFor(authQuery(confID, "", "s", challengeOf(verifier)), "")
			exchange(h, code, redirectURI)
			return exchange(h, code, redirectURI)
		}, 400, "invalid_grant", "Invalid authorization code"},
		{"an unknown code", func(h *harness) tokenResult { return exchange(h, "AQnope", redirectURI) }, 400, "invalid_grant", "Invalid authorization code"},
		{"another redirect URI at the exchange", func(h *harness) tokenResult {
			code := h.codeFor(authQuery(confID, "", "s", challengeOf(verifier)), "")
			return exchange(h, code, redirectURI+"/other")
		}, 400, "invalid_grant", "Invalid redirect URI"},
		{"a revoked refresh token", func(h *harness) tokenResult {
			rt := h.loginConf("").str("refresh_token")
			h.s.RevokeRefreshToken(rt)
			return h.refresh(rt)
		}, 400, "invalid_grant", "Refresh token revoked"},
		{"an expired refresh token", func(h *harness) tokenResult {
			rt := h.loginConf("").str("refresh_token")
			h.s.Advance(spotifytest.DefaultRefreshTokenLifetime)
			return h.refresh(rt)
		}, 400, "invalid_grant", "Refresh token revoked"},
		{"an unknown refresh token", func(h *harness) tokenResult { return h.refresh("AQnope") }, 400, "invalid_grant", "Invalid refresh token"},
		{"a wrong client secret", func(h *harness) tokenResult {
			return h.token(url.Values{"grant_type": {"client_credentials"}}, confID, "wrong")
		}, 400, "invalid_client", "Invalid client secret"},
		{"an unknown client", func(h *harness) tokenResult {
			return h.token(url.Values{"grant_type": {"client_credentials"}}, "stranger", "x")
		}, 400, "invalid_client", "Invalid client"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			res := tc.do(h)
			wantOAuthError(t, res, tc.wantStatus, tc.wantError)
			if d := res.str("error_description"); d != tc.wantDesc {
				t.Errorf("error_description %q, want %q", d, tc.wantDesc)
			}
			if wa := res.header.Get("WWW-Authenticate"); wa != "" {
				t.Errorf("a 400 with WWW-Authenticate %q", wa)
			}
		})
	}
}

func TestOpenAccessScopesAreKnown(t *testing.T) {
	h := newHarness(t)
	const scopes = "user-soa-link user-soa-unlink soa-manage-entitlements soa-manage-partner soa-create-partner"
	resp, page := h.get(h.authURL(authQuery(confID, scopes, "s", challengeOf(verifier))))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("consent page: %d\n%s", resp.StatusCode, page)
	}
	for _, sc := range strings.Fields(scopes) {
		if !strings.Contains(page, sc) {
			t.Errorf("the consent page does not list %s", sc)
		}
	}
	if got := h.loginConf(scopes).str("scope"); got != scopes {
		t.Errorf("granted %q, want %q", got, scopes)
	}
}
