// Command caddy is Caddy with the spotify_auth plugin compiled in, the way
// xcaddy would build it, so a checkout can run the plugin without xcaddy:
//
//	go run ./example/caddy run --config example/Caddyfile
//	go run ./example/caddy list-modules | grep spotify_auth
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// The standard modules make this a full Caddy, not just the plugin.
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddyspotify/caddy-spotify-auth"
)

func main() {
	caddycmd.Main()
}
