package spotifytest

import (
	"errors"
	"net/http"
	"slices"
)

// MaxDevelopmentUsers is how many users a development-mode app admits
// (new apps since February 2026): the owner adds each in the dashboard.
const MaxDevelopmentUsers = 5

// ErrDevelopmentUserLimit is the error of SetDevelopmentUsers and
// AddDevelopmentUser when the list would hold more than
// MaxDevelopmentUsers users, as Spotify's dashboard refuses a sixth.
var ErrDevelopmentUserLimit = errors.New("spotifytest: a development-mode app admits at most 5 users")

// The bodies Spotify has answered, over the years, to a user who is not on
// a development-mode app's list, all as plain text. SetUnregisteredUserBody
// chooses one; UserNotRegistered is the default.
const (
	UserNotRegistered       = "User not registered in the Developer Dashboard"
	UserNotApproved         = "User not approved for app"
	UserMayNotBeRegistered  = "Check settings on developer.spotify.com/dashboard, the user may not be registered."
	UserNotRegisteredForApp = "The user is not registered for this application. Please check your settings on https://developer.spotify.com/dashboard."
)

// OwnerPremiumRequired is the message of the Web API's 403 while the app
// owner's Premium has lapsed (SetOwnerPremiumLapsed), as Spotify words it.
const OwnerPremiumRequired = "Active premium subscription required for the owner of the app. When the subscription status changes, it can take a few hours before requests are allowed again."

// SetDevelopmentMode switches between extended quota (off, the default)
// and development mode, the mode of almost every Spotify app since 2026.
// In development mode, for every app of the server:
//   - only the users on the list (SetDevelopmentUsers, AddDevelopmentUser)
//     may use the Web API. Anyone else can still consent and the code
//     exchange and refreshes succeed, but /v1/me and every other Web API
//     call answer 403 with the body of SetUnregisteredUserBody;
//   - /v1/me has no email, country, product or followers, whatever the
//     scopes.
//
// App tokens (client credentials) have no user and are not affected.
func (s *Server) SetDevelopmentMode(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.developmentMode = on
}

// SetDevelopmentUsers replaces the list of users a development-mode app
// admits (the dashboard's User Management). More than
// MaxDevelopmentUsers IDs, or an empty ID, is an error and leaves the list
// as it was. IDs need not be known users yet. The list has no effect in
// extended quota.
func (s *Server) SetDevelopmentUsers(userIDs ...string) error {
	var list []string
	for _, id := range userIDs {
		if id == "" {
			return errors.New("spotifytest: SetDevelopmentUsers: empty user ID")
		}
		if !slices.Contains(list, id) {
			list = append(list, id)
		}
	}
	if len(list) > MaxDevelopmentUsers {
		return ErrDevelopmentUserLimit
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.developmentUsers = list
	return nil
}

// AddDevelopmentUser adds a user to the development-mode list (adding one
// already there does nothing). A sixth user is ErrDevelopmentUserLimit.
func (s *Server) AddDevelopmentUser(userID string) error {
	if userID == "" {
		return errors.New("spotifytest: AddDevelopmentUser: empty user ID")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.Contains(s.developmentUsers, userID) {
		return nil
	}
	if len(s.developmentUsers) >= MaxDevelopmentUsers {
		return ErrDevelopmentUserLimit
	}
	s.developmentUsers = append(s.developmentUsers, userID)
	return nil
}

// SetUnregisteredUserBody sets the body of the 403 that a user not on a
// development-mode app's list gets from the Web API: one of Spotify's
// plain-text wordings (UserNotRegistered, the default, UserNotApproved,
// UserMayNotBeRegistered, UserNotRegisteredForApp), or a JSON form such
// as APIErrorJSON(403, UserNotRegistered). Its Content-Type is guessed as
// for Fault.Body: JSON if it starts with "{", else plain text. ""
// restores the default.
func (s *Server) SetUnregisteredUserBody(body string) {
	if body == "" {
		body = UserNotRegistered
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unregisteredBody = body
}

// SetOwnerPremiumLapsed simulates the app owner's Premium lapsing: every
// Web API call, for every user and app token, answers 403 with
// OwnerPremiumRequired in Spotify's nested JSON error (no reason), until
// it is switched off. Spotify requires the owner's Premium only of
// development-mode apps; the switch works in either mode so that a test
// needs one line. /authorize and the token endpoint are not affected:
// logins and refreshes succeed and only the Web API refuses, as reported
// by Spotify's users.
func (s *Server) SetOwnerPremiumLapsed(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ownerPremiumLapsed = on
}

// APIErrorJSON is Spotify's nested Web API error,
// {"error":{"status":N,"message":"..."}}, for Fault.Body or
// SetUnregisteredUserBody.
func APIErrorJSON(status int, message string) string {
	return apiErrorJSON(status, message)
}

// refuseByAppState answers the 403 of a lapsed owner Premium or of a user
// not on the development-mode list, and reports whether it did. userID is
// "" for an app token.
func (s *Server) refuseByAppState(w http.ResponseWriter, userID string) bool {
	s.mu.Lock()
	lapsed := s.ownerPremiumLapsed
	unlisted := s.developmentMode && userID != "" && !slices.Contains(s.developmentUsers, userID)
	body := s.unregisteredBody
	s.mu.Unlock()
	switch {
	case lapsed:
		writeAPIError(w, http.StatusForbidden, OwnerPremiumRequired)
	case unlisted:
		w.Header().Set("Content-Type", guessContentType(body))
		w.Header().Set("Cache-Control", "private, max-age=0")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(body))
	default:
		return false
	}
	return true
}

// accountID is the user's account_id: AccountID, or one derived from the
// ID so that it is stable and distinct per user, yet not the ID.
func (u *User) accountID() string {
	if u.AccountID != "" {
		return u.AccountID
	}
	return fakeID("account:" + u.ID)
}
