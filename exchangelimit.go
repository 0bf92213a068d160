package spotifyauth

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

// Code exchanges are the one Spotify call a stranger can cause: anyone
// can start a login and send the callback a junk code, and each such pair
// costs one call to the token endpoint. Spotify's rate limit is per app,
// so an unbounded flood would spend it for every user. Exchanges are
// therefore bounded per client address and overall, with token buckets
// that refill over a minute; past the bound the callback answers 429.
//
// A bound per address alone is not fair: one IPv6 /60 holds sixteen /64s
// and one IPv4 /24 256 addresses, enough to spend the overall budget and
// lock every other user out. So the larger blocks around an address
// share a budget too (blockLevels), a code Spotify refuses costs its
// block more than a login that works, and the overall budget is what is
// left for everyone else.

// LoginRateLimit bounds the code exchanges that login callbacks cause.
type LoginRateLimit struct {
	// Exchanges per minute from one client address (an IPv6 address
	// counts by its /64). The blocks around it share a budget too: an
	// IPv4 /24 and an IPv6 /56 twice this, an IPv6 /48 four times. A
	// code Spotify refuses (invalid_grant) counts 4 times. Default 20.
	PerClient int `json:"per_client,omitempty"`
	// Exchanges per minute for this app on this instance, from all
	// clients together. Default 300.
	Overall int `json:"overall,omitempty"`
}

const (
	defaultExchangesPerClient = 20
	defaultExchangesOverall   = 300
	// failedExchangeWeight is what a code Spotify refuses costs the
	// client's blocks, in exchanges: a real user's login works, while a
	// junk loop sends nothing else.
	failedExchangeWeight = 4
	// maxBlocksPerLevel bounds the buckets kept for each prefix length.
	// A bucket idle for a minute is full again, so forgetting it loses
	// nothing; under a flood of new blocks the oldest go first.
	maxBlocksPerLevel = 16_384
)

// blockLevel is a prefix length whose blocks share share×per_client
// exchanges a minute.
type blockLevel struct {
	bits  int
	share int
}

// The levels, finest first. The finest is "one client": one IPv4 address,
// or the /64 one host usually has. A /56 is a home's IPv6 allocation and
// a /48 a site's; an IPv4 /24 is a small network.
var (
	v4Levels = [...]blockLevel{{32, 1}, {24, 2}}
	v6Levels = [...]blockLevel{{64, 1}, {56, 2}, {48, 4}}
)

const maxBlockLevels = max(len(v4Levels), len(v6Levels))

func (l *LoginRateLimit) perClient() int {
	if l == nil || l.PerClient <= 0 {
		return defaultExchangesPerClient
	}
	return l.PerClient
}

func (l *LoginRateLimit) overall() int {
	if l == nil || l.Overall <= 0 {
		return defaultExchangesOverall
	}
	return l.Overall
}

// exchangeLimiter lives in the shared state, so a config reload does
// not refill the buckets.
type exchangeLimiter struct {
	mu  sync.Mutex
	all *rate.Limiter
	// One table per family and level, so a flood of new /64s cannot push
	// out the /48s (or IPv4 blocks) that hold the flood's debt.
	v4 [len(v4Levels)]blockTable
	v6 [len(v6Levels)]blockTable
}

// blockRef is one of a client's blocks: its table, key and share.
type blockRef struct {
	table *blockTable
	key   uint64
	share int
	b     *tokenBucket
}

// blocksOf fills refs with addr's block at every level. A block's key is
// the address masked to the level's bits (IPv6 blocks are all within the
// first 64 bits).
func (e *exchangeLimiter) blocksOf(addr netip.Addr, refs *[maxBlockLevels]blockRef) []blockRef {
	if addr.Is4() {
		a := addr.As4()
		v := uint64(binary.BigEndian.Uint32(a[:]))
		for i, l := range v4Levels {
			refs[i] = blockRef{table: &e.v4[i], key: v &^ (1<<(32-l.bits) - 1), share: l.share}
		}
		return refs[:len(v4Levels)]
	}
	a := addr.As16()
	v := binary.BigEndian.Uint64(a[:8])
	for i, l := range v6Levels {
		refs[i] = blockRef{table: &e.v6[i], key: v &^ (1<<(64-l.bits) - 1), share: l.share}
	}
	return refs[:len(v6Levels)]
}

// allow takes one exchange from each of the client's blocks and from the
// overall budget. It returns how long to wait if any is short, and then
// takes nothing.
func (e *exchangeLimiter) allow(client netip.Addr, cfg *LoginRateLimit, now time.Time) (bool, time.Duration) {
	perClient, overall := cfg.perClient(), cfg.overall()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.all == nil {
		e.all = rate.NewLimiter(perMinute(overall), overall)
	}
	// A reload may change the limits, and blocks of one app may differ:
	// each call applies its own to the buckets, which keep what is in
	// them (refilling them would let alternating callbacks through).
	setLimit(e.all, overall, now)
	var refs [maxBlockLevels]blockRef
	blocks := e.blocksOf(client, &refs)
	var wait time.Duration
	for i := range blocks {
		n := float64(blocks[i].share * perClient)
		blocks[i].b = blocks[i].table.bucket(blocks[i].key)
		blocks[i].b.refill(n, now)
		wait = max(wait, blocks[i].b.wait(n))
	}
	if wait > 0 {
		return false, wait
	}
	ra := e.all.ReserveN(now, 1)
	if d := ra.DelayFrom(now); d > 0 {
		ra.CancelAt(now)
		return false, d
	}
	for _, bl := range blocks {
		bl.b.tokens--
	}
	return true, 0
}

// failed charges a code Spotify refused to the client's blocks, on top
// of the exchange allow took: failedExchangeWeight in all. The buckets
// may go below zero; the debt delays the block's next exchange. The
// overall budget is not charged again: Spotify saw one call.
func (e *exchangeLimiter) failed(client netip.Addr, cfg *LoginRateLimit, now time.Time) {
	perClient := cfg.perClient()
	e.mu.Lock()
	defer e.mu.Unlock()
	var refs [maxBlockLevels]blockRef
	for _, bl := range e.blocksOf(client, &refs) {
		n := float64(bl.share * perClient)
		b := bl.table.bucket(bl.key)
		b.refill(n, now)
		b.tokens -= failedExchangeWeight - 1
	}
}

// blockTable holds the buckets of one family and level: at most
// maxBlocksPerLevel, in slots reused oldest first, so a new block costs
// one map insert and one delete and memory stops growing at the bound.
// A block pushed out comes back with a full bucket, but that takes
// maxBlocksPerLevel newer blocks of its own level: a flood from one /48
// adds one /48 entry however many addresses it uses.
type blockTable struct {
	index map[uint64]int32
	slots []blockSlot
	next  int32 // the slot reused next once all are taken
}

type blockSlot struct {
	key uint64
	b   tokenBucket
}

// bucket returns key's bucket, making one (full) if there is none. The
// pointer is good until the table's next call.
func (t *blockTable) bucket(key uint64) *tokenBucket {
	if i, ok := t.index[key]; ok {
		return &t.slots[i].b
	}
	if t.index == nil {
		t.index = make(map[uint64]int32)
	}
	i := int32(len(t.slots))
	if i < maxBlocksPerLevel {
		t.slots = append(t.slots, blockSlot{})
	} else {
		i = t.next
		t.next = (t.next + 1) % maxBlocksPerLevel
		delete(t.index, t.slots[i].key)
	}
	t.slots[i] = blockSlot{key: key}
	t.index[key] = i
	return &t.slots[i].b
}

// tokenBucket holds up to n exchanges and refills at n a minute, where
// the caller says n on each call (so a changed limit applies to the
// tokens already there). 16 bytes, where a rate.Limiter takes 80 and a
// pointer: the tables hold many.
type tokenBucket struct {
	tokens float64 // below zero: debt left by refused codes
	last   int64   // unix ns tokens was brought up to; 0: new, so full
}

func (b *tokenBucket) refill(n float64, now time.Time) {
	ns := now.UnixNano()
	switch {
	case b.last == 0:
		b.tokens = n
	case ns > b.last:
		b.tokens += float64(ns-b.last) * n / float64(time.Minute)
	}
	b.tokens = min(b.tokens, n)
	b.last = max(b.last, ns)
}

// wait is how long until the bucket holds one exchange, at n a minute.
func (b *tokenBucket) wait(n float64) time.Duration {
	if b.tokens >= 1 {
		return 0
	}
	return time.Duration(math.Ceil((1 - b.tokens) / n * float64(time.Minute)))
}

func perMinute(n int) rate.Limit { return rate.Limit(float64(n) / 60) }

// setLimit makes l allow n a minute, keeping its tokens.
func setLimit(l *rate.Limiter, n int, now time.Time) {
	if l.Burst() != n {
		l.SetLimitAt(now, perMinute(n))
		l.SetBurstAt(now, n)
	}
}

// clientAddress is who a code exchange is charged to: the client IP as
// Caddy determined it (trusted_proxies applies). A client that is no IP
// (a unix socket) shares the budget of 0.0.0.0 with every other such.
func clientAddress(r *http.Request) netip.Addr {
	s, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	if s == "" {
		s = hostOnly(r.RemoteAddr)
	}
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return netip.IPv4Unspecified()
	}
	return addr.Unmap().WithZone("")
}

// admitExchange charges a code exchange to the request's client, or
// answers 429 itself and returns false. The callback checks this before
// it uses the login state up, so the 429's retry link (the callback
// itself) completes the same login once Retry-After has passed.
func (f *loginFlow) admitExchange(w http.ResponseWriter, r *http.Request, returnTo string, now time.Time) bool {
	client := clientAddress(r)
	ok, wait := f.h.shared.exchanges.allow(client, f.limit, now)
	if ok {
		return true
	}
	f.metrics.loginFailures.WithLabelValues(kindTooManyLogins.String()).Inc()
	f.h.logger.Warn("login refused: too many code exchanges from this client's network or in total",
		zap.Stringer("client", client), zap.Duration("retry_after", wait))
	f.h.fail(w, r, &authError{Kind: kindTooManyLogins, RetryAfter: wait,
		Message: "Too many logins from your network or in total right now, so this one was not sent to Spotify. " +
			"It stays valid: reload this page after a short wait"}, loginURL(returnTo))
	return false
}

// exchangeFailed charges a code Spotify refused to the request's client.
func (f *loginFlow) exchangeFailed(r *http.Request, now time.Time) {
	f.h.shared.exchanges.failed(clientAddress(r), f.limit, now)
}

// parseLoginRateLimit reads `login_rate_limit <per_client> [<overall>]`,
// both code exchanges per minute.
func parseLoginRateLimit(args []string) (*LoginRateLimit, error) {
	if len(args) < 1 || len(args) > 2 {
		return nil, errors.New("takes <per_client> [<overall>], exchanges per minute")
	}
	var l LoginRateLimit
	for i, p := range []*int{&l.PerClient, &l.Overall}[:len(args)] {
		n, err := strconv.Atoi(args[i])
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number of exchanges per minute", args[i])
		}
		*p = n
	}
	return &l, nil
}
