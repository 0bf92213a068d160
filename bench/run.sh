#!/usr/bin/env bash
# Load comparison of spotify_auth (cookie sessions, and session_store
# storage on file_system) against no auth and against forward_auth,
# all in ONE Caddy process on loopback, plus Caddy's RSS before and after
# many distinct sessions. See BENCHMARKS.md for a run and how to read it.
#
#   bash bench/run.sh
#
# Environment (defaults in brackets):
#   DURATION [10s]        each measured run
#   WARMUP [3s]           one warm-up run per target before the rounds
#   ROUNDS [5]            rounds of floor, spotify_auth, spotify_store,
#                         forward_auth in turn
#   CONCURRENCY [32]      keep-alive connections of the load generator
#   SESSIONS [100000]     distinct logins for the RSS measurement (0: skip)
#   LOGIN_CONCURRENCY [64] concurrent logins
#   SAME_REQUEST [1]      1: all three targets get the same request, session
#                         cookie included (browsers send it to the whole
#                         site), so only the auth differs; 0: only
#                         spotify_auth gets the cookie
#   PIN [auto]            auto: with taskset and >= 2 CPUs, Caddy on CPU 0 and
#                         the load generator (and the fake Spotify) on CPU 1;
#                         off: no pinning, every process sees all CPUs
#   PROFILE [0]           a duration such as 20s: after the comparison, load
#                         floor, spotify_auth and spotify_store alone again
#                         that long each while Caddy takes a CPU profile
#                         (bench/out/cpu-<target>.pb.gz), and print each
#                         profile's top entries and the plugin's own share
#   BASE_PORT [18081]     ports BASE_PORT .. BASE_PORT+5 on 127.0.0.1 (the
#                         fifth is Caddy's admin API, used only to take heap
#                         profiles around the memory measurement)
#
# Everything it builds and writes goes to bench/out/ (git-ignored); the
# processes it starts are stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-3s}
ROUNDS=${ROUNDS:-5}
CONCURRENCY=${CONCURRENCY:-32}
SESSIONS=${SESSIONS:-100000}
LOGIN_CONCURRENCY=${LOGIN_CONCURRENCY:-64}
SAME_REQUEST=${SAME_REQUEST:-1}
PIN=${PIN:-auto}
PROFILE=${PROFILE:-0}
BASE_PORT=${BASE_PORT:-18081}

OUT=bench/out
mkdir -p "$OUT"

PORT_FLOOR=$BASE_PORT
PORT_AUTH=$((BASE_PORT + 1))
PORT_FWD=$((BASE_PORT + 2))
PORT_FWD_AUTH=$((BASE_PORT + 3))
PORT_ADMIN=$((BASE_PORT + 4))
PORT_STORE=$((BASE_PORT + 5))
CLIENT_ID=bench
REDIRECT_URI="http://127.0.0.1:$PORT_AUTH/oauth2/spotify/callback"
REDIRECT_URI_STORE="http://127.0.0.1:$PORT_STORE/oauth2/spotify/callback"
# Fixed, so that a cookie stays valid across Caddy restarts of one run;
# only ever used on loopback by this benchmark.
COOKIE_SECRET="bQ7vK2xN9pL4mR8sT1wY6zC3fH5jD0gA-bench-only"

pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		wait "$p" 2>/dev/null || true
	done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# run_fg runs a command to completion in the background and waits for it, so
# that a signal to this script stops it at once (bash runs traps only
# between foreground commands, but interrupts wait).
run_fg() {
	"$@" &
	local p=$!
	pids+=("$p")
	wait "$p"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
	local i
	for i in $(seq 1 200); do
		port_busy "$1" && return 0
		sleep 0.05
	done
	echo "port $1 did not open; see $OUT/caddy.log" >&2
	return 1
}

for p in "$PORT_FLOOR" "$PORT_AUTH" "$PORT_FWD" "$PORT_FWD_AUTH" "$PORT_ADMIN" "$PORT_STORE"; do
	if port_busy "$p"; then
		echo "port $p on 127.0.0.1 is in use; set BASE_PORT" >&2
		exit 1
	fi
done

echo "== build"
go build -o "$OUT/caddy" ./example/caddy
go build -o "$OUT/fakespotify" ./bench/fakespotify
go build -o "$OUT/login" ./bench/login
go build -o "$OUT/loadgen" ./bench/loadgen

ncpu=$(nproc)
pin_caddy=()
pin_load=()
pin_note="not pinned: Caddy and the load generator share all $ncpu CPUs (GOMAXPROCS=$ncpu each)"
if [ "$PIN" = auto ] && command -v taskset >/dev/null && [ "$ncpu" -ge 2 ]; then
	pin_caddy=(taskset -c 0)
	pin_load=(taskset -c 1)
	pin_note="pinned with taskset: Caddy on CPU 0, load generator, login client and fake Spotify on CPU 1 (GOMAXPROCS=1 each, from the affinity mask)"
elif [ "$PIN" != off ] && [ "$PIN" != auto ]; then
	echo "PIN must be auto or off" >&2
	exit 2
fi

echo
echo "== machine"
echo "nproc:   $ncpu"
echo "cpu:     $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(grep -m1 'cpu MHz' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') MHz"
echo "memory:  $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
echo "go:      $(go version)"
echo "caddy:   $("$OUT/caddy" version)"
echo "kernel:  $(uname -sr)"
echo "source:  $(git describe --always --dirty 2>/dev/null || echo unknown) (the plugin as built, working tree included)"
echo "cpus:    $pin_note"

echo
echo "== fake Spotify"
"${pin_load[@]}" "$OUT/fakespotify" -client-id "$CLIENT_ID" -redirect-uri "$REDIRECT_URI,$REDIRECT_URI_STORE" >"$OUT/fakespotify.log" 2>&1 &
fake_pid=$!
pids+=("$fake_pid")
FAKE_URL=
for _ in $(seq 1 200); do
	FAKE_URL=$(sed -n 's/^URL //p' "$OUT/fakespotify.log")
	[ -n "$FAKE_URL" ] && break
	sleep 0.05
done
if [ -z "$FAKE_URL" ]; then
	echo "fake Spotify did not start:" >&2
	cat "$OUT/fakespotify.log" >&2
	exit 1
fi
echo "fake Spotify at $FAKE_URL (auto-approve, client $CLIENT_ID, access tokens live 1h)"

cat >"$OUT/Caddyfile" <<EOF
{
	# Not the default admin port; used only for heap profiles (/debug/pprof).
	admin 127.0.0.1:$PORT_ADMIN
	auto_https off
	storage file_system $PWD/$OUT/storage
	log {
		level ERROR
	}
}

# (1) the floor: no auth
http://127.0.0.1:$PORT_FLOOR {
	bind 127.0.0.1
	respond "ok"
}

# (2) the same route behind spotify_auth
http://127.0.0.1:$PORT_AUTH {
	bind 127.0.0.1
	spotify_auth {
		client_id $CLIENT_ID
		authorize_url $FAKE_URL/authorize
		token_url $FAKE_URL/api/token
		api_url $FAKE_URL
		redirect_uri $REDIRECT_URI
		cookie_secret $COOKIE_SECRET
		# The memory part logs in every session from this one address:
		# the default limit (20 code exchanges a minute) would refuse it.
		login_rate_limit 1000000 1000000
	}
	respond "ok"
}

# (2b) the same behind spotify_auth with session_store storage: the
# cookie holds a reference, the session lives in Caddy's storage
# (file_system on the local disk)
http://127.0.0.1:$PORT_STORE {
	bind 127.0.0.1
	spotify_auth {
		client_id $CLIENT_ID
		authorize_url $FAKE_URL/authorize
		token_url $FAKE_URL/api/token
		api_url $FAKE_URL
		redirect_uri $REDIRECT_URI_STORE
		cookie_secret $COOKIE_SECRET
		session_store storage
	}
	respond "ok"
}

# (3) the same route behind forward_auth to an always-200 endpoint
http://127.0.0.1:$PORT_FWD {
	bind 127.0.0.1
	forward_auth 127.0.0.1:$PORT_FWD_AUTH {
		uri /auth
	}
	respond "ok"
}

# the auth endpoint of (3)
http://127.0.0.1:$PORT_FWD_AUTH {
	bind 127.0.0.1
	respond 200
}
EOF

echo
echo "== Caddy ($OUT/Caddyfile)"
"${pin_caddy[@]}" "$OUT/caddy" run --config "$OUT/Caddyfile" --adapter caddyfile >"$OUT/caddy.log" 2>&1 &
caddy_pid=$!
pids+=("$caddy_pid")
for p in "$PORT_FLOOR" "$PORT_AUTH" "$PORT_STORE" "$PORT_FWD" "$PORT_FWD_AUTH"; do
	wait_port "$p"
done
echo "Caddy pid $caddy_pid ($(cat /proc/$caddy_pid/comm)), CPUs $(awk '/Cpus_allowed_list/ {print $2}' /proc/$caddy_pid/status)"
echo "(1) floor         http://127.0.0.1:$PORT_FLOOR/  respond \"ok\""
echo "(2) spotify_auth  http://127.0.0.1:$PORT_AUTH/  spotify_auth + respond \"ok\""
echo "(2b) spotify_store http://127.0.0.1:$PORT_STORE/  spotify_auth with session_store storage (file_system) + respond \"ok\""
echo "(3) forward_auth  http://127.0.0.1:$PORT_FWD/  forward_auth to 127.0.0.1:$PORT_FWD_AUTH (respond 200) + respond \"ok\""

echo
echo "== login for the load session (GET / -> fake /authorize -> callback -> GET / = 200 ok)"
run_fg "$OUT/login" -url "http://127.0.0.1:$PORT_AUTH/" -n 1 -cookie-out "$OUT/cookie.txt"
cookie=$(cat "$OUT/cookie.txt")
echo "session cookie: ${#cookie} bytes"
run_fg "$OUT/login" -url "http://127.0.0.1:$PORT_STORE/" -n 1 -cookie-out "$OUT/cookie-store.txt"
cookie_store=$(cat "$OUT/cookie-store.txt")
echo "session_store storage cookie (a sealed reference): ${#cookie_store} bytes"

echo
cookie_flags=(-H "spotify_auth=Cookie: @$OUT/cookie.txt" -H "spotify_store=Cookie: @$OUT/cookie-store.txt")
same_note="only spotify_auth requests carry the session cookie"
if [ "$SAME_REQUEST" = 1 ]; then
	cookie_flags+=(-H "floor=Cookie: @$OUT/cookie.txt" -H "forward_auth=Cookie: @$OUT/cookie.txt")
	same_note="every target gets the same request, with the ${#cookie}-byte session cookie"
fi
echo "== load: $CONCURRENCY connections, $ROUNDS rounds x $DURATION per target, $WARMUP warm-up; $same_note"
run_fg "${pin_load[@]}" "$OUT/loadgen" -c "$CONCURRENCY" -d "$DURATION" -warmup "$WARMUP" -rounds "$ROUNDS" \
	-server-pid "$caddy_pid" \
	-t "floor=http://127.0.0.1:$PORT_FLOOR/" \
	-t "spotify_auth=http://127.0.0.1:$PORT_AUTH/" \
	-t "spotify_store=http://127.0.0.1:$PORT_STORE/" \
	-t "forward_auth=http://127.0.0.1:$PORT_FWD/" \
	"${cookie_flags[@]}" \
	-ratio 'spotify_auth/floor>=0.95' -ratio 'spotify_auth/forward_auth>=3' -ratio 'spotify_store/floor>=0.80'
echo "($pin_note)"

if [ "$PROFILE" != 0 ]; then
	secs=${PROFILE%s}
	echo
	echo "== CPU profiles: each target alone for ${secs}s while Caddy profiles itself (go tool pprof -top bench/out/cpu-<target>.pb.gz)"
	for target in floor:$PORT_FLOOR spotify_auth:$PORT_AUTH spotify_store:$PORT_STORE; do
		name=${target%%:*}
		port=${target#*:}
		hdr=(-H "$name=Cookie: @$OUT/cookie.txt")
		[ "$name" = spotify_store ] && hdr=(-H "$name=Cookie: @$OUT/cookie-store.txt")
		curl -s -o "$OUT/cpu-$name.pb.gz" "http://127.0.0.1:$PORT_ADMIN/debug/pprof/profile?seconds=$((secs - 1))" &
		prof=$!
		pids+=("$prof")
		run_fg "${pin_load[@]}" "$OUT/loadgen" -c "$CONCURRENCY" -d "${secs}s" -warmup 0 -rounds 1 \
			-server-pid "$caddy_pid" -t "$name=http://127.0.0.1:$port/" "${hdr[@]}" | grep -E "^\| $name "
		wait "$prof"
		echo "-- $name: top 12 by flat CPU"
		go tool pprof -top -nodecount=12 "$OUT/cpu-$name.pb.gz" 2>/dev/null | sed -n '/flat%/,$p'
		echo "-- $name: the plugin's own functions (cumulative)"
		go tool pprof -top -cum -focus 'caddy-spotify-auth' -show 'caddy-spotify-auth' -nodecount=8 "$OUT/cpu-$name.pb.gz" 2>/dev/null | sed -n '/flat%/,$p'
	done
fi

kill -USR1 "$fake_pid"
sleep 0.2
echo "fake Spotify calls so far: $(sed -n 's/^COUNTS //p' "$OUT/fakespotify.log" | tail -1)"

if [ "$SESSIONS" -gt 0 ]; then
	echo
	echo "== memory: $SESSIONS distinct sessions (one login each, $LOGIN_CONCURRENCY at a time), then one more request per session"
	t0=$(date +%s)
	run_fg "${pin_load[@]}" "$OUT/login" -url "http://127.0.0.1:$PORT_AUTH/" -n "$SESSIONS" -c "$LOGIN_CONCURRENCY" \
		-rss-pid "$caddy_pid" -replay -admin "http://127.0.0.1:$PORT_ADMIN" -heap-dir "$OUT" >"$OUT/memory.log"
	cat "$OUT/memory.log"
	t1=$(date +%s)
	kb() { grep "^RSS $1" "$OUT/memory.log" | awk '{for (i = 1; i <= NF; i++) if ($i == "VmRSS") print $(i + 1)}'; }
	before=$(kb before)
	logins=$(kb 'after the logins')
	replay=$(kb 'after one more')
	awk -v b="$before" -v l="$logins" -v r="$replay" -v n="$SESSIONS" 'BEGIN {
		printf "Caddy VmRSS: %d kB before, %d kB after %d logins (%+d kB, %.0f bytes per session), %d kB after one more request per session (%+d kB)\n",
			b, l, n, l - b, (l - b) * 1024 / n, r, r - l
	}'
	echo "where the live heap grew during the logins (go tool pprof -top -diff_base $OUT/heap-before.pb.gz $OUT/heap-logins.pb.gz):"
	go tool pprof -top -sample_index=inuse_space -diff_base "$OUT/heap-before.pb.gz" "$OUT/heap-logins.pb.gz" 2>/dev/null |
		sed -n "/^Showing nodes/,\$p" | head -8 | sed 's/^/  /'
	if [ $((t1 - t0)) -gt 180 ]; then
		echo "note: $SESSIONS sessions took $((t1 - t0))s (> 3 min); set SESSIONS lower for a quicker run"
	fi
	kill -USR1 "$fake_pid"
	sleep 0.2
	echo "fake Spotify calls in all: $(sed -n 's/^COUNTS //p' "$OUT/fakespotify.log" | tail -1)"
fi
