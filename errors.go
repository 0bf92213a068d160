package spotifyauth

import (
	"errors"
	"net/http"
	"strconv"
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
	kindNotRegistered                             // development mode: the user is not on the app's user list
	kindOwnerPremium                              // the app owner's Premium lapsed: every call fails, for everyone
	kindFieldNotShared                            // an access rule needs a profile field Spotify did not send
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
	kindNotRegistered:      {"user_not_registered", "This Spotify account is not on the app's user list", "user_not_registered", http.StatusForbidden, 0},
	kindOwnerPremium:       {"owner_premium_required", "Spotify is refusing this site", "spotify_unavailable", http.StatusServiceUnavailable, unavailableRetryAfter},
	kindFieldNotShared:     {"field_not_shared", "Spotify did not share what this site checks", "forbidden", http.StatusForbidden, 0},
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
	// Asked is the wait Spotify asked for when it is longer than the
	// plugin waits (RetryAfter is capped at maxRetryAfter).
	Asked time.Duration
	// Said is Spotify's own text (cleaned and capped), for the log.
	Said string
	Err  error // for the log; also free of secrets
	// AccountRefused: Spotify refused this account the profile (a 403 of
	// /v1/me, in words known or not): another account may do.
	AccountRefused bool
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
		switch {
		case r.URL.Path == h.callbackPath:
			// Its URL carries Spotify's code: no page links to it, not
			// even as a login's return path.
			retryURL = loginURL("/")
		case !isNavigation(r):
			retryURL = loginURL(returnPath(r))
		default:
			retryURL = r.URL.RequestURI()
		}
	}
	if h.handOff(w, r, ans.status, ae.Message) {
		return
	}
	if isNavigation(r) || !answersJSON(r) && isEndpointPath(h, r.URL.Path) {
		msg := ae.Message
		if ans.status == http.StatusServiceUnavailable {
			msg += ". " + retryAdvice(ae, max(ae.RetryAfter, ans.minRetryAfter))
		}
		linkText := "Try again"
		if ae.AccountRefused {
			linkText = "Use another Spotify account"
		}
		writePage(w, ans.status, page{Title: ans.title, Message: msg, LinkURL: safeReturnPath(retryURL), LinkText: linkText})
		return
	}
	writeJSON(w, ans.status, apiError{Error: ans.code, Description: ae.Message})
}

// retryAdvice tells a user of a 503 when to come back, in plain words:
// "in a moment" only when it is one.
func retryAdvice(ae *authError, wait time.Duration) string {
	switch {
	case ae.Kind == kindOwnerPremium:
		return "Please try again later."
	case ae.Asked > wait:
		return "Spotify asks this site to wait " + aboutDuration(ae.Asked) + " before calling it again, so please try again later."
	case wait >= 2*time.Minute:
		return "Please try again in " + aboutDuration(wait) + "."
	}
	return "Please try again in a moment."
}

// aboutDuration says a wait in the unit a person would use: "40 seconds",
// "12 minutes", "about 22 hours", "about 3 days".
func aboutDuration(d time.Duration) string {
	unit := func(n int64, one string) string {
		if n == 1 {
			return "1 " + one
		}
		return strconv.FormatInt(n, 10) + " " + one + "s"
	}
	switch {
	case d < 2*time.Minute:
		return unit(int64((d+time.Second-1)/time.Second), "second")
	case d < 2*time.Hour:
		return unit(int64((d+time.Minute-1)/time.Minute), "minute")
	case d < 48*time.Hour:
		return "about " + unit(int64((d+time.Hour/2)/time.Hour), "hour")
	}
	return "about " + unit(int64((d+12*time.Hour)/(24*time.Hour)), "day")
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
