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

// errKind is a failure that matters to the user; each maps to one answer
// in one place (see Handler.fail).
type errKind int

const (
	errStateInvalid       errKind = iota + 1 // callback without a matching login in this browser
	errLoginDenied                           // user pressed Cancel at Spotify
	errLoginRejected                         // Spotify refused the code exchange or the app
	errSpotifyUnavailable                    // 5xx, timeout, connection error, bad JSON
	errRateLimited                           // 429: wait for Retry-After
	errRefreshRevoked                        // invalid_grant on refresh: log in again
	errBadRequest                            // malformed input
	errMisconfigured                         // config that cannot work with the request
	errStoreUnavailable                      // session_store storage: Caddy's storage failed
)

// String names the kind for logs and metric labels.
func (k errKind) String() string {
	switch k {
	case errStateInvalid:
		return "state_invalid"
	case errLoginDenied:
		return "access_denied"
	case errLoginRejected:
		return "rejected"
	case errSpotifyUnavailable:
		return "spotify_unavailable"
	case errRateLimited:
		return "rate_limited"
	case errRefreshRevoked:
		return "invalid_grant"
	case errBadRequest:
		return "bad_request"
	case errMisconfigured:
		return "misconfigured"
	case errStoreUnavailable:
		return "store_unavailable"
	}
	return "unknown"
}

// defaultRetryAfter applies when Spotify rate limits without saying for
// how long; maxRetryAfter caps what it says.
const (
	defaultRetryAfter = 30 * time.Second
	maxRetryAfter     = time.Hour
)

// authError is the error type of the auth path. Message is safe to show
// to users: it never holds a token, code, secret or cookie value.
type authError struct {
	Kind       errKind
	Message    string
	RetryAfter time.Duration
	Err        error // for the log; also free of secrets
}

func (e *authError) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *authError) Unwrap() error { return e.Err }

// spotifyClient calls the Spotify Web API.
type spotifyClient struct {
	apiURL string
	http   *http.Client
}

// userProfile is what the handler keeps of /v1/me. Only ID is guaranteed.
type userProfile struct {
	ID          string `json:"id"`
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
		return p, &authError{Kind: errSpotifyUnavailable, Message: "Spotify's Web API could not be reached", Err: scrubURLError(err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIBody))
	if err != nil {
		return p, &authError{Kind: errSpotifyUnavailable, Message: "reading Spotify's answer failed", Err: err}
	}
	if resp.StatusCode != http.StatusOK {
		return p, apiStatusError(resp, body)
	}
	if err := json.Unmarshal(body, &p); err != nil || p.ID == "" {
		return p, &authError{Kind: errSpotifyUnavailable, Message: "Spotify's profile answer was malformed", Err: err}
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
		return &authError{Kind: errRateLimited, Message: "Spotify is rate limiting this app",
			RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After")), Err: detail}
	case resp.StatusCode >= 500:
		return &authError{Kind: errSpotifyUnavailable, Message: "Spotify's Web API is failing", Err: detail}
	case resp.StatusCode == http.StatusForbidden:
		// Development-mode apps admit only users on their allowlist.
		return &authError{Kind: errLoginRejected, Message: "Spotify refused this account for this app (in development mode, the account must be added to the app's user list in Spotify's dashboard)", Err: detail}
	default:
		return &authError{Kind: errLoginRejected, Message: "Spotify rejected the profile request", Err: detail}
	}
}

// classifyTokenError sorts an x/oauth2 error from the token endpoint.
func classifyTokenError(err error, what string) *authError {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		detail := fmt.Errorf("%s: HTTP %d %s", what, re.Response.StatusCode, truncate(re.ErrorCode, 64))
		switch {
		case re.Response.StatusCode == http.StatusTooManyRequests:
			return &authError{Kind: errRateLimited, Message: "Spotify is rate limiting this app",
				RetryAfter: parseRetryAfter(re.Response.Header.Get("Retry-After")), Err: detail}
		case re.Response.StatusCode >= 500:
			return &authError{Kind: errSpotifyUnavailable, Message: "Spotify's accounts service is failing", Err: detail}
		case re.ErrorCode == "invalid_grant":
			return &authError{Kind: errRefreshRevoked, Message: "Spotify no longer accepts this grant", Err: detail}
		case re.ErrorCode == "":
			// A 4xx without an OAuth error body is not Spotify speaking.
			return &authError{Kind: errSpotifyUnavailable, Message: "Spotify's accounts service answered unexpectedly", Err: detail}
		default:
			return &authError{Kind: errLoginRejected, Message: "Spotify rejected the request (" + truncate(re.ErrorCode, 64) + ")", Err: detail}
		}
	}
	return &authError{Kind: errSpotifyUnavailable, Message: "Spotify's accounts service could not be reached", Err: scrubURLError(err)}
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
