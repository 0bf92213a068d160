package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// The browser test drives a real headless Chromium through the demo with
// the fake Spotify's consent page. Locally it is skipped when no Chromium
// is installed; with CI=true (as .ci/run sets) a missing Chromium fails it,
// so CI cannot pass without running it.

// chromiumNames are looked up in this order; the first is Debian's.
var chromiumNames = []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"}

// findChromium returns the browser to drive, or skips the test (fails it
// in CI).
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range chromiumNames {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true but no Chromium found (looked for %s): the browser test must run in CI; "+
			"install it (apt-get install chromium, as .ci/run does)", strings.Join(chromiumNames, ", "))
	}
	t.Skipf("no Chromium found (looked for %s); install it to run this test: apt-get install chromium",
		strings.Join(chromiumNames, ", "))
	return ""
}

// lockedBuffer collects the browser's output, which its own goroutines
// write.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startChromium starts a headless Chromium with a fresh profile, bounded
// by ctx, and returns the context of its first tab. The browser is closed
// when the test ends; its output is logged if the test failed.
func startChromium(t *testing.T, ctx context.Context, execPath string) context.Context {
	t.Helper()
	profile, err := os.MkdirTemp("", "spotify-auth-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(profile) }) // runs after the browser is gone
	output := &lockedBuffer{}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(execPath),
		chromedp.UserDataDir(profile),
		chromedp.CombinedOutput(output),
		chromedp.WindowSize(1000, 700),
		// What this closed network needs: no sandbox (CI runs as root), no
		// GPU, and none of Chromium's own calls home.
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	tabCtx, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc() // waits for the browser to exit
		if t.Failed() {
			t.Logf("Chromium's output:\n%s", output.String())
		}
	})
	if err := chromedp.Do(tabCtx); err != nil { // starts the browser
		t.Fatalf("starting %s: %v\n%s", execPath, err, output.String())
	}
	return tabCtx
}

// pageState is what a test reads off the page in a tab.
type pageState struct {
	URL     string `json:"url"`
	Heading string `json:"heading"`
	Text    string `json:"text"`
	Approve bool   `json:"approve"` // the consent page's Approve button is there
}

func (p pageState) String() string {
	return fmt.Sprintf("%s (h1 %q)", p.URL, p.Heading)
}

// readPage reads the loaded page without waiting for anything, so a wrong
// page fails at once with what it shows instead of timing out.
func readPage(t *testing.T, ctx context.Context, what string) pageState {
	t.Helper()
	p, err := chromedp.Run(ctx, chromedp.Evaluate[pageState](`({
		url: location.href,
		heading: (document.querySelector("h1") || {}).textContent || "",
		text: document.body ? document.body.innerText : "",
		approve: !!document.querySelector('button.approve[name="action"][value="approve"]'),
	})`))
	if err != nil {
		t.Fatalf("%s: reading the page: %v", what, err)
	}
	return p
}

// open navigates the tab and waits for the page that the redirects end
// on to load.
func open(t *testing.T, ctx context.Context, url string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("opening %s: %v", url, err)
	}
}

// clickAndWait clicks the button and waits for the page the form
// submission ends on to load.
func clickAndWait(t *testing.T, ctx context.Context, button, what string) {
	t.Helper()
	if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(button))); err != nil {
		t.Fatalf("%s: clicking %s: %v", what, button, err)
	}
}

// wantConsentPage checks that the tab shows the fake Spotify's consent page.
func wantConsentPage(t *testing.T, ctx context.Context, d *demo, what string) pageState {
	t.Helper()
	p := readPage(t, ctx, what)
	if !strings.HasPrefix(p.URL, d.fake.AuthorizeURL()+"?") || !p.Approve {
		t.Fatalf("%s: the tab shows %s, want the fake Spotify's consent page with an Approve button at %s?...\n%s",
			what, p, d.fake.AuthorizeURL(), p.Text)
	}
	return p
}

// wantLoggedIn checks that the tab is back on wantURL, query and all, and
// shows the sample app's greeting.
func wantLoggedIn(t *testing.T, ctx context.Context, wantURL, what string) {
	t.Helper()
	p := readPage(t, ctx, what)
	if p.URL != wantURL || p.Heading != "Hello, Test User!" {
		t.Fatalf("%s: the tab shows %s, want %s with h1 %q\n%s", what, p, wantURL, "Hello, Test User!", p.Text)
	}
}

func TestBrowserLogsInThroughConsentPageAndOut(t *testing.T) {
	execPath := findChromium(t)
	began := time.Now()
	d := startDemo(t, false) // the consent page is shown: the browser clicks Approve
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	tab := startChromium(t, ctx, execPath)

	// 1. The protected page sends the browser to Spotify's consent page;
	// approving brings it back to the page it asked for, logged in.
	appURL := d.AppURL + "?from=browser"
	open(t, tab, appURL)
	wantConsentPage(t, tab, d, "opening the app")
	clickAndWait(t, tab, "button.approve", "approving")
	wantLoggedIn(t, tab, appURL, "after approving")

	// 2. The session cookie is there, and page scripts cannot read it.
	cookies, err := chromedp.Call(tab, network.GetCookies, network.GetCookiesParams{URLs: []string{d.SiteURL + "/"}})
	if err != nil {
		t.Fatal(err)
	}
	var session *network.Cookie
	for _, c := range cookies.Cookies {
		if c.Name == "spotify_auth" {
			session = c
		}
	}
	if session == nil || !session.HTTPOnly {
		t.Fatalf("after login the browser holds %+v, want an HttpOnly cookie spotify_auth", cookies.Cookies)
	}
	jsCookies, err := chromedp.Run(tab, chromedp.Evaluate[string](`document.cookie`))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(jsCookies, "spotify_auth") {
		t.Errorf("document.cookie shows the session cookie: %q", jsCookies)
	}

	// 2b. The page's own script lists the top tracks through /spotify-api
	// (web_api): a same-origin fetch, no token in JavaScript, and Spotify
	// got the user's token without the site's cookies.
	wantTopTracks(t, tab, d)

	// 3. A screenshot of the logged-in page, kept after the test.
	png, err := chromedp.Run(tab, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("screenshot is not a PNG (%d bytes)", len(png))
	}
	shot := saveScreenshot(t, "logged-in.png", png)
	t.Logf("screenshot of the logged-in page: %s", shot)

	// 4. The page's logout button ends the session: the protected page
	// asks for a login again.
	clickAndWait(t, tab, `form[action="/oauth2/spotify/logout"] button[type="submit"]`, "logging out")
	if p := readPage(t, tab, "after logout"); p.URL != d.SiteURL+"/" || p.Heading != "Public page" {
		t.Fatalf("logout ended on %s, want the public page %s/", p, d.SiteURL)
	}
	open(t, tab, appURL)
	wantConsentPage(t, tab, d, "opening the app after logout")

	// 5. Two tabs start a login each before either approves; the approvals
	// come back in the other order, and both end logged in on their own
	// page.
	tabs := []context.Context{newTab(t, tab), newTab(t, tab)}
	urls := []string{d.AppURL + "?tab=1", d.AppURL + "?tab=2"}
	errs := make([]error, len(tabs))
	var wg sync.WaitGroup
	for i := range tabs {
		wg.Go(func() { errs[i] = chromedp.Do(tabs[i], chromedp.Navigate(urls[i])) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("tab %d: opening %s: %v", i+1, urls[i], err)
		}
	}
	consent1 := wantConsentPage(t, tabs[0], d, "tab 1 opening the app")
	consent2 := wantConsentPage(t, tabs[1], d, "tab 2 opening the app")
	if consent1.URL == consent2.URL {
		t.Fatalf("both tabs got the same authorize URL %s, want two logins with their own state", consent1.URL)
	}
	clickAndWait(t, tabs[1], "button.approve", "tab 2 approving")
	wantLoggedIn(t, tabs[1], urls[1], "tab 2 after approving")
	clickAndWait(t, tabs[0], "button.approve", "tab 1 approving")
	wantLoggedIn(t, tabs[0], urls[0], "tab 1 after approving")
	// Tab 1's login replaced tab 2's session cookie with one as good.
	open(t, tabs[1], urls[1])
	wantLoggedIn(t, tabs[1], urls[1], "tab 2 reloaded after tab 1's login")

	if c := d.fake.Counts(); c.Approvals != 3 || c.CodeExchanges != 3 {
		t.Errorf("fake saw %d approvals and %d code exchanges, want 3 and 3 (one per login)", c.Approvals, c.CodeExchanges)
	}
	t.Logf("browser flow took %v", time.Since(began).Round(time.Millisecond))
}

// newTab opens another tab in the browser of ctx, closed when the test ends.
func newTab(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	tab, cancel := chromedp.NewContext(ctx)
	t.Cleanup(cancel)
	if err := chromedp.Do(tab); err != nil { // opens the tab
		t.Fatalf("opening a tab: %v", err)
	}
	return tab
}

// saveScreenshot writes a screenshot where it outlives the test: into
// $SCREENSHOT_DIR if set (CI can keep it as an artifact), else into a new
// temporary directory.
func saveScreenshot(t *testing.T, name string, png []byte) string {
	t.Helper()
	dir := os.Getenv("SCREENSHOT_DIR")
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "spotify-auth-browser-"); err != nil {
			t.Fatal(err)
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// wantTopTracks waits for the app page's script to fill in the top tracks
// it fetched from /spotify-api, and checks what crossed to Spotify.
func wantTopTracks(t *testing.T, ctx context.Context, d *demo) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(wctx, chromedp.WaitVisible(chromedp.CSS(`#top-tracks li`))); err != nil {
		p := readPage(t, ctx, "waiting for the script's top tracks")
		t.Fatalf("the page's script listed no top tracks (%v): %s\n%s", err, p, p.Text)
	}
	got, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#top-tracks li")].map((li) => li.textContent)`))
	if err != nil {
		t.Fatal(err)
	}
	want := spotifytest.DefaultTopTracks()
	if len(got) != 5 || !strings.HasPrefix(got[0], want[0].Name+" by ") {
		t.Errorf("the script listed %q, want the user's 5 top tracks starting with %q", got, want[0].Name)
	}
	fetched, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
		`performance.getEntriesByType("resource").filter((e) => e.initiatorType === "fetch").map((e) => e.name)`))
	if err != nil {
		t.Fatal(err)
	}
	if len(fetched) != 1 || fetched[0] != d.SiteURL+webAPIPrefix+"/v1/me/top/tracks?limit=5" {
		t.Errorf("the page fetched %q, want only %s%s/v1/me/top/tracks?limit=5", fetched, d.SiteURL, webAPIPrefix)
	}
	var call *spotifytest.APIRequest
	for _, r := range d.fake.APIRequests() {
		if r.Path == "/v1/me/top/tracks" {
			call = &r
		}
	}
	if call == nil || call.UserID != spotifytest.DefaultUserID || call.Header.Get("Cookie") != "" || call.Header.Get("Origin") != "" {
		t.Errorf("Spotify got %+v, want the user's token and no cookie of the site", call)
	}
}
