package spotifytest

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
)

// maxAPIRequests bounds the Web API requests kept for APIRequests, so a
// long load run against the fake does not grow without end. Counts and
// APIRequestCount stay exact.
const maxAPIRequests = 10000

// maxRecordedBody bounds the request body kept in an APIRequest: enough
// for any JSON body an app sends Spotify, small enough that a load run
// keeps its memory.
const maxRecordedBody = 16 << 10

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
	// Body is the request body as sent, its first 16 KiB; BodyTruncated
	// says it was longer. The handler still reads the whole body.
	Body          []byte
	BodyTruncated bool
	// Status is the status the fake answered, including an injected
	// fault's; 0 if it gave no answer (a Drop fault, a client gone during
	// a Delay) or is still serving the request.
	Status int

	seq uint64 // finds the record again when the answer is known
}

// recordAPI counts and records a Web API request, keeping its body for
// the record while leaving it readable. It returns the user the bearer
// token belongs to ("" if none) and a function that records the status
// once the answer is written.
func (s *Server) recordAPI(r *http.Request) (userID string, answered func(status int)) {
	if scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		tok = strings.TrimSpace(tok)
		s.mu.Lock()
		if at, known := s.accessTokens[tok]; known {
			userID = at.userID
		}
		s.mu.Unlock()
	}
	var body []byte
	truncated := false
	if r.Body != nil && r.Body != http.NoBody {
		body, _ = io.ReadAll(io.LimitReader(r.Body, maxRecordedBody+1))
		truncated = len(body) > maxRecordedBody
		r.Body = readCloser{io.MultiReader(bytes.NewReader(body), r.Body), r.Body}
		body = body[:min(len(body), maxRecordedBody)]
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
	seq := apiSeq.Add(1)
	s.apiRequests = append(s.apiRequests, APIRequest{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), UserID: userID,
		Header: hdr, Body: body, BodyTruncated: truncated, seq: seq})
	return userID, func(status int) {
		s.mu.Lock()
		defer s.mu.Unlock()
		// Searched from the end: the request is almost always among the
		// last few, and it may have been dropped from the front.
		for i := len(s.apiRequests) - 1; i >= 0; i-- {
			if s.apiRequests[i].seq == seq {
				s.apiRequests[i].Status = status
				return
			}
		}
	}
}

// apiSeq numbers recorded requests; unique across servers, which is all a
// record needs.
var apiSeq atomic.Uint64

type readCloser struct {
	io.Reader
	io.Closer
}

// statusWriter remembers the status written, for APIRequest.Status. It
// keeps Hijack, which a Drop fault needs.
type statusWriter struct {
	http.ResponseWriter
	status     int
	unanswered bool // dropped, or abandoned when the client went away
}

// answeredStatus is the status the client got: 200 if the handler wrote
// nothing (net/http's default), 0 if it got no answer.
func (sw *statusWriter) answeredStatus() int {
	switch {
	case sw.unanswered:
		return 0
	case sw.status == 0:
		return http.StatusOK
	}
	return sw.status
}

func (sw *statusWriter) WriteHeader(status int) {
	if sw.status == 0 {
		sw.status = status
	}
	sw.ResponseWriter.WriteHeader(status)
}

func (sw *statusWriter) Write(b []byte) (int, error) {
	if sw.status == 0 {
		sw.status = http.StatusOK
	}
	return sw.ResponseWriter.Write(b)
}

func (sw *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if hj, ok := sw.ResponseWriter.(http.Hijacker); ok {
		sw.unanswered = true
		return hj.Hijack()
	}
	return nil, nil, errors.New("spotifytest: connection cannot be hijacked")
}

func (sw *statusWriter) Unwrap() http.ResponseWriter { return sw.ResponseWriter }

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
		ar.Body = slices.Clone(ar.Body)
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
