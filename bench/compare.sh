#!/usr/bin/env bash
# The hot path of two builds side by side: Caddy's own CPU time per
# request with no auth (the floor), behind spotify_auth with a cookie
# session, and with session_store storage, for the plugin at BASE (a git
# revision) and for the working tree. Both Caddy processes run at once on
# CPU 0 (only one is loaded at a time); the load generator, on CPU 1,
# takes every target in turn in each round, so a slow phase of the
# machine hits a round's pair alike. The figure to read is the gate's
# cost, "spotify_auth - floor" and "spotify_store - floor" in µs of
# Caddy's CPU per request, paired within each round, median over rounds.
#
#   bash bench/compare.sh [BASE]        (BASE defaults to HEAD)
#
# Environment: DURATION [4s], ROUNDS [15], CONCURRENCY [32],
# PROFILE [0] (a duration: then each build's three targets are profiled
# alone afterwards, bench/out/compare/cpu-<build>-<target>.pb.gz, with the
# plugin's top entries printed), BASE_PORT [18181] (uses 8 ports).
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=${1:-HEAD}
DURATION=${DURATION:-4s}
ROUNDS=${ROUNDS:-15}
CONCURRENCY=${CONCURRENCY:-32}
PROFILE=${PROFILE:-0}
BASE_PORT=${BASE_PORT:-18181}
OUT=bench/out/compare
mkdir -p "$OUT"
COOKIE_SECRET="bQ7vK2xN9pL4mR8sT1wY6zC3fH5jD0gA-bench-only"

pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	git worktree remove --force "$OUT/base-src" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() {
	local i
	for i in $(seq 1 200); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.05
	done
	echo "port $1 did not open" >&2
	return 1
}

pin_caddy=() pin_load=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
	pin_caddy=(taskset -c 0) pin_load=(taskset -c 1)
fi

echo "== build: base $(git rev-parse --short "$BASE") and the working tree ($(git describe --always --dirty))"
rm -rf "$OUT/base-src"
git worktree add --detach -f "$OUT/base-src" "$BASE" >/dev/null 2>&1
# The base's own example/caddy, built with its own plugin source.
(cd "$OUT/base-src" && go build -o "$PWD/../caddy-base" ./example/caddy)
go build -o "$OUT/caddy-work" ./example/caddy
go build -o "$OUT/fakespotify" ./bench/fakespotify
go build -o "$OUT/login" ./bench/login
go build -o "$OUT/loadgen" ./bench/loadgen

# Ports: floor, auth, store and admin per build.
port() { echo $((BASE_PORT + $1)); }
redirects=""
for b in 0 4; do
	redirects+="http://127.0.0.1:$(port $((b + 1)))/oauth2/spotify/callback,http://127.0.0.1:$(port $((b + 2)))/oauth2/spotify/callback,"
done
"${pin_load[@]}" "$OUT/fakespotify" -client-id bench -redirect-uri "${redirects%,}" >"$OUT/fakespotify.log" 2>&1 &
pids+=($!)
FAKE_URL=
for _ in $(seq 1 200); do
	FAKE_URL=$(sed -n 's/^URL //p' "$OUT/fakespotify.log")
	[ -n "$FAKE_URL" ] && break
	sleep 0.05
done
[ -n "$FAKE_URL" ] || { cat "$OUT/fakespotify.log" >&2; exit 1; }

gate() { # port [extra option]
	cat <<EOF
	spotify_auth {
		client_id bench
		authorize_url $FAKE_URL/authorize
		token_url $FAKE_URL/api/token
		api_url $FAKE_URL
		redirect_uri http://127.0.0.1:$1/oauth2/spotify/callback
		cookie_secret $COOKIE_SECRET
		$2
	}
EOF
}

declare -A caddy_pid
for build in base work; do
	off=0
	[ "$build" = work ] && off=4
	floor=$(port $off) auth=$(port $((off + 1))) store=$(port $((off + 2))) admin=$(port $((off + 3)))
	rm -rf "$OUT/storage-$build"
	cat >"$OUT/Caddyfile-$build" <<EOF
{
	admin 127.0.0.1:$admin
	auto_https off
	storage file_system $PWD/$OUT/storage-$build
	log {
		level ERROR
	}
}
http://127.0.0.1:$floor {
	bind 127.0.0.1
	respond "ok"
}
http://127.0.0.1:$auth {
	bind 127.0.0.1
$(gate "$auth")
	respond "ok"
}
http://127.0.0.1:$store {
	bind 127.0.0.1
$(gate "$store" "session_store storage")
	respond "ok"
}
EOF
	"${pin_caddy[@]}" "$OUT/caddy-$build" run --config "$OUT/Caddyfile-$build" --adapter caddyfile >"$OUT/caddy-$build.log" 2>&1 &
	caddy_pid[$build]=$!
	pids+=($!)
	for p in "$floor" "$auth" "$store"; do wait_port "$p"; done
	"$OUT/login" -url "http://127.0.0.1:$auth/" -n 1 -cookie-out "$OUT/cookie-$build.txt" >/dev/null
	"$OUT/login" -url "http://127.0.0.1:$store/" -n 1 -cookie-out "$OUT/cookie-store-$build.txt" >/dev/null
done

args=()
for build in base work; do
	off=0
	[ "$build" = work ] && off=4
	for t in floor:0 spotify_auth:1 spotify_store:2; do
		name=${t%%:*}-$build
		args+=(-t "$name=http://127.0.0.1:$(port $((off + ${t#*:})))/" -pid "$name=${caddy_pid[$build]}")
	done
	# Every target gets the same 563-byte session cookie as a browser sends
	# it to the whole site; the stored-session target its own reference.
	args+=(-H "floor-$build=Cookie: @$OUT/cookie-$build.txt" -H "spotify_auth-$build=Cookie: @$OUT/cookie-$build.txt"
		-H "spotify_store-$build=Cookie: @$OUT/cookie-store-$build.txt")
done

echo "== load: $ROUNDS rounds of $DURATION per target, $CONCURRENCY connections, targets in turn"
"${pin_load[@]}" "$OUT/loadgen" -c "$CONCURRENCY" -d "$DURATION" -warmup 2s -rounds "$ROUNDS" -pause 200ms "${args[@]}" | tee "$OUT/load.txt"

echo
echo "== the gate's cost: Caddy CPU µs per request over its own floor, paired within each round"
awk '
/^round / {
	n = $2; name = $3
	for (i = 1; i <= NF; i++) if ($i ~ /^\(/) { v = substr($i, 2); break }
	cpu[n, name] = v + 0; rounds[n] = 1
}
function median(a, k,   i, j, t) {
	for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
	return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
}
END {
	split("base work", builds, " ")
	for (b = 1; b <= 2; b++) {
		bd = builds[b]; k = 0
		delete fl; delete da; delete ds
		for (n in rounds) {
			k++
			fl[k] = cpu[n, "floor-" bd]
			da[k] = cpu[n, "spotify_auth-" bd] - cpu[n, "floor-" bd]
			ds[k] = cpu[n, "spotify_store-" bd] - cpu[n, "floor-" bd]
		}
		f = median(fl, k); a = median(da, k); s = median(ds, k)
		printf "%-4s floor %5.1f µs   cookie session %+5.2f µs (%+.1f %%)   stored session %+5.2f µs (%+.1f %%)   (%d rounds)\n", bd, f, a, 100 * a / f, s, 100 * s / f, k
	}
}' "$OUT/load.txt"

if [ "$PROFILE" != 0 ]; then
	secs=${PROFILE%s}
	for build in base work; do
		off=0
		[ "$build" = work ] && off=4
		for t in floor:0 spotify_auth:1 spotify_store:2; do
			name=${t%%:*}
			cookie=$OUT/cookie-$build.txt
			[ "$name" = spotify_store ] && cookie=$OUT/cookie-store-$build.txt
			curl -s -o "$OUT/cpu-$build-$name.pb.gz" "http://127.0.0.1:$(port $((off + 3)))/debug/pprof/profile?seconds=$((secs - 1))" &
			prof=$!
			"${pin_load[@]}" "$OUT/loadgen" -c "$CONCURRENCY" -d "${secs}s" -warmup 0 -rounds 1 -pid "$name=${caddy_pid[$build]}" \
				-t "$name=http://127.0.0.1:$(port $((off + ${t#*:})))/" -H "$name=Cookie: @$cookie" | grep -E "^round"
			wait "$prof"
			echo "-- $build $name: top 10 by flat CPU (go tool pprof -top $OUT/cpu-$build-$name.pb.gz)"
			go tool pprof -top -nodecount=10 "$OUT/cpu-$build-$name.pb.gz" 2>/dev/null | sed -n '/flat%/,$p'
		done
	done
fi
