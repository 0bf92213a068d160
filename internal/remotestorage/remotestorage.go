// Package remotestorage carries certmagic.Storage calls to a storage in
// another process, over net/rpc on loopback, for tests only. It lets the
// plugin's in-process tests run on a storage module whose dependencies
// the plugin's go.mod must not carry: the Redis test storage lives in the
// bench module, and the test Caddy built from there (bench/testcaddy,
// command serve-test-storage) serves it with Serve.
//
// Each connection gets its own storage from the server's opener, as each
// Caddy instance has its own storage client, and closing the connection
// closes that storage: on Redis a lock still held is then no longer
// renewed and expires, as when a Caddy process is killed.
//
//	storage spotify_auth_test_remote {
//		address 127.0.0.1:7000
//	}
package remotestorage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/rpc"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/certmagic"
)

func init() {
	caddy.RegisterModule(new(Storage))
}

// lockSlice is the longest a single Lock call waits on the server: the
// client asks again until it holds the lock or its context ends, so a
// caller that gives up never leaves a lock taken on its behalf.
const lockSlice = 200 * time.Millisecond

// Request is one call's arguments.
type Request struct {
	Key       string
	Value     []byte
	Recursive bool
	Wait      time.Duration // Lock only
}

// Reply is one call's result. Errors travel in it, not as net/rpc errors,
// so that fs.ErrNotExist survives the trip.
type Reply struct {
	Value    []byte
	Keys     []string
	Info     certmagic.KeyInfo
	OK       bool
	Err      string
	NotExist bool
}

// Serve answers connections on l until l is closed. For each connection
// it opens a storage, and closes it with close when the connection ends.
func Serve(l net.Listener, open func() (s certmagic.Storage, close func(), err error)) error {
	for {
		conn, err := l.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer conn.Close()
			s, closeStorage, err := open()
			if err != nil {
				return
			}
			defer closeStorage()
			srv := rpc.NewServer()
			if err := srv.RegisterName("Storage", &service{s}); err != nil {
				return
			}
			srv.ServeConn(conn)
		}()
	}
}

// service is what one connection calls. Every method answers through the
// Reply and returns nil.
type service struct{ s certmagic.Storage }

func (r *Reply) setErr(err error) {
	if err != nil {
		r.Err, r.NotExist = err.Error(), errors.Is(err, fs.ErrNotExist)
	}
}

func (v *service) Store(q Request, r *Reply) error {
	r.setErr(v.s.Store(context.Background(), q.Key, q.Value))
	return nil
}

func (v *service) Load(q Request, r *Reply) error {
	var err error
	r.Value, err = v.s.Load(context.Background(), q.Key)
	r.setErr(err)
	return nil
}

func (v *service) Delete(q Request, r *Reply) error {
	r.setErr(v.s.Delete(context.Background(), q.Key))
	return nil
}

func (v *service) Exists(q Request, r *Reply) error {
	r.OK = v.s.Exists(context.Background(), q.Key)
	return nil
}

func (v *service) List(q Request, r *Reply) error {
	var err error
	r.Keys, err = v.s.List(context.Background(), q.Key, q.Recursive)
	r.setErr(err)
	return nil
}

func (v *service) Stat(q Request, r *Reply) error {
	var err error
	r.Info, err = v.s.Stat(context.Background(), q.Key)
	r.setErr(err)
	return nil
}

// Lock waits up to q.Wait. OK false with no Err: not yet, ask again.
func (v *service) Lock(q Request, r *Reply) error {
	ctx, cancel := context.WithTimeout(context.Background(), q.Wait)
	defer cancel()
	err := v.s.Lock(ctx, q.Key)
	switch {
	case err == nil:
		r.OK = true
	case ctx.Err() == nil:
		r.setErr(err)
	}
	return nil
}

func (v *service) Unlock(q Request, r *Reply) error {
	r.setErr(v.s.Unlock(context.Background(), q.Key))
	return nil
}

// Storage is the client: a certmagic.Storage whose calls run on the
// server's storage.
type Storage struct {
	// Address is the server's host:port.
	Address string `json:"address,omitempty"`

	client *rpc.Client
}

// Dial connects to the server at addr.
func Dial(addr string) (*Storage, error) {
	s := &Storage{Address: addr}
	return s, s.dial()
}

func (s *Storage) dial() error {
	c, err := rpc.Dial("tcp", s.Address)
	if err != nil {
		return fmt.Errorf("remotestorage: %w", err)
	}
	s.client = c
	return nil
}

// CaddyModule returns the Caddy module information.
func (*Storage) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.storage.spotify_auth_test_remote",
		New: func() caddy.Module { return new(Storage) },
	}
}

// Provision connects to the server.
func (s *Storage) Provision(caddy.Context) error {
	if s.Address == "" {
		return errors.New("remotestorage: address is required")
	}
	return s.dial()
}

// Cleanup closes the connection, and with it the server's storage.
func (s *Storage) Cleanup() error { return s.Close() }

// CertMagicStorage returns the storage itself.
func (s *Storage) CertMagicStorage() (certmagic.Storage, error) { return s, nil }

// UnmarshalCaddyfile reads the block shown in the package doc.
func (s *Storage) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	for d.NextBlock(0) {
		switch d.Val() {
		case "address":
			if !d.AllArgs(&s.Address) {
				return d.ArgErr()
			}
		default:
			return d.Errf("unknown option %q", d.Val())
		}
	}
	return nil
}

// Close closes the connection. The server closes its storage without
// releasing the locks this client holds, as a killed process would.
func (s *Storage) Close() error { return s.client.Close() }

// call runs method on the server; a context that ends first returns its
// error (the call may still complete on the server).
func (s *Storage) call(ctx context.Context, method string, q Request) (*Reply, error) {
	r := new(Reply)
	done := s.client.Go("Storage."+method, q, r, make(chan *rpc.Call, 1)).Done
	select {
	case c := <-done:
		if c.Error != nil {
			return nil, fmt.Errorf("remotestorage: %s: %w", method, c.Error)
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return r, nil
}

// result turns a reply's error back into one, wrapping fs.ErrNotExist if
// the server's did.
func result(r *Reply, err error) error {
	switch {
	case err != nil:
		return err
	case r.NotExist:
		return fmt.Errorf("remotestorage: %s: %w", r.Err, fs.ErrNotExist)
	case r.Err != "":
		return errors.New("remotestorage: " + r.Err)
	}
	return nil
}

func (s *Storage) Store(ctx context.Context, key string, value []byte) error {
	return result(s.call(ctx, "Store", Request{Key: key, Value: value}))
}

func (s *Storage) Load(ctx context.Context, key string) ([]byte, error) {
	r, err := s.call(ctx, "Load", Request{Key: key})
	if err := result(r, err); err != nil {
		return nil, err
	}
	return r.Value, nil
}

func (s *Storage) Delete(ctx context.Context, key string) error {
	return result(s.call(ctx, "Delete", Request{Key: key}))
}

func (s *Storage) Exists(ctx context.Context, key string) bool {
	r, err := s.call(ctx, "Exists", Request{Key: key})
	return err == nil && r.OK
}

func (s *Storage) List(ctx context.Context, prefix string, recursive bool) ([]string, error) {
	r, err := s.call(ctx, "List", Request{Key: prefix, Recursive: recursive})
	if err := result(r, err); err != nil {
		return nil, err
	}
	return r.Keys, nil
}

func (s *Storage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	r, err := s.call(ctx, "Stat", Request{Key: key})
	if err := result(r, err); err != nil {
		return certmagic.KeyInfo{}, err
	}
	return r.Info, nil
}

// Lock asks the server in slices of at most lockSlice until it holds the
// lock or ctx ends.
func (s *Storage) Lock(ctx context.Context, name string) error {
	for {
		wait := lockSlice
		if deadline, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(deadline))
		}
		if wait <= 0 {
			return context.DeadlineExceeded
		}
		r, err := s.call(context.Background(), "Lock", Request{Key: name, Wait: wait})
		if err := result(r, err); err != nil {
			return err
		}
		if r.OK {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

func (s *Storage) Unlock(ctx context.Context, name string) error {
	return result(s.call(ctx, "Unlock", Request{Key: name}))
}

// Interface guards.
var (
	_ certmagic.Storage      = (*Storage)(nil)
	_ caddy.StorageConverter = (*Storage)(nil)
	_ caddy.Provisioner      = (*Storage)(nil)
	_ caddy.CleanerUpper     = (*Storage)(nil)
	_ caddyfile.Unmarshaler  = (*Storage)(nil)
)
