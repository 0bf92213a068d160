package spotifyauth

import (
	"errors"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the handler's Prometheus counters, registered in the
// config's registry so they appear on Caddy's /metrics. The registry is
// new on every config load, so counters restart with a reload.
type metrics struct {
	logins          prometheus.Counter
	loginFailures   *prometheus.CounterVec // by reason
	refreshes       prometheus.Counter
	refreshesShared prometheus.Counter
	refreshFailures *prometheus.CounterVec // by reason
	sessionsEnded   *prometheus.CounterVec // sessions the plugin ended itself, by reason
	responses       *prometheus.CounterVec // answers the handler gave itself, by status code

	// The two answers strangers get, resolved once: no label lookup per request.
	unauthorized, redirects prometheus.Counter
}

const metricsNamespace, metricsSubsystem = "caddy", "spotify_auth"

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	opts := func(name, help string) prometheus.CounterOpts {
		return prometheus.CounterOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: name, Help: help}
	}
	m := &metrics{
		logins:          prometheus.NewCounter(opts("logins_total", "Completed logins.")),
		loginFailures:   prometheus.NewCounterVec(opts("login_failures_total", "Failed logins, by reason."), []string{"reason"}),
		refreshes:       prometheus.NewCounter(opts("refreshes_total", "Successful access token refreshes.")),
		refreshesShared: prometheus.NewCounter(opts("refreshes_shared_total", "Refreshes answered by another instance's published result, without calling Spotify.")),
		refreshFailures: prometheus.NewCounterVec(opts("refresh_failures_total", "Failed access token refreshes, by reason."), []string{"reason"}),
		sessionsEnded: prometheus.NewCounterVec(opts("sessions_ended_total",
			"Sessions ended because Spotify no longer refreshes them, by reason: refresh_grant_ended is Spotify's invalid_grant on refresh (refresh tokens die 6 months after consent, or the user removed the app's access)."), []string{"reason"}),
		responses: prometheus.NewCounterVec(opts("responses_total", "Requests the handler answered itself (login redirects, 401, 403, 503), by status code."), []string{"code"}),
	}
	var errs [7]error
	if reg != nil {
		// Several spotify_auth handlers in one config share one set.
		m.logins, errs[0] = register(reg, m.logins)
		m.loginFailures, errs[1] = register(reg, m.loginFailures)
		m.refreshes, errs[2] = register(reg, m.refreshes)
		m.refreshFailures, errs[3] = register(reg, m.refreshFailures)
		m.responses, errs[4] = register(reg, m.responses)
		m.refreshesShared, errs[5] = register(reg, m.refreshesShared)
		m.sessionsEnded, errs[6] = register(reg, m.sessionsEnded)
	}
	m.unauthorized = m.responses.WithLabelValues("401")
	m.redirects = m.responses.WithLabelValues("302")
	return m, errors.Join(errs[:]...)
}

// register registers c, or returns the equal collector registered before.
func register[T prometheus.Collector](reg prometheus.Registerer, c T) (T, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(T); ok {
			return existing, nil
		}
	}
	return c, err
}

// endedRefreshRevoked labels sessions ended by invalid_grant on refresh.
const endedRefreshRevoked = "refresh_grant_ended"

func (m *metrics) answered(status int) {
	m.responses.WithLabelValues(strconv.Itoa(status)).Inc()
}
