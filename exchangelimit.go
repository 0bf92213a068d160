package spotifyauth

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
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

// LoginRateLimit bounds the code exchanges that login callbacks cause.
type LoginRateLimit struct {
	// Exchanges per minute from one client address (an IPv6 address
	// counts by its /64). Default 20.
	PerClient int `json:"per_client,omitempty"`
	// Exchanges per minute for this app on this instance, from all
	// clients together. Default 300.
	Overall int `json:"overall,omitempty"`
}

const (
	defaultExchangesPerClient = 20
	defaultExchangesOverall   = 300
	// maxExchangeClients bounds the per-address buckets kept. A bucket
	// idle for a minute is full again, so forgetting it loses nothing.
	maxExchangeClients = 10_000
)

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
	mu      sync.Mutex
	all     *rate.Limiter
	clients map[string]*clientBucket

	// backoffUntil (unix nanoseconds): Spotify answered a code exchange
	// (or the login's /v1/me) with 429. It stops further code exchanges
	// only: refreshes of existing sessions go on.
	backoffUntil atomic.Int64
	backoffCause atomic.Pointer[pauseCause]
}

type clientBucket struct {
	lim      *rate.Limiter
	lastUsed time.Time
}

// allow takes one exchange from the client's bucket and the overall one.
// It returns how long to wait if either is empty.
func (e *exchangeLimiter) allow(client string, cfg *LoginRateLimit, now time.Time) (bool, time.Duration) {
	perClient, overall := cfg.perClient(), cfg.overall()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.all == nil {
		e.all = rate.NewLimiter(perMinute(overall), overall)
		e.clients = make(map[string]*clientBucket)
	}
	// A reload may change the limits, and blocks of one app may differ:
	// each call applies its own to the buckets, which keep what is in
	// them (refilling them would let alternating callbacks through).
	setLimit(e.all, overall, now)
	b, ok := e.clients[client]
	if !ok {
		if len(e.clients) >= maxExchangeClients {
			for k, v := range e.clients {
				if now.Sub(v.lastUsed) > time.Minute {
					delete(e.clients, k)
				}
			}
		}
		if len(e.clients) >= maxExchangeClients {
			// Ten thousand clients in a minute: a distributed flood.
			return false, time.Minute
		}
		b = &clientBucket{lim: rate.NewLimiter(perMinute(perClient), perClient)}
		e.clients[client] = b
	}
	b.lastUsed = now
	setLimit(b.lim, perClient, now)
	rc := b.lim.ReserveN(now, 1)
	if d := rc.DelayFrom(now); d > 0 {
		rc.CancelAt(now)
		return false, d
	}
	ra := e.all.ReserveN(now, 1)
	if d := ra.DelayFrom(now); d > 0 {
		ra.CancelAt(now)
		rc.CancelAt(now)
		return false, d
	}
	return true, 0
}

func perMinute(n int) rate.Limit { return rate.Limit(float64(n) / 60) }

// setLimit makes l allow n a minute, keeping its tokens.
func setLimit(l *rate.Limiter, n int, now time.Time) {
	if l.Burst() != n {
		l.SetLimitAt(now, perMinute(n))
		l.SetBurstAt(now, n)
	}
}

// checkBackoff fails fast while Spotify has asked code exchanges to wait.
func (e *exchangeLimiter) checkBackoff(now time.Time) error {
	if wait := time.Duration(e.backoffUntil.Load() - now.UnixNano()); wait > 0 {
		return pausedError(e.backoffCause.Load(), wait, now, "Spotify is rate limiting logins to this app")
	}
	return nil
}

// noteRateLimit remembers a 429 met during a login. (The owner's lapsed
// Premium pauses every call: Handler.noteRateLimit.)
func (e *exchangeLimiter) noteRateLimit(err error, now time.Time) {
	if kindOf(err) == kindRateLimited {
		extendBackoff(&e.backoffUntil, &e.backoffCause, err, now)
	}
}

// clientAddress is who a code exchange is charged to: the client IP as
// Caddy determined it (trusted_proxies applies), an IPv6 address by its
// /64, since one host usually has a whole /64.
func clientAddress(r *http.Request) string {
	addr, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	if addr == "" {
		addr = hostOnly(r.RemoteAddr)
	}
	ip := net.ParseIP(addr)
	if ip == nil {
		return addr
	}
	if ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return ip.String()
}

// admitExchange charges a code exchange to the request's client, or
// answers 429 itself and returns false.
func (h *Handler) admitExchange(w http.ResponseWriter, r *http.Request, returnTo string, now time.Time) bool {
	ok, wait := h.shared.exchanges.allow(clientAddress(r), h.LoginRateLimit, now)
	if ok {
		return true
	}
	h.metrics.loginFailures.WithLabelValues(kindTooManyLogins.String()).Inc()
	h.logger.Warn("login refused: too many code exchanges from this client or in total",
		zap.String("client", clientAddress(r)), zap.Duration("retry_after", wait))
	h.fail(w, r, &authError{Kind: kindTooManyLogins, RetryAfter: wait,
		Message: "Too many logins from your network or in total right now, so this one was not sent to Spotify"}, loginURL(returnTo))
	return false
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
