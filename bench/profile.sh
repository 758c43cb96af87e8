#!/usr/bin/env bash
# Where does the service spend its time? Runs one benchmark case against our
# service alone under `perf record` and prints the CPU cost per request and
# the hottest functions (kernel and user space).
#
#   bench/profile.sh small        140 KB uploads, no peer (wrk, 32 connections)
#   bench/profile.sh small-peer   140 KB uploads, one peer (both processes)
#   bench/profile.sh big          one 1 GiB upload, no peer (curl)
#   bench/profile.sh big-peer     one 1 GiB upload, one peer (both processes)
#
# Settings (environment): FSYNC=true|false (default true), BENCH_SECONDS=10,
# BENCH_BIG_BYTES, BENCH_CONNECTIONS=32, PERF_CALLGRAPH=fp|dwarf (default fp:
# kernel stacks are complete, user-space stacks are not; dwarf is complete
# and heavier), PERF_OUT=DIR (keep perf.data there). Installs Debian's
# linux-perf if perf is missing. Virtual machines usually expose no hardware
# counters (`perf stat -e instructions true` says <not supported>), so this
# samples the cpu-clock software event.
set -euo pipefail

CASE=${1:-small}
FSYNC=${FSYNC:-true}
SECONDS_PER_RUN=${BENCH_SECONDS:-10}
BIG_BYTES=${BENCH_BIG_BYTES:-1073741824}
# shellcheck disable=SC2034 # used by lib.sh
CONNECTIONS=${BENCH_CONNECTIONS:-32}

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck disable=SC2034 # used by lib.sh
BIN=$ROOT/target/release/multiserver-upload

if [[ -z ${BENCH_TIME_LIMITED:-} ]]; then
    export BENCH_TIME_LIMITED=1
    exec timeout -k 30 "${BENCH_MAX_SECONDS:-900}" "$HERE/profile.sh" "$@"
fi

# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"

case $CASE in
small | small-peer | big | big-peer) ;;
*) die "unknown case '$CASE' (small, small-peer, big, big-peer)" ;;
esac

install_tools
if ! command -v perf >/dev/null; then
    ((EUID == 0)) || die "perf is missing: apt-get install linux-perf"
    log "installing linux-perf (apt-get)"
    timeout 600 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq linux-perf >/dev/null
fi
log "building the release binary"
(cd "$ROOT" && timeout 1200 cargo build --release --quiet) || die "cargo build failed"

WORK=$(mktemp -d -t multiserver-upload-profile.XXXXXX)
KEY=bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
if [[ $CASE == big* ]]; then
    timeout 300 python3 "$HERE/make_data.py" "$WORK/data" --big-bytes "$BIG_BYTES"
else
    timeout 60 python3 "$HERE/make_data.py" "$WORK/data" --no-big
fi

read -r p1 p2 < <(python3 -c '
import socket
a, b = socket.socket(), socket.socket()
a.bind(("127.0.0.1", 0)); b.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1])')

pids=()
if [[ $CASE == *-peer ]]; then
    start_ours s2 "$p2" "$FSYNC" info
    pids+=("$OURS_PID")
    start_ours s1 "$p1" "$FSYNC" info s2 "$p2"
else
    start_ours s1 "$p1" "$FSYNC" info
fi
pids=("$OURS_PID" "${pids[@]}")

# A short warm-up, so that the profile is of the steady state.
[[ $CASE == small* ]] && wrk_run "$WORK/warmup.txt" "$p1" 2

settle
data=${PERF_OUT:-$WORK}/perf.data
mkdir -p "$(dirname "$data")"
callgraph=(-g)
[[ ${PERF_CALLGRAPH:-fp} == dwarf ]] && callgraph=(--call-graph "dwarf,16384")
pid_list=$(IFS=,; echo "${pids[*]}")
spawn "$WORK/perf.log" perf record -e cpu-clock -F 999 "${callgraph[@]}" -p "$pid_list" -o "$data"
perf_pid=$LAST_PID
sleep 1
before=$(cpu_ticks "${pids[@]}")
start=$(date +%s.%N)
if [[ $CASE == small* ]]; then
    wrk_run "$WORK/wrk.txt" "$p1" "$SECONDS_PER_RUN" --latency
    line=$(grep '^BENCH ' "$WORK/wrk.txt")
    requests=${line#*requests=}
    requests=${requests%% *}
    log "wrk: ${line#BENCH }"
else
    out=$(big_upload_once "$p1")
    requests=1
    log "curl: $out (seconds, bytes)"
fi
end=$(date +%s.%N)
after=$(cpu_ticks "${pids[@]}")
kill -INT "$perf_pid"
wait "$perf_pid" || true

hz=$(getconf CLK_TCK)
echo
echo "== $CASE, fsync=$FSYNC: server CPU (all our processes)"
awk -v t=$((after - before)) -v hz="$hz" -v n="$requests" -v s="$start" -v e="$end" 'BEGIN {
    cpu = t / hz; wall = e - s
    printf "  %.2f CPU-seconds in %.2f s of wall time (%.2f cores); %.3f ms CPU per request\n", cpu, wall, cpu / wall, 1000 * cpu / n
}'
for pid in "${pids[@]}"; do echo "  peak RSS (VmHWM) of pid $pid: $(hwm_kib "$pid") kB"; done
echo
echo "== share of samples by binary"
{ perf report -i "$data" --no-children --sort dso -g none 2>/dev/null | grep '%' | head -8; } || true
echo
echo "== hottest functions (self time)"
{ perf report -i "$data" --no-children --sort symbol -g none 2>/dev/null | grep '%' | head -30 | cut -c1-140; } || true
echo
echo "== system calls and our functions (time including callees)"
{ perf report -i "$data" --children --sort symbol -g none 2>/dev/null | grep '%' |
    grep -E 'sys_|multiserver_upload|multer|sha2|hyper|reqwest|tracing|BufWriter|ext4_|tokio' | head -45 | cut -c1-160; } || true
if [[ -n ${PERF_OUT:-} ]]; then
    log "perf data kept in $data (perf report -i $data)"
fi
