package spotifyauth

import (
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// Spotify's scopes as of late 2026 (its Web API scope documentation),
// written out again so a change to the accepted list is deliberate.
var (
	documentedUserScopes = []string{
		"ugc-image-upload", "user-read-playback-state", "user-modify-playback-state",
		"user-read-currently-playing", "app-remote-control", "streaming",
		"playlist-read-private", "playlist-read-collaborative", "playlist-modify-private",
		"playlist-modify-public", "user-follow-modify", "user-follow-read",
		"user-read-playback-position", "user-top-read", "user-read-recently-played",
		"user-library-modify", "user-library-read", "user-read-email", "user-read-private",
	}
	openAccessScopes = []string{"user-soa-link", "user-soa-unlink", "soa-manage-entitlements", "soa-manage-partner", "soa-create-partner"}
)

func TestTheAcceptedScopesAreSpotifysUserScopesAndItsOpenAccessScopes(t *testing.T) {
	t.Parallel()
	if got := slices.Sorted(maps.Keys(userScopes)); !slices.Equal(got, slices.Sorted(slices.Values(documentedUserScopes))) {
		t.Errorf("user scopes %q, want Spotify's 19", got)
	}
	if got := slices.Sorted(maps.Keys(partnerScopes)); !slices.Equal(got, slices.Sorted(slices.Values(openAccessScopes))) {
		t.Errorf("partner scopes %q, want Spotify's 5 Open Access scopes", got)
	}
	all := strings.Join(append(slices.Clone(documentedUserScopes), openAccessScopes...), " ")
	for _, opt := range []string{"scopes", "required_scopes"} {
		if _, err := adapt(t, ":8080 {\n\tspotify_auth {\n\t\tclient_id a\n\t\t"+opt+" "+all+"\n\t}\n}"); err != nil {
			t.Errorf("%s with every documented scope: %v", opt, err)
		}
	}
}

func TestUnknownScopesAreAConfigErrorNamingTheOptionAndLine(t *testing.T) {
	t.Parallel()
	for _, opt := range []string{"scopes", "required_scopes"} {
		for _, tc := range []struct{ scope, want string }{
			{"user-personalized", "not a documented scope"},
			{"user-read-mind", `"Illegal scope" page`},
			{"User-Read-Email", `"Illegal scope" page`}, // Spotify's scopes are lower case
			{"soa-link", `"Illegal scope" page`},
		} {
			// The option is on line 4.
			_, err := adapt(t, ":8080 {\n\tspotify_auth {\n\t\tclient_id a\n\t\t"+opt+" user-read-email "+tc.scope+"\n\t}\n}")
			if err == nil {
				t.Errorf("%s %s adapted", opt, tc.scope)
				continue
			}
			msg := err.Error()
			want := regexp.MustCompile(`'spotify_auth': ` + opt + `: unknown Spotify scope "` + regexp.QuoteMeta(tc.scope) + `": .*, at Caddyfile:4`)
			if !want.MatchString(msg) || !strings.Contains(msg, tc.want) {
				t.Errorf("%s %s: %q, want it to name the option, the scope, line 4 and %q", opt, tc.scope, msg, tc.want)
			}
		}
	}
}

func TestOpenAccessScopesAreNotedAtStartup(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		h        Handler
		want     map[string][]string // option → partner scopes noted
		wantNone bool
	}{
		{"in scopes", Handler{Scopes: []string{"user-read-email", "user-soa-link", "soa-manage-partner"}},
			map[string][]string{"scopes": {"user-soa-link", "soa-manage-partner"}}, false},
		{"in required_scopes", Handler{Scopes: []string{"streaming"}, RequiredScopes: []string{"soa-create-partner"}},
			map[string][]string{"required_scopes": {"soa-create-partner"}}, false},
		{"user scopes only", Handler{Scopes: documentedUserScopes, RequiredScopes: []string{"streaming"}}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zap.InfoLevel)
			tc.h.logger = zap.New(core)
			notePartnerScopes(&tc.h)
			notes := logs.FilterMessageSnippet("partner").All()
			if tc.wantNone {
				if len(notes) != 0 {
					t.Fatalf("noted %v", notes)
				}
				return
			}
			if len(notes) != len(tc.want) {
				t.Fatalf("%d notes, want %d: %v", len(notes), len(tc.want), notes)
			}
			for _, n := range notes {
				fields := n.ContextMap()
				opt, _ := fields["option"].(string)
				want, ok := tc.want[opt]
				if !ok || n.Level < zap.InfoLevel || !slices.Equal(toStrings(fields["partner_scopes"]), want) {
					t.Errorf("note %q at %s with %v, want option %v and scopes %q", n.Message, n.Level, fields, slices.Collect(maps.Keys(tc.want)), want)
				}
			}
		})
	}
}

func toStrings(v any) []string {
	var out []string
	if vs, ok := v.([]any); ok {
		for _, x := range vs {
			s, _ := x.(string)
			out = append(out, s)
		}
	}
	return out
}
