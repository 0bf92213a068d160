package spotifyauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Login state cookies: one per login attempt, so tabs logging in at once
// don't overwrite each other, but bounded in number and size, so nobody
// can push a browser's cookies for this site past the server's header
// limit (Caddy's default is 16 KiB; HTTP/1.1 answers 431, HTTP/2 drops the
// connection) and lock the user out of logging in.
//
// A cross-site page can start logins in the user's browser at will (by
// navigating a popup to /oauth2/spotify/login), so each new login expires
// all but the newest maxConcurrentLogins-1 state cookies the browser still
// has, and a state cookie holds at most maxStateReturnLen bytes of return
// path. Worst case: maxConcurrentLogins cookies of maxStateCookieLen.
//
// Over HTTPS the cookie is __Host- prefixed (Secure, Path=/, no Domain):
// only this host can have set it, so a sibling subdomain cannot plant a
// state of its own (login CSRF). Over plain http it is host-only too.
const (
	maxConcurrentLogins = 4
	// maxStateReturnLen bounds the return path kept in a state cookie.
	// A longer one is cut back to its path without the query, or to "/".
	maxStateReturnLen = 512
	// maxStateScopesLen bounds the scopes kept in a state cookie; beyond
	// it only the route's own scopes are asked for. (All of Spotify's
	// scopes together take about 420 bytes.)
	maxStateScopesLen = 512
	// maxStateCookieLen is the largest sealed state cookie value; larger
	// ones are not ours.
	maxStateCookieLen = 2048
	// maxStateCookiesScanned bounds the work on a request that carries
	// many cookies named like ours.
	maxStateCookiesScanned = 32
)

// statePrefix is the name every state cookie of this request's scheme
// starts with (see cookieNames.state).
func (f *loginFlow) statePrefix(r *http.Request) string {
	return f.cookies.state(r, "")
}

// stateCookie is a state cookie: host-only and Path=/ whatever
// cookie_domain says, which __Host- requires and which lets a login see
// (and bound) the logins already in progress.
func (f *loginFlow) stateCookie(r *http.Request, name, value string, maxAge time.Duration) *http.Cookie {
	return cookieTemplate(r, "", name, value, maxAge)
}

// stateReturnPath bounds the return path a state cookie keeps.
func stateReturnPath(p string) string {
	if len(p) <= maxStateReturnLen {
		return p
	}
	if path, _, _ := strings.Cut(p, "?"); len(path) <= maxStateReturnLen {
		return path
	}
	return "/"
}

// stateScopes bounds the requested scopes a state cookie keeps.
func (f *loginFlow) stateScopes(scopes []string) string {
	s := strings.Join(scopes, " ")
	if len(s) <= maxStateScopesLen {
		return s
	}
	return strings.Join(unionScopes(f.scopes, f.required), " ")
}

// sealState seals ls for the cookie called name, within
// maxStateCookieLen: what does not fit gives way, the return path first
// (the login then lands on "/"), then scopes beyond the route's own.
func (f *loginFlow) sealState(name string, ls *loginState) (string, error) {
	for attempt := 0; ; attempt++ {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false) // "&" in a return path stays one byte
		if err := enc.Encode(ls); err != nil {
			return "", err
		}
		sealed := f.keys.Load().states.Seal(bytes.TrimSuffix(buf.Bytes(), []byte("\n")), []byte(name))
		if len(sealed) <= maxStateCookieLen {
			return sealed, nil
		}
		switch attempt {
		case 0:
			ls.ReturnTo = "/"
		case 1:
			ls.Scopes = strings.Join(unionScopes(f.scopes, f.required), " ")
		default:
			return "", errors.New("the login state does not fit in a cookie: shorten redirect_uri or the callback path")
		}
	}
}

type pendingLogin struct {
	name    string
	started int64 // unix ms; 0: cannot be opened, expired or too large
}

// evictOldLogins expires the state cookies beyond the newest
// maxConcurrentLogins-1, and any that cannot be opened or have expired,
// so that with the one about to be set the browser holds at most
// maxConcurrentLogins.
func (f *loginFlow) evictOldLogins(w http.ResponseWriter, r *http.Request, now time.Time) {
	prefix := f.statePrefix(r)
	var pending []pendingLogin
	for _, line := range r.Header["Cookie"] {
		for len(line) > 0 && len(pending) < maxStateCookiesScanned {
			var part string
			part, line, _ = strings.Cut(line, ";")
			name, value, _ := strings.Cut(strings.TrimSpace(part), "=")
			if !strings.HasPrefix(name, prefix) || slices.ContainsFunc(pending, func(p pendingLogin) bool { return p.name == name }) {
				continue
			}
			pending = append(pending, pendingLogin{name: name, started: f.stateStarted(name, value, now)})
		}
	}
	// Newest first; unusable ones (created 0) sort last.
	slices.SortFunc(pending, func(a, b pendingLogin) int {
		switch {
		case a.started > b.started:
			return -1
		case a.started < b.started:
			return 1
		}
		return 0
	})
	for i, p := range pending {
		if i >= maxConcurrentLogins-1 || p.started == 0 {
			http.SetCookie(w, f.stateCookie(r, p.name, "", -1))
		}
	}
}

// stateStarted returns when a state cookie's login started (unix ms), or
// 0 if it cannot be opened or has expired.
func (f *loginFlow) stateStarted(name, value string, now time.Time) int64 {
	if len(value) > maxStateCookieLen {
		return 0
	}
	plain, err := f.keys.Load().states.Open(value, []byte(name))
	if err != nil {
		return 0
	}
	var ls struct {
		Created   int64 `json:"c"`
		StartedMs int64 `json:"m"`
	}
	if json.Unmarshal(plain, &ls) != nil || ls.Created <= 0 || now.Sub(time.Unix(ls.Created, 0)) > stateLifetime {
		return 0
	}
	return max(ls.StartedMs, ls.Created*1000)
}
