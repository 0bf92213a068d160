package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// upstream is the sample app behind Caddy. It has no OAuth code at all: it
// trusts the headers spotify_auth sets, which is safe only because it
// listens on loopback where nothing but Caddy reaches it, and it calls the
// Web API with the Authorization header exactly as it was handed over.
type upstream struct {
	apiURL string // Web API base URL, without trailing slash
	client *http.Client
}

func newUpstream(apiURL string) *upstream {
	return &upstream{
		apiURL: strings.TrimRight(apiURL, "/"),
		client: &http.Client{Timeout: 10 * time.Second},
	}
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/":
		// Public: Caddy passes it through without a session.
		render(w, homeTemplate, nil)
	case "/app":
		http.Redirect(w, r, "/app/", http.StatusMovedPermanently)
	case "/app/":
		u.serveApp(w, r)
	case "/app/top-tracks.js":
		// Behind the gate like the page: only a logged-in page loads it.
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = io.WriteString(w, topTracksScript)
	default:
		http.NotFound(w, r)
	}
}

// appPage is what the /app/ page shows. It deliberately has no field that
// could hold the token.
type appPage struct {
	UserID  string // from X-Spotify-User-Id
	Name    string // from X-Spotify-User-Name, decoded
	Email   string // from X-Spotify-User-Email (only with user-read-email)
	Artists []artist
	// Problem explains why some data is missing; Relogin offers a fresh
	// login when Spotify no longer accepts the token.
	Problem string
	Relogin bool
	Retry   string // the page's own URL, for "Try again"
}

type artist struct {
	Name   string   `json:"name"`
	Genres []string `json:"genres"`
}

func (u *upstream) serveApp(w http.ResponseWriter, r *http.Request) {
	auth := r.Header.Get("Authorization")
	if !strings.HasPrefix(auth, "Bearer ") {
		http.Error(w, "No Spotify token: this app must run behind Caddy's spotify_auth.", http.StatusUnauthorized)
		return
	}
	p := appPage{
		UserID: r.Header.Get("X-Spotify-User-Id"),
		Name:   headerText(r.Header.Get("X-Spotify-User-Name")),
		Email:  headerText(r.Header.Get("X-Spotify-User-Email")),
		Retry:  r.URL.RequestURI(),
	}
	var top struct {
		Items []artist `json:"items"`
	}
	err := u.get(r.Context(), auth, "/v1/me/top/artists?limit=5", &top)
	if err != nil {
		p.Problem, p.Relogin = explain(err)
		if p.Relogin {
			// The hint to spotify_auth: this token is dead, refresh it on
			// the next request. The page asks the user to try again and
			// never reloads by itself, so a token Spotify keeps refusing
			// cannot send the browser round in a loop.
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			renderStatus(w, http.StatusUnauthorized, appTemplate, p)
			return
		}
	}
	p.Artists = top.Items
	render(w, appTemplate, p)
}

// headerText decodes an X-Spotify-* text header, which spotify_auth
// percent-encodes (RFC 3986) so that any UTF-8 name is header-safe.
func headerText(v string) string {
	if s, err := url.PathUnescape(v); err == nil {
		return s
	}
	return v
}

// apiError is a Web API error answer: {"error":{"status":401,"message":"..."}}.
type apiError struct {
	Status  int
	Message string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("Spotify answered %d %s", e.Status, e.Message)
}

// get calls the Web API as the user. The token is only ever copied from
// the incoming request to this one: it is not logged or shown.
func (u *upstream) get(ctx context.Context, auth, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.apiURL+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", auth)
	resp, err := u.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		msg := http.StatusText(resp.StatusCode)
		if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
			msg = e.Error.Message
		}
		return &apiError{Status: resp.StatusCode, Message: msg}
	}
	return json.Unmarshal(body, v)
}

// explain turns a failed API call into a sentence for the page, and tells
// whether logging in again would help.
func explain(err error) (problem string, relogin bool) {
	var ae *apiError
	if !errors.As(err, &ae) {
		return "Could not reach the Spotify Web API: " + err.Error(), false
	}
	switch ae.Status {
	case http.StatusUnauthorized:
		// spotify_auth refreshes tokens before they expire, so this means
		// the user revoked the app or Spotify dropped the token.
		return "Spotify did not accept your login (" + ae.Message + "). Try again; if that fails too, log in again.", true
	case http.StatusForbidden:
		return "Spotify refused the request (" + ae.Message + "): a missing scope, or in development mode the account is not on the app's user list.", false
	case http.StatusTooManyRequests:
		return "Spotify is rate limiting this app; try again in a little while.", false
	default:
		return ae.Error() + ".", false
	}
}

func render(w http.ResponseWriter, t *template.Template, data any) {
	renderStatus(w, http.StatusOK, t, data)
}

func renderStatus(w http.ResponseWriter, status int, t *template.Template, data any) {
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		http.Error(w, "template error", http.StatusInternalServerError)
		return
	}
	// Pages carry personal data: keep them out of shared caches.
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, b.String())
}

const pageHead = `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Spotify demo app</title>
<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#191414}
button,a.button{background:#1db954;color:#fff;border:0;border-radius:2rem;padding:.5rem 1.2rem;font-size:1rem;text-decoration:none;cursor:pointer}
.problem{background:#fff3cd;padding:.8rem;border-radius:.4rem}small{color:#555}</style>
</head><body>
`

var homeTemplate = template.Must(template.New("home").Parse(pageHead + `<h1>Public page</h1>
<p>Anyone can see this page. The app under <code>/app/</code> needs a Spotify login.</p>
<p><a class="button" href="/app/">Open the app</a></p>
</body></html>
`))

var appTemplate = template.Must(template.New("app").Parse(pageHead + `<h1>Hello, {{with .Name}}{{.}}{{else}}{{.UserID}}{{end}}!</h1>
<p><small>Spotify user id from the <code>X-Spotify-User-Id</code> header: <code>{{.UserID}}</code>{{with .Email}}; email: {{.}}{{end}}</small></p>
{{with .Problem}}<p class="problem">{{.}}</p>{{end}}
{{if .Relogin}}<p><a class="button" href="{{.Retry}}">Try again</a></p>
<form method="post" action="/oauth2/spotify/logout"><input type="hidden" name="rd" value="/app/"><button type="submit">Log in again</button></form>{{end}}
{{with .Artists}}<h2>Your top artists</h2>
<ol>{{range .}}<li>{{.Name}}{{with .Genres}} <small>({{range $i, $g := .}}{{if $i}}, {{end}}{{$g}}{{end}})</small>{{end}}</li>
{{end}}</ol>
<p><small>Fetched from the Web API with the token Caddy forwarded in the <code>Authorization</code> header.</small></p>{{end}}
<h2>Your top tracks</h2>
<ol id="top-tracks"></ol>
<p><small id="top-tracks-status">Loading with the page's own script&hellip;</small></p>
<script src="/app/top-tracks.js"></script>
<form method="post" action="/oauth2/spotify/logout"><input type="hidden" name="rd" value="/"><button type="submit">Log out</button></form>
</body></html>
`))

// topTracksScript is the pattern for a page that calls the Web API
// itself: fetch through the site's web_api prefix, same origin, with the
// session cookie the browser sends by itself. The token never reaches
// JavaScript, so an XSS on the page cannot take it away.
const topTracksScript = `"use strict";
(async () => {
  const list = document.getElementById("top-tracks");
  const status = document.getElementById("top-tracks-status");
  try {
    const res = await fetch("` + webAPIPrefix + `/v1/me/top/tracks?limit=5", {headers: {Accept: "application/json"}});
    if (res.status === 401) {
      // The session ended: the JSON answer says where to log in.
      const login = (await res.json()).login_url;
      status.textContent = "Your session ended. ";
      const a = document.createElement("a");
      a.href = login;
      a.textContent = "Log in again";
      status.appendChild(a);
      return;
    }
    if (!res.ok) {
      status.textContent = "Spotify answered " + res.status + ".";
      return;
    }
    for (const track of (await res.json()).items) {
      const li = document.createElement("li");
      li.textContent = track.name + " by " + track.artists.map((a) => a.name).join(", ");
      list.appendChild(li);
    }
    status.textContent = "Fetched by this page's script through ` + webAPIPrefix + `: the token never reached JavaScript.";
  } catch (e) {
    status.textContent = "Could not reach ` + webAPIPrefix + `: " + e;
  }
})();
`
