// Command login logs in to a spotify_auth site the way a browser does,
// against a fake Spotify that auto-approves: GET the protected URL as a
// navigation, follow the 302 to the fake's /authorize, its 302 to the
// site's callback, and the callback's 302 back to the URL, which must then
// answer 200 with the expected body on the new session cookie. No plugin
// internals are used.
//
// With -n 1 -cookie-out FILE it writes the session's Cookie header value
// for the load generator. With -n 100000 it creates that many distinct
// sessions, each of which has made a request to the site (the last hop);
// -replay then sends one more request with each session's cookie, and
// -rss-pid prints the server's VmRSS before, between and after.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	target := flag.String("url", "", "protected URL (required), e.g. http://127.0.0.1:18082/")
	n := flag.Int("n", 1, "number of logins (distinct sessions)")
	conc := flag.Int("c", 64, "concurrent logins")
	cookieName := flag.String("cookie-name", "spotify_auth", "session cookie name")
	cookieOut := flag.String("cookie-out", "", "write the Cookie header value of the first session to this file")
	expect := flag.String("expect-body", "ok", "body the protected URL must answer once logged in")
	progress := flag.Duration("progress", 10*time.Second, "progress report interval (0: none)")
	timeout := flag.Duration("timeout", 30*time.Second, "time limit per login")
	rssPID := flag.Int("rss-pid", 0, "print this process's VmRSS before, after the logins and after the replay")
	replay := flag.Bool("replay", false, "after all logins, send one more request with every session's cookie")
	admin := flag.String("admin", "", "with -rss-pid: the server's Caddy admin URL; at each RSS checkpoint, save a heap profile\n"+
		"(after a GC) to -heap-dir and print the live heap from /debug/vars")
	heapDir := flag.String("heap-dir", ".", "directory for heap-<checkpoint>.pb.gz")
	flag.Parse()
	u, err := url.Parse(*target)
	if err != nil || u.Host == "" {
		fatalf("login: -url must be an absolute URL: %q", *target)
	}
	if *n < 1 || *conc < 1 {
		fatalf("login: -n and -c must be positive")
	}
	*conc = min(*conc, *n)

	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        4 * *conc,
		MaxIdleConnsPerHost: 2 * *conc,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()

	m := memReporter{pid: *rssPID, admin: strings.TrimSuffix(*admin, "/"), dir: *heapDir}
	m.report("before", "before the logins")
	cookies := make([]string, *n)
	failed := parallel("login", *n, *conc, *progress, func(i int) error {
		cookie, err := login(tr, u, *cookieName, *expect, *timeout)
		cookies[i] = cookie
		return err
	})
	if *cookieOut != "" && cookies[0] != "" {
		if err := os.WriteFile(*cookieOut, []byte(cookies[0]+"\n"), 0o600); err != nil {
			fatalf("login: %v", err)
		}
	}
	m.report("logins", "after the logins")
	if *replay && failed == 0 {
		c := &http.Client{Transport: tr, Timeout: *timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		failed += parallel("replay", *n, *conc, *progress, func(i int) error {
			return get(c, u, cookies[i], *expect)
		})
		m.report("replay", "after one more request per session")
	}
	if failed > 0 {
		os.Exit(1)
	}
}

// parallel runs f(0) .. f(n-1) on conc goroutines, reports progress and
// a summary line, and returns the number of failures.
func parallel(what string, n, conc int, progress time.Duration, f func(i int) error) int {
	var (
		next, ok, failed atomic.Int64
		firstErr         sync.Once
		wg               sync.WaitGroup
	)
	start := time.Now()
	stop := make(chan struct{})
	if progress > 0 {
		go func() {
			t := time.NewTicker(progress)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					d := ok.Load() + failed.Load()
					fmt.Fprintf(os.Stderr, "%s: %d/%d done (%d failed), %.0f/s\n",
						what, d, n, failed.Load(), float64(d)/time.Since(start).Seconds())
				}
			}
		}()
	}
	for range conc {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				if err := f(int(i)); err != nil {
					failed.Add(1)
					firstErr.Do(func() { fmt.Fprintf(os.Stderr, "%s: first failure: %v\n", what, err) })
					continue
				}
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	close(stop)
	el := time.Since(start)
	fmt.Printf("%s: n=%d ok=%d failed=%d concurrency=%d elapsed=%.1fs rate=%.0f/s\n",
		what, n, ok.Load(), failed.Load(), conc, el.Seconds(), float64(ok.Load())/el.Seconds())
	return int(failed.Load())
}

type memReporter struct {
	pid   int
	admin string
	dir   string
}

// report prints VmRSS and VmHWM of the server (nothing without a pid),
// then, with an admin URL, saves a heap profile taken after a GC and
// prints the live heap that GC left.
func (m memReporter) report(tag, when string) {
	if m.pid <= 0 {
		return
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(m.pid) + "/status")
	if err != nil {
		fatalf("login: %v", err)
	}
	var rss, hwm string
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			rss = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			hwm = strings.TrimSpace(v)
		}
	}
	heap := ""
	if m.admin != "" {
		// gc=1: a GC first, so the profile and the MemStats read right
		// after it show live memory, not garbage awaiting collection.
		prof, err := fetch(m.admin + "/debug/pprof/heap?gc=1")
		if err != nil {
			fatalf("login: heap profile: %v", err)
		}
		path := filepath.Join(m.dir, "heap-"+tag+".pb.gz")
		if err := os.WriteFile(path, prof, 0o644); err != nil {
			fatalf("login: %v", err)
		}
		vars, err := fetch(m.admin + "/debug/vars")
		if err != nil {
			fatalf("login: /debug/vars: %v", err)
		}
		var v struct {
			Memstats struct{ HeapAlloc, HeapSys, HeapReleased uint64 }
		}
		if err := json.Unmarshal(vars, &v); err != nil {
			fatalf("login: /debug/vars: %v", err)
		}
		heap = fmt.Sprintf(", live heap after GC %d kB, heap held from the OS %d kB (profile %s)",
			v.Memstats.HeapAlloc>>10, (v.Memstats.HeapSys-v.Memstats.HeapReleased)>>10, path)
	}
	fmt.Printf("RSS %-36s VmRSS %s (VmHWM %s)%s\n", when+":", rss, hwm, heap)
}

func fetch(u string) ([]byte, error) {
	resp, err := http.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: status %d: %.200s", u, resp.StatusCode, b)
	}
	return b, err
}

// get sends one request with the session cookie; it must answer 200 with
// the expected body.
func get(c *http.Client, u *url.URL, cookie, expect string) error {
	req, err := http.NewRequest(http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/html")
	req.Header.Set("Cookie", cookie)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || string(body) != expect {
		return fmt.Errorf("status %d, body %.200q", resp.StatusCode, body)
	}
	return nil
}

// login runs one browser login and returns the session's Cookie header
// value ("name=value", or several for a chunked session).
func login(tr http.RoundTripper, u *url.URL, cookieName, expect string, timeout time.Duration) (string, error) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return "", err
	}
	var hops []string
	c := &http.Client{
		Transport: tr,
		Jar:       jar,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			hops = append(hops, req.URL.Path)
			if len(via) > 5 {
				return errors.New("too many redirects")
			}
			return nil
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", "text/html")
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if err != nil {
		return "", err
	}
	// Expected hops: the fake's /authorize, the site's callback, the URL.
	if len(hops) != 3 || hops[0] != "/authorize" || hops[2] != u.Path {
		return "", fmt.Errorf("unexpected redirect chain %v (status %d)", hops, resp.StatusCode)
	}
	if resp.StatusCode != http.StatusOK || string(body) != expect {
		return "", fmt.Errorf("after login: status %d, body %.200q", resp.StatusCode, body)
	}
	var parts []string
	for _, ck := range jar.Cookies(u) {
		if ck.Name == cookieName || isChunk(ck.Name, cookieName) {
			parts = append(parts, ck.Name+"="+ck.Value)
		}
	}
	if len(parts) == 0 {
		return "", fmt.Errorf("no %s cookie after login", cookieName)
	}
	return strings.Join(parts, "; "), nil
}

// isChunk reports whether name is "<base>_<digits>", a further chunk of a
// session too big for one cookie.
func isChunk(name, base string) bool {
	digits, ok := strings.CutPrefix(name, base+"_")
	if !ok || digits == "" {
		return false
	}
	for _, r := range digits {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}
