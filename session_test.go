package spotifyauth

import (
	"bytes"
	"encoding/hex"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyspotify/caddy-spotify-auth/internal/revocation"
	"github.com/caddyspotify/caddy-spotify-auth/internal/seal"
)

func testSealer(t testing.TB, secrets ...string) *seal.Sealer {
	t.Helper()
	var bs [][]byte
	for _, s := range secrets {
		bs = append(bs, []byte(s))
	}
	s, err := seal.New(bs, purposeSession)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSessionRoundTripsThroughItsBinaryEncoding(t *testing.T) {
	t.Parallel()
	for _, accountID := range []string{"4Nq7aLiCe0aCc0uNt1d2x3", ""} {
		in := sampleSession()
		in.AccountID = accountID
		out, err := unmarshalSession(in.marshal())
		if err != nil {
			t.Fatal(err)
		}
		if out != in {
			t.Fatalf("got %+v, want %+v", out, in)
		}
	}
}

// format2Session is a session as the code before account_id wrote it
// (testdata/session_format2.txt), and what it holds.
func format2Session(t testing.TB) ([]byte, session) {
	t.Helper()
	raw, err := os.ReadFile("testdata/session_format2.txt")
	if err != nil {
		t.Fatal(err)
	}
	var b []byte
	for _, line := range strings.Split(string(raw), "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			if b, err = hex.DecodeString(line); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := sampleSession()
	want.AccountID = ""
	want.Expires, want.TokenExpires = 4000000000, 4000000000
	want.Requested = "user-read-email user-top-read"
	return b, want
}

func TestSessionsWrittenBeforeAccountIDStillDecode(t *testing.T) {
	t.Parallel()
	b, want := format2Session(t)
	got, err := unmarshalSession(b)
	if err != nil {
		t.Fatalf("a format-2 session no longer decodes: %v", err)
	}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	// Written again, it is the same bytes: instances not yet upgraded
	// read it, and a moved cookie session keeps its migrationRef.
	if again := got.marshal(); !bytes.Equal(again, b) {
		t.Fatalf("a session without account id is written as %x, want the format-2 bytes %x", again, b)
	}
	got.AccountID = "acc1"
	if f := got.marshal()[0]; f != sessionFormat {
		t.Fatalf("a session with an account id is written in format %d, want %d", f, sessionFormat)
	}
}

func TestMalformedSessionBytesAreRejected(t *testing.T) {
	t.Parallel()
	good := (&session{AccessToken: "a", UserID: "u"}).marshal()
	withAccount := (&session{AccessToken: "a", UserID: "u", AccountID: "acc"}).marshal()
	// Format 3 with an empty account id: decodable, but not what marshal
	// writes (that is format 2), so two encodings would mean one session.
	emptyAccount := append(append([]byte{sessionFormat}, good[1:]...), 0)
	for name, b := range map[string][]byte{
		"empty":                       nil,
		"wrong format":                append([]byte{9}, good[1:]...),
		"truncated":                   good[:len(good)-1],
		"trailing bytes":              append(append([]byte{}, good...), 0),
		"no access token":             (&session{UserID: "u"}).marshal(),
		"no user":                     (&session{AccessToken: "a"}).marshal(),
		"huge length":                 append([]byte{sessionFormat, 0, 0, 0}, 0xff, 0xff, 0xff, 0xff, 0x0f),
		"format 3 truncated":          withAccount[:len(withAccount)-1],
		"format 3 without account id": emptyAccount,
		"format 3 read as format 2":   append([]byte{sessionFormatV2}, withAccount[1:]...),
		"format 2 read as format 3":   append([]byte{sessionFormat}, good[1:]...),
	} {
		if _, err := unmarshalSession(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestSealedValuesOpenOnlyWithAKeyAndAssociatedDataThatMatch(t *testing.T) {
	t.Parallel()
	a := testSealer(t, secretA)
	sealed := a.Seal([]byte("hello"), []byte("cookie"))

	if pt, err := a.Open(sealed, []byte("cookie")); err != nil || string(pt) != "hello" {
		t.Fatalf("open with same key: %q, %v", pt, err)
	}
	if _, err := a.Open(sealed, []byte("other-cookie")); err == nil {
		t.Error("opened with another cookie name as associated data")
	}
	if _, err := testSealer(t, secretB).Open(sealed, []byte("cookie")); err == nil {
		t.Error("opened with another key")
	}
	state, _ := seal.New([][]byte{[]byte(secretA)}, purposeState)
	if _, err := state.Open(sealed, []byte("cookie")); err == nil {
		t.Error("a session value opened as a state value")
	}
	// Rotation: a ring whose first key is new still opens old values.
	if pt, err := testSealer(t, secretB, secretA).Open(sealed, []byte("cookie")); err != nil || string(pt) != "hello" {
		t.Errorf("rotated ring failed to open a value sealed with the old key: %v", err)
	}
}

func TestEveryBitFlipOrTruncationOfASealedValueIsRejected(t *testing.T) {
	t.Parallel()
	s := testSealer(t, secretA)
	sealed := s.Seal((&session{AccessToken: "a", UserID: "u"}).marshal(), []byte("c"))
	for i := range sealed {
		b := []byte(sealed)
		b[i] ^= 0x01
		if _, err := s.Open(string(b), []byte("c")); err == nil && string(b) != sealed {
			t.Fatalf("flipped byte %d accepted", i)
		}
		if _, err := s.Open(sealed[:i], []byte("c")); err == nil {
			t.Fatalf("truncation to %d accepted", i)
		}
	}
}

func TestCookieValueFindsCookiesWithoutConfusingPrefixes(t *testing.T) {
	t.Parallel()
	h := http.Header{"Cookie": {`spotify_auth_1=one; spotify_auth=main`, `other="quoted"`}}
	for name, want := range map[string]string{"spotify_auth": "main", "spotify_auth_1": "one", "other": "quoted"} {
		if got, ok := cookieValue(h, name); !ok || got != want {
			t.Errorf("%s: got %q, %v", name, got, ok)
		}
	}
	if _, ok := cookieValue(h, "spotify"); ok {
		t.Error("found a cookie by prefix")
	}
}

func TestLongValuesAreSplitIntoChunksAndReassembled(t *testing.T) {
	t.Parallel()
	for _, n := range []int{10, maxChunkLen, maxChunkLen + 1, 3*maxChunkLen + 7} {
		value := strings.Repeat("x", n-1) + "y"
		parts := splitChunks(value)
		var cookies []string
		for i, p := range parts {
			if len(p) > maxChunkLen+2 {
				t.Fatalf("chunk of %d bytes", len(p))
			}
			name := "s"
			if i > 0 {
				name = chunkName("s", i)
			}
			cookies = append(cookies, name+"="+p)
		}
		got, ok := readChunked(http.Header{"Cookie": {strings.Join(cookies, "; ")}}, "s")
		if !ok || got != value {
			t.Fatalf("len %d: reassembly failed (ok=%v, len=%d)", n, ok, len(got))
		}
		if len(parts) > 1 {
			// A missing chunk means no session, not a partial one.
			missing := strings.Join(cookies[:len(cookies)-1], "; ")
			if _, ok := readChunked(http.Header{"Cookie": {missing}}, "s"); ok {
				t.Fatalf("len %d: reassembled with a chunk missing", n)
			}
		}
	}
}

func TestCookieNamesOfTheHandlerAreRecognised(t *testing.T) {
	t.Parallel()
	c := newCookieNames("spotify_auth", false)
	for name, want := range map[string]bool{
		"spotify_auth": true, "__Host-spotify_auth": true, "spotify_auth_1": true,
		"__Secure-spotify_auth_state_abc": true, "spotify_authx": false, "session": false, "spotify": false,
	} {
		if c.ours(name) != want {
			t.Errorf("ours(%q) = %v", name, !want)
		}
	}
}

func TestLoadSessionRefusesExpiredSessions(t *testing.T) {
	t.Parallel()
	h := &Handler{requestSettings: requestSettings{cookies: newCookieNames("s", false)},
		storageKeys: storageKeys{keys: new(atomic.Pointer[keyring]), revocations: &revocation.Marks{}}}
	h.keys.Store(&keyring{sessions: testSealer(t, secretA)})
	h.sessions = newSessionStore(h)
	s := sampleSession()
	now := time.Unix(s.Expires, 0)
	r, _ := http.NewRequest("GET", "http://127.0.0.1/", nil)
	r.Header.Set("Cookie", "s="+h.sealers().sessions.Seal(s.marshal(), h.cookies.aad))
	if _, err := h.sessions.load(r, now.Add(-time.Second)); err != nil {
		t.Fatal("valid session refused")
	}
	if _, err := h.sessions.load(r, now); err == nil {
		t.Fatal("expired session accepted")
	}
}

// FuzzOpenSession feeds arbitrary cookie values to the decoder: it must
// never panic, and anything it accepts must re-encode to the same bytes.
func FuzzOpenSession(f *testing.F) {
	s := testSealer(f, secretA)
	good := sampleSession()
	f.Add(s.Seal(good.marshal(), []byte("c")))
	f.Add("")
	f.Add("AQ")
	f.Add(strings.Repeat("A", 60))
	f.Add("3.abc")
	f.Fuzz(func(t *testing.T, value string) {
		pt, err := s.Open(value, []byte("c"))
		if err != nil {
			return
		}
		sess, err := unmarshalSession(pt)
		if err != nil {
			return
		}
		if !bytes.Equal(sess.marshal(), pt) {
			t.Fatalf("accepted session does not re-encode to its bytes")
		}
	})
}

// FuzzUnmarshalSession fuzzes the plaintext decoder directly, since the
// sealed fuzzer can rarely forge a GCM tag.
func FuzzUnmarshalSession(f *testing.F) {
	good := sampleSession()
	f.Add(good.marshal())
	good.AccountID = ""
	f.Add(good.marshal()) // format 2
	f.Add([]byte{sessionFormat})
	f.Fuzz(func(t *testing.T, b []byte) {
		sess, err := unmarshalSession(b)
		if err != nil {
			return
		}
		if !bytes.Equal(sess.marshal(), b) {
			t.Fatalf("accepted session does not re-encode to its bytes")
		}
	})
}

func BenchmarkOpenSession(b *testing.B) {
	s := testSealer(b, secretA)
	good := sampleSession()
	sealed := s.Seal(good.marshal(), []byte("c"))
	b.ReportAllocs()
	for b.Loop() {
		pt, err := s.Open(sealed, []byte("c"))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := unmarshalSession(pt); err != nil {
			b.Fatal(err)
		}
	}
}
