package spotifyauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddyspotify/caddy-spotify-auth/internal/revocation"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// adminAPI is the operator's lever on Caddy's admin endpoint:
//
//	DELETE /spotify_auth/users/<spotify-user-id>/sessions[?client_id=<id>]
//
// ends every session of that user, cookie or stored, of every Spotify app
// (or the one named) served by this Caddy: the same per-user "void
// before now" mark that logout?everywhere=1 writes, plus deleting the
// user's stored sessions. The effect is immediate on this instance; the
// others sharing the storage re-read the marks every
// revocation.RereadInterval. The user can log in again at once.
//
// It is served wherever Caddy's admin API is, with its access controls:
// loopback only by default. Never expose the admin endpoint.
type adminAPI struct{}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.spotify_auth",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

// Routes returns the admin routes under /spotify_auth/.
func (a adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: adminPrefix, Handler: caddy.AdminHandlerFunc(a.handleRevoke)}}
}

const adminPrefix = "/spotify_auth/"

// revokeResult is the admin endpoint's answer.
type revokeResult struct {
	UserID        string      `json:"user_id"`
	RevokedBefore string      `json:"revoked_before"`
	Apps          []revokeApp `json:"apps"`
	// OtherInstancesWithin bounds how long other instances sharing the
	// storage may still accept the sessions.
	OtherInstancesWithin string `json:"other_instances_within"`
}

type revokeApp struct {
	ClientID              string `json:"client_id"`
	StoredSessionsDeleted int    `json:"stored_sessions_deleted"`
}

func (adminAPI) handleRevoke(w http.ResponseWriter, r *http.Request) error {
	userID, err := adminUserID(r.URL)
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: err}
	}
	if r.Method != http.MethodDelete {
		w.Header().Set("Allow", http.MethodDelete)
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("method not allowed: use DELETE")}
	}
	clientID := r.URL.Query().Get("client_id")
	handlers := liveUserHandlers(clientID)
	if len(handlers) == 0 {
		what := "no spotify_auth handler with user logins is running"
		if clientID != "" {
			what += " for client_id " + clientID
		}
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New(what)}
	}
	res, err := revokeUser(r.Context(), handlers, userID, time.Now())
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: err}
	}
	logger := caddy.Log().Named("admin.api.spotify_auth")
	logger.Info("sessions revoked by the operator", zap.String("user_id", userID), zap.Int("apps", len(res.Apps)))
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(res)
}

// revokeUser ends userID's sessions for each handler's app: the mark
// first (cookie sessions, every instance), then the stored sessions. It
// fails closed: an operator told "done" must be able to rely on it.
func revokeUser(ctx context.Context, handlers []*Handler, userID string, now time.Time) (revokeResult, error) {
	res := revokeResult{UserID: userID, RevokedBefore: now.UTC().Format(time.RFC3339Nano), Apps: []revokeApp{},
		OtherInstancesWithin: revocation.RereadInterval.String()}
	for _, h := range handlers {
		if err := h.sessions.revoke(ctx, userID, now); err != nil {
			h.logger.Error("admin revoke: recording the revocation", zap.String("user_id", userID), zap.Error(err))
			return res, fmt.Errorf("client_id %s: recording the revocation in storage failed; nothing is revoked on other instances: %v", h.ClientID, err)
		}
		n, err := h.sessions.delete(ctx, session{UserID: userID}, true)
		if err != nil {
			h.logger.Error("admin revoke: deleting stored sessions", zap.String("user_id", userID), zap.Error(err))
			return res, fmt.Errorf("client_id %s: sessions are revoked, but deleting the stored ones failed: %v", h.ClientID, err)
		}
		res.Apps = append(res.Apps, revokeApp{ClientID: h.ClientID, StoredSessionsDeleted: n})
	}
	return res, nil
}

// adminUserID takes the user id from /spotify_auth/users/<id>/sessions,
// spelled exactly so, as every endpoint of the plugin: a Spotify user id
// needs no escaping, so an escaped one is another spelling, not an id.
func adminUserID(u *url.URL) (string, error) {
	parts := strings.Split(strings.TrimPrefix(u.EscapedPath(), adminPrefix), "/")
	if len(parts) != 3 || parts[0] != "users" || parts[2] != "sessions" {
		return "", fmt.Errorf("not found: the endpoint is %susers/<spotify-user-id>/sessions", adminPrefix)
	}
	id := parts[1]
	if !validUserID(id) {
		return "", errors.New("not found: the user id must be a Spotify user id")
	}
	return id, nil
}

// live holds the provisioned handlers, each with the context of the
// config it belongs to, so the admin module (not an HTTP handler) can
// reach their storage and keys. During a reload the old config's handlers
// stay until their Cleanup.
var live struct {
	sync.Mutex
	handlers map[*Handler]<-chan struct{}
}

// registerLive records h with its config's context. Contexts of one
// config differ (the HTTP app wraps one per server) but share its Done
// channel, which names the config.
func registerLive(h *Handler, cfg context.Context) {
	live.Lock()
	defer live.Unlock()
	if live.handlers == nil {
		live.handlers = map[*Handler]<-chan struct{}{}
	}
	live.handlers[h] = cfg.Done()
}

func unregisterLive(h *Handler) {
	live.Lock()
	defer live.Unlock()
	delete(live.handlers, h)
}

// configSiblings returns the live handlers of h's config bound to its app
// (h's web_api gate, the same app on other sites), h excluded. Instances
// elsewhere, and other configs, learn from storage.
func configSiblings(h *Handler) []*Handler {
	live.Lock()
	defer live.Unlock()
	cfg, ok := live.handlers[h]
	if !ok {
		return nil
	}
	var out []*Handler
	for o, ocfg := range live.handlers {
		if o != h && ocfg == cfg && o.app == h.app {
			out = append(out, o)
		}
	}
	return out
}

// liveUserHandlers returns one user-mode handler of the running config per
// Spotify app and storage (optionally only clientID's): one revocation per
// app and storage reaches them all.
func liveUserHandlers(clientID string) []*Handler {
	active := caddy.ActiveContext()
	if active.Context == nil {
		return nil // no config is running
	}
	live.Lock()
	var running []*Handler
	for h, cfg := range live.handlers {
		if cfg == active.Done() {
			running = append(running, h)
		}
	}
	live.Unlock()
	seen := map[string]bool{}
	var out []*Handler
	for _, h := range running {
		// Handlers of one app with different storage options or keys
		// each hold their own marks and sessions: each is revoked.
		where := h.app + "\x00" + h.storageID + "\x00" + h.revocations.KeyID()
		if h.appMode || seen[where] || clientID != "" && h.ClientID != clientID {
			continue
		}
		seen[where] = true
		out = append(out, h)
	}
	return out
}

// Interface guard
var _ caddy.AdminRouter = (*adminAPI)(nil)
