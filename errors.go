package spotifyauth

import (
	"errors"
	"net/http"
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
	kindScopeNotGranted                           // the user did not grant a required scope
)

// unavailableRetryAfter is what clients are told to wait when Spotify
// fails without saying for how long.
const unavailableRetryAfter = 5 * time.Second

// answer is how a kind is named in logs and metrics and what it answers.
type answer struct {
	label, title, code string // metric label; page title; JSON error code
	status             int
	minRetryAfter      time.Duration // a Retry-After of at least this, if any
}

var answers = map[failureKind]answer{
	kindStateInvalid:       {"state_invalid", "Login expired", "invalid_state", http.StatusBadRequest, 0},
	kindLoginDenied:        {"access_denied", "Login cancelled", "access_denied", http.StatusForbidden, 0},
	kindLoginRejected:      {"rejected", "Spotify refused the login", "login_rejected", http.StatusForbidden, 0},
	kindScopeNotGranted:    {"scope_not_granted", "Permission missing", "insufficient_scope", http.StatusForbidden, 0},
	kindSpotifyUnavailable: {"spotify_unavailable", "Spotify is unreachable", "spotify_unavailable", http.StatusServiceUnavailable, unavailableRetryAfter},
	kindRateLimited:        {"rate_limited", "Spotify is busy", "spotify_rate_limited", http.StatusServiceUnavailable, time.Second},
	kindRefreshRevoked:     {"invalid_grant", "Login failed", "internal_error", http.StatusInternalServerError, 0},
	kindBadRequest:         {"bad_request", "Bad request", "bad_request", http.StatusBadRequest, 0},
	kindMisconfigured:      {"misconfigured", "Login is misconfigured", "misconfigured", http.StatusInternalServerError, 0},
	kindStoreUnavailable:   {"store_unavailable", "Sessions are unavailable", "store_unavailable", http.StatusServiceUnavailable, unavailableRetryAfter},
	kindTooManyLogins:      {"too_many_logins", "Too many logins", "too_many_logins", http.StatusTooManyRequests, time.Second},
}

// String names the kind for logs and metric labels.
func (k failureKind) String() string {
	if a, ok := answers[k]; ok {
		return a.label
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
	ans, ok := answers[ae.Kind]
	if !ok {
		ans = answer{title: "Login failed", code: "internal_error", status: http.StatusInternalServerError}
	}
	if ans.minRetryAfter > 0 {
		setRetryAfter(w.Header(), max(ae.RetryAfter, ans.minRetryAfter))
	}
	h.metrics.answered(ans.status)
	if retryURL == "" {
		retryURL = r.URL.RequestURI()
		if !isNavigation(r) {
			retryURL = loginURL(returnPath(r))
		}
	}
	if h.handOff(w, r, ans.status, ae.Message) {
		return
	}
	if isNavigation(r) || !answersJSON(r) && h.isEndpointPath(r.URL.Path) {
		msg := ae.Message
		if ans.status == http.StatusServiceUnavailable {
			msg += ". Please try again in a moment."
		}
		writePage(w, ans.status, page{Title: ans.title, Message: msg, LinkURL: safeReturnPath(retryURL), LinkText: "Try again"})
		return
	}
	writeJSON(w, ans.status, apiError{Error: ans.code, Description: ae.Message})
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
