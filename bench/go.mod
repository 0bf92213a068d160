module github.com/caddyspotify/caddy-spotify-auth/bench

go 1.26.0

require github.com/caddyspotify/caddy-spotify-auth v0.0.0

// The plugin is this repository's root module.
replace github.com/caddyspotify/caddy-spotify-auth => ../
