package spotifyauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

func TestEveryRedirectPayloadStaysOnTheSiteForLoginAndLogout(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, func(h *Handler, _ *spotifytest.Client) {
		h.LoginRateLimit = &LoginRateLimit{PerClient: 10_000, Overall: 10_000} // hundreds of logins from one address
	})
	payloads := loadRedirectPayloads(t)
	for _, rd := range payloads {
		// Login: rd travels in the state cookie and comes back as the
		// callback's Location.
		c := newBrowser(t)
		authURL := hs.startLogin(c, "/oauth2/spotify/login?rd="+url.QueryEscape(rd))
		callback, err := hs.fake.Approve(authURL, spotifytest.DefaultUserID)
		if err != nil {
			t.Fatal(err)
		}
		resp, _ := hs.get(c, callback)
		assertSameOrigin(t, rd, resp.Header.Get("Location"))

		// Logout: rd comes in the form and goes out as the 303's Location.
		req, _ := http.NewRequest(http.MethodPost, hs.url("/oauth2/spotify/logout"), strings.NewReader("rd="+url.QueryEscape(rd)))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, _ = hs.do(c, req)
		switch resp.StatusCode {
		case http.StatusSeeOther:
			assertSameOrigin(t, rd, resp.Header.Get("Location"))
		case http.StatusOK: // no usable rd (empty, or a form too big to read): no redirect at all
		default:
			t.Fatalf("logout with rd %q: status %d", rd, resp.StatusCode)
		}
	}
	t.Logf("%d payloads checked on login and logout", len(payloads))
}

func TestSwappedChunksMeanNoSession(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	hs.fake.SetTokenLength(6000)
	hs.login(hs.browser, "/")
	u, _ := url.Parse(hs.srv.URL)
	chunks := map[string]string{}
	for _, c := range hs.browser.Jar.Cookies(u) {
		chunks[c.Name] = c.Value
	}
	if chunks["spotify_auth_2"] == "" {
		t.Fatalf("expected three chunks, got %d cookies", len(chunks))
	}
	first, rest, _ := strings.Cut(chunks["spotify_auth"], ".")
	for name, cookie := range map[string]string{
		"second and third swapped": "spotify_auth=" + chunks["spotify_auth"] + "; spotify_auth_1=" + chunks["spotify_auth_2"] + "; spotify_auth_2=" + chunks["spotify_auth_1"],
		"first chunk body swapped": "spotify_auth=" + first + "." + chunks["spotify_auth_1"] + "; spotify_auth_1=" + rest + "; spotify_auth_2=" + chunks["spotify_auth_2"],
		"a chunk missing":          "spotify_auth=" + chunks["spotify_auth"] + "; spotify_auth_2=" + chunks["spotify_auth_2"],
		"count lowered":            "spotify_auth=2." + rest + "; spotify_auth_1=" + chunks["spotify_auth_1"],
	} {
		t.Run(name, func(t *testing.T) {
			if resp, _ := hs.get(newBrowser(t), "/app/", "Cookie", cookie); resp.StatusCode != http.StatusFound {
				t.Fatalf("status %d, want 302 to login", resp.StatusCode)
			}
		})
	}
	if resp, _ := hs.get(hs.browser, "/app/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("the real chunks stopped working: %d", resp.StatusCode)
	}
}

func TestOversizedAndMalformedInputGetsAClearAnswer(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	// A valid login state, to test a bad code behind a good state.
	authURL := hs.startLogin(hs.browser, "/")
	goodCallback, _ := hs.fake.Approve(authURL, spotifytest.DefaultUserID)
	state := mustQuery(t, goodCallback).Get("state")

	big := strings.Repeat("A", 64<<10)
	manyCookies := make([]string, 4000)
	for i := range manyCookies {
		manyCookies[i] = "c" + strconv.Itoa(i) + "=" + strings.Repeat("x", 20)
	}
	for _, tc := range []struct {
		name    string
		path    string
		cookie  string
		browser *http.Client
		want    int
	}{
		{"a huge state", DefaultCallbackPath + "?code=x&state=" + big, "", nil, 400},
		{"a huge code behind a valid state", DefaultCallbackPath + "?code=" + big + "&state=" + url.QueryEscape(state), "", hs.browser, 400},
		{"a huge error_description", DefaultCallbackPath + "?error=access_denied&error_description=" + big, "", nil, 403},
		{"a repeated code", DefaultCallbackPath + "?code=a&code=b&state=x", "", nil, 400},
		{"a repeated rd on login", "/oauth2/spotify/login?rd=/a&rd=/b", "", nil, 400},
		{"non-UTF-8 state", DefaultCallbackPath + "?code=x&state=%ff%fe%00", "", nil, 400},
		{"a broken query", DefaultCallbackPath + "?code=x&state=%zz", "", nil, 400},
		{"a huge session cookie", "/app/", "spotify_auth=" + big, nil, 302},
		{"a huge chunked session cookie", "/app/", "spotify_auth=5." + big + "; spotify_auth_1=" + big, nil, 302},
		{"thousands of cookies", "/app/", strings.Join(manyCookies, "; "), nil, 302},
		{"a huge login return URL", "/oauth2/spotify/login?rd=/" + big, "", nil, 302},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.browser
			if c == nil {
				c = newBrowser(t)
			}
			var headers []string
			if tc.cookie != "" {
				headers = []string{"Cookie", tc.cookie}
			}
			resp, body := hs.get(c, tc.path, headers...)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %.300s", resp.StatusCode, tc.want, body)
			}
			if len(body) > 8<<10 {
				t.Errorf("a %d-byte answer: input reflected?", len(body))
			}
		})
	}
	if n := hs.fake.Counts().CodeExchanges; n != 0 {
		t.Fatalf("%d code exchanges for malformed callbacks", n)
	}
}

func TestPagesEscapeWhatTheyShowAndForbidFraming(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	xss := `<script>alert(1)</script>"'><img src=x onerror=alert(1)>`
	for _, path := range []string{
		DefaultCallbackPath + "?error=" + url.QueryEscape(xss) + "&error_description=" + url.QueryEscape(xss),
		DefaultCallbackPath + "?error=access_denied&error_description=" + url.QueryEscape(xss) + "&state=" + url.QueryEscape(xss),
		DefaultCallbackPath + "?code=" + url.QueryEscape(xss) + "&state=" + url.QueryEscape(xss),
		"/oauth2/spotify/logout?rd=" + url.QueryEscape("/"+xss),
		"/oauth2/spotify/nope?" + url.QueryEscape(xss),
	} {
		resp, body := hs.get(newBrowser(t), path)
		for _, bad := range []string{"<script>", "<img", `"'>`} {
			if strings.Contains(body, bad) {
				t.Errorf("GET %s: page contains %q unescaped", path, bad)
			}
		}
		want := map[string]string{
			"X-Frame-Options":        "DENY",
			"Cache-Control":          "no-store",
			"X-Content-Type-Options": "nosniff",
		}
		for h, v := range want {
			if resp.Header.Get(h) != v {
				t.Errorf("GET %s: %s = %q, want %q", path, h, resp.Header.Get(h), v)
			}
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("GET %s: Content-Security-Policy = %q", path, csp)
		}
	}
}

func TestAForgedHostCannotStealTheCode(t *testing.T) {
	t.Parallel()
	t.Run("without redirect_uri the registered URI check stops it", func(t *testing.T) {
		hs := newHarness(t)
		req, _ := http.NewRequest(http.MethodGet, hs.url("/app/"), nil)
		req.Host = "evil.example"
		req.Header.Set("Accept", "text/html")
		resp, _ := hs.do(hs.browser, req)
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("status %d", resp.StatusCode)
		}
		authURL := resp.Header.Get("Location")
		if got := mustQuery(t, authURL).Get("redirect_uri"); !strings.HasPrefix(got, "http://evil.example/") {
			t.Fatalf("redirect_uri %q", got)
		}
		if cb, err := hs.fake.Approve(authURL, spotifytest.DefaultUserID); err == nil {
			t.Fatalf("Spotify issued a code to a forged host: %s", cb)
		}
		if c := hs.fake.Counts(); c.Approvals != 0 {
			t.Fatalf("a code was issued: %+v", c)
		}
	})
	t.Run("with redirect_uri the Host header does not matter", func(t *testing.T) {
		hs := newHarness(t, func(h *Handler, c *spotifytest.Client) {
			h.RedirectURI = c.RedirectURIs[0]
		})
		req, _ := http.NewRequest(http.MethodGet, hs.url("/app/"), nil)
		req.Host = "evil.example"
		req.Header.Set("Accept", "text/html")
		resp, _ := hs.do(hs.browser, req)
		if got := mustQuery(t, resp.Header.Get("Location")).Get("redirect_uri"); got != hs.srv.URL+DefaultCallbackPath {
			t.Fatalf("redirect_uri %q, want the configured one", got)
		}
	})
}

// FuzzCallback throws arbitrary queries and cookies at the callback: it
// must answer 4xx, never panic or 5xx, and never exchange a code.
func FuzzCallback(f *testing.F) {
	fake := spotifytest.NewServer()
	defer fake.Close()
	h := &Handler{ClientID: testClientID, CookieSecrets: []string{secretA},
		AuthorizeURL: fake.AuthorizeURL(), TokenURL: fake.TokenURL(), APIURL: fake.APIURL(), StorageRaw: testStorage(f)}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := h.Provision(ctx); err != nil {
		f.Fatal(err)
	}
	h.logger = zapNop
	f.Add("code=abc&state=def", "spotify_auth_state_x=y")
	f.Add("error=access_denied&state=x", "")
	f.Add("state=%ff&code=%00", "spotify_auth=1.2")
	f.Add("code=a&code=b", "")
	f.Fuzz(func(t *testing.T, query, cookie string) {
		r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1"+DefaultCallbackPath, nil)
		r.URL.RawQuery = query
		r.Header.Set("Cookie", cookie)
		w := httptest.NewRecorder()
		if err := h.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
			t.Fatal("the callback reached the next handler")
			return nil
		})); err != nil {
			t.Fatal(err)
		}
		if w.Code < 400 || w.Code >= 500 {
			t.Fatalf("status %d for query %q", w.Code, query)
		}
		if n := fake.Counts().CodeExchanges; n != 0 {
			t.Fatalf("a code was exchanged for query %q", query)
		}
	})
}

// BenchmarkServeHTTPTamperedCookie measures the reject path: a cookie
// that fails authentication must cost little.
func BenchmarkServeHTTPTamperedCookie(b *testing.B) {
	h, base := benchHandler(b)
	sess := sampleSession()
	sess.Expires = time.Now().Add(time.Hour).Unix()
	sealed := []byte(h.sealers().sessions.Seal(sess.marshal(), h.cookies.aad))
	sealed[len(sealed)/2] ^= 1
	cookie := "spotify_auth=" + string(sealed)
	benchServe(b, h, base, cookie, "application/json", nil)
}

// A failed callback's page never links to the callback's own URL, not
// even as a login's return path: that URL carries Spotify's code.
func TestAFailedCallbacksPageCarriesNoCode(t *testing.T) {
	t.Parallel()
	hs := newHarness(t)
	const code = "AQDspotifycodeNEVERonAPage123456"
	for _, ae := range []*authError{
		{Kind: kindBadRequest, Message: "The login callback is malformed."},
		{Kind: kindMisconfigured, Message: "Could not start the login."},
	} {
		req := httptest.NewRequest(http.MethodGet, hs.srv.URL+DefaultCallbackPath+"?code="+code+"&state=s", nil)
		req.Header.Set("Sec-Fetch-Mode", "navigate")
		req.Header.Set("Accept", "text/html")
		rec := httptest.NewRecorder()
		hs.h.fail(rec, req, ae, "")
		if body := rec.Body.String(); strings.Contains(body, code) || strings.Contains(body, "code%3D") {
			t.Fatalf("%s: the page carries the code: %s", ae.Message, body)
		}
	}
}
