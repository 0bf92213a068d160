package seal

import (
	"strings"
	"testing"
)

func mustNew(t *testing.T, info string, secrets ...string) *Sealer {
	t.Helper()
	bs := make([][]byte, len(secrets))
	for i, s := range secrets {
		bs[i] = []byte(s)
	}
	s, err := New(bs, info)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSealedValuesOpenOnlyWithTheirKeyPurposeAndAssociatedData(t *testing.T) {
	a := mustNew(t, "session", "secret-a-0123456789abcdef0123456789")
	sealed := a.Seal([]byte("hello"), []byte("aad"))
	if pt, err := a.Open(sealed, []byte("aad")); err != nil || string(pt) != "hello" {
		t.Fatalf("round trip: %q %v", pt, err)
	}
	for name, open := range map[string]func() error{
		"other associated data": func() error { _, err := a.Open(sealed, []byte("other")); return err },
		"other secret": func() error {
			_, err := mustNew(t, "session", "secret-b-0123456789abcdef0123456789").Open(sealed, []byte("aad"))
			return err
		},
		"other purpose": func() error {
			_, err := mustNew(t, "state", "secret-a-0123456789abcdef0123456789").Open(sealed, []byte("aad"))
			return err
		},
		"truncated": func() error { _, err := a.Open(sealed[:len(sealed)-1], []byte("aad")); return err },
		"padded":    func() error { _, err := a.Open(sealed+"=", []byte("aad")); return err },
		"too long":  func() error { _, err := a.Open(strings.Repeat("A", MaxLen+1), []byte("aad")); return err },
	} {
		if err := open(); err != ErrUnsealable {
			t.Errorf("%s: %v, want ErrUnsealable", name, err)
		}
	}
}

func TestRotationSealsWithTheFirstSecretAndOpensWithAll(t *testing.T) {
	old := mustNew(t, "p", "old-secret-0123456789abcdef0123456789")
	rotated := mustNew(t, "p", "new-secret-0123456789abcdef0123456789", "old-secret-0123456789abcdef0123456789")
	if _, err := rotated.Open(old.Seal([]byte("x"), nil), nil); err != nil {
		t.Fatalf("a value sealed with the old secret: %v", err)
	}
	if rotated.SealingKey() == old.SealingKey() {
		t.Fatal("the rotated sealer seals with the old key")
	}
	if _, err := old.Open(rotated.Seal([]byte("x"), nil), nil); err != ErrUnsealable {
		t.Fatal("the old sealer opened a value sealed with the new secret")
	}
}
