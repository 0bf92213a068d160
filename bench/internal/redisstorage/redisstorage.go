// Package redisstorage is a small certmagic.Storage over Redis, for tests
// only: it lets the multi-instance tests run the plugin on a networked
// store, where locks expire instead of vanishing with a process, every
// call is a round trip and listing is a key scan. In production, use a
// published, maintained Redis storage module (see docs/several-instances.md).
//
//	storage spotify_auth_test_redis {
//		address    127.0.0.1:6379
//		key_prefix caddy/   # optional: every key starts with it
//		lock_ttl   2s       # optional: a dead holder's lock expires after this (default 10s)
//	}
//
// Layout: a value is a hash {v: bytes, m: modified unix ns} at
// <key_prefix>d:<key>; a lock is a string holding the holder's random token
// at <key_prefix>l:<name>, set with SET NX PX and renewed every third of its
// time to live while held.
package redisstorage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/certmagic"
	"github.com/redis/go-redis/v9"
)

func init() {
	caddy.RegisterModule(new(Storage))
}

// DefaultLockTTL is how long a lock outlives a holder that stopped renewing it.
const DefaultLockTTL = 10 * time.Second

// lockPoll is how often a waiting Lock tries again.
const lockPoll = 50 * time.Millisecond

// Storage keeps certmagic's keys in Redis.
type Storage struct {
	// Address is the Redis server, host:port.
	Address string `json:"address,omitempty"`
	// KeyPrefix starts every Redis key, so several stores share a server.
	KeyPrefix string `json:"key_prefix,omitempty"`
	// LockTTL is how long a lock lasts without renewal.
	LockTTL caddy.Duration `json:"lock_ttl,omitempty"`

	client *redis.Client
	mu     sync.Mutex
	held   map[string]*heldLock // lock name → this process's hold
}

type heldLock struct {
	token string
	stop  context.CancelFunc
	done  chan struct{}
}

// New returns a storage connected to the Redis server at addr.
func New(addr, keyPrefix string, lockTTL time.Duration) *Storage {
	s := &Storage{Address: addr, KeyPrefix: keyPrefix, LockTTL: caddy.Duration(lockTTL)}
	s.connect()
	return s
}

func (s *Storage) connect() {
	s.client = redis.NewClient(&redis.Options{Addr: s.Address})
	s.held = map[string]*heldLock{}
}

// CaddyModule returns the Caddy module information.
func (*Storage) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.storage.spotify_auth_test_redis",
		New: func() caddy.Module { return new(Storage) },
	}
}

// Provision connects (lazily: go-redis dials on first use).
func (s *Storage) Provision(caddy.Context) error {
	if s.Address == "" {
		return errors.New("redisstorage: address is required")
	}
	s.connect()
	return nil
}

// Cleanup closes the connections. Locks still held are left to expire.
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
		case "key_prefix":
			if !d.AllArgs(&s.KeyPrefix) {
				return d.ArgErr()
			}
		case "lock_ttl":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			ttl, err := caddy.ParseDuration(v)
			if err != nil || ttl <= 0 {
				return d.Errf("lock_ttl: bad duration %q", v)
			}
			s.LockTTL = caddy.Duration(ttl)
		default:
			return d.Errf("unknown option %q", d.Val())
		}
	}
	return nil
}

// Close stops renewing held locks without releasing them (as a killed
// process would) and closes the connections.
func (s *Storage) Close() error {
	s.mu.Lock()
	for name, l := range s.held {
		l.stop()
		<-l.done
		delete(s.held, name)
	}
	s.mu.Unlock()
	return s.client.Close()
}

// Client is the underlying Redis client (tests inspect the server with it).
func (s *Storage) Client() *redis.Client { return s.client }

func (s *Storage) lockTTL() time.Duration {
	if s.LockTTL > 0 {
		return time.Duration(s.LockTTL)
	}
	return DefaultLockTTL
}

func (s *Storage) dataKey(key string) string  { return s.KeyPrefix + "d:" + normalize(key) }
func (s *Storage) lockKey(name string) string { return s.KeyPrefix + "l:" + name }

// normalize makes "a//b/" and "a/b" the same key, as on a file system.
func normalize(key string) string {
	return strings.Trim(path.Clean("/"+key), "/")
}

func (s *Storage) Store(ctx context.Context, key string, value []byte) error {
	return s.client.HSet(ctx, s.dataKey(key), "v", value, "m", time.Now().UnixNano()).Err()
}

func (s *Storage) Load(ctx context.Context, key string) ([]byte, error) {
	v, err := s.client.HGet(ctx, s.dataKey(key), "v").Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%s: %w", key, fs.ErrNotExist)
	}
	return v, err
}

// Delete removes a key, or everything under it if it is a "directory".
func (s *Storage) Delete(ctx context.Context, key string) error {
	n, err := s.client.Del(ctx, s.dataKey(key)).Result()
	if err != nil || n > 0 {
		return err
	}
	under, err := s.scan(ctx, normalize(key))
	if err != nil {
		return err
	}
	if len(under) == 0 {
		return fmt.Errorf("%s: %w", key, fs.ErrNotExist)
	}
	for _, k := range under {
		if err := s.client.Del(ctx, s.dataKey(k)).Err(); err != nil {
			return err
		}
	}
	return nil
}

func (s *Storage) Exists(ctx context.Context, key string) bool {
	if n, err := s.client.Exists(ctx, s.dataKey(key)).Result(); err != nil || n > 0 {
		return err == nil
	}
	under, err := s.scan(ctx, normalize(key))
	return err == nil && len(under) > 0
}

// List returns the keys under prefix: every stored key if recursive, else
// the immediate children (keys and "directories"), as file_system does.
func (s *Storage) List(ctx context.Context, prefix string, recursive bool) ([]string, error) {
	p := normalize(prefix)
	under, err := s.scan(ctx, p)
	if err != nil {
		return nil, err
	}
	if len(under) == 0 {
		return nil, fmt.Errorf("%s: %w", prefix, fs.ErrNotExist)
	}
	if recursive {
		return under, nil
	}
	seen := map[string]bool{}
	var out []string
	for _, k := range under {
		rest := strings.TrimPrefix(strings.TrimPrefix(k, p), "/")
		child, _, _ := strings.Cut(rest, "/")
		if c := path.Join(p, child); !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out, nil
}

// scan returns the stored keys strictly under dir ("" for all), by SCAN:
// a networked store has no directories, only a prefix match.
func (s *Storage) scan(ctx context.Context, dir string) ([]string, error) {
	match := s.KeyPrefix + "d:"
	if dir != "" {
		match += dir + "/"
	}
	strip := len(s.KeyPrefix) + len("d:")
	var out []string
	iter := s.client.Scan(ctx, 0, escapeGlob(match)+"*", 1000).Iterator()
	for iter.Next(ctx) {
		out = append(out, iter.Val()[strip:])
	}
	return out, iter.Err()
}

func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\^`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (s *Storage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	dk := s.dataKey(key)
	pipe := s.client.Pipeline()
	m := pipe.HGet(ctx, dk, "m")
	size := pipe.HStrLen(ctx, dk, "v")
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return certmagic.KeyInfo{}, err
	}
	if ns, err := m.Int64(); err == nil {
		return certmagic.KeyInfo{Key: key, Modified: time.Unix(0, ns), Size: size.Val(), IsTerminal: true}, nil
	}
	under, err := s.scan(ctx, normalize(key))
	if err != nil {
		return certmagic.KeyInfo{}, err
	}
	if len(under) == 0 {
		return certmagic.KeyInfo{}, fmt.Errorf("%s: %w", key, fs.ErrNotExist)
	}
	return certmagic.KeyInfo{Key: key, IsTerminal: false}, nil
}

// Lock waits until it holds the lock (SET NX with a time to live) or ctx
// ends. While held, a goroutine renews it; a holder that dies stops
// renewing, and the lock expires after LockTTL.
func (s *Storage) Lock(ctx context.Context, name string) error {
	token := randomToken()
	ttl := s.lockTTL()
	for {
		ok, err := s.client.SetNX(ctx, s.lockKey(name), token, ttl).Result()
		if err != nil {
			return err
		}
		if ok {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(lockPoll):
		}
	}
	renewCtx, stop := context.WithCancel(context.Background())
	l := &heldLock{token: token, stop: stop, done: make(chan struct{})}
	go s.renew(renewCtx, name, l, ttl)
	s.mu.Lock()
	if old := s.held[name]; old != nil {
		old.stop() // a hold this process lost to expiry
	}
	s.held[name] = l
	s.mu.Unlock()
	return nil
}

// renewScript extends the lock only if it is still this holder's.
var renewScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0`)

// unlockScript deletes the lock only if it is still this holder's: one
// whose lock expired must not release the next holder's.
var unlockScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("DEL", KEYS[1])
end
return 0`)

func (s *Storage) renew(ctx context.Context, name string, l *heldLock, ttl time.Duration) {
	defer close(l.done)
	tick := time.NewTicker(ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			n, err := renewScript.Run(ctx, s.client, []string{s.lockKey(name)}, l.token, ttl.Milliseconds()).Int()
			if err == nil && n == 0 {
				return // no longer ours
			}
		}
	}
}

// Unlock releases the lock if this process holds it.
func (s *Storage) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	l := s.held[name]
	delete(s.held, name)
	s.mu.Unlock()
	if l == nil {
		return fmt.Errorf("redisstorage: lock %q is not held here", name)
	}
	l.stop()
	<-l.done
	n, err := unlockScript.Run(ctx, s.client, []string{s.lockKey(name)}, l.token).Int()
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("redisstorage: lock %q had expired and was not ours any more", name)
	}
	return nil
}

func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
}

// Interface guards.
var (
	_ certmagic.Storage      = (*Storage)(nil)
	_ caddy.StorageConverter = (*Storage)(nil)
	_ caddy.Provisioner      = (*Storage)(nil)
	_ caddy.CleanerUpper     = (*Storage)(nil)
	_ caddyfile.Unmarshaler  = (*Storage)(nil)
)
