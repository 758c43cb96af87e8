#!/usr/bin/env bash
# Upload tokens against the key (SPEC §9: 140 KB uploads with an upload token
# at least 0.95× the same uploads with the key), in one command, from the
# repository's top folder:
#
#   bench/token.sh
#
# One server (the shipped fsync = true, no peer) with a token secret; the
# same 140 KB JPEG body as run.sh's case 2, by wrk with 32 connections,
# ROUNDS rounds of three runs in turn: the key (X-Security-Key), a token
# minted by action=token without max_files (one HMAC and a JSON parse per
# request), and a token with max_files (also a count read and a group commit
# per file). Each run stores its files; they are emptied between runs.
#
# Settings (environment):
#   BENCH_TOKEN_ROUNDS=3        rounds
#   BENCH_SECONDS=10            length of each wrk run (after a 2 s warm-up)
#   BENCH_CONNECTIONS=32        concurrent connections
#   BENCH_MAX_LOAD=2.0          first wait (at most BENCH_LOAD_WAIT=600 s) for
#                               the 1-minute load average to drop below this
#   BENCH_NO_INSTALL=1          install nothing; fail if something is missing
#   BENCH_KEEP=1                keep the temporary folder (logs, rounds.tsv)
set -euo pipefail

ROUNDS=${BENCH_TOKEN_ROUNDS:-3}
SECONDS_PER_RUN=${BENCH_SECONDS:-10}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
BENCH_MAX_LOAD=${BENCH_MAX_LOAD:-2.0}

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/multiserver-upload
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"

# mint PORT QUERY: a token from action=token with the key.
mint() {
    curl -sf -X POST -H "X-Security-Key: $KEY" \
        "http://127.0.0.1:$1/do.ashx?action=token&format=json&ttl_secs=3600$2" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["resp"]["token"])'
}

# one NAME PORT TOKEN: a warm-up, one measured wrk run, a line of rounds.tsv.
one() {
    local name=$1 port=$2 token=$3 out=$WORK/wrk.$1.out rps
    for secs in 2 "$SECONDS_PER_RUN"; do
        BENCH_BODY="$WORK/data/small.body" BENCH_BOUNDARY="$(cat "$WORK/data/boundary")" \
            BENCH_KEY="$KEY" BENCH_TOKEN="$token" \
            timeout $((secs + 60)) wrk -t2 -c"$CONNECTIONS" -d"${secs}s" --timeout 10s \
            -s "$HERE/upload.lua" "http://127.0.0.1:$port/do.ashx?action=upload" >"$out" 2>&1 ||
            die "wrk failed: $(tail -5 "$out")"
    done
    grep -q 'errors=0 unsuccessful=0' "$out" || die "$name: failed requests: $(grep BENCH "$out")"
    rps=$(sed -n 's/^BENCH .* rps=\([0-9.]*\) .*/\1/p' "$out")
    printf '%s\t%s\n' "$name" "$rps" >>"$WORK/rounds.tsv"
    log "  $name: $rps req/s"
    empty_files "$WORK/s1/data"
    settle
}

main() {
    if [[ ${BENCH_NO_INSTALL:-} != 1 ]]; then install_missing wrk; fi
    command -v wrk >/dev/null || die "wrk is needed"
    log "building the release binary"
    (cd "$ROOT" && timeout 1800 cargo build --release --quiet) || die "cargo build failed"

    WORK=$(mktemp -d -t multiserver-upload-token.XXXXXX)
    : >"$WORK/rounds.tsv"
    # shellcheck disable=SC2034 # used by lib.sh
    KEY=bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
    log "temporary folder: $WORK"
    timeout 300 python3 "$HERE/make_data.py" "$WORK/data" --big-bytes 1048576

    local port
    read -r port < <(free_ports 1)
    OURS_TOML="[auth]
token_secrets = { k1 = \"$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')\" }" \
        start_ours s1 "$port" true warn
    local plain counted
    plain=$(mint "$port" "")
    counted=$(mint "$port" "&max_files=1000000000")

    wait_for_low_load
    local round
    for round in $(seq "$ROUNDS"); do
        log "round $round of $ROUNDS"
        one key "$port" ""
        one token "$port" "$plain"
        one token_max_files "$port" "$counted"
    done

    echo
    echo "140 KB uploads, $CONNECTIONS connections, fsync on, $ROUNDS rounds (best req/s)"
    awk -F'\t' '
        { if ($2 > best[$1]) best[$1] = $2; all[$1] = all[$1] " " $2 }
        END {
            printf "%-16s %10s %8s  %s\n", "credential", "req/s", "ratio", "rounds"
            split("key token token_max_files", names, " ")
            for (k = 1; k <= 3; k++) {
                n = names[k]; r = best[n] / best["key"]
                printf "%-16s %10.0f %7.2fx %s%s\n", n, best[n], r, all[n],
                    (k == 1 ? "" : (r >= 0.95 ? "  (target >= 0.95x: met)" : "  (target >= 0.95x: NOT met)"))
            }
        }' "$WORK/rounds.tsv"
}

main "$@"
