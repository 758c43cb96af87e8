#!/usr/bin/env bash
# Before and after: two builds of the service, measured in turn in the same
# minutes, so that what else the machine does weighs on both alike. Each
# round starts both binaries afresh (A then B, B then A on the next round)
# and runs the 140 KB case with wrk; prints req/s, CPU, context
# switches and minor page faults (all threads of ours) per request of each
# round, and the best of each binary. On a busy machine req/s and CPU
# swing; the switches and faults do not. The case `big` is one 1 GiB
# upload with curl per round instead: its rate in uploads/s (the best is
# the fastest), and CPU ms, switches and faults of that one upload, to a
# server that has served nothing before (no warm-up).
#
#   bench/ab.sh OLD_BINARY NEW_BINARY [small|small-peer|big]
#
# Settings (environment): ROUNDS=4, BENCH_SECONDS=6, FSYNC=true|false
# (default true), BENCH_CONNECTIONS=32.
set -euo pipefail

A=$(realpath "$1")
B=$(realpath "$2")
CASE=${3:-small}
ROUNDS=${ROUNDS:-4}
SECONDS_PER_RUN=${BENCH_SECONDS:-6}
FSYNC=${FSYNC:-true}
# shellcheck disable=SC2034 # used by lib.sh
CONNECTIONS=${BENCH_CONNECTIONS:-32}

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck disable=SC2034 # used by lib.sh
ROOT=$(cd "$HERE/.." && pwd)

if [[ -z ${BENCH_TIME_LIMITED:-} ]]; then
    export BENCH_TIME_LIMITED=1
    exec timeout -k 30 "${BENCH_MAX_SECONDS:-1200}" "$HERE/ab.sh" "$@"
fi

# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"

case $CASE in
small | small-peer | big) ;;
*) die "unknown case '$CASE' (small, small-peer, big)" ;;
esac
[[ -x $A && -x $B ]] || die "usage: bench/ab.sh OLD_BINARY NEW_BINARY [small|small-peer|big]"
install_tools

WORK=$(mktemp -d -t multiserver-upload-ab.XXXXXX)
trap cleanup EXIT INT TERM
KEY=bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
if [[ $CASE == big ]]; then
    timeout 300 python3 "$HERE/make_data.py" "$WORK/data" --big-bytes 1073741824
else
    timeout 60 python3 "$HERE/make_data.py" "$WORK/data" --no-big
fi

# Context switches so far of every thread of the given processes.
switches() {
    local pid
    for pid in "$@"; do cat /proc/"$pid"/task/*/status; done |
        awk '/^(non)?voluntary_ctxt_switches:/ { n += $2 } END { print n }'
}

# Minor page faults so far of the given processes (a fresh mapping per
# large buffer shows here, whatever the load).
faults() {
    local pid
    for pid in "$@"; do awk '{print $10}' "/proc/$pid/stat"; done | awk '{ n += $1 } END { print n }'
}

# measure LABEL BINARY: one round of one binary; appends "LABEL rps ms
# switches faults" (the last three per request) to $WORK/results.
measure() {
    local label=$1 pids=()
    BIN=$2
    # Fresh folders each time, the old ones emptied, not deleted (see
    # empty_files: deleting thousands of files slows the next creates).
    local s1=s1-$label-$round s2=s2-$label-$round
    read -r p1 p2 < <(free_ports 2)
    if [[ $CASE == small-peer ]]; then
        start_ours "$s2" "$p2" "$FSYNC" info
        pids+=("$OURS_PID")
        start_ours "$s1" "$p1" "$FSYNC" info "$s2" "$p2"
    else
        start_ours "$s1" "$p1" "$FSYNC" info
    fi
    pids=("$OURS_PID" "${pids[@]}")
    # The large upload goes to a fresh server, as in bench/run.sh.
    [[ $CASE == big ]] || wrk_run "$WORK/warmup.txt" "$p1" 1
    settle
    local before after line rps requests
    local switched faulted
    switched=$(switches "${pids[@]}")
    faulted=$(faults "${pids[@]}")
    before=$(cpu_ticks "${pids[@]}")
    if [[ $CASE == big ]]; then
        local secs
        read -r secs _ < <(big_upload_once "$p1")
        line="BENCH requests=1 rps=$(awk -v s="$secs" 'BEGIN { printf "%.3f", 1 / s }')"
    else
        wrk_run "$WORK/wrk.txt" "$p1" "$SECONDS_PER_RUN"
        line=$(grep '^BENCH ' "$WORK/wrk.txt")
    fi
    after=$(cpu_ticks "${pids[@]}")
    switched=$(($(switches "${pids[@]}") - switched))
    faulted=$(($(faults "${pids[@]}") - faulted))
    rps=${line#*rps=}
    rps=${rps%% *}
    requests=${line#*requests=}
    requests=${requests%% *}
    local pid
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do stop_process "$pid"; done
    empty_files "$WORK/$s1/data" "$WORK/$s2/data"
    awk -v l="$label" -v r="$rps" -v t=$((after - before)) -v hz="$CLK_TCK" -v n="$requests" -v s="$switched" -v f="$faulted" \
        'BEGIN { printf "%s %.3f %.3f %.1f %.1f\n", l, r, 1000 * t / hz / n, s / n, f / n }' | tee -a "$WORK/results"
}

log "$CASE, fsync=$FSYNC, $ROUNDS rounds of ${SECONDS_PER_RUN} s; A=$A B=$B"
for ((round = 1; round <= ROUNDS; round++)); do
    if ((round % 2)); then
        measure A "$A"
        measure B "$B"
    else
        measure B "$B"
        measure A "$A"
    fi
done
echo
awk '{ rps[$1] = rps[$1] " " $2; if ($2 > best[$1]) best[$1] = $2; cpu[$1] = cpu[$1] " " $3; sw[$1] = sw[$1] " " $4; pf[$1] = pf[$1] " " $5 }
    END {
        for (l in best) printf "%s: req/s%s (best %.3f); CPU ms/req%s; switches/req%s; page faults/req%s\n", l, rps[l], best[l], cpu[l], sw[l], pf[l]
        if (best["A"] > 0) printf "B / A (best of rounds): %.2f\n", best["B"] / best["A"]
    }' "$WORK/results"
