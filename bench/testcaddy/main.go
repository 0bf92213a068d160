// Command testcaddy is Caddy with the plugin and the test storages
// (recording file_system, Redis) compiled in: the binary the
// multi-instance tests start twice. Its serve-test-storage command lends
// a configured storage to the plugin's in-process tests (see
// internal/remotestorage), which is how they run on Redis without the
// plugin's go.mod requiring a Redis client.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddyspotify/caddy-spotify-auth"
	_ "github.com/caddyspotify/caddy-spotify-auth/bench/internal/redisstorage"
	_ "github.com/caddyspotify/caddy-spotify-auth/internal/teststorage"
)

func main() {
	caddycmd.Main()
}
