package spotifytest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// LogIn walks the login of an app under test in client c, as a browser
// does when its user presses Approve: start (a request for a page behind
// the login, or the app's login URL) must be answered with a redirect to
// s's /authorize; s approves that request as userID ("" means
// DefaultUser), as Approve does; and c requests the callback URL with
// start's headers. It returns the callback's answer, its body read and
// kept for the caller, and its Location telling where the app sends the
// browser next. c's cookie jar keeps what the app sets; no redirect is
// followed, whatever c's CheckRedirect. The error reports a step that
// could not be taken; the callback's status is the caller's to judge.
func (s *Server) LogIn(c *http.Client, start *http.Request, userID string) (*http.Response, error) {
	noFollow := *c
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := send(&noFollow, start)
	if err != nil {
		return nil, err
	}
	authURL := resp.Header.Get("Location")
	if resp.StatusCode/100 != 3 || !strings.HasPrefix(authURL, s.AuthorizeURL()+"?") {
		// The query (state, PKCE challenge) stays out of the message.
		where, _, _ := strings.Cut(authURL, "?")
		return nil, fmt.Errorf("spotifytest: %s %s answered %d to %q, want a redirect to the fake's /authorize",
			start.Method, start.URL.Path, resp.StatusCode, where)
	}
	callback, err := s.Approve(authURL, userID)
	if err != nil {
		return nil, fmt.Errorf("spotifytest: approving the login of %q: %w", userID, err)
	}
	req, err := http.NewRequestWithContext(start.Context(), http.MethodGet, callback, nil)
	if err != nil {
		return nil, err
	}
	req.Header = start.Header.Clone()
	return send(&noFollow, req)
}

// send does req and keeps the answer's body readable after the
// connection is released.
func send(c *http.Client, req *http.Request) (*http.Response, error) {
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}
