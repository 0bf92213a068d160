package storagekeys

import (
	"strings"
	"testing"
)

// TestNamesStayInTheirFolders: every name the plugin builds lies under
// the folder the layout gives it, so the sweeps (which list a folder)
// find them and nothing else.
func TestNamesStayInTheirFolders(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, folder string }{
		{AppBackoff("https://accounts.spotify.com/api/token", "client", "keys"), Backoff},
		{ForcedPaused + SessionID("app", "user", 1), Paused},
		{UserSessions("client", "user", 8), Sessions},
		{StoredSession("ab", "cd"), Sessions},
		{Revocation("app", "k", "user", 8), Revoked},
	} {
		if !strings.HasPrefix(tc.name, tc.folder) || strings.Contains(tc.name[len(tc.folder):], "..") {
			t.Errorf("%q is not under %q", tc.name, tc.folder)
		}
	}
	if got := MigrateLock(StoredSession("ab", "cd")); got != "spotify_auth_migrate_ab_cd" {
		t.Errorf("MigrateLock = %q", got)
	}
}

// TestKeysChangeWithWhatTheyName: a refresh's key changes with the access
// token it replaces even when the refresh token stays (Spotify's refresh
// answers carry none since June 2026); a session's id does not change
// with its tokens, only with the app, user and login time.
func TestKeysChangeWithWhatTheyName(t *testing.T) {
	t.Parallel()
	if RefreshKey("r", "a1") == RefreshKey("r", "a2") {
		t.Error("two refreshes with one refresh token share a key")
	}
	if RefreshKey("r1", "a") == RefreshKey("r2", "a") {
		t.Error("RefreshKey ignores the refresh token")
	}
	base := SessionID("app", "user", 1)
	for _, other := range []string{SessionID("app2", "user", 1), SessionID("app", "user2", 1), SessionID("app", "user", 2)} {
		if other == base {
			t.Error("SessionID ignores a part")
		}
	}
	// Parts are separated, so moving a character across cannot collide.
	if Hash(16, "ab", "c") == Hash(16, "a", "bc") {
		t.Error("Hash does not separate its parts")
	}
}
