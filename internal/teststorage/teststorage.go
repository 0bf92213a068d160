// Package teststorage is a Caddy storage module for tests: it wraps
// certmagic's file_system storage and records every call, so a test can
// prove the plugin works through the certmagic.Storage interface alone,
// on an implementation other than file_system. It can also be told to
// fail, to show what the plugin does when storage breaks.
//
//	storage spotify_auth_test_recording {
//		root <dir>
//		log  <file>   # optional: one line per call, shared by processes
//		no_lock       # optional: Lock always fails
//	}
package teststorage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/certmagic"
)

func init() {
	caddy.RegisterModule(new(Storage))
}

// ErrInjected is what calls return while failing.
var ErrInjected = errors.New("teststorage: injected failure")

// Storage records calls to a file_system storage rooted at Root.
type Storage struct {
	Root   string `json:"root"`
	Log    string `json:"log,omitempty"`
	NoLock bool   `json:"no_lock,omitempty"`

	// FailAll makes every call fail (Exists reports false).
	FailAll atomic.Bool `json:"-"`

	once  sync.Once
	fs    *certmagic.FileStorage
	mu    sync.Mutex
	calls map[string]int
}

// New returns a recording storage rooted at root.
func New(root string) *Storage { return &Storage{Root: root} }

// CaddyModule returns the Caddy module information.
func (*Storage) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.storage.spotify_auth_test_recording",
		New: func() caddy.Module { return new(Storage) },
	}
}

// CertMagicStorage returns the storage itself.
func (s *Storage) CertMagicStorage() (certmagic.Storage, error) {
	if s.Root == "" {
		return nil, errors.New("teststorage: root is required")
	}
	return s, nil
}

// UnmarshalCaddyfile reads the block shown in the package doc.
func (s *Storage) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	for d.NextBlock(0) {
		switch d.Val() {
		case "root":
			if !d.AllArgs(&s.Root) {
				return d.ArgErr()
			}
		case "log":
			if !d.AllArgs(&s.Log) {
				return d.ArgErr()
			}
		case "no_lock":
			s.NoLock = true
		default:
			return d.Errf("unknown option %q", d.Val())
		}
	}
	return nil
}

// Calls returns how often each method was called (by this process).
func (s *Storage) Calls() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.calls))
	for k, v := range s.calls {
		out[k] = v
	}
	return out
}

func (s *Storage) record(method, key string) error {
	s.once.Do(func() { s.fs = &certmagic.FileStorage{Path: s.Root} })
	s.mu.Lock()
	if s.calls == nil {
		s.calls = map[string]int{}
	}
	s.calls[method]++
	s.mu.Unlock()
	if s.Log != "" {
		f, err := os.OpenFile(s.Log, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		_, _ = fmt.Fprintf(f, "%d %s %s\n", os.Getpid(), method, key)
		_ = f.Close()
	}
	if s.FailAll.Load() {
		return ErrInjected
	}
	return nil
}

func (s *Storage) Store(ctx context.Context, key string, value []byte) error {
	if err := s.record("Store", key); err != nil {
		return err
	}
	return s.fs.Store(ctx, key, value)
}

func (s *Storage) Load(ctx context.Context, key string) ([]byte, error) {
	if err := s.record("Load", key); err != nil {
		return nil, err
	}
	return s.fs.Load(ctx, key)
}

func (s *Storage) Delete(ctx context.Context, key string) error {
	if err := s.record("Delete", key); err != nil {
		return err
	}
	return s.fs.Delete(ctx, key)
}

func (s *Storage) Exists(ctx context.Context, key string) bool {
	if err := s.record("Exists", key); err != nil {
		return false
	}
	return s.fs.Exists(ctx, key)
}

func (s *Storage) List(ctx context.Context, prefix string, recursive bool) ([]string, error) {
	if err := s.record("List", prefix); err != nil {
		return nil, err
	}
	return s.fs.List(ctx, prefix, recursive)
}

func (s *Storage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	if err := s.record("Stat", key); err != nil {
		return certmagic.KeyInfo{}, err
	}
	return s.fs.Stat(ctx, key)
}

func (s *Storage) Lock(ctx context.Context, name string) error {
	if err := s.record("Lock", name); err != nil {
		return err
	}
	if s.NoLock {
		return fmt.Errorf("teststorage: locking is off: %w", fs.ErrPermission)
	}
	return s.fs.Lock(ctx, name)
}

func (s *Storage) Unlock(ctx context.Context, name string) error {
	if err := s.record("Unlock", name); err != nil {
		return err
	}
	return s.fs.Unlock(ctx, name)
}

// Interface guards: only the plain interface, no TryLocker.
var (
	_ certmagic.Storage      = (*Storage)(nil)
	_ caddy.StorageConverter = (*Storage)(nil)
	_ caddyfile.Unmarshaler  = (*Storage)(nil)
)
