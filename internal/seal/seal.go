// Package seal encrypts and authenticates small values (cookies, storage
// entries) with AES-256-GCM under keys derived by HKDF, one set per
// purpose. It is pure: no I/O, no configuration, nothing to leak.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"unsafe"
)

// The sealed layout: a version byte, a key id, a nonce, the ciphertext
// and the GCM tag, base64url encoded without padding.
const (
	version  = 1
	keyIDLen = 4
	nonceLen = 12
	// Overhead is what sealing adds to a plaintext before encoding.
	Overhead = 1 + keyIDLen + nonceLen + 16
	// MaxLen bounds what Open decodes at all.
	MaxLen = 64 << 10
)

// ErrUnsealable is every failure to open: callers treat it as "nothing".
var ErrUnsealable = errors.New("value cannot be opened")

// encoding is strict so that every sealed value has exactly one accepted
// spelling: flipping a padding bit must not leave it valid.
var encoding = base64.RawURLEncoding.Strict()

// KeyID names a key in a sealed value.
type KeyID [keyIDLen]byte

// A Sealer seals with its first key and opens with any of them, which is
// what makes secret rotation painless.
type Sealer struct {
	keys []key
}

type key struct {
	id   KeyID
	aead cipher.AEAD
}

// New derives one key per secret for info (the purpose and whatever the
// values must be bound to): done once, never per value.
func New(secrets [][]byte, info string) (*Sealer, error) {
	if len(secrets) == 0 {
		return nil, errors.New("no secret")
	}
	s := &Sealer{}
	for _, secret := range secrets {
		// HKDF turns a passphrase-like secret into a uniform key and
		// separates purposes.
		material, err := hkdf.Key(sha256.New, secret, []byte("caddy-spotify-auth"), info, 32+keyIDLen)
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
		k := key{aead: aead}
		copy(k.id[:], material[32:])
		s.keys = append(s.keys, k)
	}
	return s, nil
}

// SealingKey is the id of the key Seal uses.
func (s *Sealer) SealingKey() KeyID { return s.keys[0].id }

// KeyIDs are the ids of every key Open tries, SealingKey's first.
func (s *Sealer) KeyIDs() []KeyID {
	ids := make([]KeyID, len(s.keys))
	for i, k := range s.keys {
		ids[i] = k.id
	}
	return ids
}

// Seal encrypts plaintext bound to aad and returns it base64url encoded.
func (s *Sealer) Seal(plaintext, aad []byte) string {
	k := s.keys[0]
	buf := make([]byte, 1+keyIDLen+nonceLen, Overhead+len(plaintext))
	buf[0] = version
	copy(buf[1:], k.id[:])
	nonce := buf[1+keyIDLen:]
	if _, err := rand.Read(nonce); err != nil {
		panic("crypto/rand failed: " + err.Error()) // never happens on supported platforms
	}
	buf = k.aead.Seal(buf, nonce, plaintext, aad)
	return encoding.EncodeToString(buf)
}

// Open decodes and decrypts a value made by Seal with the same aad. Any
// failure is ErrUnsealable.
func (s *Sealer) Open(value string, aad []byte) ([]byte, error) {
	if len(value) < encoding.EncodedLen(Overhead) || len(value) > MaxLen {
		return nil, ErrUnsealable
	}
	buf := make([]byte, encoding.DecodedLen(len(value)))
	// Decode only reads its source, so the string's bytes can be used
	// without a copy.
	n, err := encoding.Decode(buf, unsafe.Slice(unsafe.StringData(value), len(value)))
	if err != nil || n < Overhead || buf[0] != version {
		return nil, ErrUnsealable
	}
	buf = buf[:n]
	for i := range s.keys {
		k := &s.keys[i]
		if KeyID(buf[1:1+keyIDLen]) != k.id {
			continue
		}
		nonce := buf[1+keyIDLen : Overhead-16]
		pt, err := k.aead.Open(buf[Overhead-16:Overhead-16], nonce, buf[Overhead-16:], aad)
		if err != nil {
			return nil, ErrUnsealable
		}
		return pt, nil
	}
	return nil, ErrUnsealable
}

// Version is the first byte of every sealed value, decoded.
const Version = version
