package spotifyauth

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/oauth2"

	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// What Spotify says reaches the operator's log, cleaned and capped; what
// it says decides the answer.

func TestTokenEndpointErrorsKeepSpotifysDescription(t *testing.T) {
	t.Parallel()
	longToken := strings.Repeat("AQBxY3_z-9", 20) // the shape of a refresh token
	for _, tc := range []struct {
		name   string
		status int
		code   string
		desc   string
		body   string
		kind   failureKind
		want   string
		absent string
	}{
		{name: "a redirect URI mismatch", status: 400, code: "invalid_grant", desc: "Invalid redirect URI",
			kind: kindRefreshRevoked, want: "code exchange: HTTP 400: invalid_grant: Invalid redirect URI"},
		{name: "an expired code", status: 400, code: "invalid_grant", desc: "Authorization code expired",
			kind: kindRefreshRevoked, want: "invalid_grant: Authorization code expired"},
		{name: "bad client credentials", status: 400, code: "invalid_client", desc: "Invalid client secret",
			kind: kindLoginRejected, want: "invalid_client: Invalid client secret"},
		{name: "a code without a description", status: 400, code: "unsupported_grant_type",
			kind: kindLoginRejected, want: "HTTP 400: unsupported_grant_type"},
		{name: "a plain-text body, not an OAuth error", status: 403, body: "Active premium subscription required for the owner of the app",
			kind: kindOwnerPremium, want: "HTTP 403: Active premium subscription required for the owner of the app"},
		{name: "control characters and a token-shaped run", status: 400, code: "invalid_request",
			desc: "bad\r\nrequest\x1b for " + longToken, kind: kindLoginRejected,
			want: "invalid_request: bad request for [redacted]", absent: longToken[:32]},
		{name: "an endless description", status: 400, code: "invalid_request", desc: strings.Repeat("words ", 500),
			kind: kindLoginRejected, want: "…"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			re := &oauth2.RetrieveError{Response: &http.Response{StatusCode: tc.status, Header: http.Header{}},
				Body: []byte(tc.body), ErrorCode: tc.code, ErrorDescription: tc.desc}
			ae := classifyTokenError(re, "code exchange")
			if ae.Kind != tc.kind {
				t.Errorf("kind %v, want %v", ae.Kind, tc.kind)
			}
			logged := ae.Error()
			if !strings.Contains(logged, tc.want) {
				t.Errorf("the error for the log is %q; want it to contain %q", logged, tc.want)
			}
			if tc.absent != "" && strings.Contains(logged, tc.absent) {
				t.Errorf("the error for the log holds a token-shaped value: %q", logged)
			}
			if len(ae.Said) > maxSpotifyText+len("…") || strings.ContainsAny(ae.Said, "\r\n\x1b") {
				t.Errorf("Spotify's words are not capped and cleaned (%d bytes): %q", len(ae.Said), ae.Said)
			}
		})
	}
}

func TestWebAPIErrorsKeepSpotifysText(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, body string
		status     int
		kind       failureKind
		want       string
	}{
		{"a nested JSON message", `{"error":{"status":403,"message":"Insufficient client scope"}}`, 403, kindLoginRejected,
			"GET /v1/me: HTTP 403: Insufficient client scope"},
		{"a 403 in words not known yet names the user list", "Forbidden for this app", 403, kindLoginRejected,
			"may not be on the app's user list: ask the site's owner: GET /v1/me: HTTP 403: Forbidden for this app"},
		{"a JSON reason", `{"error":{"status":429,"message":"API rate limit exceeded","reason":"QUOTA_EXCEEDED"}}`, 429, kindRateLimited,
			"API rate limit exceeded (reason QUOTA_EXCEEDED)"},
		{"a reason alone", `{"reason":"QUOTA_EXCEEDED"}`, 429, kindRateLimited, "HTTP 429: QUOTA_EXCEEDED"},
		{"a plain-text body", "User not registered in the Developer Dashboard", 403, kindNotRegistered,
			"HTTP 403: User not registered in the Developer Dashboard"},
		{"a plain-text body in other words", "user NOT APPROVED for app\n", 403, kindNotRegistered, "HTTP 403: user NOT APPROVED for app"},
		{"the owner's lapsed Premium", `{"error":{"status":403,"message":"Active premium subscription required for the owner of the app"}}`, 403,
			kindOwnerPremium, "Active premium subscription required for the owner of the app"},
		{"a user's own Premium is not the owner's", `{"error":{"status":403,"message":"Player command failed: Premium required","reason":"PREMIUM_REQUIRED"}}`, 403,
			kindLoginRejected, "Premium required (reason PREMIUM_REQUIRED)"},
		{"a 5xx", "upstream connect error", 503, kindSpotifyUnavailable, "HTTP 503: upstream connect error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := apiStatusError(&http.Response{StatusCode: tc.status, Header: http.Header{}}, []byte(tc.body))
			var ae *authError
			if !errors.As(err, &ae) {
				t.Fatalf("%T", err)
			}
			if ae.Kind != tc.kind {
				t.Errorf("kind %v, want %v", ae.Kind, tc.kind)
			}
			if !strings.Contains(ae.Error(), tc.want) {
				t.Errorf("the error for the log is %q; want it to contain %q", ae.Error(), tc.want)
			}
		})
	}
}

func TestARefreshFailureLogsSpotifysDescription(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	core, logs := observer.New(zap.WarnLevel)
	hs.h.logger = zap.New(core)
	hs.login(hs.browser, "/")
	hs.nearlyExpire(hs.browser)
	hs.fake.InjectFault(spotifytest.EndpointToken, spotifytest.Fault{Status: http.StatusBadRequest,
		Body: `{"error":"invalid_client","error_description":"Invalid client secret"}`, Times: 1})
	hs.get(hs.browser, "/app/")
	found := false
	for _, e := range logs.FilterMessageSnippet("refresh failed").All() {
		for _, f := range e.Context {
			if f.Key == "error" && strings.Contains(f.Interface.(error).Error(), "invalid_client: Invalid client secret") {
				found = true
			}
		}
	}
	if !found {
		t.Fatalf("no refresh failure log line with Spotify's description: %v", logs.All())
	}
}

func TestARateLimitBeyondTheCapSaysHowLongSpotifyAsked(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	core, logs := observer.New(zap.WarnLevel)
	hs.h.logger = zap.New(core)
	callback, _ := hs.fake.Approve(hs.startLogin(hs.browser, "/app/"), spotifytest.DefaultUserID)
	// 80000 seconds: the kind of Retry-After Spotify has sent.
	hs.fake.InjectFault(spotifytest.EndpointAPI, spotifytest.Fault{Status: http.StatusTooManyRequests, RetryAfter: "80000", Path: "/v1/me", Times: 1})
	resp, body := hs.get(hs.browser, callback)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "3600" {
		t.Fatalf("status %d Retry-After %q, want 503 with the plugin's cap (3600): %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if !strings.Contains(body, "Spotify asks this site to wait about 22 hours") || strings.Contains(body, "in a moment") {
		t.Errorf("the page does not say how long Spotify asked: %s", body)
	}
	if logs.FilterField(zap.String("spotify_asks_to_wait", "about 22 hours")).Len() != 1 {
		t.Errorf("the log does not say how long Spotify asked: %v", logs.All())
	}
	// A login during the pause still says it.
	d := newBrowser(t)
	callback, _ = hs.fake.Approve(hs.startLogin(d, "/app/"), spotifytest.DefaultUserID)
	if _, body := hs.get(d, callback); !strings.Contains(body, "about 22 hours") {
		t.Errorf("during the pause the page forgets how long Spotify asked: %s", body)
	}
}

func TestRetryAdviceSpeaksPlainly(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		ae   authError
		wait time.Duration
		want string
	}{
		{authError{Kind: kindRateLimited}, 7 * time.Second, "Please try again in a moment."},
		{authError{Kind: kindRateLimited}, 30 * time.Minute, "Please try again in 30 minutes."},
		{authError{Kind: kindRateLimited, Asked: 80000 * time.Second}, time.Hour, "Spotify asks this site to wait about 22 hours before calling it again, so please try again later."},
		{authError{Kind: kindRateLimited, Asked: 5 * 24 * time.Hour}, time.Hour, "wait about 5 days"},
		{authError{Kind: kindOwnerPremium}, ownerPremiumPause, "Please try again later."},
	} {
		if got := retryAdvice(&tc.ae, tc.wait); !strings.Contains(got, tc.want) {
			t.Errorf("%+v, %v: %q, want %q", tc.ae, tc.wait, got, tc.want)
		}
	}
}

func TestTheOwnersLapsedPremiumPausesEveryInstance(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	hs.addInstance()
	core, logs := observer.New(zap.WarnLevel)
	hs.h.logger = zap.New(core)
	hs.login(hs.browser, "/")
	hs.fake.InjectFault(spotifytest.EndpointAPI, spotifytest.Fault{Status: http.StatusForbidden,
		Body: "Active premium subscription required for the owner of the app", Path: "/v1/me"})
	c := newBrowser(t)
	callback, _ := hs.fake.Approve(hs.startLogin(c, "/app/", onInstance(0)...), spotifytest.DefaultUserID)
	if resp, body := hs.get(c, callback, onInstance(0)...); resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "300" {
		t.Fatalf("first instance: %d Retry-After %q: %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if n := logs.FilterLevelExact(zap.ErrorLevel).FilterMessageSnippet("no active Premium").Len(); n != 1 {
		t.Errorf("%d ERROR lines naming the owner's Premium, want 1: %v", n, logs.All())
	}
	// The second instance neither exchanges a code nor asks who the user
	// is, nor refreshes a session that is due, while the pause lasts.
	before := hs.fake.Counts()
	d := newBrowser(t)
	callback, _ = hs.fake.Approve(hs.startLogin(d, "/app/", onInstance(1)...), spotifytest.DefaultUserID)
	if resp, body := hs.get(d, callback, onInstance(1)...); resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "Premium") {
		t.Fatalf("second instance: %d: %s", resp.StatusCode, body)
	}
	hs.nearlyExpire(hs.browser)
	if resp, _ := hs.get(hs.browser, "/app/", onInstance(1)...); resp.StatusCode != http.StatusOK {
		t.Fatalf("a due session whose token still works: %d, want it served", resp.StatusCode)
	}
	after := hs.fake.Counts()
	if after.CodeExchanges != before.CodeExchanges || after.Me != before.Me || after.Refreshes != before.Refreshes {
		t.Errorf("Spotify was called during the pause: %+v then %+v", before, after)
	}
}

func TestARuleOnAFieldSpotifyDidNotSendSaysSo(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		rule  string
		set   func(*Handler)
		field string
	}{
		{"allow_emails", func(h *Handler) { h.AllowEmails = []string{"dev@example.com"} }, "email address"},
		{"allow_products", func(h *Handler) { h.AllowProducts = []string{"premium"} }, "subscription type"},
		{"allow_countries", func(h *Handler) { h.AllowCountries = []string{"SE"} }, "country"},
	} {
		t.Run(tc.rule, func(t *testing.T) {
			hs := newHarness(t, func(h *Handler, _ *spotifytest.Client) {
				h.Scopes = []string{"user-read-email", "user-read-private"}
				tc.set(h)
			})
			core, logs := observer.New(zap.InfoLevel)
			hs.h.logger = zap.New(core)
			// As a development-mode app sees every user: no email,
			// product or country.
			hs.fake.AddUser(spotifytest.User{ID: "devuser", DisplayName: "Dev"})
			c := newBrowser(t)
			if resp := hs.loginAs(c, "/app/", "devuser"); resp.StatusCode != http.StatusFound {
				t.Fatalf("login %d", resp.StatusCode)
			}
			for range 3 {
				resp, body := hs.get(c, "/app/")
				if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "Spotify did not share your "+tc.field) ||
					!strings.Contains(body, "development mode") {
					t.Fatalf("%d, want 403 saying Spotify did not share the %s: %s", resp.StatusCode, tc.field, body)
				}
			}
			resp, body := apiGet(hs, c, "/api/x")
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "did not share this account's "+tc.field) {
				t.Errorf("API call: %d %s", resp.StatusCode, body)
			}
			if n := logs.FilterMessageSnippet("did not send the profile field").FilterField(zap.String("rule", tc.rule)).Len(); n != 1 {
				t.Errorf("%d warnings for 4 refusals of one user, want 1: %v", n, logs.All())
			}
			// Another user is warned about once too.
			hs.fake.AddUser(spotifytest.User{ID: "devuser2"})
			c2 := newBrowser(t)
			hs.loginAs(c2, "/app/", "devuser2")
			hs.get(c2, "/app/")
			if n := logs.FilterMessageSnippet("did not send the profile field").Len(); n != 2 {
				t.Errorf("%d warnings for two users, want 2", n)
			}
		})
	}
}

func TestARuleThatRefusesOnWhatSpotifySentIsNotBlamedOnAMissingField(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, func(h *Handler, _ *spotifytest.Client) {
		h.Scopes = []string{"user-read-email", "user-read-private"}
		h.AllowCountries = []string{"SE"}
		h.AllowEmails = []string{"x@example.com"}
	})
	hs.fake.AddUser(spotifytest.User{ID: "us", DisplayName: "US", Country: "US"})
	c := newBrowser(t)
	hs.loginAs(c, "/app/", "us")
	resp, body := hs.get(c, "/app/")
	if resp.StatusCode != http.StatusForbidden || strings.Contains(body, "did not share") || !strings.Contains(body, "not allowed here") {
		t.Fatalf("%d: %s", resp.StatusCode, body)
	}
}

func TestAppModeTreatsTheOwnersLapsedPremiumAsAnOutage(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, withSecret("app-secret-value"), func(h *Handler, _ *spotifytest.Client) { h.Mode = modeApp })
	core, logs := observer.New(zap.WarnLevel)
	hs.h.logger = zap.New(core)
	hs.fake.InjectFault(spotifytest.EndpointToken, spotifytest.Fault{Status: http.StatusForbidden,
		Body: "Active premium subscription required for the owner of the app"})
	for range 5 {
		resp, body := apiGet(hs, newBrowser(t), "/search?q=x")
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "Premium") {
			t.Fatalf("%d Retry-After %q %s, want the 503 outage answer", resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	}
	if n := hs.fake.Counts().ClientCredentials; n != 1 {
		t.Errorf("%d client-credentials calls for 5 requests, want 1: the pause holds the others", n)
	}
	if n := logs.FilterLevelExact(zap.ErrorLevel).FilterMessageSnippet("no active Premium").Len(); n != 1 {
		t.Errorf("%d ERROR lines naming the owner's Premium, want 1: %v", n, logs.All())
	}
}

// The words that stand for the owner's lapsed Premium are Spotify's
// sentence, not two words anywhere (a user's own refusal may name an
// owner and Premium); Spotify's text loses token-shaped runs in standard
// base64 too, and format characters that would make a log line read
// other than it is.
func TestSpotifysWordsAreReadNarrowlyAndCleanedWholly(t *testing.T) {
	t.Parallel()
	if !ownerPremiumLapsed("Active premium subscription required for the owner of the app") {
		t.Error("Spotify's own sentence is not read as the owner's lapsed Premium")
	}
	if ownerPremiumLapsed("The owner of this playlist restricted it to Premium listeners") {
		t.Error("a text naming an owner and Premium is read as the app owner's lapsed Premium")
	}
	if !ownerPremiumLapsed("The app owner's Premium subscription has expired") {
		t.Error("Spotify's words reworded are not read as the owner's lapsed Premium")
	}
	token := strings.Repeat("AQBx+Y3/z9==", 6) // standard base64, padded
	if got := cleanSpotifyText("bad token "+token, maxSpotifyText); strings.Contains(got, token[:20]) || !strings.Contains(got, "[redacted]") {
		t.Errorf("a standard-base64 token survived: %q", got)
	}
	// A full stop after it does not make it a URL.
	if got := cleanSpotifyText("Authorization: Basic "+token+".", maxSpotifyText); strings.Contains(got, token[:20]) {
		t.Errorf("a standard-base64 token ending a sentence survived: %q", got)
	}
	const doc = "see https://developer.spotify.com/documentation/web-api/concepts/quota-modes."
	if got := cleanSpotifyText(doc, maxSpotifyText); got != doc {
		t.Errorf("a URL was redacted: %q", got)
	}
	if got := cleanSpotifyText("user\u202eevil\u200bname", maxSpotifyText); strings.ContainsAny(got, "\u202e\u200b") {
		t.Errorf("format characters survived: %q", got)
	}
}
