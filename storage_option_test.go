package spotifyauth

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

func TestStorageOptionAdaptsToTheModulesJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, storage, want string
	}{
		{"a module with its argument", `storage file_system /var/lib/spotify-auth`,
			`{"module":"file_system","root":"/var/lib/spotify-auth"}`},
		{"a module with its block", "storage file_system {\n\t\t\troot /srv/shared\n\t\t}",
			`{"module":"file_system","root":"/srv/shared"}`},
		{"any caddy.storage module", "storage spotify_auth_test_recording {\n\t\t\troot /tmp/rec\n\t\t\tno_lock\n\t\t}",
			`{"module":"spotify_auth_test_recording","root":"/tmp/rec","no_lock":true}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := adapt(t, `example.com {
	spotify_auth /app/* {
		client_id abc
		`+tc.storage+`
		web_api /spotify-api
	}
}`)
			if err != nil {
				t.Fatal(err)
			}
			hs, _ := handlersIn(t, out)
			if len(hs) != 2 {
				t.Fatalf("%d spotify_auth handlers, want the gate and its web_api gate", len(hs))
			}
			for _, h := range hs {
				var got, want any
				_ = json.Unmarshal(h.StorageRaw, &got)
				_ = json.Unmarshal([]byte(tc.want), &want)
				if !reflect.DeepEqual(got, want) {
					t.Errorf("storage = %s, want %s", h.StorageRaw, tc.want)
				}
			}
		})
	}
}

func TestStorageOptionErrorsNameTheProblem(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, storage string
		wants         []string
	}{
		{"an unknown module is named, with the installed ones", `storage nosuch`,
			[]string{`storage: unknown storage module "nosuch"`, "installed: ", "file_system"}},
		{"a missing module", `storage`, []string{"storage needs a storage module"}},
		{"the module's own syntax error", `storage file_system /a /b`, []string{"storage file_system:", "wrong argument count"}},
		{"the module's unknown option", "storage spotify_auth_test_recording {\n\t\t\tbogus\n\t\t}",
			[]string{"storage spotify_auth_test_recording:", `unknown option "bogus"`}},
		{"a second storage", "storage file_system /a\n\t\tstorage file_system /b", []string{"storage: given more than once"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := adapt(t, `example.com {
	spotify_auth {
		client_id abc
		`+tc.storage+`
	}
}`)
			if err == nil {
				t.Fatal("adapted")
			}
			for _, want := range tc.wants {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

func TestStorageOptionInJSONIsCheckedAtProvision(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, storage string
		wants         []string
	}{
		{"without a module name", `{"root":"/tmp/x"}`, []string{`the "module" field names the storage module`}},
		{"an unknown module", `{"module":"nosuch"}`, []string{`unknown storage module "nosuch"`, "file_system"}},
		{"a module that cannot start", `{"module":"spotify_auth_test_recording"}`, []string{"storage:", "root is required"}},
		{"not JSON of an object", `["file_system"]`, []string{"storage:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
			defer cancel()
			h := &Handler{ClientID: testClientID, CookieSecrets: []string{secretA}, StorageRaw: json.RawMessage(tc.storage)}
			err := h.Provision(ctx)
			if err == nil {
				err = h.Validate()
				_ = h.Cleanup()
			}
			if err == nil {
				t.Fatal("provisioned and validated")
			}
			for _, want := range tc.wants {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

// TestHandlersShareSessionsAndKeysOnlyThroughTheSameStorage: two handlers
// of one app with generated keys are one site when their storage option
// is the same, and strangers when it differs.
func TestHandlersShareSessionsAndKeysOnlyThroughTheSameStorage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts []harnessOpt
	}{
		{"cookie sessions", []harnessOpt{withGeneratedKeys()}},
		{"stored sessions", []harnessOpt{withGeneratedKeys(), withStoredSessions()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs := newHarness(t, tc.opts...)
			hs.login(hs.browser, "/app/")

			same, _ := hs.sameConfig(nil)
			other, _ := hs.sameConfig(func(h *Handler) { h.StorageRaw = testStorage(t) })
			if !same.keys.Load().sameSecrets(hs.h.keys.Load().secrets) {
				t.Error("a handler with the same storage option has other keys")
			}
			if other.keys.Load().sameSecrets(hs.h.keys.Load().secrets) {
				t.Error("a handler with another storage option has the same keys")
			}
			// Spotify's limits are the app's: one in-memory state for all
			// its blocks; each storage is swept on its own schedule.
			if same.shared != hs.h.shared || other.shared != hs.h.shared {
				t.Error("blocks of one app do not share its in-memory state (login limits, back-offs)")
			}
			if same.maintenance.schedule != hs.h.maintenance.schedule || other.maintenance.schedule == hs.h.maintenance.schedule {
				t.Error("the maintenance schedule is not kept exactly per storage")
			}

			if resp, body := hs.get(hs.browser, "/app/", hs.routeTo(same)...); resp.StatusCode != http.StatusOK {
				t.Errorf("the session on a handler with the same storage: %d %s, want 200", resp.StatusCode, body)
			}
			if resp, _ := hs.get(hs.browser, "/app/", hs.routeTo(other)...); resp.StatusCode != http.StatusFound {
				t.Errorf("the session on a handler with another storage: %d, want 302 to log in", resp.StatusCode)
			}
			if n := countStoredSessions(t, other.storage); n != 0 {
				t.Errorf("the other storage holds %d sessions", n)
			}
		})
	}
}

// TestReloadWithAnotherStorageUsesOnlyIt: after a reload onto another
// storage the handler keeps everything there, and a reload back finds
// the first storage's keys and sessions again.
func TestReloadWithAnotherStorageUsesOnlyIt(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, withGeneratedKeys(), withStoredSessions())
	hs.login(hs.browser, "/app/")
	first := hs.h

	moved, _ := hs.sameConfig(func(h *Handler) { h.StorageRaw = testStorage(t) })
	_ = first.Cleanup()
	hs.h = moved
	if resp, _ := hs.get(hs.browser, "/app/"); resp.StatusCode != http.StatusFound {
		t.Fatalf("a session of the old storage after the reload: %d, want 302 to log in", resp.StatusCode)
	}
	hs.login(hs.browser, "/app/")
	if n := countStoredSessions(t, moved.storage); n != 1 {
		t.Errorf("the new storage holds %d sessions after a login, want 1", n)
	}
	if n := countStoredSessions(t, first.storage); n != 1 {
		t.Errorf("the old storage holds %d sessions, want its 1 untouched", n)
	}

	back, _ := hs.sameConfig(nil) // the harness's own storage option again
	_ = moved.Cleanup()
	hs.h = back
	if !back.keys.Load().sameSecrets(first.keys.Load().secrets) {
		t.Error("back on the first storage: not its keys")
	}
}
