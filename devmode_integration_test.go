package spotifyauth_test

import (
	"fmt"
	"html"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// Development-mode Spotify through a real Caddy: a user not on the app's
// list, and the owner's lapsed Premium. These run the in-process Caddy on
// fixed ports: never in parallel.

// devModeCaddy starts a site gated on /app/* with its logs in a file, and
// Caddy's metrics on /metrics; it returns the log file's path.
func devModeCaddy(t *testing.T, fake *spotifytest.Server, storage, extra string) (*caddytest.Tester, string) {
	t.Helper()
	logDir := t.TempDir()
	tc := caddytest.NewTester(t)
	tc.InitServer(globalOptions(storage, "log {\n\t\toutput file "+logDir+"/caddy.log\n\t\tlevel INFO\n\t}")+site+` {
	spotify_auth /app/* {
		`+fakeOptions(fake)+`
	}
	handle /metrics {
		metrics
	}
	respond /app/* "app for {http.auth.user.id}"
	`+extra+`
}`, "caddyfile")
	return tc, filepath.Join(logDir, "caddy.log")
}

// logLines returns the log file's lines that contain every one of words.
func logLines(t *testing.T, path string, words ...string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, line := range strings.Split(string(b), "\n") {
		all := line != ""
		for _, w := range words {
			all = all && strings.Contains(line, w)
		}
		if all {
			found = append(found, line)
		}
	}
	return found
}

// callbackFor starts a login for path in browser c and returns the
// callback URL Spotify sends the browser back to after userID consents.
func callbackFor(t *testing.T, c *http.Client, fake *spotifytest.Server, path, userID string) string {
	t.Helper()
	resp, body := navigate(t, c, site+path)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	callback, err := fake.Approve(resp.Header.Get("Location"), userID)
	if err != nil {
		t.Fatal(err)
	}
	return callback
}

var hrefRE = regexp.MustCompile(`href="([^"]*)"`)

func TestAUserNotOnTheDevelopmentModeListGetsAPageThatSaysSo(t *testing.T) {
	fake := newFake(t)
	tc, logFile := devModeCaddy(t, fake, caddyStorage(t), "")
	// Every wording Spotify has used, plain text as it sends them, and
	// once as a nested JSON error.
	bodies := []string{
		"User not registered in the Developer Dashboard",
		"User not approved for app",
		"Check settings on developer.spotify.com/dashboard, the user may not be registered.",
		"The user is not registered for this application. Please check your settings on https://developer.spotify.com/dashboard.",
		`{"error":{"status":403,"message":"User not registered in the Developer Dashboard"}}`,
	}
	for i, spotifyBody := range bodies {
		c := freshBrowser(t, tc)
		callback := callbackFor(t, c, fake, "/app/", spotifytest.DefaultUserID)
		// Once with control characters inside, as a careless proxy might
		// pass them on: they must not split the log line.
		fault := spotifyBody
		if i == 0 {
			fault = strings.Replace(spotifyBody, " in ", "\r\nin\x1b ", 1)
		}
		fake.InjectFault(spotifytest.EndpointAPI, spotifytest.Fault{Status: http.StatusForbidden, Body: fault, Path: "/v1/me", Times: 1})
		resp, body := navigate(t, c, callback)
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("%q: callback answered %d, want 403: %s", spotifyBody, resp.StatusCode, body)
		}
		for _, want := range []string{"development mode", "its owner has added", "at most 5", "Use another Spotify account"} {
			if !strings.Contains(body, want) {
				t.Errorf("%q: the page does not say %q: %s", spotifyBody, want, body)
			}
		}
		// Nothing of the user is kept: no session cookie.
		if v := sessionCookie(c.Jar, site); v != "" {
			t.Errorf("%q: a refused user got a session cookie", spotifyBody)
		}
		for _, ck := range resp.Cookies() {
			if strings.HasPrefix(ck.Name, "spotify_auth") && ck.MaxAge >= 0 && ck.Value != "" {
				t.Errorf("%q: the answer sets cookie %s", spotifyBody, ck.Name)
			}
		}
		// The way out restarts the login with Spotify's account picker.
		m := hrefRE.FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("%q: no link on the page: %s", spotifyBody, body)
		}
		link := html.UnescapeString(m[1])
		resp, _ = navigate(t, c, site+link)
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, fake.AuthorizeURL()) ||
			!strings.Contains(loc, "show_dialog=true") {
			t.Errorf("%q: the link %q leads to %d %q, want Spotify's consent with show_dialog=true", spotifyBody, link, resp.StatusCode, loc)
		}
		// The log line: WARN, with Spotify's own words on one line.
		words := "User not registered in the Developer Dashboard"
		if !strings.HasPrefix(spotifyBody, "{") {
			words = strings.TrimSpace(spotifyBody)
		}
		if lines := logLines(t, logFile, `"level":"warn"`, "not on the user list", `"spotify_said":"`+words+`"`); len(lines) == 0 {
			t.Errorf("%q: no WARN line carrying Spotify's words; log:\n%s", spotifyBody, strings.Join(logLines(t, logFile), "\n"))
		}
	}
	// Counted under a label of its own.
	resp, body := navigate(t, freshBrowser(t, tc), site+"/metrics")
	want := fmt.Sprintf(`caddy_spotify_auth_login_failures_total{reason="user_not_registered"} %d`, len(bodies))
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, want) {
		t.Errorf("metrics lack %q:\n%s", want, grepLines(body, "login_failures"))
	}
}

func grepLines(s, word string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestAnotherForbiddenProfileKeepsSpotifysWordsInTheLog(t *testing.T) {
	fake := newFake(t)
	tc, logFile := devModeCaddy(t, fake, caddyStorage(t), "")
	c := freshBrowser(t, tc)
	callback := callbackFor(t, c, fake, "/app/", spotifytest.DefaultUserID)
	fake.InjectFault(spotifytest.EndpointAPI, spotifytest.Fault{Status: http.StatusForbidden, Body: "Insufficient client scope", Path: "/v1/me", Times: 1})
	resp, body := navigate(t, c, callback)
	// Not the development-mode page: Spotify did not say the account is
	// unlisted. The page names that as the likeliest cause, no more, and
	// offers another account (the same one would be refused again).
	if resp.StatusCode != http.StatusForbidden || strings.Contains(body, "This Spotify account is not on") {
		t.Fatalf("callback: %d, want 403 without the development-mode page: %s", resp.StatusCode, body)
	}
	if !strings.Contains(body, "may not be on the app&#39;s user list") || !strings.Contains(body, "Use another Spotify account") ||
		!strings.Contains(body, "switch=1") {
		t.Fatalf("the page does not name the likeliest cause or offer another account: %s", body)
	}
	if lines := logLines(t, logFile, `"level":"warn"`, "login failed", "Insufficient client scope"); len(lines) != 1 {
		t.Fatalf("want one WARN line with Spotify's text; log:\n%s", strings.Join(logLines(t, logFile), "\n"))
	}
}

func TestTheOwnersLapsedPremiumIsAnOutageForEveryone(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"plain text", "Active premium subscription required for the owner of the app"},
		{"nested JSON", `{"error":{"status":403,"message":"Active premium subscription required for the owner of the app"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := newFake(t)
			storage := caddyStorage(t)
			tester, logFile := devModeCaddy(t, fake, storage, "")
			// A user with a session from before.
			before := freshBrowser(t, tester)
			loginThroughCaddy(t, before, fake, "/app/")
			cookie := sessionCookie(before.Jar, site)

			fake.InjectFault(spotifytest.EndpointAPI, spotifytest.Fault{Status: http.StatusForbidden, Body: tc.body, Path: "/v1/me"})
			c := freshBrowser(t, tester)
			resp, body := navigate(t, c, callbackFor(t, c, fake, "/app/", spotifytest.DefaultUserID))
			retryAfter, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
			if resp.StatusCode != http.StatusServiceUnavailable || retryAfter < 60 || retryAfter > 300 {
				t.Fatalf("callback: %d Retry-After %q, want 503 with the pause (5 minutes): %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
			}
			for _, want := range []string{"Premium", "owner", "not a problem with your account", "try again later"} {
				if !strings.Contains(body, want) {
					t.Errorf("the page does not say %q: %s", want, body)
				}
			}
			if strings.Contains(body, "development mode") || strings.Contains(body, "in a moment") {
				t.Errorf("the page gives the wrong advice: %s", body)
			}
			if lines := logLines(t, logFile, `"level":"error"`, "no active Premium subscription", "Active premium subscription required for the owner of the app"); len(lines) != 1 {
				t.Errorf("want one ERROR line naming the cause with Spotify's words; log:\n%s", strings.Join(logLines(t, logFile), "\n"))
			}
			// The pause is shared: it is in storage for the other instances.
			if entries, err := os.ReadDir(filepath.Join(storage, "spotify_auth", "backoff")); err != nil || len(entries) == 0 {
				t.Errorf("no shared back-off in storage: %v", err)
			}

			// Meanwhile, another login is answered without calling Spotify.
			calls := fake.Counts()
			other := freshBrowser(t, tester)
			resp, body = navigate(t, other, callbackFor(t, other, fake, "/app/", spotifytest.DefaultUserID))
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "Premium") {
				t.Fatalf("a login during the pause: %d Retry-After %q: %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
			}
			if now := fake.Counts(); now.CodeExchanges != calls.CodeExchanges || now.Me != calls.Me {
				t.Errorf("a login during the pause called Spotify: %+v then %+v", calls, now)
			}
			// The session from before goes on, cookie and all.
			resp, body = navigate(t, before, site+"/app/")
			if resp.StatusCode != http.StatusOK || body != "app for "+spotifytest.DefaultUserID {
				t.Fatalf("the existing session during the outage: %d %q", resp.StatusCode, body)
			}
			if sessionCookie(before.Jar, site) != cookie {
				t.Error("the existing session's cookie changed")
			}
			resp, body = navigate(t, freshBrowser(t, tester), site+"/metrics")
			if want := `caddy_spotify_auth_login_failures_total{reason="owner_premium_required"} 2`; !strings.Contains(body, want) {
				t.Errorf("metrics lack %q:\n%s", want, grepLines(body, "login_failures"))
			}
			_ = resp
		})
	}
}

// TestHandleErrorsGetsTheDevelopmentModeAnswers: a site's handle_errors
// renders the development-mode refusal (403) and the owner's lapsed
// Premium (503, with Retry-After kept).
func TestHandleErrorsGetsTheDevelopmentModeAnswers(t *testing.T) {
	fake := newFake(t)
	tester, _ := devModeCaddy(t, fake, caddyStorage(t), `handle_errors {
		respond "custom {err.status_code}: {err.message}" {err.status_code}
	}`)
	for _, tc := range []struct {
		body   string
		status int
		words  string
	}{
		{"User not registered in the Developer Dashboard", http.StatusForbidden, "development mode"},
		{"Active premium subscription required for the owner of the app", http.StatusServiceUnavailable, "Premium"},
	} {
		c := freshBrowser(t, tester)
		callback := callbackFor(t, c, fake, "/app/", spotifytest.DefaultUserID)
		fake.InjectFault(spotifytest.EndpointAPI, spotifytest.Fault{Status: http.StatusForbidden, Body: tc.body, Path: "/v1/me", Times: 1})
		req, _ := http.NewRequest(http.MethodGet, callback, nil)
		req.Header.Set("Accept", "text/html")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body := string(b)
		if resp.StatusCode != tc.status || !strings.HasPrefix(body, fmt.Sprintf("custom %d: ", tc.status)) || !strings.Contains(body, tc.words) {
			t.Fatalf("%q: %d %q, want %d rendered by handle_errors", tc.body, resp.StatusCode, body, tc.status)
		}
		if tc.status == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
			t.Errorf("%q: Retry-After lost", tc.body)
		}
	}
}

// TestWebAPIPassesForbiddenOnButStopsForTheOwnersPremium: through web_api,
// Spotify's 403s reach the page as they came (a user not on the list
// included), but the owner's lapsed Premium is the outage answer, and
// no call reaches Spotify while its pause lasts.
func TestWebAPIPassesForbiddenOnButStopsForTheOwnersPremium(t *testing.T) {
	ws := startWebAPISite(t)
	c := ws.Client(t, spotifytest.DefaultUserID)
	ws.currentToken(t, c)
	call := apiCall{method: "GET", path: "/spotify-api/v1/me/top/tracks", header: sameOriginFetch}

	ws.fake.InjectFault(spotifytest.EndpointAPI, spotifytest.Fault{Status: http.StatusForbidden, Times: 1, Path: "/v1/me/top/tracks",
		Body: "User not registered in the Developer Dashboard"})
	resp, body := ws.call(t, c, call)
	if resp.StatusCode != http.StatusForbidden || body != "User not registered in the Developer Dashboard" {
		t.Fatalf("a 403 of Spotify's: %d %q, want it as it came", resp.StatusCode, body)
	}

	ws.fake.InjectFault(spotifytest.EndpointAPI, spotifytest.Fault{Status: http.StatusForbidden, Path: "/v1/me/top/tracks",
		Body: `{"error":{"status":403,"message":"Active premium subscription required for the owner of the app"}}`})
	resp, body = ws.call(t, c, call)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, `"error":"spotify_unavailable"`) ||
		!strings.Contains(body, "Premium") {
		t.Fatalf("the owner's lapsed Premium: %d Retry-After %q %s, want the 503 outage answer", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	before := ws.fake.APIRequestCount("/v1/me/top/tracks")
	for range 3 {
		if resp, _ := ws.call(t, c, call); resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("during the pause: %d, want 503", resp.StatusCode)
		}
	}
	if n := ws.fake.APIRequestCount("/v1/me/top/tracks") - before; n != 0 {
		t.Errorf("%d calls reached Spotify during the pause, want 0", n)
	}
}
