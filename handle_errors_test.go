package spotifyauth_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// TestHandleErrorsRendersTheAnswers: with handle_errors, the plugin's
// non-redirect answers reach it as errors, with their headers; without
// it, the built-in answers are unchanged.
func TestHandleErrorsRendersTheAnswers(t *testing.T) {
	fake := newFake(t)
	fake.AddUser(spotifytest.User{ID: "mallory", DisplayName: "Mallory"})
	tc := caddytest.NewTester(t)
	tc.InitServer(globalOptions(caddyStorage(t))+site+` {
	spotify_auth /app/* {
		`+fakeOptions(fake)+`
		allow_users `+spotifytest.DefaultUserID+`
	}
	respond /app/* "app"
	handle_errors {
		respond "custom {err.status_code}: {err.message}" {err.status_code}
	}
}`, "caddyfile")
	c := caddyBrowser(tc)
	do := func(path, accept string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, site+path, nil)
		req.Header.Set("Accept", accept)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}

	// A script without a session: 401 rendered by handle_errors, with
	// WWW-Authenticate kept.
	resp, body := do("/app/x", "application/json")
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(body, "custom 401: ") {
		t.Fatalf("401: %d %q", resp.StatusCode, body)
	}
	if !strings.Contains(resp.Header.Get("WWW-Authenticate"), "login_url=") {
		t.Fatalf("WWW-Authenticate lost: %q", resp.Header.Get("WWW-Authenticate"))
	}
	// The operator's page is not held to the plugin's own pages' policy.
	if csp := resp.Header.Get("Content-Security-Policy"); csp != "" {
		t.Errorf("the operator's 401 page carries the plugin's CSP: %q", csp)
	}
	// A browser navigation keeps its login redirect.
	if resp, _ := do("/app/x", "text/html"); resp.StatusCode != http.StatusFound {
		t.Fatalf("navigation: %d, want the login redirect", resp.StatusCode)
	}

	// A Spotify outage at login: 503 with Retry-After.
	resp, _ = do("/app/x", "text/html")
	callback, err := fake.Approve(resp.Header.Get("Location"), spotifytest.DefaultUserID)
	if err != nil {
		t.Fatal(err)
	}
	fake.InjectFault(spotifytest.EndpointToken, spotifytest.Fault{Status: http.StatusServiceUnavailable, Times: 1})
	resp, body = do(strings.TrimPrefix(callback, site), "text/html")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.HasPrefix(body, "custom 503: ") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("outage: %d %q Retry-After %q", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	if resp.Header.Get("Referrer-Policy") != "no-referrer" || resp.Header.Get("Content-Security-Policy") != "" {
		t.Errorf("the callback's error page: Referrer-Policy %q (its URL holds a code), CSP %q",
			resp.Header.Get("Referrer-Policy"), resp.Header.Get("Content-Security-Policy"))
	}
	// A replayed callback: 400.
	resp, body = do(strings.TrimPrefix(callback, site), "text/html")
	if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(body, "custom 400: ") {
		t.Fatalf("bad callback: %d %q", resp.StatusCode, body)
	}

	// A refused user: 403.
	resp, _ = do("/app/x", "text/html")
	callback, err = fake.Approve(resp.Header.Get("Location"), "mallory")
	if err != nil {
		t.Fatal(err)
	}
	if resp, _ := do(strings.TrimPrefix(callback, site), "text/html"); resp.StatusCode != http.StatusFound {
		t.Fatalf("mallory's callback: %d", resp.StatusCode)
	}
	for _, accept := range []string{"text/html", "application/json"} {
		resp, body = do("/app/x", accept)
		if resp.StatusCode != http.StatusForbidden || body != "custom 403: this Spotify account is not allowed here" {
			t.Fatalf("refused user (%s): %d %q", accept, resp.StatusCode, body)
		}
	}
}

func TestWithoutHandleErrorsTheBuiltInAnswersStay(t *testing.T) {
	fake := newFake(t)
	tc := caddytest.NewTester(t)
	tc.InitServer(globalOptions(caddyStorage(t))+site+` {
	spotify_auth /app/* {
		`+fakeOptions(fake)+`
	}
	respond /app/* "app"
}`, "caddyfile")
	req, _ := http.NewRequest(http.MethodGet, site+"/app/x", nil)
	req.Header.Set("Accept", "application/json")
	resp, err := caddyBrowser(tc).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Content-Type") != "application/json" ||
		!strings.HasPrefix(string(body), `{"error":"unauthenticated"`) || !strings.Contains(string(body), `"login_url":"/oauth2/spotify/login?rd=`) {
		t.Fatalf("%d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}

// TestHandleErrorsKeepsTheWebAPISandbox: an answer of the web_api route
// that the site's handle_errors renders still carries nosniff and the
// sandboxing CSP (the operator's page is free to load its styles under
// it, not to run script from the site's origin).
func TestHandleErrorsKeepsTheWebAPISandbox(t *testing.T) {
	fake := newFake(t)
	tc := caddytest.NewTester(t)
	tc.InitServer(globalOptions(caddyStorage(t))+site+` {
	spotify_auth {
		`+fakeOptions(fake)+`
		web_api /spotify-api
	}
	respond "app"
	handle_errors {
		respond "custom {err.status_code}" {err.status_code}
	}
}`, "caddyfile")
	req, _ := http.NewRequest(http.MethodGet, site+"/spotify-api/v1/me", nil)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := caddyBrowser(tc).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || string(body) != "custom 401" {
		t.Fatalf("no session: %d %q, want handle_errors' 401", resp.StatusCode, body)
	}
	if csp, sniff := resp.Header.Values("Content-Security-Policy"), resp.Header.Get("X-Content-Type-Options"); len(csp) != 1 || csp[0] != "sandbox" || sniff != "nosniff" {
		t.Errorf("handle_errors' answer on the web_api route: CSP %q, X-Content-Type-Options %q; want sandbox and nosniff", csp, sniff)
	}
}
