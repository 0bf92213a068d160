package spotifyauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// newHTTPClient returns the client for every call to Spotify: explicit
// timeouts everywhere, because the default client has none and a hung
// Spotify must not hang requests.
func newHTTPClient(timeout time.Duration) *http.Client {
	connect := min(timeout, 5*time.Second)
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = connect
	t.ResponseHeaderTimeout = timeout
	t.MaxIdleConnsPerHost = 16
	return &http.Client{Timeout: timeout, Transport: &spotifyTransport{Transport: t}}
}

// defaultRetryAfter applies when Spotify rate limits without saying for
// how long; maxRetryAfter caps what it says.
const (
	defaultRetryAfter = 30 * time.Second
	maxRetryAfter     = time.Hour
)

// spotifyClient calls the Spotify Web API.
type spotifyClient struct {
	apiURL string
	http   *http.Client
}

// userProfile is what the handler keeps of /v1/me. Only ID is guaranteed.
type userProfile struct {
	ID          string `json:"id"`
	AccountID   string `json:"account_id"`
	DisplayName string `json:"display_name"`
	Email       string `json:"email"`
	Product     string `json:"product"`
	Country     string `json:"country"`
}

// maxAPIBody bounds what is read from Spotify, whatever it sends.
const maxAPIBody = 1 << 20

// me fetches the current user's profile.
func (c *spotifyClient) me(ctx context.Context, accessToken string) (userProfile, error) {
	var p userProfile
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.apiURL+"/v1/me", nil)
	if err != nil {
		return p, err
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return p, &authError{Kind: kindSpotifyUnavailable, Message: "Spotify's Web API could not be reached", Err: scrubURLError(err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIBody))
	if err != nil {
		return p, &authError{Kind: kindSpotifyUnavailable, Message: "reading Spotify's answer failed", Err: err}
	}
	if resp.StatusCode != http.StatusOK {
		return p, apiStatusError(resp, body)
	}
	if err := json.Unmarshal(body, &p); err != nil || p.ID == "" {
		return p, &authError{Kind: kindSpotifyUnavailable, Message: "Spotify's profile answer was malformed", Err: err}
	}
	return p, nil
}

// apiStatusError turns a Web API error (nested JSON) into an authError.
func apiStatusError(resp *http.Response, body []byte) error {
	var e struct {
		Error struct {
			Status  int    `json:"status"`
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	detail := fmt.Errorf("GET /v1/me: HTTP %d %s", resp.StatusCode, truncate(e.Error.Message, 200))
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		return &authError{Kind: kindRateLimited, Message: "Spotify is rate limiting this app",
			RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After")), Err: detail}
	case resp.StatusCode >= 500:
		return &authError{Kind: kindSpotifyUnavailable, Message: "Spotify's Web API is failing", Err: detail}
	case resp.StatusCode == http.StatusForbidden:
		// Development-mode apps admit only users on their allowlist.
		return &authError{Kind: kindLoginRejected, Message: "Spotify refused this account for this app (in development mode, the account must be added to the app's user list in Spotify's dashboard)", Err: detail}
	default:
		return &authError{Kind: kindLoginRejected, Message: "Spotify rejected the profile request", Err: detail}
	}
}

// classifyTokenError sorts an x/oauth2 error from the token endpoint.
func classifyTokenError(err error, what string) *authError {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		detail := fmt.Errorf("%s: HTTP %d %s", what, re.Response.StatusCode, truncate(re.ErrorCode, 64))
		switch {
		case re.Response.StatusCode == http.StatusTooManyRequests:
			return &authError{Kind: kindRateLimited, Message: "Spotify is rate limiting this app",
				RetryAfter: parseRetryAfter(re.Response.Header.Get("Retry-After")), Err: detail}
		case re.Response.StatusCode >= 500:
			return &authError{Kind: kindSpotifyUnavailable, Message: "Spotify's accounts service is failing", Err: detail}
		case re.ErrorCode == "invalid_grant":
			return &authError{Kind: kindRefreshRevoked, Message: "Spotify no longer accepts this grant", Err: detail}
		case re.ErrorCode == "":
			// A 4xx without an OAuth error body is not Spotify speaking.
			return &authError{Kind: kindSpotifyUnavailable, Message: "Spotify's accounts service answered unexpectedly", Err: detail}
		default:
			return &authError{Kind: kindLoginRejected, Message: "Spotify rejected the request (" + truncate(re.ErrorCode, 64) + ")", Err: detail}
		}
	}
	return &authError{Kind: kindSpotifyUnavailable, Message: "Spotify's accounts service could not be reached", Err: scrubURLError(err)}
}

// scrubURLError drops the URL from a transport error: token endpoint URLs
// carry no secrets, but API URLs might one day, and the log needs only the
// cause.
func scrubURLError(err error) error {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}

// parseRetryAfter reads a Retry-After header (seconds or a date), with a
// default when it is missing or unreadable and a cap when it is huge.
func parseRetryAfter(v string) time.Duration {
	d := defaultRetryAfter
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && secs >= 0 {
		d = time.Duration(min(secs, int(maxRetryAfter/time.Second))) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = max(time.Until(t), time.Second)
	}
	return min(d, maxRetryAfter)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
