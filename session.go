package spotifyauth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// Key purposes: one derived key per use, so a state cookie can never be
// replayed as a session cookie or the other way round.
const (
	purposeSession = "caddy-spotify-auth session v1"
	purposeState   = "caddy-spotify-auth state v1"
	// Storage entries: published refresh results and stored sessions.
	purposeRefreshResult = "caddy-spotify-auth refresh result v1"
	purposeStoredSession = "caddy-spotify-auth stored session v1"
	purposeRevocation    = "caddy-spotify-auth revocation mark v1"
)

const (
	sealVersion  = 1
	keyIDLen     = 4
	nonceLen     = 12
	sealOverhead = 1 + keyIDLen + nonceLen + 16 // version, key id, nonce, GCM tag
)

var errUnsealable = errors.New("cookie cannot be opened")

// cookieEncoding is strict so that every sealed value has exactly one
// accepted spelling: flipping a padding bit must not leave it valid.
var cookieEncoding = base64.RawURLEncoding.Strict()

// sealer seals and opens cookie values with AES-256-GCM. The first key
// seals; every key opens, which is what makes secret rotation painless.
type sealer struct {
	keys []sealKey
}

type sealKey struct {
	id   [keyIDLen]byte
	aead cipher.AEAD
}

func newSealer(secrets [][]byte, purpose string) (*sealer, error) {
	if len(secrets) == 0 {
		return nil, errors.New("no cookie secret")
	}
	s := &sealer{}
	for _, secret := range secrets {
		// HKDF turns a passphrase-like secret into a uniform key and
		// separates purposes; done once here, never per request.
		material, err := hkdf.Key(sha256.New, secret, []byte("caddy-spotify-auth"), purpose, 32+keyIDLen)
		if err != nil {
			return nil, err
		}
		block, err := aes.NewCipher(material[:32])
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		var k sealKey
		copy(k.id[:], material[32:])
		k.aead = aead
		s.keys = append(s.keys, k)
	}
	return s, nil
}

// seal encrypts plaintext bound to aad and returns it base64url encoded.
func (s *sealer) seal(plaintext, aad []byte) string {
	k := s.keys[0]
	buf := make([]byte, 1+keyIDLen+nonceLen, sealOverhead+len(plaintext))
	buf[0] = sealVersion
	copy(buf[1:], k.id[:])
	nonce := buf[1+keyIDLen:]
	if _, err := rand.Read(nonce); err != nil {
		panic("crypto/rand failed: " + err.Error()) // never happens on supported platforms
	}
	buf = k.aead.Seal(buf, nonce, plaintext, aad)
	return cookieEncoding.EncodeToString(buf)
}

// open decodes and decrypts a value made by seal. Any failure is
// errUnsealable: callers treat it as "no cookie".
func (s *sealer) open(value string, aad []byte) ([]byte, error) {
	if len(value) < cookieEncoding.EncodedLen(sealOverhead) || len(value) > maxSealedLen {
		return nil, errUnsealable
	}
	buf := make([]byte, cookieEncoding.DecodedLen(len(value)))
	// Decode only reads its source, so the string's bytes can be used
	// without a copy.
	n, err := cookieEncoding.Decode(buf, unsafe.Slice(unsafe.StringData(value), len(value)))
	if err != nil || n < sealOverhead || buf[0] != sealVersion {
		return nil, errUnsealable
	}
	buf = buf[:n]
	for i := range s.keys {
		k := &s.keys[i]
		if [keyIDLen]byte(buf[1:1+keyIDLen]) != k.id {
			continue
		}
		nonce := buf[1+keyIDLen : sealOverhead-16]
		pt, err := k.aead.Open(buf[sealOverhead-16:sealOverhead-16], nonce, buf[sealOverhead-16:], aad)
		if err != nil {
			return nil, errUnsealable
		}
		return pt, nil
	}
	return nil, errUnsealable
}

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

	// storeKey is where the session lives with session_store storage
	// (not marshaled: it is the storage key itself).
	storeKey string
	// up is what passUpstream sends for it, worked out once for a cached
	// session (sessioncache.go); nil, or stale after a refresh, otherwise.
	up *upstreamValues
}

const sessionFormat = 2

// marshal encodes the session compactly: a format byte, three varints,
// then length-prefixed strings. Cheaper than JSON in both size and time.
func (s *session) marshal() []byte {
	fields := s.stringFields()
	n := 1 + 3*binary.MaxVarintLen64
	for _, f := range fields {
		n += binary.MaxVarintLen64 + len(*f)
	}
	b := make([]byte, 0, n)
	b = append(b, sessionFormat)
	b = binary.AppendVarint(b, s.Created)
	b = binary.AppendVarint(b, s.Expires)
	b = binary.AppendVarint(b, s.TokenExpires)
	for _, f := range fields {
		b = binary.AppendUvarint(b, uint64(len(*f)))
		b = append(b, *f...)
	}
	return b
}

func (s *session) stringFields() [9]*string {
	return [9]*string{&s.AccessToken, &s.RefreshToken, &s.Scopes, &s.UserID,
		&s.DisplayName, &s.Email, &s.Product, &s.Country, &s.Requested}
}

var errBadSession = errors.New("malformed session")

func unmarshalSession(b []byte) (session, error) {
	var s session
	if len(b) == 0 || b[0] != sessionFormat {
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
	for _, f := range s.stringFields() {
		l, n := uvarintFromString(str[pos:])
		if n <= 0 || l > uint64(len(str)-pos-n) {
			return s, errBadSession
		}
		pos += n
		*f = str[pos : pos+int(l)]
		pos += int(l)
	}
	if pos != len(str) || s.AccessToken == "" || s.UserID == "" {
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

// Cookie size limits. Browsers keep cookies up to 4096 bytes including
// name and attributes, so values are split into chunks below that.
const (
	maxChunkLen  = 3800
	maxChunks    = 5
	maxSealedLen = maxChunkLen * maxChunks
)

// cookieNames holds the session cookie's names. Over HTTPS the name gets
// a prefix that browsers enforce: __Host- (Secure, Path=/, no Domain) or
// __Secure- when a Domain is configured.
type cookieNames struct {
	base   string // as configured
	aad    []byte // base, as the associated data of every session seal
	plain  string // over http
	secure string // over https
}

func newCookieNames(base string, hasDomain bool) cookieNames {
	prefix := "__Host-"
	if hasDomain {
		prefix = "__Secure-"
	}
	return cookieNames{base: base, aad: []byte(base), plain: base, secure: prefix + base}
}

func (c cookieNames) session(r *http.Request) string {
	if r.TLS != nil {
		return c.secure
	}
	return c.plain
}

// stateCookie names the per-login cookie: one per login attempt, so tabs
// logging in at the same time don't overwrite each other.
func (c cookieNames) state(r *http.Request, id string) string {
	if r.TLS != nil {
		return "__Secure-" + c.base + "_state_" + id
	}
	return c.base + "_state_" + id
}

// ours reports whether a cookie name belongs to the handler, so it can be
// kept from the upstream.
func (c cookieNames) ours(name string) bool {
	name = strings.TrimPrefix(strings.TrimPrefix(name, "__Host-"), "__Secure-")
	return name == c.base || len(name) > len(c.base) && name[len(c.base)] == '_' && name[:len(c.base)] == c.base
}

// cookieValue finds a cookie in the request without parsing every cookie
// into a struct, which keeps the hot path free of allocations.
func cookieValue(h http.Header, name string) (string, bool) {
	for _, line := range h["Cookie"] {
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			k, v, ok := strings.Cut(part, "=")
			if ok && k == name {
				if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
					v = v[1 : len(v)-1]
				}
				return v, true
			}
		}
	}
	return "", false
}

// readChunked reads a possibly chunked cookie value. A chunked value's
// first part starts with "<count>." ('.' is not in the base64url alphabet).
func readChunked(h http.Header, name string) (string, bool) {
	first, ok := cookieValue(h, name)
	if !ok {
		return "", false
	}
	countStr, rest, chunked := strings.Cut(first, ".")
	if !chunked {
		return first, true
	}
	count, err := strconv.Atoi(countStr)
	if err != nil || count < 2 || count > maxChunks {
		return "", false
	}
	var b strings.Builder
	b.Grow(count * maxChunkLen)
	b.WriteString(rest)
	for i := 1; i < count; i++ {
		part, ok := cookieValue(h, chunkName(name, i))
		if !ok {
			return "", false
		}
		b.WriteString(part)
	}
	return b.String(), true
}

func chunkName(name string, i int) string {
	return name + "_" + strconv.Itoa(i)
}

// splitChunks splits a sealed value into cookie values (see readChunked).
func splitChunks(value string) []string {
	if len(value) <= maxChunkLen {
		return []string{value}
	}
	n := (len(value) + maxChunkLen - 1) / maxChunkLen
	parts := make([]string, 0, n)
	for i := 0; i < n; i++ {
		end := min((i+1)*maxChunkLen, len(value))
		parts = append(parts, value[i*maxChunkLen:end])
	}
	parts[0] = strconv.Itoa(n) + "." + parts[0]
	return parts
}

// cookieTemplate returns a cookie with the attributes every cookie of
// ours shares.
func (h *Handler) cookieTemplate(r *http.Request, name, value, path string, maxAge time.Duration) *http.Cookie {
	c := &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     path,
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteLaxMode,
		Domain:   h.CookieDomain,
	}
	if maxAge > 0 {
		c.MaxAge = int((maxAge + time.Second - 1) / time.Second)
	} else {
		c.MaxAge = -1
	}
	return c
}

// setSessionCookie saves s: sealed into the response, split into chunks
// if needed (expiring chunks of an older, longer value), or with
// session_store storage into storage, the cookie holding a reference.
func (h *Handler) setSessionCookie(w http.ResponseWriter, r *http.Request, s *session) error {
	plain := s.marshal()
	if h.storeSessions {
		ref, err := h.storeSession(r.Context(), s)
		if err != nil || ref == nil {
			return err // on success, the cookie already points at s
		}
		plain = ref
	}
	name := h.cookies.session(r)
	parts := splitChunks(h.sealers().sessions.seal(plain, h.cookies.aad))
	maxAge := time.Until(time.Unix(s.Expires, 0))
	for i, p := range parts {
		n := name
		if i > 0 {
			n = chunkName(name, i)
		}
		http.SetCookie(w, h.cookieTemplate(r, n, p, "/", maxAge))
	}
	for i := len(parts); i < maxChunks; i++ {
		if _, ok := cookieValue(r.Header, chunkName(name, i)); ok {
			http.SetCookie(w, h.cookieTemplate(r, chunkName(name, i), "", "/", -1))
		}
	}
	return nil
}

// clearSessionCookie expires the session cookie and all of its chunks.
func (h *Handler) clearSessionCookie(w http.ResponseWriter, r *http.Request) {
	name := h.cookies.session(r)
	for i := 0; i < maxChunks; i++ {
		n := name
		if i > 0 {
			n = chunkName(name, i)
		}
		if _, ok := cookieValue(r.Header, n); !ok {
			continue
		}
		http.SetCookie(w, h.cookieTemplate(r, n, "", "/", -1))
	}
}

// loadSession returns the request's session if it has a usable one.
func (h *Handler) loadSession(r *http.Request, now time.Time) (session, bool) {
	s, err := h.session(r, now)
	return s, err == nil
}
