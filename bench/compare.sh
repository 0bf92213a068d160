#!/usr/bin/env bash
# The hot path of two builds side by side: Caddy's own CPU time per
# request with no auth (the floor), behind spotify_auth with a cookie
# session, and with session_store storage, for the plugin at BASE (a git
# revision) and for the working tree. Each of the six targets is served
# by a Caddy process of its own, all six on CPU 0 and all loaded at the
# same time by the load generator on CPU 1 (loadgen -together): a slow
# phase of the machine, which changes every figure by 30 % or more for
# seconds at a time, hits them all alike. The figure to read is the
# gate's cost, "cookie session" and "stored session" over the floor in
# µs of Caddy's CPU per request, paired within each round, median over
# rounds. (Six processes sharing one CPU switch often, so every figure
# here is some µs above what one Caddy alone spends: compare the deltas,
# not the floors, with bench/run.sh.)
#
#   bash bench/compare.sh [BASE]        (BASE defaults to HEAD)
#
# Environment: DURATION [4s], ROUNDS [15], CONCURRENCY [16] (per target),
# MODE [together] (or turns: the targets one after the other in each
# round, each Caddy alone on its CPU as bench/run.sh measures, noisier;
# or pairs: each gated target with its build's floor, two processes at
# once, the floor sent the same cookie: closest to one Caddy alone),
# PROFILE [0] (a duration: then each target is loaded alone afterwards
# while its Caddy takes a CPU profile, bench/out/compare/cpu-<target>-<build>.pb.gz,
# and the top entries are printed), BASE_PORT [18181] (uses 12 ports).
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=${1:-HEAD}
DURATION=${DURATION:-4s}
ROUNDS=${ROUNDS:-15}
CONCURRENCY=${CONCURRENCY:-16}
PROFILE=${PROFILE:-0}
MODE=${MODE:-together}
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

port() { echo $((BASE_PORT + $1)); }
redirects=""
for i in 2 4 8 10; do # the gated targets' site ports (see below)
	redirects+="http://127.0.0.1:$(port $i)/oauth2/spotify/callback,"
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
		${2:-}
	}
EOF
}

# One Caddy process per build and target, so that each one's CPU time is
# its target's alone: each target's site port, then its admin port.
declare -A caddy_pid site_port admin_port
i=0
for build in base work; do
	for target in floor spotify_auth spotify_store; do
		name=$target-$build
		site_port[$name]=$(port $i)
		admin_port[$name]=$(port $((i + 1)))
		i=$((i + 2))
		p=${site_port[$name]}
		case $target in
		floor) site='respond "ok"' ;;
		spotify_auth) site="$(gate "$p")
	respond \"ok\"" ;;
		spotify_store) site="$(gate "$p" "session_store storage")
	respond \"ok\"" ;;
		esac
		rm -rf "$OUT/storage-$name"
		cat >"$OUT/Caddyfile-$name" <<EOF
{
	admin 127.0.0.1:${admin_port[$name]}
	auto_https off
	storage file_system $PWD/$OUT/storage-$name
	log {
		level ERROR
	}
}
http://127.0.0.1:$p {
	bind 127.0.0.1
	$site
}
EOF
		"${pin_caddy[@]}" "$OUT/caddy-$build" run --config "$OUT/Caddyfile-$name" --adapter caddyfile >"$OUT/caddy-$name.log" 2>&1 &
		caddy_pid[$name]=$!
		pids+=($!)
	done
done
for name in "${!site_port[@]}"; do wait_port "${site_port[$name]}"; done
for build in base work; do
	"$OUT/login" -url "http://127.0.0.1:${site_port[spotify_auth-$build]}/" -n 1 -cookie-out "$OUT/cookie-$build.txt" >/dev/null
	"$OUT/login" -url "http://127.0.0.1:${site_port[spotify_store-$build]}/" -n 1 -cookie-out "$OUT/cookie-store-$build.txt" >/dev/null
done

args=()
for build in base work; do
	for target in floor spotify_auth spotify_store; do
		name=$target-$build
		cookie=$OUT/cookie-$build.txt
		[ "$target" = spotify_store ] && cookie=$OUT/cookie-store-$build.txt
		# Every target gets the same session cookie, as a browser sends it
		# to the whole site; the stored-session target its reference.
		args+=(-t "$name=http://127.0.0.1:${site_port[$name]}/" -pid "$name=${caddy_pid[$name]}" -H "$name=Cookie: @$cookie")
	done
done

echo "== load: $ROUNDS rounds of $DURATION per target, $CONCURRENCY connections per target, $MODE"
if [ "$MODE" = pairs ]; then
	# Each gated target with its build's floor, the two at once, the floor
	# sent the same cookie as the gated target: only the gate differs.
	: >"$OUT/load.txt"
	for build in base work; do
		for target in spotify_auth spotify_store; do
			cookie=$OUT/cookie-$build.txt
			[ "$target" = spotify_store ] && cookie=$OUT/cookie-store-$build.txt
			"${pin_load[@]}" "$OUT/loadgen" -together -c "$CONCURRENCY" -d "$DURATION" -warmup 1s -rounds "$ROUNDS" -pause 200ms \
				-t "floor=http://127.0.0.1:${site_port[floor-$build]}/" -pid "floor=${caddy_pid[floor-$build]}" -H "floor=Cookie: @$cookie" \
				-t "gate=http://127.0.0.1:${site_port[$target-$build]}/" -pid "gate=${caddy_pid[$target-$build]}" -H "gate=Cookie: @$cookie" |
				tee "$OUT/load-$target-$build.txt" | grep '^round' | sed "s/ floor / floor-$build /; s/ gate / $target-$build /" >>"$OUT/load.txt"
		done
	done
	# A floor row per pair: the awk below reads the last one of each round,
	# so each pair's own floor goes with it.
	awk '
	/^round / { n = $2; name = $3; for (i = 1; i <= NF; i++) if ($i ~ /^\(/) v = substr($i, 2) + 0
		if (name ~ /^floor-/) { floor[n, name] = v; next }
		b = name; sub(/^[^-]*-/, "", b); d = v - floor[n, "floor-" b]
		split(name, t, "-"); printf "%s %s %.2f\n", t[1], b, d }' "$OUT/load.txt" >"$OUT/pairs.txt"
	echo
	echo "== the gate's cost, pairs: Caddy CPU µs per request over a floor loaded at the same time with the same cookie"
	awk '{ k = $1 " " $2; d[k, ++n[k]] = $3 }
	END { for (k in n) { m = n[k]; for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (d[k, j] < d[k, i]) { t = d[k, i]; d[k, i] = d[k, j]; d[k, j] = t }
		med = m % 2 ? d[k, (m + 1) / 2] : (d[k, m / 2] + d[k, m / 2 + 1]) / 2; printf "%-20s %+5.2f µs (median of %d rounds)\n", k, med, m } }' "$OUT/pairs.txt" | sort
	exit 0
fi
together=-together
[ "$MODE" = turns ] && together=-together=false
"${pin_load[@]}" "$OUT/loadgen" "$together" -c "$CONCURRENCY" -d "$DURATION" -warmup 2s -rounds "$ROUNDS" -pause 200ms "${args[@]}" | tee "$OUT/load.txt"

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
		for target in floor spotify_auth spotify_store; do
			name=$target-$build
			cookie=$OUT/cookie-$build.txt
			[ "$target" = spotify_store ] && cookie=$OUT/cookie-store-$build.txt
			curl -s -o "$OUT/cpu-$name.pb.gz" "http://127.0.0.1:${admin_port[$name]}/debug/pprof/profile?seconds=$((secs - 1))" &
			prof=$!
			"${pin_load[@]}" "$OUT/loadgen" -c "$CONCURRENCY" -d "${secs}s" -warmup 0 -rounds 1 -pid "$name=${caddy_pid[$name]}" \
				-t "$name=http://127.0.0.1:${site_port[$name]}/" -H "$name=Cookie: @$cookie" | grep -E "^round" | tee "$OUT/profile-load-$name.txt"
			wait "$prof"
			echo "-- $name: top 10 by flat CPU (go tool pprof -top $OUT/cpu-$name.pb.gz)"
			go tool pprof -top -nodecount=10 "$OUT/cpu-$name.pb.gz" 2>/dev/null | sed -n '/flat%/,$p'
		done
	done
	# The gate's own CPU per request: samples under the gate's serve,
	# without the respond handler and net/http's writes it wraps (the
	# floor does those too). Immune to the machine's slow phases in a way
	# CPU time per request is not, but blind to the GC work its
	# allocations cause on the other threads.
	echo
	echo "== the gate's own CPU per request, from the profiles (samples under (*Handler).serve, less the respond and net/http writes it wraps)"
	for build in base work; do
		for target in spotify_auth spotify_store; do
			name=$target-$build
			rps=$(awk '/^round/ {print $4; exit}' "$OUT/profile-load-$name.txt")
			go tool pprof -top -cum -nodecount=400 -focus 'spotify-auth\.\(\*Handler\)\.serve$' \
				-ignore 'StaticResponse|net/http\.\(\*response\)|IdleTimeoutWriter' "$OUT/cpu-$name.pb.gz" 2>/dev/null |
				awk -v name="$name" -v n="$rps" -v secs="$((secs - 1))" '$NF ~ /spotify-auth\.\(\*Handler\)\.serve$/ {
					v = $4 + 0; if ($4 ~ /ms$/) v /= 1000
					printf "%-20s %.2f µs/req (%s req/s)\n", name, v * 1e6 / (n * secs), n; exit }'
		done
	done
fi
