package spotifyauth

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Cookies: their names, chunking of values too long for one cookie, and
// the attributes they share. The session cookie itself is written by the
// session store (cookiestore.go).

// Cookie size limits. Browsers keep cookies up to 4096 bytes including
// name and attributes, so values are split into chunks below that.
const (
	maxChunkLen  = 3800
	maxChunks    = 5
	maxSealedLen = maxChunkLen * maxChunks
)

// cookieNames holds the session cookie's names. Over HTTPS the name gets
// a prefix that browsers enforce: __Host- (Secure, Path=/, no Domain) or
// __Secure- when a Domain is configured.
type cookieNames struct {
	base   string // as configured
	aad    []byte // base, as the associated data of every session seal
	plain  string // over http
	secure string // over https
}

func newCookieNames(base string, hasDomain bool) cookieNames {
	prefix := "__Host-"
	if hasDomain {
		prefix = "__Secure-"
	}
	return cookieNames{base: base, aad: []byte(base), plain: base, secure: prefix + base}
}

func (c cookieNames) session(r *http.Request) string {
	if r.TLS != nil {
		return c.secure
	}
	return c.plain
}

// state names the per-login cookie: one per login attempt, so tabs
// logging in at the same time don't overwrite each other. Over HTTPS it is
// __Host-, never __Secure-, which a sibling subdomain could set
// (see loginstate.go).
func (c cookieNames) state(r *http.Request, id string) string {
	if r.TLS != nil {
		return "__Host-" + c.base + "_state_" + id
	}
	return c.base + "_state_" + id
}

// ours reports whether a cookie name belongs to the handler, so it can be
// kept from the upstream.
func (c cookieNames) ours(name string) bool {
	// Trimmed as Go's and most servers' cookie parsers trim it: "name =v"
	// is the cookie "name" to the upstream.
	name = strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(name), "__Host-"), "__Secure-")
	return name == c.base || len(name) > len(c.base) && name[len(c.base)] == '_' && name[:len(c.base)] == c.base
}

// cookieValue finds a cookie in the request without parsing every cookie
// into a struct, which keeps the hot path free of allocations.
func cookieValue(h http.Header, name string) (string, bool) {
	for _, line := range h["Cookie"] {
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			k, v, ok := strings.Cut(part, "=")
			if ok && k == name {
				if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
					v = v[1 : len(v)-1]
				}
				return v, true
			}
		}
	}
	return "", false
}

// readChunked reads a possibly chunked cookie value, at most maxSealedLen
// long (checked before any decoding). A chunked value's first part starts
// with "<count>." ('.' is not in the base64url alphabet).
func readChunked(h http.Header, name string) (string, bool) {
	first, ok := cookieValue(h, name)
	if !ok {
		return "", false
	}
	countStr, rest, chunked := strings.Cut(first, ".")
	if !chunked {
		return first, len(first) <= maxSealedLen
	}
	count, err := strconv.Atoi(countStr)
	if err != nil || count < 2 || count > maxChunks {
		return "", false
	}
	// Joined once all are found: a made-up count costs no buffer of its size.
	var parts [maxChunks]string
	parts[0] = rest
	total := len(rest)
	for i := 1; i < count; i++ {
		part, ok := cookieValue(h, chunkName(name, i))
		if !ok || total+len(part) > maxSealedLen {
			return "", false
		}
		parts[i], total = part, total+len(part)
	}
	return strings.Join(parts[:count], ""), true
}

func chunkName(name string, i int) string {
	return name + "_" + strconv.Itoa(i)
}

// splitChunks splits a sealed value into cookie values (see readChunked).
func splitChunks(value string) []string {
	if len(value) <= maxChunkLen {
		return []string{value}
	}
	n := (len(value) + maxChunkLen - 1) / maxChunkLen
	parts := make([]string, 0, n)
	for i := 0; i < n; i++ {
		end := min((i+1)*maxChunkLen, len(value))
		parts = append(parts, value[i*maxChunkLen:end])
	}
	parts[0] = strconv.Itoa(n) + "." + parts[0]
	return parts
}

// cookieTemplate returns a cookie with the attributes every cookie of
// ours shares.
func cookieTemplate(r *http.Request, domain, name, value string, maxAge time.Duration) *http.Cookie {
	c := &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteLaxMode,
		Domain:   domain,
	}
	if maxAge > 0 {
		c.MaxAge = int((maxAge + time.Second - 1) / time.Second)
	} else {
		c.MaxAge = -1
	}
	return c
}
