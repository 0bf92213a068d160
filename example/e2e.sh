#!/usr/bin/env bash
# End-to-end tests of an app behind spotify_auth with nothing but a Caddy
# binary that has the plugin, curl and the app: the recipe of docs/testing-your-app.md's
# "Testing your app", for any language.
#
#	CADDY=/path/to/caddy example/e2e.sh
#
# It starts `caddy spotify-fake` (the fake Spotify), the app (APP_CMD,
# default: example/python/app.py, started with APP_ADDR and SPOTIFY_API_URL
# in its environment) and `caddy run` with example/e2e.Caddyfile in front
# of it, on free loopback ports, then checks the app as a unit (the headers
# the plugin would send, from the fake's control API) and end to end (a
# login as the fake user alice, with curl following the redirects and
# keeping cookies). The last line is "N passed, N failed".
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
CADDY=${CADDY:-caddy}
APP_CMD=${APP_CMD:-python3 $here/python/app.py}
command -v "$CADDY" >/dev/null || { echo "e2e.sh: no Caddy at CADDY=$CADDY"; exit 1; }
command -v curl >/dev/null || { echo "e2e.sh: curl is needed"; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

# free_port picks a random port nothing listens on (bash's /dev/tcp
# connects only if something does), below the kernel's ephemeral range:
# a port there may be taken meanwhile by any outgoing connection.
ephemeral_low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
free_port() {
	local p
	while :; do
		p=$((10000 + RANDOM % (ephemeral_low - 10000)))
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
	done
}

# wait_for URL: until it answers at all (any status), for 15 seconds.
wait_for() {
	for _ in $(seq 150); do
		curl -s -o /dev/null "$1" && return 0
		sleep 0.1
	done
	echo "e2e.sh: nothing answers at $1"; return 1
}

# 1. The fake Spotify on a free port: the first line it prints has its URL.
"$CADDY" spotify-fake --listen 127.0.0.1:0 >"$work/fake.log" 2>&1 &
pids+=($!)
for _ in $(seq 150); do
	FAKE_URL=$(sed -n 's/^spotify-fake listening on //p' "$work/fake.log")
	[ -n "$FAKE_URL" ] && break
	sleep 0.1
done
[ -n "$FAKE_URL" ] || { cat "$work/fake.log"; exit 1; }
ctl="$FAKE_URL/_spotifytest"

SITE_PORT=$(free_port)
APP_PORT=$(free_port)
SITE="http://127.0.0.1:$SITE_PORT"
APP="http://127.0.0.1:$APP_PORT"

# 2. The test's world, through the control API: the app (client) with the
# site's redirect URI, alice with her top track, auto-approve as alice.
post() { curl -sS -f -X "${3:-POST}" -H 'Content-Type: application/json' -d "$2" "$ctl/$1"; }
post clients "{\"id\":\"e2e\",\"secret\":\"e2e-secret\",\"redirect_uris\":[\"$SITE/oauth2/spotify/callback\"]}" >/dev/null || exit 1
post users '{"id":"alice","display_name":"Alice Liddell","email":"alice@example.com","product":"premium",
	"top_tracks":[{"name":"Gopher Groove","artist":"The Channels"}]}' >/dev/null || exit 1
post settings '{"auto_approve":"alice"}' PUT >/dev/null || exit 1

# 3. The app, and Caddy in front of it.
APP_ADDR="127.0.0.1:$APP_PORT" SPOTIFY_API_URL="$FAKE_URL" $APP_CMD >"$work/app.log" 2>&1 &
pids+=($!)
FAKE_URL="$FAKE_URL" SITE_PORT="$SITE_PORT" APP_ADDR="127.0.0.1:$APP_PORT" E2E_STORAGE="$work/storage" \
	"$CADDY" run --config "$here/e2e.Caddyfile" >"$work/caddy.log" 2>&1 &
pids+=($!)
wait_for "$APP/" || { cat "$work/app.log"; exit 1; }
wait_for "$SITE/" || { cat "$work/caddy.log"; exit 1; }

passed=0 failed=0
check() { # check NAME COMMAND...: one test, named as a sentence
	if "${@:2}" >"$work/out" 2>&1; then
		passed=$((passed + 1)); echo "ok   $1"
	else
		failed=$((failed + 1)); echo "FAIL $1"; sed 's/^/     /' "$work/out" | head -20
	fi
}
has() { grep -q -- "$1" "$2" || { echo "no \"$1\" in $2:"; cat "$2"; return 1; }; }

# Unit: the app alone, given the headers spotify_auth would send for alice.
unit_page() {
	post 'forwarded?format=headers' '{"user":"alice","scopes":["user-read-email","user-top-read"]}' >"$work/headers" &&
		curl -sS -f -H @"$work/headers" "$APP/" >"$work/page" &&
		has 'Hello, Alice Liddell' "$work/page" && has 'Gopher Groove by The Channels' "$work/page"
}
check "unit: the app greets alice and lists her top track from the forwarded headers" unit_page

unit_expired() {
	post forwarded '{"user":"alice","scopes":["user-top-read"]}' >"$work/fwd" &&
		token=$(sed -n 's/^  "access_token": "\(.*\)",$/\1/p' "$work/fwd") &&
		post expire "{\"token\":\"$token\"}" >/dev/null &&
		code=$(curl -sS -o /dev/null -D "$work/h" -w '%{http_code}' -H "Authorization: Bearer $token" -H 'X-Spotify-User-Id: alice' "$APP/") &&
		[ "$code" = 401 ] && has 'invalid_token' "$work/h"
}
check "unit: an expired token gets 401 with the hint that makes the plugin refresh" unit_expired

# End to end: a login through Caddy, curl following the redirects
# (site -> fake's /authorize -> auto-approved callback -> site) and
# keeping the cookies. Accept: text/html makes it a page load, which the
# plugin sends to log in; other requests get 401 with login_url.
jar="$work/cookies"
e2e_login() {
	curl -sS -f -L -c "$jar" -b "$jar" -H 'Accept: text/html' -o "$work/page" "$SITE/" &&
		has 'Hello, Alice Liddell' "$work/page" && has 'Gopher Groove' "$work/page"
}
check "e2e: logging in with curl -L lands on the app's page for alice" e2e_login

e2e_session() {
	curl -sS -f -b "$jar" "$SITE/whoami" >"$work/who" && has '"id": "alice"' "$work/who"
}
check "e2e: the session cookie alone opens the next page as alice" e2e_session

e2e_no_session() {
	code=$(curl -sS -o "$work/body" -w '%{http_code}' -H 'Accept: application/json' "$SITE/whoami") &&
		[ "$code" = 401 ] && has 'login_url' "$work/body"
}
check "e2e: an API call without a session gets 401 with login_url" e2e_no_session

e2e_calls() {
	curl -sS -f "$ctl/requests" >"$work/requests" && has '"/v1/me/top/tracks"' "$work/requests" &&
		curl -sS -f "$ctl/counts" >"$work/counts" && has '"code_exchanges": 1' "$work/counts"
}
check "e2e: one code exchange, and the app read the top tracks at the fake" e2e_calls

e2e_outage() {
	post faults '{"endpoint":"api","path":"/v1/me/top/*","status":503,"times":1}' >/dev/null &&
		code=$(curl -sS -o /dev/null -w '%{http_code}' -b "$jar" -H 'Accept: text/html' "$SITE/") &&
		[ "$code" = 502 ]
}
check "e2e: a Spotify outage on the top tracks reaches the user as the app's 502" e2e_outage

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
