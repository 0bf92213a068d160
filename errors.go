package spotifyauth

import (
	"errors"
	"net/http"
	"strings"
	"time"
)

// Failure kinds and the one place they become answers (Handler.fail).

// failureKind is a failure that matters to the user; each maps to one
// answer in one place.
type failureKind int

const (
	kindStateInvalid       failureKind = iota + 1 // callback without a matching login in this browser
	kindLoginDenied                               // user pressed Cancel at Spotify
	kindLoginRejected                             // Spotify refused the code exchange or the app
	kindSpotifyUnavailable                        // 5xx, timeout, connection error, bad JSON
	kindRateLimited                               // 429: wait for Retry-After
	kindRefreshRevoked                            // invalid_grant on refresh: log in again
	kindBadRequest                                // malformed input
	kindMisconfigured                             // config that cannot work with the request
	kindStoreUnavailable                          // session_store storage: Caddy's storage failed
	kindTooManyLogins                             // code exchanges over login_rate_limit
)

// String names the kind for logs and metric labels.
func (k failureKind) String() string {
	switch k {
	case kindStateInvalid:
		return "state_invalid"
	case kindLoginDenied:
		return "access_denied"
	case kindLoginRejected:
		return "rejected"
	case kindSpotifyUnavailable:
		return "spotify_unavailable"
	case kindRateLimited:
		return "rate_limited"
	case kindRefreshRevoked:
		return "invalid_grant"
	case kindBadRequest:
		return "bad_request"
	case kindMisconfigured:
		return "misconfigured"
	case kindStoreUnavailable:
		return "store_unavailable"
	case kindTooManyLogins:
		return "too_many_logins"
	}
	return "unknown"
}

// authError is the error type of the auth path. Message is safe to show
// to users: it never holds a token, code, secret or cookie value.
type authError struct {
	Kind       failureKind
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

// fail answers a failed auth step: the one place where failure kinds
// become statuses. Browsers get a page with a retry link, others JSON.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, ae *authError, retryURL string) {
	status, title, code := http.StatusInternalServerError, "Login failed", "internal_error"
	switch ae.Kind {
	case kindStateInvalid:
		status, title, code = http.StatusBadRequest, "Login expired", "invalid_state"
	case kindLoginDenied:
		status, title, code = http.StatusForbidden, "Login cancelled", "access_denied"
	case kindLoginRejected:
		status, title, code = http.StatusForbidden, "Spotify refused the login", "login_rejected"
	case kindSpotifyUnavailable:
		status, title, code = http.StatusServiceUnavailable, "Spotify is unreachable", "spotify_unavailable"
		setRetryAfter(w.Header(), max(ae.RetryAfter, unavailableRetryAfter))
	case kindRateLimited:
		status, title, code = http.StatusServiceUnavailable, "Spotify is busy", "spotify_rate_limited"
		setRetryAfter(w.Header(), max(ae.RetryAfter, time.Second))
	case kindBadRequest:
		status, title, code = http.StatusBadRequest, "Bad request", "bad_request"
	case kindMisconfigured:
		status, title, code = http.StatusInternalServerError, "Login is misconfigured", "misconfigured"
	case kindStoreUnavailable:
		status, title, code = http.StatusServiceUnavailable, "Sessions are unavailable", "store_unavailable"
		setRetryAfter(w.Header(), unavailableRetryAfter)
	case kindTooManyLogins:
		status, title, code = http.StatusTooManyRequests, "Too many logins", "too_many_logins"
		setRetryAfter(w.Header(), max(ae.RetryAfter, time.Second))
	}
	h.metrics.answered(status)
	if retryURL == "" {
		retryURL = r.URL.RequestURI()
		if !isNavigation(r) {
			retryURL = loginURL(returnPath(r))
		}
	}
	if h.handOff(r, status, ae.Message) {
		return
	}
	if isNavigation(r) || !answersJSON(r) && (r.URL.Path == h.callbackPath || strings.HasPrefix(r.URL.Path, EndpointPrefix)) {
		msg := ae.Message
		if status == http.StatusServiceUnavailable {
			msg += ". Please try again in a moment."
		}
		writePage(w, status, page{Title: title, Message: msg, LinkURL: safeReturnPath(retryURL), LinkText: "Try again"})
		return
	}
	writeJSON(w, status, apiError{Error: code, Description: ae.Message})
}

func asAuthError(err error) *authError {
	var ae *authError
	if errors.As(err, &ae) {
		return ae
	}
	return &authError{Kind: kindSpotifyUnavailable, Message: "Spotify could not be reached", Err: err}
}

func kindOf(err error) failureKind {
	var ae *authError
	if errors.As(err, &ae) {
		return ae.Kind
	}
	return 0
}
