package spotifyauth

import (
	"encoding/binary"
	"errors"
)

// session is what the session cookie carries. Field values are
// substrings of one decoded string, so opening a session costs one
// allocation for all of them.
type session struct {
	Created      int64 // login time, unix nanoseconds (compared with revocation marks)
	Expires      int64 // session end, unix seconds
	TokenExpires int64 // access token expiry, unix seconds
	AccessToken  string
	RefreshToken string
	Scopes       string // space separated, as granted
	UserID       string
	DisplayName  string
	Email        string
	Product      string
	Country      string
	Requested    string // space separated scopes asked for, granted or not
	AccountID    string // /v1/me account_id ("" if Spotify sent none)

	// storeKey is where the session lives with session_store storage
	// (not marshaled: it is the storage key itself).
	storeKey string
	// up is what passUpstream sends for it, worked out once for a cached
	// session (sessioncache.go); nil, or stale after a refresh, otherwise.
	up *upstreamValues
}

// Session formats. Format 3 is format 2 with AccountID appended. A
// session without an account id is still written as format 2, byte for
// byte what earlier versions wrote: instances of either version read it
// during a rolling upgrade, and a cookie session moved to storage keeps
// its migrationRef (a hash of these bytes).
const (
	sessionFormatV2 = 2
	sessionFormat   = 3
)

// marshal encodes the session compactly: a format byte, three varints,
// then length-prefixed strings. Cheaper than JSON in both size and time.
func (s *session) marshal() []byte {
	format, fields := s.formatFields()
	n := 1 + 3*binary.MaxVarintLen64
	for _, f := range fields {
		n += binary.MaxVarintLen64 + len(*f)
	}
	b := make([]byte, 0, n)
	b = append(b, format)
	b = binary.AppendVarint(b, s.Created)
	b = binary.AppendVarint(b, s.Expires)
	b = binary.AppendVarint(b, s.TokenExpires)
	for _, f := range fields {
		b = binary.AppendUvarint(b, uint64(len(*f)))
		b = append(b, *f...)
	}
	return b
}

// stringFields lists the string fields in encoding order; format 2 has
// all but the last.
func (s *session) stringFields() [10]*string {
	return [10]*string{&s.AccessToken, &s.RefreshToken, &s.Scopes, &s.UserID,
		&s.DisplayName, &s.Email, &s.Product, &s.Country, &s.Requested, &s.AccountID}
}

// formatFields is the format s is written in and the fields it holds.
func (s *session) formatFields() (byte, []*string) {
	all := s.stringFields()
	if s.AccountID == "" {
		return sessionFormatV2, all[:len(all)-1]
	}
	return sessionFormat, all[:]
}

var errBadSession = errors.New("malformed session")

func unmarshalSession(b []byte) (session, error) {
	var s session
	if len(b) == 0 {
		return s, errBadSession
	}
	fields := s.stringFields()
	var decode []*string
	switch b[0] {
	case sessionFormatV2:
		decode = fields[:len(fields)-1]
	case sessionFormat:
		decode = fields[:]
	default:
		return s, errBadSession
	}
	str := string(b[1:])
	pos := 0
	for _, p := range []*int64{&s.Created, &s.Expires, &s.TokenExpires} {
		v, n := varintFromString(str[pos:])
		if n <= 0 {
			return s, errBadSession
		}
		*p = v
		pos += n
	}
	for _, f := range decode {
		l, n := uvarintFromString(str[pos:])
		if n <= 0 || l > uint64(len(str)-pos-n) {
			return s, errBadSession
		}
		pos += n
		*f = str[pos : pos+int(l)]
		pos += int(l)
	}
	// Format 3 without an account id is not what marshal writes: refused,
	// so that every accepted session has one encoding.
	if pos != len(str) || s.AccessToken == "" || s.UserID == "" || b[0] == sessionFormat && s.AccountID == "" {
		return s, errBadSession
	}
	return s, nil
}

func uvarintFromString(s string) (uint64, int) {
	var x uint64
	var shift uint
	for i := 0; i < len(s) && i < binary.MaxVarintLen64; i++ {
		c := s[i]
		if c < 0x80 {
			// Overlong or overflowing encodings are not ours.
			if i > 0 && c == 0 || i == binary.MaxVarintLen64-1 && c > 1 {
				return 0, 0
			}
			return x | uint64(c)<<shift, i + 1
		}
		x |= uint64(c&0x7f) << shift
		shift += 7
	}
	return 0, 0
}

func varintFromString(s string) (int64, int) {
	ux, n := uvarintFromString(s)
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x, n
}
