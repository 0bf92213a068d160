package spotifyauth

import (
	"encoding/json"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// Each check is written once, in validate.go: a mistake made in JSON and
// the same one made in a Caddyfile give the same message (the Caddyfile's
// only adds where it is).
func TestJSONAndCaddyfileGiveTheSameMessage(t *testing.T) {
	t.Parallel()
	const secret = "0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		name, caddyfile, json string
	}{
		{"unknown scope", "scopes user-read-mind", `"scopes":["user-read-mind"]`},
		{"unknown required scope", "required_scopes user-read-mind", `"required_scopes":["user-read-mind"]`},
		{"http redirect URI on a public host", "redirect_uri http://music.example.com/cb", `"redirect_uri":"http://music.example.com/cb"`},
		{"relative redirect URI", "redirect_uri cb", `"redirect_uri":"cb"`},
		{"token URL not http", "token_url ftp://x/token", `"token_url":"ftp://x/token"`},
		{"relative API URL", "api_url /v1", `"api_url":"/v1"`},
		{"short cookie secret", "cookie_secret short", `"cookie_secret":["short"]`},
		{"predictable cookie secret", "cookie_secret " + secret + " " + strings.Repeat("ab", 20), `"cookie_secret":["` + secret + `","` + strings.Repeat("ab", 20) + `"]`},
		{"cookie name", "cookie_name a.b", `"cookie_name":"a.b"`},
		{"token header", "token_header X:Token", `"token_header":"X:Token"`},
		{"refresh leeway", "refresh_leeway 45m", `"refresh_leeway":"45m"`},
		{"key rotation", "key_rotation 10m", `"key_rotation":"10m"`},
		{"country code", "scopes user-read-private\nallow_countries USA", `"scopes":["user-read-private"],"allow_countries":["USA"]`},
		{"mode", "mode admin", `"mode":"admin"`},
		{"session store", "session_store redis", `"session_store":"redis"`},
		{"emails without the scope", "allow_emails a@example.com", `"allow_emails":["a@example.com"]`},
		{"products without the scope", "allow_products premium", `"allow_products":["premium"]`},
		{"key rotation with a secret", "cookie_secret " + secret + "\nkey_rotation 720h", `"cookie_secret":["` + secret + `"],"key_rotation":"720h"`},
		{"app mode without a secret", "mode app", `"mode":"app"`},
		{"app mode with the auth endpoint", "client_secret s\nmode app\nauth_endpoint", `"client_secret":"s","mode":"app","auth_endpoint":true`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := adapt(t, ":8080 {\n\tspotify_auth {\n\t\tclient_id a\n"+tc.caddyfile+"\n\t}\n}")
			if err == nil {
				t.Fatal("the Caddyfile was accepted")
			}
			fromCaddyfile := regexp.MustCompile(`^.*'spotify_auth': (.*), at Caddyfile:\d+.*$`).ReplaceAllString(err.Error(), "$1")

			var h Handler
			if err := json.Unmarshal([]byte(`{"client_id":"a",`+tc.json+`}`), &h); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
			defer cancel()
			// An invalid config is reported before anything touches
			// storage: none is configured here.
			if err := h.Provision(ctx); err != nil {
				t.Fatalf("provision: %v", err)
			}
			defer h.Cleanup()
			err = h.Validate()
			if err == nil {
				t.Fatal("the JSON config was accepted")
			}
			if err.Error() != fromCaddyfile {
				t.Errorf("JSON: %q\nCaddyfile: %q", err, fromCaddyfile)
			}
		})
	}
}

// Every check belongs to an option the Caddyfile knows, so the parser
// runs it at that option's line.
func TestEveryOptionCheckIsACaddyfileOption(t *testing.T) {
	t.Parallel()
	for _, c := range optionChecks {
		_, ok := optionParsers[c.option]
		if _, block := blockOptionParsers[c.option]; !ok && !block {
			t.Errorf("check for %q, which the Caddyfile does not have", c.option)
		}
	}
}

// An invalid config is rejected before Provision writes anything: no key
// is generated into storage, no background work starts.
func TestAnInvalidConfigWritesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	h := &Handler{ClientID: "a", KeyRotation: caddy.Duration(time.Minute), // below the least rotation
		StorageRaw: json.RawMessage(`{"module":"file_system","root":` + strconv.Quote(dir) + `}`)}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
	defer cancel()
	if err := h.Provision(ctx); err != nil {
		t.Fatalf("provision: %v", err)
	}
	err := h.Validate()
	_ = h.Cleanup()
	if err == nil || !strings.Contains(err.Error(), "key_rotation") {
		t.Fatalf("validate: %v, want the key_rotation error", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("storage holds %d entries after an invalid config", len(entries))
	}
	if h.maintenance != nil {
		t.Error("background work started for an invalid config")
	}

	// The same config made valid writes its key there: the check above
	// looks in the right place.
	h = &Handler{ClientID: "a", StorageRaw: json.RawMessage(`{"module":"file_system","root":` + strconv.Quote(dir) + `}`)}
	provision(t, h)
	if entries, _ := os.ReadDir(dir); len(entries) == 0 {
		t.Error("a valid config wrote no key into the configured storage")
	}
}
