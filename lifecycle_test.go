package spotifyauth

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"

	"github.com/caddyspotify/caddy-spotify-auth/internal/refresher"
)

func TestRefreshFailureMatrix(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		fault      spotifytest.Fault
		reason     string
		retryAfter string // expected on the 503; "" = any
	}{
		{"token endpoint answers 500", spotifytest.Fault{Status: 500}, "spotify_unavailable", ""},
		{"token endpoint hangs past the timeout", spotifytest.Fault{Delay: 3 * time.Second}, "spotify_unavailable", ""},
		{"token endpoint drops the connection", spotifytest.Fault{Drop: true}, "spotify_unavailable", ""},
		{"token endpoint answers 429 with Retry-After: 30", spotifytest.Fault{Status: 429, RetryAfter: "30"}, "rate_limited", "30"},
		{"token endpoint returns malformed JSON", spotifytest.Fault{Status: 200, Body: `{"access_token": `}, "spotify_unavailable", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Run("with a token that still works the request is served with it", func(t *testing.T) {
				hs := newHarness(t, func(h *Handler, _ *spotifytest.Client) { h.Timeout = caddy.Duration(300 * time.Millisecond) })
				hs.login(hs.browser, "/")
				s := hs.session(hs.browser)
				s.TokenExpires = time.Now().Add(2 * time.Minute).Unix() // inside the leeway
				hs.setSession(hs.browser, s)
				hs.fake.InjectFault(spotifytest.EndpointToken, tc.fault)

				resp, _ := hs.get(hs.browser, "/app/")
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d, want 200 with the current token", resp.StatusCode)
				}
				if got := hs.lastUpstream().Header.Get("Authorization"); got != "Bearer "+s.AccessToken {
					t.Error("upstream did not get the current token")
				}
				if setCookieNamed(resp, "spotify_auth") {
					t.Error("session cookie changed by a failed refresh")
				}
				if v := hs.metric("caddy_spotify_auth_refresh_failures_total", "reason", tc.reason); v != 1 {
					t.Errorf("refresh_failures_total{reason=%q} = %v, want 1", tc.reason, v)
				}
				// Later requests in the pause don't wait on Spotify again.
				before := hs.fake.Counts().Refreshes
				if resp, _ := hs.get(hs.browser, "/app/"); resp.StatusCode != http.StatusOK {
					t.Fatalf("second request: %d", resp.StatusCode)
				}
				if after := hs.fake.Counts().Refreshes; after != before {
					t.Errorf("refresh retried at once (%d calls, then %d)", before, after)
				}
			})
			t.Run("with an expired token the answer is 503 and the session survives", func(t *testing.T) {
				hs := newHarness(t, func(h *Handler, _ *spotifytest.Client) { h.Timeout = caddy.Duration(300 * time.Millisecond) })
				hs.login(hs.browser, "/")
				s := hs.session(hs.browser)
				s.TokenExpires = time.Now().Add(-time.Minute).Unix()
				cookie := hs.setSession(hs.browser, s)
				hs.fake.InjectFault(spotifytest.EndpointToken, tc.fault)

				resp, body := hs.get(hs.browser, "/app/")
				if resp.StatusCode != http.StatusServiceUnavailable {
					t.Fatalf("navigation: status %d, want 503: %s", resp.StatusCode, body)
				}
				if ra := resp.Header.Get("Retry-After"); ra == "" || tc.retryAfter != "" && ra != tc.retryAfter {
					t.Errorf("Retry-After = %q, want %q", ra, tc.retryAfter)
				}
				if !strings.Contains(body, "Try again") {
					t.Errorf("503 page without a retry link: %s", body)
				}
				if setCookieNamed(resp, "spotify_auth") {
					t.Error("session cookie touched")
				}
				resp, body = apiGet(hs, hs.browser, "/api/x")
				if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, `"error":"spotify_`) {
					t.Fatalf("API call: %d %s", resp.StatusCode, body)
				}
				if n := hs.upstreamCount(); n != 0 {
					t.Fatalf("%d requests with an expired token reached the upstream", n)
				}
				if v := hs.metric("caddy_spotify_auth_responses_total", "code", "503"); v != 2 {
					t.Errorf("responses_total{code=503} = %v, want 2", v)
				}

				// Spotify recovers (and its Retry-After passes): the same
				// cookie refreshes and works.
				hs.fake.ClearFaults()
				retryAfterPassed(t, hs.h)
				hs.h.shared.refresh.Prune(time.Now().Add(refresher.ExpiredRetryInterval)) // and the retry interval passes
				resp, _ = hs.get(hs.browser, "/app/")
				if resp.StatusCode != http.StatusOK || !setCookieNamed(resp, "spotify_auth") {
					t.Fatalf("after recovery: %d", resp.StatusCode)
				}
				if s2 := hs.session(hs.browser); s2.AccessToken == s.AccessToken || hs.setSession(hs.browser, s2) == cookie {
					t.Error("no new token after recovery")
				}
				if v := hs.metric("caddy_spotify_auth_refreshes_total"); v != 1 {
					t.Errorf("refreshes_total = %v, want 1", v)
				}
			})
		})
	}
}

func TestARateLimitStopsCallsToSpotifyForItsDuration(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	hs.login(hs.browser, "/")
	other := newBrowser(t)
	hs.login(other, "/")
	expire := func(c *http.Client) {
		s := hs.session(c)
		s.TokenExpires = time.Now().Add(-time.Minute).Unix()
		hs.setSession(c, s)
	}
	expire(hs.browser)
	hs.fake.InjectFault(spotifytest.EndpointToken, spotifytest.Fault{Status: 429, RetryAfter: "30", Times: 1})
	if resp, _ := hs.get(hs.browser, "/app/"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", resp.StatusCode)
	}
	calls := hs.fake.Counts().Refreshes

	// Another session, while Spotify asked us to wait: no call.
	expire(other)
	resp, _ := hs.get(other, "/app/")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", resp.StatusCode)
	}
	ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	if ra < 1 || ra > 30 {
		t.Errorf("Retry-After %q, want the rest of the 30 s", resp.Header.Get("Retry-After"))
	}
	if got := hs.fake.Counts().Refreshes; got != calls {
		t.Fatalf("%d refresh calls during the back-off, want none", got-calls)
	}
}

func TestARefreshedTokenReachesTheUpstreamOnTheSameRequest(t *testing.T) {
	t.Parallel()
	for _, rotate := range []bool{true, false} {
		t.Run("rotate="+strconv.FormatBool(rotate), func(t *testing.T) {
			hs := newHarness(t)
			hs.fake.SetRotateRefreshTokens(rotate)
			hs.login(hs.browser, "/")
			old := hs.session(hs.browser)
			old.TokenExpires = time.Now().Add(time.Minute).Unix()
			oldCookie := hs.setSession(hs.browser, old)

			resp, _ := hs.get(hs.browser, "/app/")
			if resp.StatusCode != http.StatusOK || !setCookieNamed(resp, "spotify_auth") {
				t.Fatalf("status %d, new cookie %v", resp.StatusCode, setCookieNamed(resp, "spotify_auth"))
			}
			fresh := hs.session(hs.browser)
			up := hs.lastUpstream()
			if up.Header.Get("Authorization") != "Bearer "+fresh.AccessToken || fresh.AccessToken == old.AccessToken {
				t.Fatal("upstream did not get the refreshed token on the refreshing request")
			}
			exp, err := time.Parse(time.RFC3339, up.Header.Get("X-Spotify-Token-Expires"))
			if err != nil || time.Until(exp) < DefaultRefreshLeeway {
				t.Fatalf("X-Spotify-Token-Expires = %q (%v): less than the leeway left", up.Header.Get("X-Spotify-Token-Expires"), err)
			}
			if rotate == (fresh.RefreshToken == old.RefreshToken) {
				t.Fatalf("rotate=%v but refresh token changed=%v", rotate, fresh.RefreshToken != old.RefreshToken)
			}

			// A request still carrying the old cookie (sent before the new
			// one arrived) reuses the new token instead of refreshing again.
			resp, _ = hs.get(newBrowser(t), "/app/", "Cookie", "spotify_auth="+oldCookie)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("old cookie: %d", resp.StatusCode)
			}
			if hs.lastUpstream().Header.Get("Authorization") != "Bearer "+fresh.AccessToken {
				t.Error("old cookie did not get the refreshed token")
			}
			if n := hs.fake.Counts().Refreshes; n != 1 {
				t.Fatalf("%d refreshes, want 1", n)
			}
		})
	}
}

func TestARevokedRefreshTokenSendsBrowsersToLoginAndAPICallsA401(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	hs.login(hs.browser, "/")
	s := hs.session(hs.browser)
	s.TokenExpires = time.Now().Add(-time.Minute).Unix()
	cookie := hs.setSession(hs.browser, s)
	hs.fake.RevokeRefreshTokens(spotifytest.DefaultUserID)

	resp, body := apiGet(hs, newBrowser(t), "/api/x?cookie") // no cookie: baseline 401
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("baseline: %d %s", resp.StatusCode, body)
	}
	req, _ := http.NewRequest(http.MethodGet, hs.url("/api/x"), nil)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Cookie", "spotify_auth="+cookie)
	resp, body = hs.do(&http.Client{}, req)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "login_url") {
		t.Fatalf("API call: %d %s", resp.StatusCode, body)
	}
	if !setCookieNamed(resp, "spotify_auth") {
		t.Error("session cookie not cleared on the 401")
	}
	resp, _ = hs.get(hs.browser, "/app/")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), hs.fake.AuthorizeURL()) {
		t.Fatalf("navigation: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// Two requests carried the revoked session (the API call's and the
	// browser's own copy); each was refused by Spotify.
	if v := hs.metric("caddy_spotify_auth_refresh_failures_total", "reason", "invalid_grant"); v != 2 {
		t.Errorf("refresh_failures_total{reason=invalid_grant} = %v, want 2", v)
	}
}

func TestMetricsCountLoginsAndAnswers(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	hs.login(hs.browser, "/")
	apiGet(hs, newBrowser(t), "/api/")
	hs.get(newBrowser(t), DefaultCallbackPath+"?code=x&state=y")
	for _, m := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"caddy_spotify_auth_logins_total", nil, 1},
		{"caddy_spotify_auth_responses_total", []string{"code", "302"}, 1},
		{"caddy_spotify_auth_responses_total", []string{"code", "401"}, 1},
		{"caddy_spotify_auth_responses_total", []string{"code", "400"}, 1},
		{"caddy_spotify_auth_login_failures_total", []string{"reason", "state_invalid"}, 1},
	} {
		if got := hs.metric(m.name, m.labels...); got != m.want {
			t.Errorf("%s%v = %v, want %v", m.name, m.labels, got, m.want)
		}
	}
}

func TestSessionsSurviveThreeConsecutiveExpiries(t *testing.T) {
	t.Parallel()
	for _, rotate := range []bool{true, false} {
		t.Run("rotate="+strconv.FormatBool(rotate), func(t *testing.T) {
			hs := newHarness(t)
			hs.fake.SetRotateRefreshTokens(rotate)
			hs.login(hs.browser, "/")
			seen := map[string]bool{}
			for i := range 3 {
				// An hour passes: the token expires and the in-memory
				// memory of the last refresh is long gone.
				s := hs.session(hs.browser)
				s.TokenExpires = time.Now().Add(-time.Second).Unix()
				hs.setSession(hs.browser, s)
				forgetRefreshes(t, hs.h)
				resp, _ := hs.get(hs.browser, "/app/")
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("expiry %d: status %d", i+1, resp.StatusCode)
				}
				tok := strings.TrimPrefix(hs.lastUpstream().Header.Get("Authorization"), "Bearer ")
				if _, _, valid := hs.fake.AccessTokenInfo(tok); !valid || seen[tok] {
					t.Fatalf("expiry %d: upstream token valid=%v, reused=%v", i+1, valid, seen[tok])
				}
				seen[tok] = true
			}
			if n := hs.fake.Counts().Refreshes; n != 3 {
				t.Fatalf("%d refreshes, want 3", n)
			}
		})
	}
}

func TestAnUpstreamRejectingTheTokenTriggersOneRefresh(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	hs.login(hs.browser, "/")
	first := hs.session(hs.browser).AccessToken
	reject := func(w http.ResponseWriter) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="spotify", error="invalid_token"`)
		w.WriteHeader(http.StatusUnauthorized)
	}
	hs.mu.Lock()
	hs.upstreamReply = reject
	hs.mu.Unlock()
	if resp, _ := hs.get(hs.browser, "/app/"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("upstream's 401 not passed on: %d", resp.StatusCode)
	}
	// The next request refreshes although the token is far from expiry.
	if resp, _ := hs.get(hs.browser, "/app/"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("second request: %d", resp.StatusCode)
	}
	if n := hs.fake.Counts().Refreshes; n != 1 {
		t.Fatalf("%d refreshes after the upstream rejected the token, want 1", n)
	}
	if got := hs.lastUpstream().Header.Get("Authorization"); got == "Bearer "+first {
		t.Fatal("upstream got the rejected token again")
	}
	// An upstream that rejects every token does not cause a refresh storm.
	for range 5 {
		hs.get(hs.browser, "/app/")
	}
	if n := hs.fake.Counts().Refreshes; n != 1 {
		t.Fatalf("%d refreshes while the upstream keeps rejecting, want still 1", n)
	}
	// A plain 401 of the upstream's own (no invalid_token) means nothing.
	hs2 := newHarness(t)
	hs2.login(hs2.browser, "/")
	hs2.upstreamReply = func(w http.ResponseWriter) { w.WriteHeader(http.StatusUnauthorized) }
	hs2.get(hs2.browser, "/app/")
	hs2.get(hs2.browser, "/app/")
	if n := hs2.fake.Counts().Refreshes; n != 0 {
		t.Fatalf("%d refreshes after a plain 401, want 0", n)
	}
}
