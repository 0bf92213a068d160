package spotifytest

import (
	"io"
	"net/http"
	"net/http/httptest"
)

// NewRequest is httptest.NewRequest(method, target, body) as the upstream
// receives it from the plugin for f's session (Apply done), for a unit
// test of a handler that takes a body:
//
//	req := s.Forward("zoe", "user-library-modify").NewRequest("POST", "/app/like", strings.NewReader(`{"track":"..."}`))
//
// The plugin passes the body and the browser's Content-Type on
// unchanged, so set Content-Type as the app's page would.
func (f Forwarded) NewRequest(method, target string, body io.Reader) *http.Request {
	req := httptest.NewRequest(method, target, body)
	f.Apply(req)
	return req
}
