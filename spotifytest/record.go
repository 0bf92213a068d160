package spotifytest

import (
	"net/http"
	"net/url"
	"strings"
)

// maxAPIRequests bounds the Web API requests kept for APIRequests, so a
// long load run against the fake does not grow without end. Counts and
// APIRequestCount stay exact.
const maxAPIRequests = 10000

// APIRequest is a Web API request as the fake saw it.
type APIRequest struct {
	Method string
	Path   string
	Query  url.Values
	// UserID is the user the bearer token was issued to, "" for an app
	// token, an unknown token or none. The token itself is not kept.
	UserID string
	// Header is the request's headers without Authorization, so a test
	// can check what a proxy in front of the fake let through.
	Header http.Header
}

// recordAPI counts and records a Web API request.
func (s *Server) recordAPI(r *http.Request) {
	var userID string
	if scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		tok = strings.TrimSpace(tok)
		s.mu.Lock()
		if at, known := s.accessTokens[tok]; known {
			userID = at.userID
		}
		s.mu.Unlock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts.APICalls++
	if r.URL.Path == "/v1/me" {
		s.counts.Me++
	}
	s.pathCounts[r.URL.Path]++
	if len(s.apiRequests) >= maxAPIRequests {
		s.apiRequests = s.apiRequests[1:]
	}
	hdr := r.Header.Clone()
	delete(hdr, "Authorization")
	s.apiRequests = append(s.apiRequests, APIRequest{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), UserID: userID, Header: hdr})
}

// APIRequests returns the Web API requests the fake has served, oldest
// first, including those answered by an injected fault (the most recent
// 10,000).
func (s *Server) APIRequests() []APIRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]APIRequest, len(s.apiRequests))
	for i, ar := range s.apiRequests {
		ar.Query = cloneValues(ar.Query)
		ar.Header = ar.Header.Clone()
		out[i] = ar
	}
	return out
}

// APIRequestCount counts the Web API requests for a path since the start
// or the last ResetCounts, any method, any outcome. A path ending in "*"
// counts every path it is a prefix of: "/v1/tracks/*", "/v1/me/player*".
func (s *Server) APIRequestCount(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for p, c := range s.pathCounts {
		if pathMatches(path, p) {
			n += c
		}
	}
	return n
}

// pathMatches reports whether path matches pattern: equal, or pattern ends
// in "*" and the rest is a prefix of path.
func pathMatches(pattern, path string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(path, prefix)
	}
	return pattern == path
}
