package spotifyauth

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

func TestEveryCaddyfileOptionReachesTheJSONConfig(t *testing.T) {
	t.Parallel()
	out, err := adapt(t, `
:8080 {
	spotify_auth /app/* {
		client_id        {env.SPOTIFY_CLIENT_ID}
		client_secret    {env.SPOTIFY_CLIENT_SECRET}
		scopes           user-read-email user-top-read
		show_dialog
		redirect_uri     https://music.example.com/auth/callback
		cookie_secret    {file./etc/secret} 0123456789abcdef0123456789abcdef
		cookie_name      music_session
		cookie_domain    example.com
		session_lifetime 24h
		token_header     X-Spotify-Token
		authorize_url    http://127.0.0.1:9/authorize
		token_url        http://127.0.0.1:9/api/token
		api_url          http://127.0.0.1:9
		timeout          3s
		refresh_leeway   2m
		session_store    storage
	}
	respond "ok"
}`)
	if err != nil {
		t.Fatal(err)
	}
	hs, matchers := handlersIn(t, out)
	if len(hs) != 1 {
		t.Fatalf("%d spotify_auth handlers in %s", len(hs), out)
	}
	got := hs[0]
	want := Handler{
		ClientID: "{env.SPOTIFY_CLIENT_ID}", ClientSecret: "{env.SPOTIFY_CLIENT_SECRET}",
		Scopes: []string{"user-read-email", "user-top-read"}, ShowDialog: true,
		RedirectURI:   "https://music.example.com/auth/callback",
		CookieSecrets: []string{"{file./etc/secret}", "0123456789abcdef0123456789abcdef"},
		CookieName:    "music_session", CookieDomain: "example.com",
		SessionLifetime: caddy.Duration(24 * time.Hour), TokenHeader: "X-Spotify-Token",
		AuthorizeURL: "http://127.0.0.1:9/authorize", TokenURL: "http://127.0.0.1:9/api/token",
		APIURL: "http://127.0.0.1:9", Timeout: caddy.Duration(3 * time.Second),
		RefreshLeeway: caddy.Duration(2 * time.Minute), SessionStore: "storage",
	}
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	if string(gj) != string(wj) {
		t.Fatalf("adapted handler\n got %s\nwant %s", gj, wj)
	}
	// The route matches the user's matcher OR the handler's endpoints,
	// including a callback path outside /oauth2/spotify/.
	m, _ := json.Marshal(matchers[0])
	if string(m) != `[{"path":["/app/*"]},{"path":["/auth/callback","/oauth2/spotify/login","/oauth2/spotify/logout","/oauth2/spotify/userinfo"]}]` {
		t.Fatalf("route matchers %s", m)
	}
}

func TestKeyRotationReachesTheJSONConfig(t *testing.T) {
	t.Parallel()
	out, err := adapt(t, ":8080 {\n\tspotify_auth {\n\t\tclient_id a\n\t\tkey_rotation 720h\n\t}\n}")
	if err != nil {
		t.Fatal(err)
	}
	if hs, _ := handlersIn(t, out); len(hs) != 1 || time.Duration(hs[0].KeyRotation) != 720*time.Hour {
		t.Fatalf("key_rotation not in %s", out)
	}
}

func TestSpotifyAuthIsOrderedBeforeHandlersThatAnswer(t *testing.T) {
	t.Parallel()
	out, err := adapt(t, `
:8080 {
	file_server
	respond /r "x"
	handle /h/* {
		respond "h"
	}
	reverse_proxy /p/* 127.0.0.1:9
	spotify_auth {
		client_id abc
	}
}`)
	if err != nil {
		t.Fatal(err)
	}
	first := strings.Index(out, `"handler":"spotify_auth"`)
	for _, h := range []string{`"handler":"file_server"`, `"handler":"static_response"`, `"handler":"subroute"`, `"handler":"reverse_proxy"`} {
		if i := strings.Index(out, h); i < 0 || i < first {
			t.Errorf("%s comes before spotify_auth in %s", h, out)
		}
	}
}

func TestConfigErrorsNameTheOption(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, block, want string
	}{
		{"missing client_id", "scopes user-read-email", "client_id is required"},
		{"unknown scope", "client_id a\nscopes user-read-mind", `unknown Spotify scope "user-read-mind"`},
		{"bad token URL", "client_id a\ntoken_url ftp://x/token", "token_url"},
		{"relative authorize URL", "client_id a\nauthorize_url /authorize", "authorize_url"},
		{"short cookie secret", "client_id a\ncookie_secret short", "cookie_secret #1: must be at least 32 characters"},
		{"repeated-word cookie secret", "client_id a\ncookie_secret passwordpasswordpasswordpassword", "cookie_secret #1: is too predictable"},
		{"one-character cookie secret", "client_id a\ncookie_secret " + strings.Repeat("a", 64), "cookie_secret #1: is too predictable"},
		{"plain http redirect URI on a public host", "client_id a\nredirect_uri http://music.example.com/cb", "redirect_uri"},
		{"localhost redirect URI", "client_id a\nredirect_uri http://localhost:8080/cb", "loopback IP literal"},
		{"unknown subdirective", "client_id a\nclient_ids b", `unknown subdirective "client_ids"`},
		{"option given twice", "client_id a\nclient_id b", "client_id: given more than once"},
		{"bad duration", "client_id a\nsession_lifetime forever", "session_lifetime"},
		{"bad header name", "client_id a\ntoken_header X:Token", "token_header"},
		{"bad show_dialog", "client_id a\nshow_dialog maybe", "show_dialog"},
		{"refresh_leeway too long", "client_id a\nrefresh_leeway 45m", "refresh_leeway must be between 0 and 30m"},
		{"unknown session store", "client_id a\nsession_store redis", `session_store "redis": must be cookie or storage`},
		{"key rotation with a cookie secret", "client_id a\ncookie_secret 0123456789abcdef0123456789abcdef\nkey_rotation 720h", "key_rotation applies only to generated keys"},
		{"key rotation too often", "client_id a\nkey_rotation 10m", "key_rotation must be at least 1h"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := adapt(t, ":8080 {\n\tspotify_auth {\n"+tc.block+"\n\t}\n}")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestValidateRejectsWhatPlaceholdersResolveTo(t *testing.T) {
	t.Setenv("SPOTIFY_TEST_EMPTY", "")
	t.Setenv("SPOTIFY_TEST_SHORT", "tooshort")
	for _, tc := range []struct {
		name string
		h    Handler
		want string
	}{
		{"client_id resolving to nothing", Handler{ClientID: "{env.SPOTIFY_TEST_EMPTY}", CookieSecrets: []string{secretA}}, "client_id"},
		{"cookie_secret resolving to a short value", Handler{ClientID: "a", CookieSecrets: []string{"{env.SPOTIFY_TEST_SHORT}"}}, "cookie_secret #1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
			defer cancel()
			tc.h.StorageRaw = testStorage(t)
			err := tc.h.Provision(ctx)
			if err == nil {
				err = tc.h.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestPlaceholdersInSecretsAreResolvedFromEnvAndFiles(t *testing.T) {
	dir := t.TempDir()
	secretFile := dir + "/cookie"
	if err := writeFile(secretFile, secretB+"\n"); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SPOTIFY_TEST_ID", "from-env")
	h := provision(t, &Handler{ClientID: "{env.SPOTIFY_TEST_ID}", CookieSecrets: []string{"{file." + secretFile + "}"}})
	if h.ClientID != "from-env" || h.oauth.ClientID != "from-env" {
		t.Fatalf("client_id = %q", h.ClientID)
	}
	// The file's secret seals: a sealer built from it directly opens it.
	sealed := h.sealers().sessions.Seal([]byte("x"), []byte("c"))
	kr, err := newKeyring([][]byte{[]byte(secretB)}, h.app)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kr.sessions.Open(sealed, []byte("c")); err != nil {
		t.Fatalf("cookie secret from file not used: %v", err)
	}
}

func TestUnmarshalCaddyfileDirectly(t *testing.T) {
	t.Parallel()
	var h Handler
	d := caddyfile.NewTestDispenser(`spotify_auth {
		client_id abc
		scopes streaming
	}`)
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if h.ClientID != "abc" || len(h.Scopes) != 1 {
		t.Fatalf("%+v", h)
	}
}

// FuzzUnmarshalCaddyfile: any token stream either parses or errors; never
// panics.
func FuzzUnmarshalCaddyfile(f *testing.F) {
	f.Add("spotify_auth {\nclient_id a\nscopes user-read-email\n}")
	f.Add("spotify_auth {\nclient_id a\nshow_dialog false\ncookie_secret 0123456789abcdef0123456789abcdef\n}")
	f.Add("spotify_auth /app/* {\n}")
	f.Fuzz(func(t *testing.T, input string) {
		// Not NewTestDispenser: it calls log.Fatalf on input the lexer
		// refuses (a bad heredoc marker), which kills the fuzz worker.
		// Caddy refuses such a file before any directive sees it.
		tokens, err := caddyfile.Tokenize([]byte(input), "Fuzzfile")
		if err != nil {
			return
		}
		var h Handler
		_ = h.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens))
	})
}

func writeFile(name, content string) error {
	return os.WriteFile(name, []byte(content), 0o600)
}

func TestTheTokenEndpointRoutesToTheBlockThatEnablesIt(t *testing.T) {
	t.Parallel()
	out, err := adapt(t, `
:8080 {
	spotify_auth /app/* {
		client_id a
	}
	spotify_auth /player/* {
		client_id a
		token_endpoint
	}
}`)
	if err != nil {
		t.Fatal(err)
	}
	hs, matchers := handlersIn(t, out)
	if len(hs) != 2 || hs[0].TokenEndpoint || !hs[1].TokenEndpoint {
		t.Fatalf("handlers %+v", hs)
	}
	m0, _ := json.Marshal(matchers[0])
	m1, _ := json.Marshal(matchers[1])
	if strings.Contains(string(m0), "/oauth2/spotify/token") || !strings.Contains(string(m1), "/oauth2/spotify/token") {
		t.Fatalf("matchers %s / %s", m0, m1)
	}
}

// A redirect_uri from the environment still routes its callback to the
// plugin: the route's path matcher gets the resolved path (a placeholder
// there would be expanded per request into the whole URL, and the
// callback, code and all, would reach the upstream).
func TestRedirectURIFromTheEnvironmentRoutesItsCallback(t *testing.T) {
	t.Setenv("SPOTIFY_TEST_REDIRECT", "https://music.example.com/cb/spotify")
	out, err := adapt(t, ":8080 {\n\tspotify_auth /app/* {\n\t\tclient_id a\n\t\tredirect_uri {env.SPOTIFY_TEST_REDIRECT}\n\t}\n}")
	if err != nil {
		t.Fatal(err)
	}
	_, matchers := handlersIn(t, out)
	if len(matchers) == 0 || len(matchers[0]) < 2 || !strings.Contains(string(matchers[0][1]["path"]), `"/cb/spotify"`) {
		t.Fatalf("the endpoints' matcher lacks the resolved callback path: %v", matchers)
	}
	_, err = adapt(t, ":8080 {\n\tspotify_auth /app/* {\n\t\tclient_id a\n\t\tredirect_uri https://music.example.com/{http.request.host}/cb\n\t}\n}")
	if err == nil || !strings.Contains(err.Error(), "write the path literally") {
		t.Fatalf("a per-request placeholder in the callback path: %v, want an adapt error", err)
	}
}
