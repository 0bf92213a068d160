package spotifytest

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Endpoint names a part of the fake for fault injection.
type Endpoint string

// The endpoints faults can be injected into.
const (
	EndpointAuthorize Endpoint = "authorize" // GET and POST /authorize
	EndpointToken     Endpoint = "token"     // /api/token
	EndpointAPI       Endpoint = "api"       // every /v1/* path
)

// Fault is a misbehaviour injected with InjectFault. The request still
// counts (Counts, TokenRequests, AuthorizeRequests); the fault is applied
// before any normal handling: first Delay, then Drop or Status. A fault
// with only a Delay slows the request down and then lets it be handled
// normally.
//
// Note that Go's http.Transport replays an idempotent request (a GET
// without body, like /v1/me) once when a reused keep-alive connection is
// dropped before any answer: a Drop with Times 1 may then be invisible to
// the client and the request is counted twice. POST requests (the token
// endpoint) are never replayed.
type Fault struct {
	Status     int    // answer with this status (e.g. 500, 503, 429); 0 = none
	RetryAfter string // Retry-After header value, if set (sent with Status)
	// Body is the raw answer body. Its Content-Type is guessed: JSON if it
	// starts with "{", HTML if with "<", else plain text. Default: a
	// Spotify-shaped error for the status and endpoint: {"error":"server_error",
	// "error_description":...} on the token endpoint, {"error":{"status":N,
	// "message":...}} on the Web API and for any 429, an HTML error page on
	// /authorize.
	Body string
	// Reason adds "reason" to the default Web API error body (and any
	// 429's), as Spotify does for some errors: "QUOTA_EXCEEDED" on a quota
	// 429, "PREMIUM_REQUIRED" and so on. Ignored with Body.
	Reason string
	// Delay waits before answering (or before handling normally). It ends
	// early, without any answer, if the client goes away or the server is
	// closed.
	Delay time.Duration
	Drop  bool // hijack and close the connection without any answer
	// Times is how many requests the fault applies to; 0 = every request
	// until ClearFaults.
	Times int
	// Path limits the fault to requests for this URL path, e.g. "/v1/me"
	// (so the plugin's login can fail while an app's own calls succeed, or
	// the reverse); a trailing "*" matches every path it is a prefix of:
	// "/v1/tracks/*". "" = every path of the endpoint.
	Path string
	// Method limits the fault to requests with this method, e.g. "PUT"
	// (so a save fails while reads succeed); "" = any method.
	Method string
	// UserID limits the fault to Web API requests made with a token of
	// this user, so one user's calls fail while another's succeed; ""
	// = anyone. A fault with a UserID never applies to /authorize or the
	// token endpoint.
	UserID string
}

type activeFault struct {
	f    Fault
	left int
}

// InjectFault adds a fault for an endpoint. Faults of one endpoint queue up
// in order: a request gets the first fault whose Path matches it, which
// applies to its Times requests before the next matching one takes over.
// A fault with Times 0 stays until ClearFaults. Path, Method and UserID,
// where set, must all match.
func (s *Server) InjectFault(ep Endpoint, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[ep] = append(s.faults[ep], &activeFault{f: f, left: f.Times})
}

// ClearFaults removes every injected fault of every endpoint.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.faults)
}

// takeFault claims the endpoint's current fault for one request of the
// user ("" for none known).
func (s *Server) takeFault(ep Endpoint, r *http.Request, userID string) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.faults[ep]
	for i, af := range q {
		if af.f.Path != "" && !pathMatches(af.f.Path, r.URL.Path) ||
			af.f.Method != "" && !strings.EqualFold(af.f.Method, r.Method) ||
			af.f.UserID != "" && af.f.UserID != userID {
			continue
		}
		if af.f.Times > 0 {
			af.left--
			if af.left <= 0 {
				s.faults[ep] = slices.Delete(q, i, i+1)
			}
		}
		return af.f, true
	}
	return Fault{}, false
}

// applyFault applies the endpoint's current fault, if any. It reports
// whether the request is finished (answered, dropped or abandoned); if not,
// normal handling goes on. failed, if not nil, is called before the fault
// finishes the request, so that counters are right by the time the client
// sees the outcome.
func (s *Server) applyFault(w http.ResponseWriter, r *http.Request, ep Endpoint, failed func()) bool {
	return s.applyFaultFor(w, r, ep, failed, "")
}

// applyFaultFor is applyFault for a request made with a token of userID.
func (s *Server) applyFaultFor(w http.ResponseWriter, r *http.Request, ep Endpoint, failed func(), userID string) bool {
	f, ok := s.takeFault(ep, r, userID)
	if !ok {
		return false
	}
	fail := func() {
		if failed != nil {
			failed()
		}
	}
	if f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			fail()
			if sw, ok := w.(*statusWriter); ok {
				sw.unanswered = true // for APIRequest.Status
			}
			return true // nobody is listening any more
		case <-s.done:
			fail()
			dropConn(w)
			return true
		}
	}
	switch {
	case f.Drop:
		fail()
		dropConn(w)
		return true
	case f.Status != 0:
		fail()
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		body, ctype := f.Body, guessContentType(f.Body)
		if body == "" {
			body, ctype = defaultFaultBody(ep, f.Status, f.Reason)
		}
		w.Header().Set("Content-Type", ctype)
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(f.Status)
		_, _ = w.Write([]byte(body))
		return true
	}
	return false
}

// dropConn closes the connection without answering.
func dropConn(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler) // net/http aborts the connection (or stream) silently
}

func guessContentType(body string) string {
	switch t := strings.TrimSpace(body); {
	case strings.HasPrefix(t, "{"), strings.HasPrefix(t, "["):
		return "application/json"
	case strings.HasPrefix(t, "<"):
		return "text/html; charset=utf-8"
	default:
		return "text/plain; charset=utf-8"
	}
}

func defaultFaultBody(ep Endpoint, status int, reason string) (body, contentType string) {
	switch {
	case ep == EndpointAuthorize:
		return errorPageHTML(strconv.Itoa(status) + " " + http.StatusText(status)), "text/html; charset=utf-8"
	case status == http.StatusTooManyRequests:
		return apiErrorReasonJSON(status, "API rate limit exceeded", reason), "application/json"
	case ep == EndpointAPI:
		return apiErrorReasonJSON(status, apiStatusMessage(status), reason), "application/json"
	default: // token
		code := "server_error"
		switch {
		case status == http.StatusServiceUnavailable:
			code = "temporarily_unavailable"
		case status == http.StatusUnauthorized:
			code = "invalid_client"
		case status >= 400 && status < 500:
			code = "invalid_request"
		}
		b, _ := json.Marshal(map[string]string{"error": code, "error_description": http.StatusText(status)})
		return string(b), "application/json"
	}
}

// apiStatusMessage is the message Spotify's Web API gives for a status.
func apiStatusMessage(status int) string {
	switch status {
	case http.StatusInternalServerError:
		return "Server error."
	case http.StatusBadGateway:
		return "Bad gateway."
	case http.StatusServiceUnavailable:
		return "Service unavailable"
	}
	if t := http.StatusText(status); t != "" {
		return t
	}
	return "Error"
}

func apiErrorJSON(status int, message string) string {
	return apiErrorReasonJSON(status, message, "")
}

// apiErrorReasonJSON is apiErrorJSON with a "reason" if not "".
func apiErrorReasonJSON(status int, message, reason string) string {
	type apiError struct {
		Status  int    `json:"status"`
		Message string `json:"message"`
		Reason  string `json:"reason,omitempty"`
	}
	b, _ := json.Marshal(struct {
		Error apiError `json:"error"`
	}{apiError{status, message, reason}})
	return string(b)
}
