package spotifyauth

import (
	"bytes"
	"cmp"
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
	"unicode"
	"unicode/utf8"

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

// apiStatusError turns a Web API error into an authError. Spotify's own
// words (a nested JSON error, or a plain-text body) go into the error for
// the log, and decide what the user is told: in a development-mode app,
// the same 403 means "not on the user list" or "the owner's Premium has
// lapsed", and only its text tells which.
func apiStatusError(resp *http.Response, body []byte) error {
	said := spotifyMessage(body)
	detail := spotifyDetail("GET /v1/me", resp.StatusCode, said)
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		return rateLimitError(resp.Header.Get("Retry-After"), said, detail)
	case ownerPremiumLapsed(said):
		return ownerPremiumError(said, detail)
	case resp.StatusCode >= 500:
		return &authError{Kind: kindSpotifyUnavailable, Message: "Spotify's Web API is failing", Said: said, Err: detail}
	case resp.StatusCode == http.StatusForbidden && userNotRegistered(said):
		return &authError{Kind: kindNotRegistered, Message: notRegisteredMessage, Said: said, Err: detail, AccountRefused: true}
	case resp.StatusCode == http.StatusForbidden:
		// Spotify may word "not on the user list" anew: the likeliest
		// cause is still named, for the user and the log.
		return &authError{Kind: kindLoginRejected, Message: unexplainedForbiddenMessage, Said: said, Err: detail, AccountRefused: true}
	default:
		return &authError{Kind: kindLoginRejected, Message: "Spotify rejected the profile request", Said: said, Err: detail}
	}
}

// classifyTokenError sorts an x/oauth2 error from the token endpoint.
// error_description is what tells a redirect URI mismatch from an expired
// code, so it goes into the error for the log.
func classifyTokenError(err error, what string) *authError {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		said := tokenErrorText(re)
		detail := spotifyDetail(what, re.Response.StatusCode, said)
		switch {
		case re.Response.StatusCode == http.StatusTooManyRequests:
			return rateLimitError(re.Response.Header.Get("Retry-After"), said, detail)
		case ownerPremiumLapsed(said):
			return ownerPremiumError(said, detail)
		case re.Response.StatusCode >= 500:
			return &authError{Kind: kindSpotifyUnavailable, Message: "Spotify's accounts service is failing", Said: said, Err: detail}
		case re.ErrorCode == "invalid_grant":
			return &authError{Kind: kindRefreshRevoked, Message: "Spotify no longer accepts this grant", Said: said, Err: detail}
		case re.ErrorCode == "":
			// A 4xx without an OAuth error body is not Spotify speaking.
			return &authError{Kind: kindSpotifyUnavailable, Message: "Spotify's accounts service answered unexpectedly", Said: said, Err: detail}
		default:
			return &authError{Kind: kindLoginRejected, Message: "Spotify rejected the request (" + cleanSpotifyText(re.ErrorCode, 64) + ")", Said: said, Err: detail}
		}
	}
	return &authError{Kind: kindSpotifyUnavailable, Message: "Spotify's accounts service could not be reached", Err: scrubURLError(err)}
}

// tokenErrorText is what the token endpoint said: the OAuth error code and
// its description, or the body when it is not an OAuth error.
func tokenErrorText(re *oauth2.RetrieveError) string {
	switch {
	case re.ErrorCode != "" && re.ErrorDescription != "":
		return cleanSpotifyText(re.ErrorCode+": "+re.ErrorDescription, maxSpotifyText)
	case re.ErrorCode != "":
		return cleanSpotifyText(re.ErrorCode, maxSpotifyText)
	}
	return spotifyMessage(re.Body)
}

// spotifyDetail is the error the log shows for an answer of Spotify's.
func spotifyDetail(what string, status int, said string) error {
	if said == "" {
		return fmt.Errorf("%s: HTTP %d", what, status)
	}
	return fmt.Errorf("%s: HTTP %d: %s", what, status, said)
}

// rateLimitError is a 429. Retry-After is honoured up to maxRetryAfter;
// a longer wait Spotify asks for is kept (Asked) so the log and the page
// can say it.
func rateLimitError(retryAfter, said string, detail error) *authError {
	wait, asked := parseRetryAfter(retryAfter)
	ae := &authError{Kind: kindRateLimited, Message: "Spotify is rate limiting this app", RetryAfter: wait, Said: said, Err: detail}
	if asked > wait {
		ae.Asked = asked
	}
	return ae
}

// ownerPremiumPause is how long no call is made to Spotify, by any
// instance, after it said the app's owner has no Premium: every call fails
// until the owner renews it, which takes a person some minutes at least.
// Short enough that a renewal is noticed soon after.
const ownerPremiumPause = 5 * time.Minute

func ownerPremiumError(said string, detail error) *authError {
	return &authError{Kind: kindOwnerPremium, Message: ownerPremiumMessage, RetryAfter: ownerPremiumPause, Said: said, Err: detail}
}

// What users are told when the app's development mode or its owner's
// Premium is the cause.
const (
	notRegisteredMessage = "This site's Spotify app is in development mode, and Spotify admits only the accounts " +
		"its owner has added to the app's user list (at most 5 for new apps). The Spotify account you used is not on that list. " +
		"Ask the site's owner to add it, or log in with another Spotify account."
	unexplainedForbiddenMessage = "Spotify refused to tell this site who you are. If the site's Spotify app is in " +
		"development mode, your account may not be on the app's user list: ask the site's owner"
	ownerPremiumMessage = "Spotify is refusing every login and request of this site because the Premium subscription " +
		"of the Spotify app's owner has lapsed. This is not a problem with your account; it will work again once the " +
		"site's owner renews Premium"
)

// userNotRegistered reports whether a 403's text says the user is not on
// a development-mode app's user list. Spotify has worded it several ways
// over the years ("User not registered in the Developer Dashboard", "User
// not approved for app", "... the user may not be registered."), so this
// matches the common words, not a sentence.
func userNotRegistered(said string) bool {
	s := strings.ToLower(said)
	return strings.Contains(s, "not registered") || strings.Contains(s, "not be registered") || strings.Contains(s, "not approved")
}

// ownerPremiumLapsed reports whether Spotify says the app's owner lacks
// Premium ("Active premium subscription required for the owner of the
// app"): Premium and the app's owner, in any of the ways Spotify may
// reword it. A user's own missing Premium (the player's
// PREMIUM_REQUIRED), or a playlist's owner, is not the app's owner.
func ownerPremiumLapsed(said string) bool {
	s := strings.ToLower(said)
	if !strings.Contains(s, "premium") {
		return false
	}
	for _, owner := range []string{"owner of the app", "owner of this app", "app owner", "app's owner", "application owner", "owner of the application"} {
		if strings.Contains(s, owner) {
			return true
		}
	}
	return false
}

// maxSpotifyText bounds Spotify's words in a log line.
const maxSpotifyText = 300

// spotifyMessage returns what a Web API error body says: the nested JSON
// error's message and reason ({"error":{"status":429,"message":"...",
// "reason":"QUOTA_EXCEEDED"}}), an OAuth-style error, or the body itself
// (development-mode 403s are plain text). Cleaned and capped.
func spotifyMessage(body []byte) string {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return ""
	}
	if trimmed[0] == '{' {
		var nested struct {
			Error struct {
				Message string `json:"message"`
				Reason  string `json:"reason"`
			} `json:"error"`
			Reason string `json:"reason"`
		}
		var flat struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		_ = json.Unmarshal(trimmed, &nested) // a string "error" fails here and fits flat
		_ = json.Unmarshal(trimmed, &flat)
		msg, reason := nested.Error.Message, cmp.Or(nested.Error.Reason, nested.Reason)
		if msg == "" && flat.Error != "" {
			msg = strings.TrimSuffix(flat.Error+": "+flat.Description, ": ")
		}
		switch {
		case msg != "" && reason != "":
			return cleanSpotifyText(msg+" (reason "+reason+")", maxSpotifyText)
		case msg != "" || reason != "":
			return cleanSpotifyText(msg+reason, maxSpotifyText)
		}
	}
	return cleanSpotifyText(string(trimmed), maxSpotifyText)
}

// minRedactedRun is the length from which a run of token characters in
// Spotify's text is replaced: tokens, codes and client secrets are at
// least this long, Spotify's words never are. Its texts carry none of
// them; this holds if a proxy in between ever echoes a request.
const minRedactedRun = 32

// cleanSpotifyText makes a text of Spotify's fit for one log line and a
// page: valid UTF-8, control characters as spaces, runs of spaces folded,
// long token-like runs redacted, at most n bytes.
func cleanSpotifyText(s string, n int) string {
	s = strings.ToValidUTF8(s, "")
	s = strings.Map(func(r rune) rune {
		// Format characters too (U+202E, U+200B): they make a log line
		// read other than it is.
		if r < 0x20 || r >= 0x7f && r < 0xa0 || r == utf8.RuneError || r == '\u2028' || r == '\u2029' || unicode.Is(unicode.Cf, r) {
			return ' '
		}
		return r
	}, s)
	words := strings.Fields(s)
	for i, w := range words {
		words[i] = redactTokenRuns(w)
	}
	s = strings.Join(words, " ")
	if len(s) > n {
		cut := n
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// redactTokenRuns replaces each run of at least minRedactedRun token
// characters (base64 and base64url with padding, hex, '.', '~') in w. A
// run with both '/' and a '.' inside it is a URL's host and path, which
// no token has (standard base64 has no '.', base64url and JWTs no '/'):
// kept. A '.' that ends the run (a sentence's full stop) does not count.
func redactTokenRuns(w string) string {
	if len(w) < minRedactedRun {
		return w
	}
	var b strings.Builder
	run := 0
	slash, dot := false, false // dot: a '.' with more of the run after it
	flush := func(end int) {
		if run >= minRedactedRun && !(slash && dot) {
			b.WriteString("[redacted]")
		} else {
			b.WriteString(w[end-run : end])
		}
		run, slash, dot = 0, false, false
	}
	for i := 0; i < len(w); i++ {
		if c := w[i]; isAlnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '+' || c == '/' || c == '=' {
			dot = dot || run > 0 && w[i-1] == '.' && c != '.'
			run++
			slash = slash || c == '/'
			continue
		}
		flush(i)
		b.WriteByte(w[i])
	}
	flush(len(w))
	return b.String()
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
// default when it is missing or unreadable. It returns the wait honoured
// (capped at maxRetryAfter) and the wait asked for, which may be longer.
func parseRetryAfter(v string) (wait, asked time.Duration) {
	asked = defaultRetryAfter
	if secs, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil && secs >= 0 {
		asked = time.Duration(min(secs, maxAskedSeconds)) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		asked = max(time.Until(t), time.Second)
	}
	return min(asked, maxRetryAfter), asked
}

// maxAskedSeconds keeps a Retry-After in seconds from overflowing a
// Duration (a year is plenty to say "too long").
const maxAskedSeconds = 365 * 24 * 3600
