package spotifyauth

import (
	"net"
	"net/url"
	"strings"
)

// maxReturnLen bounds the return URL kept in the state cookie.
const maxReturnLen = 2048

// safeReturnPath returns rd if it is a same-origin path (with optional
// query) and "/" otherwise. Browsers read "//host", "/\host" and "\/host"
// as other origins and ignore tabs and newlines inside URLs, so anything
// that could become such a form after decoding is refused outright rather
// than repaired.
func safeReturnPath(rd string) string {
	if rd == "" || len(rd) > maxReturnLen || rd[0] != '/' {
		return "/"
	}
	// Look at the value as given and as decoded up to three times: a
	// later hop (a proxy, the app) may decode what the browser did not.
	v := rd
	for i := range 4 {
		if !plainPath(v, i > 0) {
			return "/"
		}
		dec, err := url.PathUnescape(v)
		if err != nil {
			return "/"
		}
		if dec == v {
			break
		}
		v = dec
	}
	u, err := url.Parse(rd)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return "/"
	}
	return rd
}

// plainPath reports whether s starts with exactly one '/' and contains no
// backslash or control character. The raw value must also be plain ASCII
// without spaces; its decoded forms may hold spaces and UTF-8.
func plainPath(s string, decoded bool) bool {
	if len(s) == 0 || s[0] != '/' || len(s) > 1 && (s[1] == '/' || s[1] == '\\') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < ' ' || c == 0x7f || c == '\\' || !decoded && (c == ' ' || c > 0x7f) {
			return false
		}
	}
	return true
}

// isLoopbackHost reports whether host is a loopback IP literal, the only
// plain-http redirect URI host Spotify accepts ("localhost" is refused).
func isLoopbackHost(host string) bool {
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}
