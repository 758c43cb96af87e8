#!/usr/bin/env bash
# Download counts: what counting costs a served GET (issue 22: at most 5 %
# apart), in one command, from the repository's top folder:
#
#   bench/downloads.sh
#
# Two servers of the same release binary, side by side: one counting
# (`[downloads] count = true`, the default), one not (`count = false`).
# Each stores one small JPEG (4 KB, so that the GET path, not the bytes,
# is what is measured); wrk GETs it over CONNECTIONS connections, the two
# servers in turn, ROUNDS rounds (the order swapped every round), and the
# best req/s of each is compared. At the end the counting server's count of
# the file is read back (action=stats) against the GETs wrk sent it.
#
# Settings (environment):
#   BENCH_DOWNLOADS_ROUNDS=3    rounds
#   BENCH_SECONDS=10            length of each wrk run (after a 2 s warm-up)
#   BENCH_CONNECTIONS=32        concurrent connections
#   BENCH_MAX_LOAD=2.0          first wait (at most BENCH_LOAD_WAIT=600 s) for
#                               the 1-minute load average to drop below this
#   BENCH_NO_INSTALL=1          install nothing; fail if something is missing
#   BENCH_KEEP=1                keep the temporary folder (logs, rounds.tsv)
set -euo pipefail

ROUNDS=${BENCH_DOWNLOADS_ROUNDS:-3}
SECONDS_PER_RUN=${BENCH_SECONDS:-10}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
BENCH_MAX_LOAD=${BENCH_MAX_LOAD:-2.0}

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/multiserver-upload
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"

# store PORT: uploads small.jpg and prints its stored path.
store() {
    curl -sf -H "X-Security-Key: $KEY" -F "file=@$WORK/data/small.jpg;type=image/jpeg" \
        "http://127.0.0.1:$1/do.ashx?action=upload&format=json" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["resp"]["files"][0]["path"])'
}

# one NAME PORT PATH: a warm-up, one measured wrk run, a line of rounds.tsv.
one() {
    local name=$1 port=$2 path=$3 out=$WORK/wrk.$1.out rps
    for secs in 2 "$SECONDS_PER_RUN"; do
        timeout $((secs + 60)) wrk -t2 -c"$CONNECTIONS" -d"${secs}s" --timeout 10s \
            "http://127.0.0.1:$port/$path" >"$out" 2>&1 || die "wrk failed: $(tail -5 "$out")"
        ! grep -q 'Non-2xx' "$out" || die "$name: failed requests: $(grep Non-2xx "$out")"
        SENT[$name]=$((${SENT[$name]:-0} + $(awk '/requests in/ {print $1}' "$out")))
    done
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    printf '%s\t%s\n' "$name" "$rps" >>"$WORK/rounds.tsv"
    log "  $name: $rps req/s"
}

main() {
    if [[ ${BENCH_NO_INSTALL:-} != 1 ]]; then install_missing wrk; fi
    command -v wrk >/dev/null || die "wrk is needed"
    log "building the release binary"
    (cd "$ROOT" && timeout 1800 cargo build --release --quiet) || die "cargo build failed"

    WORK=$(mktemp -d -t multiserver-upload-downloads.XXXXXX)
    : >"$WORK/rounds.tsv"
    # shellcheck disable=SC2034 # used by lib.sh
    KEY=bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
    log "temporary folder: $WORK"
    timeout 300 python3 "$HERE/make_data.py" "$WORK/data" --small-bytes 4096 --no-big

    local on_port off_port on_path off_path
    read -r on_port off_port < <(free_ports 2)
    OURS_TOML="[downloads]
count = true" start_ours on "$on_port" true warn
    OURS_TOML="[downloads]
count = false" start_ours off "$off_port" true warn
    on_path=$(store "$on_port")
    off_path=$(store "$off_port")
    declare -gA SENT=()

    wait_for_low_load
    log "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    local round
    for round in $(seq "$ROUNDS"); do
        log "round $round of $ROUNDS"
        if ((round % 2)); then
            one counting "$on_port" "$on_path"
            one not_counting "$off_port" "$off_path"
        else
            one not_counting "$off_port" "$off_path"
            one counting "$on_port" "$on_path"
        fi
    done
    local load counted
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    counted=$(curl -sf -H "X-Security-Key: $KEY" \
        "http://127.0.0.1:$on_port/do.ashx?action=stats&format=json&path=$on_path" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["resp"]["downloads"])')

    echo
    echo "GET of one 4 KB stored file, $CONNECTIONS connections, $ROUNDS rounds (best req/s)"
    echo "load average after: $load"
    awk -F'\t' '
        { if ($2 > best[$1]) best[$1] = $2; all[$1] = all[$1] " " $2 }
        END {
            printf "%-14s %10s %8s  %s\n", "counting", "req/s", "ratio", "rounds"
            split("not_counting counting", names, " ")
            for (k = 1; k <= 2; k++) {
                n = names[k]; r = best[n] / best["not_counting"]
                printf "%-14s %10.0f %7.3fx %s%s\n", n, best[n], r, all[n],
                    (k == 1 ? "" : (r >= 0.95 ? "  (target >= 0.95x: met)" : "  (target >= 0.95x: NOT met)"))
            }
        }' "$WORK/rounds.tsv"
    echo "GETs sent to the counting server: ${SENT[counting]}; its count: $counted"
}

main "$@"
