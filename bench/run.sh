#!/usr/bin/env bash
# The benchmark (SPEC §9), in one command, from the repository's top folder:
#
#   bench/run.sh
#
# Builds the release binary, installs what it needs (Debian's nginx and wrk,
# Express + multer into bench/node/), starts the reference servers and ours on
# 127.0.0.1 only, measures every case in the same run, stops everything it
# started, deletes its temporary folder, and prints a table of ratios against
# the targets. See bench/README.md for what each case does.
#
# Settings (environment):
#   BENCH_SECONDS=10            length of each wrk run (after a 2 s warm-up)
#   BENCH_ROUNDS=3              rounds of the 140 KB cases; the best counts
#   BENCH_REPEAT=3              rounds of the large uploads; the fastest counts
#   BENCH_BIG_BYTES=1073741824  size of the large file
#   BENCH_CONNECTIONS=32        concurrent connections of the 140 KB cases
#   BENCH_MAX_LOAD=1.0          first wait (at most BENCH_LOAD_WAIT=600 s) for
#                               the 1-minute load average to drop below this
#   BENCH_NO_INSTALL=1          skip apt-get and npm (everything already there)
#   BENCH_OUT=FILE              also write the result table (markdown) to FILE
#   BENCH_KEEP=1                keep the temporary folder (logs), minus the inputs
#   BENCH_MAX_SECONDS=3600      the whole run's time limit
#   BENCH_S3=0                  skip case 5 (the S3 backend against a direct PUT
#                               into a three-node Garage, measured by bench/s3.sh)
set -euo pipefail

SECONDS_PER_RUN=${BENCH_SECONDS:-10}
ROUNDS=${BENCH_ROUNDS:-3}
REPEAT=${BENCH_REPEAT:-3}
BIG_BYTES=${BENCH_BIG_BYTES:-1073741824}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
MAX_SECONDS=${BENCH_MAX_SECONDS:-3600}
WARMUP_SECONDS=2

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck disable=SC2034 # used by lib.sh
BIN=$ROOT/target/release/multiserver-upload

# The whole run has a time limit: past it, timeout sends SIGTERM and the trap
# below stops everything this script started.
if [[ -z ${BENCH_TIME_LIMITED:-} ]]; then
    export BENCH_TIME_LIMITED=1
    exec timeout -k 30 "$MAX_SECONDS" "$HERE/run.sh" "$@"
fi

# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"

# ---------------------------------------------------------- measurements --
RESULTS=""
record() { printf '%s\t%s\n' "$1" "$2" >>"$RESULTS"; }

# big_once NAME PORT "PIDS" FOLDER...: one large upload, its CPU time over
# the processes PIDS, then its files are emptied.
big_once() {
    local name=$1 port=$2 pids=$3 out secs bytes before after
    shift 3
    # shellcheck disable=SC2086
    before=$(cpu_ticks $pids)
    out=$(big_upload_once "$port")
    # shellcheck disable=SC2086
    after=$(cpu_ticks $pids)
    read -r secs bytes <<<"$out"
    local cpu
    cpu=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')
    printf '%s\t%s\t%s\t%s\n' "$name" "$secs" "$bytes" "$cpu" >>"$WORK/big.tsv"
    log "  $name: ${secs}s, ${cpu} CPU-s"
    empty_files "$@"
    settle
}

# small_once NAME PORT ROUND "PIDS": warm-up, then BENCH_SECONDS of wrk; one
# result line, with the CPU time of the processes PIDS per request.
small_once() {
    local name=$1 port=$2 out=$WORK/wrk.$1.$3.txt pids=$4 line before after requests
    wrk_run "$out.warmup" "$port" "$WARMUP_SECONDS"
    # shellcheck disable=SC2086
    before=$(cpu_ticks $pids)
    wrk_run "$out" "$port" "$SECONDS_PER_RUN" --latency
    # shellcheck disable=SC2086
    after=$(cpu_ticks $pids)
    line=$(grep '^BENCH ' "$out") || die "no result from wrk: $(tail -5 "$out")"
    requests=${line#*requests=}
    requests=${requests%% *}
    line="$line cpu_ms=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n="$requests" 'BEGIN { printf "%.3f", 1000 * t / hz / (n ? n : 1) }')"
    printf '%s\t%s\n' "$name" "${line#BENCH }" >>"$WORK/small.tsv"
    log "  $name: ${line#BENCH }"
}

# ------------------------------------------------------------------- main --
main() {
    install_tools
    log "building the release binary"
    (cd "$ROOT" && timeout 1200 cargo build --release --quiet) || die "cargo build failed"

    WORK=$(mktemp -d -t multiserver-upload-bench.XXXXXX)
    RESULTS=$WORK/results.tsv
    : >"$RESULTS"
    : >"$WORK/big.tsv"
    : >"$WORK/small.tsv"
    # shellcheck disable=SC2034 # used by lib.sh
    KEY=bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
    log "temporary folder: $WORK"
    log "generating inputs (140 KB JPEG, $BIG_BYTES-byte JPEG)"
    timeout 300 python3 "$HERE/make_data.py" "$WORK/data" --big-bytes "$BIG_BYTES"

    local p_nginx p_answer p_express p_fs p_nofs p_warn p_p1 p_p2 p_q1 p_q2
    read -r p_nginx p_answer p_express p_fs p_nofs p_warn p_p1 p_p2 p_q1 p_q2 < <(
        python3 -c '
import socket
socks = [socket.socket() for _ in range(10)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')

    # Every server runs for the whole run; an idle one costs nothing, and the
    # cases can then alternate between servers, round after round.
    log "starting the servers"
    start_nginx "$p_nginx" "$p_answer"
    local ngx
    ngx="$NGINX_PID $(pgrep -P "$NGINX_PID" | tr '\n' ' ')"
    start_express "$p_express"
    local fs nofs warn p1 p2 q1 q2
    start_ours fs "$p_fs" true info; fs=$OURS_PID
    start_ours nofs "$p_nofs" false info; nofs=$OURS_PID
    start_ours warn "$p_warn" true warn; warn=$OURS_PID
    start_ours p2 "$p_p2" true info; p2=$OURS_PID
    start_ours p1 "$p_p1" true info p2 "$p_p2"; p1=$OURS_PID
    start_ours q2 "$p_q2" false info; q2=$OURS_PID
    start_ours q1 "$p_q1" false info q2 "$p_q2"; q1=$OURS_PID

    wait_for_low_load
    record machine.nproc "$(nproc)"
    record machine.cpu "$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)"
    record machine.kernel "$(uname -r)"
    record machine.load_before "$(cut -d' ' -f1-3 /proc/loadavg)"
    record run.commit "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    record run.seconds "$SECONDS_PER_RUN"
    record run.rounds "$ROUNDS"
    record run.connections "$CONNECTIONS"
    record run.repeat "$REPEAT"
    record run.big_bytes "$BIG_BYTES"
    record run.small_bytes "$(stat -c %s "$WORK/data/small.jpg")"

    # Cases 1 and 3: the large upload, each server in turn, REPEAT rounds.
    log "cases 1 and 3: $BIG_BYTES-byte multipart upload, $REPEAT rounds"
    settle
    local i
    # name|port|pids|folders emptied after each upload. The order rotates
    # from round to round, so no server always comes first or last.
    local -a big_cases=(
        "big.nginx|$p_nginx|$ngx|$WORK/nginx/body"
        "big.express|$p_express|$EXPRESS_PID|$WORK/express/data"
        "big.ours|$p_fs|$fs|$WORK/fs/data"
        "big.ours_nofsync|$p_nofs|$nofs|$WORK/nofs/data"
        "big.peer|$p_p1|$p1 $p2|$WORK/p1/data $WORK/p2/data"
    )
    local n name port pids dirs j
    for ((i = 0; i < REPEAT; i++)); do
        n=${#big_cases[@]}
        for ((j = 0; j < n; j++)); do
            IFS='|' read -r name port pids dirs <<<"${big_cases[(i + j) % n]}"
            # shellcheck disable=SC2086
            big_once "$name" "$port" "$pids" $dirs
        done
    done
    record big.express.hwm_kib "$(hwm_kib "$EXPRESS_PID")"
    record big.ours.hwm_kib "$(hwm_kib "$fs")"
    record big.ours_nofsync.hwm_kib "$(hwm_kib "$nofs")"
    record big.peer.hwm_kib "$(hwm_kib "$p1")"
    record big.peer.peer_hwm_kib "$(hwm_kib "$p2")"
    record big.peer.journaled "$(count_lines "$WORK/p1/log/upload-errors.jsonl")"

    # Cases 2 and 4: 140 KB uploads, each server in turn, ROUNDS rounds.
    log "cases 2 and 4: 140 KB uploads, $CONNECTIONS connections, ${SECONDS_PER_RUN}s each, $ROUNDS rounds"
    local -a small_cases=(
        "small.express|$p_express|$EXPRESS_PID|$WORK/express/data"
        "small.ours|$p_fs|$fs|$WORK/fs/data"
        "small.peer|$p_p1|$p1 $p2|$WORK/p1/data $WORK/p2/data"
        "small.ours_nofsync|$p_nofs|$nofs|$WORK/nofs/data"
        "small.peer_nofsync|$p_q1|$q1 $q2|$WORK/q1/data $WORK/q2/data"
        "small.ours_warn|$p_warn|$warn|$WORK/warn/data"
        "small.nginx|$p_nginx|$ngx|$WORK/nginx/body"
    )
    # The first many-small-files case after the large uploads pays for the
    # memory those freed (on a VM that hands freed memory back to the host,
    # the next page-cache pages cost a fault each): a discarded warm-up pays
    # for it instead.
    wrk_run "$WORK/wrk.phase-warmup.txt" "$p_nginx" 5
    empty_files "$WORK/nginx/body"
    settle
    for ((i = 0; i < ROUNDS; i++)); do
        n=${#small_cases[@]}
        for ((j = 0; j < n; j++)); do
            IFS='|' read -r name port pids dirs <<<"${small_cases[(i * 3 + j) % n]}"
            small_once "$name" "$port" "$((i + 1))" "$pids"
            # shellcheck disable=SC2086
            empty_files $dirs
            settle
        done
    done
    record small.ours.hwm_kib "$(hwm_kib "$fs")"
    record small.peer.hwm_kib "$(hwm_kib "$p1")"
    record small.peer.peer_hwm_kib "$(hwm_kib "$p2")"
    record small.peer.journaled "$(count_lines "$WORK/p1/log/upload-errors.jsonl")"
    record small.peer_nofsync.journaled "$(count_lines "$WORK/q1/log/upload-errors.jsonl")"
    record small.peer.replicas "$(find "$WORK/p2/data" -name '*.jpg' | wc -l)"
    record small.peer.stored "$(find "$WORK/p1/data" -name '*.jpg' | wc -l)"
    record machine.load_after "$(cut -d' ' -f1-3 /proc/loadavg)"

    # Case 5: the S3 backend, in the same run, by bench/s3.sh (Garage with one
    # node, then three; the target is read on three).
    if [[ ${BENCH_S3:-1} != 0 ]]; then
        log "case 5: the S3 backend against a direct PUT into Garage (bench/s3.sh)"
        BENCH_BIN=$BIN BENCH_GARAGE_NODES="1 3" BENCH_S3_TSV=$WORK/s3.tsv BENCH_MAX_LOAD=99 \
            BENCH_TIME_LIMITED=1 BENCH_BIG_BYTES=$BIG_BYTES BENCH_CONNECTIONS=$CONNECTIONS \
            BENCH_SECONDS=$SECONDS_PER_RUN "$HERE/s3.sh" >"$WORK/s3.txt" 2>"$WORK/s3.log" \
            || log "bench/s3.sh failed: $(tail -3 "$WORK/s3.log")"
        [[ -f $WORK/s3.tsv ]] && cat "$WORK/s3.tsv" >>"$RESULTS"
    fi

    python3 "$HERE/report.py" "$RESULTS" "$WORK/big.tsv" "$WORK/small.tsv" ${BENCH_OUT:+--out "$BENCH_OUT"}
    if [[ -s $WORK/s3.txt ]]; then
        printf '\nCase 5 in full (bench/s3.sh):\n\n' | tee -a ${BENCH_OUT:-/dev/null}
        tee -a ${BENCH_OUT:-/dev/null} <"$WORK/s3.txt"
    fi
}

main "$@"
