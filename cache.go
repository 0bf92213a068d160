package spotifyauth

import (
	"io"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// upstreamWriter wraps the response to an authenticated request. When the
// upstream's answer starts, it keeps that answer out of shared caches and
// notices an upstream that found the token dead.
type upstreamWriter struct {
	caddyhttp.ResponseWriterWrapper
	shared      *sharedState
	token       string
	cookies     *cookieNames
	wroteHeader bool

	// Arrays for the request's token and identity header values and the
	// answer's private caching headers: one allocation with the writer.
	headerValues headerValues
	private      [2]string
}

func (w *upstreamWriter) WriteHeader(status int) {
	if status < http.StatusOK {
		// 1xx (and 101 Switching Protocols) are not the final answer.
		w.ResponseWriterWrapper.WriteHeader(status)
		return
	}
	if w.wroteHeader {
		return
	}
	w.wroteHeader = true
	hdr := w.Header()
	// The upstream's Spotify call found the token dead (e.g. access
	// revoked): the session's next request refreshes instead of passing
	// the dead token on until it expires.
	if status == http.StatusUnauthorized && strings.Contains(hdr.Get("WWW-Authenticate"), "invalid_token") {
		w.shared.markRejected(w.token)
	}
	keepPrivate(hdr, w.cookies, &w.private)
	w.ResponseWriterWrapper.WriteHeader(status)
}

func (w *upstreamWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriterWrapper.Write(b)
}

func (w *upstreamWriter) ReadFrom(r io.Reader) (int64, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriterWrapper.ReadFrom(r)
}

// FlushError is what http.ResponseController (and so reverse_proxy's
// streaming) calls: a flush before any write sends the header too.
func (w *upstreamWriter) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return http.NewResponseController(w.ResponseWriterWrapper.ResponseWriter).Flush()
}

// keepPrivate makes an answer to an authenticated request unfit for
// shared caches: one the upstream said nothing about becomes private and
// varies by cookie, and one carrying our session cookie (a refresh) is
// never public, whatever the upstream said.
func keepPrivate(hdr http.Header, cookies *cookieNames, fresh *[2]string) {
	if len(hdr["Cache-Control"]) > 0 && !setsOurCookie(hdr, cookies) {
		return // the upstream's explicit choice, for its own answer
	}
	makePrivate(hdr, fresh)
}

// makePrivate keeps the answer out of shared caches. fresh is an array of
// this answer's alone, never shared: a later handler may write into a
// header's values (Caddy's header replace does).
func makePrivate(hdr http.Header, fresh *[2]string) {
	*fresh = [2]string{"private", "Cookie"}
	if cc := hdr["Cache-Control"]; len(cc) == 0 {
		hdr["Cache-Control"] = fresh[0:1:1]
	} else {
		hdr["Cache-Control"] = []string{privateCacheControl(cc)}
	}
	addVaryCookie(hdr, fresh[1:2:2])
}

// privateCacheControl rewrites Cache-Control directives so no shared
// cache may store the answer: public and s-maxage go, private comes.
func privateCacheControl(lines []string) string {
	var kept []string
	private := false
	for _, line := range lines {
		for _, d := range strings.Split(line, ",") {
			d = strings.TrimSpace(d)
			name, _, _ := strings.Cut(strings.ToLower(d), "=")
			switch name {
			case "":
				continue
			case "public", "s-maxage", "proxy-revalidate":
				continue
			case "private", "no-store":
				private = true
			}
			kept = append(kept, d)
		}
	}
	if !private {
		kept = append([]string{"private"}, kept...)
	}
	return strings.Join(kept, ", ")
}

func setsOurCookie(hdr http.Header, cookies *cookieNames) bool {
	for _, sc := range hdr["Set-Cookie"] {
		name, _, _ := strings.Cut(sc, "=")
		if cookies.ours(strings.TrimSpace(name)) {
			return true
		}
	}
	return false
}

// addVaryCookie adds Cookie (the one value in cookie) to Vary.
func addVaryCookie(hdr http.Header, cookie []string) {
	for _, v := range hdr["Vary"] {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f == "*" || strings.EqualFold(f, "Cookie") {
				return
			}
		}
	}
	if len(hdr["Vary"]) == 0 {
		hdr["Vary"] = cookie
		return
	}
	hdr["Vary"] = append(hdr["Vary"], "Cookie")
}
