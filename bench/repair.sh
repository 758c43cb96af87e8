#!/usr/bin/env bash
# The repair benchmark (SPEC §4a), in one command, from the repository's top
# folder:
#
#   bench/repair.sh
#
# 1. Refilling an emptied server: a data folder of BENCH_REPAIR_FILES JPEGs
#    (20 KB–2 MB, log-uniform) is server s1's; an empty server whose peer is
#    s1 fetches them all through repair (shipped settings: concurrency 8,
#    fsync on; then with a higher concurrency, and with fsync = false).
#    Timed against rsync -a of the same tree from an rsync daemon into an
#    empty folder, and rsync -a --fsync. Every copy BENCH_REPAIR_ROUNDS
#    times, in an order that rotates from round to round.
# 2. A pass over a cluster in sync: two servers holding the same
#    BENCH_SYNC_FILES small files (one file more on t1 for the first pass,
#    so one day differs); the time to index them at start, the first pass
#    (one day listed, one file fetched), then BENCH_SYNC_PASSES passes in
#    sync: their duration and the bytes each peer answered.
#
# Builds the release binary, installs Debian's rsync when missing, runs
# everything on 127.0.0.1 only, stops everything it started and deletes its
# temporary folder. See bench/README.md.
#
# Settings (environment):
#   BENCH_REPAIR_FILES=10000        files of the tree to refill
#   BENCH_REPAIR_DAYS=20            day folders they are spread over
#   BENCH_REPAIR_MIN_BYTES=20000    smallest file
#   BENCH_REPAIR_MAX_BYTES=2000000  largest file
#   BENCH_REPAIR_ROUNDS=2           rounds of every copy; the fastest counts
#   BENCH_REPAIR_CONCURRENCY2=16    a refill with this [repair] concurrency
#                                   too (0: none)
#   BENCH_REPAIR_NOFSYNC=1          a refill with fsync = false too (0: none)
#   BENCH_REFILL_TIMEOUT=1200       longest wait for one refill, in seconds
#   BENCH_SYNC_FILES=100000         files on each server of the cluster in sync
#   BENCH_SYNC_DAYS=100             day folders they are spread over
#   BENCH_SYNC_BYTES=1024           size of each
#   BENCH_SYNC_PASSES=5             passes in sync measured, per server
#   BENCH_SYNC_INTERVAL=2           [repair] interval_secs of that cluster
#   BENCH_MAX_LOAD=2.0              first wait (at most BENCH_LOAD_WAIT=600 s)
#                                   for the 1-minute load average to drop below
#   BENCH_NO_INSTALL=1              install nothing (rsync already there)
#   BENCH_OUT=FILE                  also write the tables (markdown) to FILE,
#                                   and every figure to FILE.tsv
#   BENCH_KEEP=1                    keep the temporary folder (logs), stored
#                                   files emptied
#   BENCH_MAX_SECONDS=1800          the whole run's time limit
#
# A quick run: BENCH_REPAIR_FILES=500 BENCH_SYNC_FILES=5000 bench/repair.sh
set -euo pipefail

REPAIR_FILES=${BENCH_REPAIR_FILES:-10000}
REPAIR_DAYS=${BENCH_REPAIR_DAYS:-20}
REPAIR_MIN_BYTES=${BENCH_REPAIR_MIN_BYTES:-20000}
REPAIR_MAX_BYTES=${BENCH_REPAIR_MAX_BYTES:-2000000}
ROUNDS=${BENCH_REPAIR_ROUNDS:-2}
CONCURRENCY2=${BENCH_REPAIR_CONCURRENCY2:-16}
NOFSYNC=${BENCH_REPAIR_NOFSYNC:-1}
REFILL_TIMEOUT=${BENCH_REFILL_TIMEOUT:-1200}
SYNC_FILES=${BENCH_SYNC_FILES:-100000}
SYNC_DAYS=${BENCH_SYNC_DAYS:-100}
SYNC_BYTES=${BENCH_SYNC_BYTES:-1024}
SYNC_PASSES=${BENCH_SYNC_PASSES:-5}
SYNC_INTERVAL=${BENCH_SYNC_INTERVAL:-2}
MAX_SECONDS=${BENCH_MAX_SECONDS:-1800}
# How long a server may take to index its data folder before it listens.
START_LIMIT=600

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck disable=SC2034 # used by lib.sh
BIN=$ROOT/target/release/multiserver-upload

# The whole run has a time limit: past it, timeout sends SIGTERM and the trap
# of lib.sh stops everything this script started.
if [[ -z ${BENCH_TIME_LIMITED:-} ]]; then
    export BENCH_TIME_LIMITED=1
    exec timeout -k 30 "$MAX_SECONDS" "$HERE/repair.sh" "$@"
fi

# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"

# ---------------------------------------------------------------- helpers --
RESULTS=""
record() {
    printf '%s\t%s\n' "$1" "$2" >>"$RESULTS"
    log "  $1 = $2"
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# CPU time (clock ticks) of a process and of its children it has reaped.
cpu_ticks_with_children() { awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat"; }
ticks_to_s() { awk -v t="$1" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }'; }

# metric PORT NAME: one unlabelled value of a server's /metrics (0 if absent).
metric() {
    curl -s --max-time 5 "http://127.0.0.1:$1/metrics" |
        awk -v n="$2" '$1 == n { v = $2 } END { printf "%.0f\n", v }'
}

# field LINE KEY: the value of key=value in a log line (empty if absent).
field() { sed -n "s/.* $2=\\([^ ]*\\).*/\\1/p" <<<"$1"; }

# Lines of FILE after its first SKIP lines.
lines_after() { tail -n +"$(($2 + 1))" "$1"; }

# pass_lines LOG SKIP PEER: the "repair pass done" lines against PEER after
# the first SKIP lines of LOG.
pass_lines() { lines_after "$1" "$2" | grep 'repair pass done' | grep " peer=$3 " || true; }

# wait_for_passes LOG SKIP PEER COUNT SECONDS: waits until COUNT passes
# against PEER are done after the first SKIP lines of LOG.
wait_for_passes() {
    local log=$1 skip=$2 peer=$3 count=$4 limit=$5 i
    for ((i = 0; i < limit * 4; i++)); do
        (($(pass_lines "$log" "$skip" "$peer" | wc -l) >= count)) && return 0
        sleep 0.25
    done
    die "$(basename "$(dirname "$log")"): fewer than $count repair passes against $peer within $limit s"
}

# Files (*.jpg) and their bytes below a folder: "files bytes".
tree_size() { find "$1" -name '*.jpg' -type f -printf '%s\n' | awk '{ n++; b += $1 } END { printf "%.0f %.0f\n", n, b }'; }

# ------------------------------------------------- 1. refilling a server --
# The tree's files and bytes, set by main.
TREE_FILES=0
TREE_BYTES=0

# refill NAME ROUND CONCURRENCY FSYNC: starts an empty server whose peer is
# s1 and times repair until it holds every file of the tree.
refill() {
    local name=$1 round=$2 concurrency=$3 fsync=$4
    local id=${name}_r$round key=refill.$name.r$round port
    port=$(free_ports 1)
    log "refill, round $round: $name (empty server, [repair] concurrency $concurrency, fsync $fsync)"
    local dir=$WORK/$id
    local cpu1_before cpu1_after cpu_before cpu_after t0 t_ready t_done pid
    cpu1_before=$(cpu_ticks "$S1_PID")
    t0=$(now_ms)
    OURS_TOML=$'[repair]\ninterval_secs = 1\nsettle_secs = 0\nconcurrency = '"$concurrency" \
        OURS_WAIT_SECS=$START_LIMIT start_ours "$id" "$port" "$fsync" info s1 "$S1_PORT"
    pid=$OURS_PID
    t_ready=$(now_ms)
    cpu_before=$(cpu_ticks "$pid")
    local held=0 i
    for ((i = 0; i < REFILL_TIMEOUT * 4; i++)); do
        held=$(metric "$port" multiserver_upload_index_files)
        ((held >= TREE_FILES)) && break
        kill -0 "$pid" 2>/dev/null || die "$id exited; see $dir/stdout.log (BENCH_KEEP=1)"
        sleep 0.25
    done
    t_done=$(now_ms)
    ((held >= TREE_FILES)) || die "$id holds $held of $TREE_FILES files after $REFILL_TIMEOUT s"
    # The pass that fetched the last file ends with an index flush; its
    # report line follows within moments.
    local passes fetched=0 bytes=0 ms=0 errors=0 line n=0 stopped
    for ((i = 0; i < 240; i++)); do
        passes=$(pass_lines "$dir/stdout.log" 0 s1)
        fetched=0
        while read -r line; do
            [[ -n $line ]] && fetched=$((fetched + $(field "$line" files_fetched)))
        done <<<"$passes"
        ((fetched >= TREE_FILES)) && break
        sleep 0.25
    done
    ((fetched >= TREE_FILES)) || die "$id: its pass reports $fetched fetched files, not $TREE_FILES"
    cpu_after=$(cpu_ticks "$pid")
    cpu1_after=$(cpu_ticks "$S1_PID")
    # Every pass up to the one that fetched the last file (a pass that
    # stopped on an error counts too: the next one went on from there).
    while read -r line; do
        n=$((n + 1))
        ms=$((ms + $(field "$line" ms)))
        bytes=$((bytes + $(field "$line" bytes_fetched)))
        errors=$((errors + $(field "$line" errors)))
    done <<<"$passes"
    stopped=$(grep -c 'repair pass stopped' "$dir/stdout.log" || true)
    local hwm
    hwm=$(hwm_kib "$pid")
    stop_process "$pid"
    local check
    check=$(tree_size "$dir/data")
    [[ $check == "$TREE_FILES $TREE_BYTES" ]] || die "$id holds '$check' (files bytes), not '$TREE_FILES $TREE_BYTES'"
    record "$key.pass_ms" "$ms"
    record "$key.passes" "$n"
    record "$key.passes_stopped" "$stopped"
    record "$key.errors" "$errors"
    record "$key.bytes_fetched" "$bytes"
    record "$key.ready_ms" "$((t_ready - t0))"
    record "$key.wall_ms" "$((t_done - t_ready))"
    record "$key.cpu_s" "$(ticks_to_s $((cpu_after - cpu_before)))"
    record "$key.source_cpu_s" "$(ticks_to_s $((cpu1_after - cpu1_before)))"
    record "$key.hwm_kib" "$hwm"
    empty_files "$dir/data"
    settle
}

# rsync_copy NAME ROUND [OPTION...]: rsync -a of the tree from the daemon
# into an empty folder, timed.
rsync_copy() {
    local name=$1 round=$2
    shift 2
    local dest=$WORK/${name}_r$round key=refill.$name.r$round
    mkdir -p "$dest"
    log "refill, round $round: $name (rsync -a $*)"
    local self_before self_after d_before d_after t0 t1
    self_before=$(awk '{print $16 + $17}' "/proc/$$/stat")
    d_before=$(cpu_ticks_with_children "$RSYNCD_PID")
    t0=$(now_ms)
    timeout "$REFILL_TIMEOUT" rsync -a "$@" --exclude='/.*' \
        "rsync://127.0.0.1:$RSYNC_PORT/tree/" "$dest/" ||
        die "rsync failed; see $WORK/rsyncd.log (BENCH_KEEP=1)"
    t1=$(now_ms)
    self_after=$(awk '{print $16 + $17}' "/proc/$$/stat")
    d_after=$(cpu_ticks_with_children "$RSYNCD_PID")
    local check
    check=$(tree_size "$dest")
    [[ $check == "$TREE_FILES $TREE_BYTES" ]] || die "rsync copied '$check' (files bytes), not '$TREE_FILES $TREE_BYTES'"
    record "$key.wall_ms" "$((t1 - t0))"
    record "$key.cpu_s" "$(ticks_to_s $((self_after - self_before)))"
    record "$key.source_cpu_s" "$(ticks_to_s $((d_after - d_before)))"
    empty_files "$dest"
    settle
}

part_refill() {
    # s1 lists one peer, on a port where nobody listens: its own passes
    # find nothing to do; the servers being refilled list s1.
    local p_s1 p_none
    read -r p_s1 p_none RSYNC_PORT < <(free_ports 3)
    log "1. refilling a server: $REPAIR_FILES files, $REPAIR_MIN_BYTES–$REPAIR_MAX_BYTES bytes, $REPAIR_DAYS days"
    local out
    out=$(timeout 1800 python3 "$HERE/make_tree.py" "$WORK/s1/data" --files "$REPAIR_FILES" \
        --days "$REPAIR_DAYS" --min-bytes "$REPAIR_MIN_BYTES" --max-bytes "$REPAIR_MAX_BYTES")
    read -r TREE_FILES TREE_BYTES <<<"$out"
    record refill.files "$TREE_FILES"
    record refill.bytes "$TREE_BYTES"
    record refill.days "$REPAIR_DAYS"
    settle

    # s1 holds the tree; its own passes are rare, so that it only answers
    # during the measurement.
    local t0
    t0=$(now_ms)
    OURS_TOML=$'[repair]\ninterval_secs = 3600\nsettle_secs = 0' OURS_WAIT_SECS=$START_LIMIT \
        start_ours s1 "$p_s1" true info none "$p_none"
    S1_PID=$OURS_PID
    S1_PORT=$p_s1
    record refill.s1_index_build_ms "$(($(now_ms) - t0))"
    record refill.s1_indexed "$(metric "$p_s1" multiserver_upload_index_files)"
    # Its first pass, a few seconds after start, finds no peer: out of the
    # way before anything is measured.
    local i
    for ((i = 0; i < 80; i++)); do
        grep -q 'repair pass' "$WORK/s1/stdout.log" && break
        sleep 0.25
    done

    # The rsync daemon serves the same folder, read-only, on 127.0.0.1.
    cat >"$WORK/rsyncd.conf" <<EOF
address = 127.0.0.1
use chroot = no
pid file = $WORK/rsyncd.pid
log file = $WORK/rsyncd.log
uid = $(id -u)
gid = $(id -g)
numeric ids = yes

[tree]
path = $WORK/s1/data
read only = yes
list = no
EOF
    spawn "$WORK/rsyncd.stdout" rsync --daemon --no-detach --config="$WORK/rsyncd.conf" --port="$RSYNC_PORT"
    RSYNCD_PID=$LAST_PID
    for ((i = 0; i < 100; i++)); do
        # The module list (empty: list = no) is a complete, clean exchange.
        timeout 5 rsync --contimeout=1 "rsync://127.0.0.1:$RSYNC_PORT/" >/dev/null 2>&1 && break
        kill -0 "$RSYNCD_PID" 2>/dev/null || die "the rsync daemon exited: $(cat "$WORK/rsyncd.stdout" "$WORK/rsyncd.log" 2>/dev/null)"
        sleep 0.1
    done

    # name|concurrency|fsync; the order rotates from round to round, so no
    # copy always runs first (just after the tree was written) or last.
    local -a cases=("ours|8|true" "rsync")
    if rsync --help | grep -q -- '--fsync'; then cases+=("rsync_fsync"); fi
    if [[ $CONCURRENCY2 != 0 ]]; then cases+=("ours_c$CONCURRENCY2|$CONCURRENCY2|true"); fi
    if [[ $NOFSYNC == 1 ]]; then cases+=("ours_nofsync|8|false"); fi
    record refill.rounds "$ROUNDS"
    local round j n=${#cases[@]} name concurrency fsync
    for ((round = 1; round <= ROUNDS; round++)); do
        for ((j = 0; j < n; j++)); do
            IFS='|' read -r name concurrency fsync <<<"${cases[(round - 1 + j) % n]}"
            case $name in
            rsync) rsync_copy rsync "$round" ;;
            rsync_fsync) rsync_copy rsync_fsync "$round" --fsync ;;
            *) refill "$name" "$round" "$concurrency" "$fsync" ;;
            esac
        done
    done
    record refill.s1_hwm_kib "$(hwm_kib "$S1_PID")"
    stop_process "$S1_PID"
    stop_process "$RSYNCD_PID"
    empty_files "$WORK/s1/data"
    settle
}

# ------------------------------------------- 2. a cluster already in sync --
part_sync() {
    local p_t1 p_t2
    read -r p_t1 p_t2 < <(free_ports 2)
    log "2. a pass over a cluster in sync: $SYNC_FILES files of $SYNC_BYTES bytes on each, $SYNC_DAYS days"
    timeout 1800 python3 "$HERE/make_tree.py" "$WORK/t1/data" "$WORK/t2/data" --files "$SYNC_FILES" \
        --days "$SYNC_DAYS" --min-bytes "$SYNC_BYTES" --max-bytes "$SYNC_BYTES" --seed 2 >/dev/null
    # One file more on t1, in the newest day: the first passes find one day
    # that differs.
    timeout 60 python3 "$HERE/make_tree.py" "$WORK/t1/data" --files 1 --days 1 \
        --min-bytes "$SYNC_BYTES" --max-bytes "$SYNC_BYTES" --seed 3 >/dev/null
    record sync.files "$SYNC_FILES"
    record sync.days "$SYNC_DAYS"
    record sync.file_bytes "$SYNC_BYTES"
    settle

    local toml=$'[repair]\nsettle_secs = 0\ninterval_secs = '"$SYNC_INTERVAL"
    local t0 t1_pid t2_pid
    t0=$(now_ms)
    OURS_TOML=$toml OURS_WAIT_SECS=$START_LIMIT start_ours t1 "$p_t1" true info t2 "$p_t2"
    t1_pid=$OURS_PID
    record sync.t1_index_build_ms "$(($(now_ms) - t0))"
    t0=$(now_ms)
    OURS_TOML=$toml OURS_WAIT_SECS=$START_LIMIT start_ours t2 "$p_t2" true info t1 "$p_t1"
    t2_pid=$OURS_PID
    record sync.t2_index_build_ms "$(($(now_ms) - t0))"
    record sync.t1_indexed "$(metric "$p_t1" multiserver_upload_index_files)"
    record sync.t2_indexed "$(metric "$p_t2" multiserver_upload_index_files)"

    # The first complete pass of each: t2 lists the day that differs and
    # fetches its one file; t1 either finds t2 already complete or lists
    # that day too.
    local log1=$WORK/t1/stdout.log log2=$WORK/t2/stdout.log limit=$((SYNC_INTERVAL * 4 + 120))
    wait_for_passes "$log2" 0 t1 1 "$limit"
    wait_for_passes "$log1" 0 t2 1 "$limit"
    local first
    first=$(pass_lines "$log2" 0 t1 | head -1)
    record sync.first_pass.t2.ms "$(field "$first" ms)"
    record sync.first_pass.t2.days_compared "$(field "$first" days_compared)"
    record sync.first_pass.t2.files_fetched "$(field "$first" files_fetched)"
    first=$(pass_lines "$log1" 0 t2 | head -1)
    record sync.first_pass.t1.ms "$(field "$first" ms)"
    record sync.first_pass.t1.days_compared "$(field "$first" days_compared)"
    record sync.first_pass.t1.files_fetched "$(field "$first" files_fetched)"
    local skip1 skip2
    skip1=$(wc -l <"$log1")
    skip2=$(wc -l <"$log2")
    # What the first passes cost: every digest and list answered so far.
    record sync.first_passes.list_answers "$(cat "$log1" "$log2" | grep -c 'action=list' || true)"
    record sync.first_passes.list_bytes "$(cat "$log1" "$log2" | grep 'action=list' |
        sed -n 's/.* bytes_out=\([0-9]*\).*/\1/p' | awk '{ b += $1 } END { printf "%.0f\n", b }')"
    record sync.first_passes.stopped "$(cat "$log1" "$log2" | grep -c 'repair pass stopped' || true)"

    # Passes in sync: SYNC_PASSES more of each.
    local cpu_before cpu_after
    cpu_before=$(cpu_ticks "$t1_pid" "$t2_pid")
    t0=$(now_ms)
    limit=$((SYNC_INTERVAL * (SYNC_PASSES + 2) + 120))
    wait_for_passes "$log2" "$skip2" t1 "$SYNC_PASSES" "$limit"
    wait_for_passes "$log1" "$skip1" t2 "$SYNC_PASSES" "$limit"
    cpu_after=$(cpu_ticks "$t1_pid" "$t2_pid")
    local elapsed=$(($(now_ms) - t0))
    # Each server's passes, and the answers it gave to the other's passes.
    local side log peer answers passes n ms_list bytes requests
    for side in t1 t2; do
        if [[ $side == t1 ]]; then log=$log1 peer=t2 answers=$log2 n=$skip2 passes=$skip1; else log=$log2 peer=t1 answers=$log1 n=$skip1 passes=$skip2; fi
        ms_list=$(pass_lines "$log" "$passes" "$peer" | while read -r line; do field "$line" ms; done | tr '\n' ' ')
        record "sync.in_sync.$side.passes" "$(pass_lines "$log" "$passes" "$peer" | wc -l)"
        record "sync.in_sync.$side.pass_ms" "${ms_list% }"
        record "sync.in_sync.$side.roots_agreed" "$(pass_lines "$log" "$passes" "$peer" | grep -c 'roots_agreed=true' || true)"
        requests=$(lines_after "$answers" "$n" | grep -c 'action=\(digest\|list\)' || true)
        bytes=$(lines_after "$answers" "$n" | grep 'action=\(digest\|list\)' |
            sed -n 's/.* bytes_out=\([0-9]*\).*/\1/p' | awk '{ b += $1 } END { printf "%.0f\n", b }')
        record "sync.in_sync.$side.requests_to_peer" "$requests"
        record "sync.in_sync.$side.bytes_from_peer" "$bytes"
    done
    record sync.in_sync.cpu_s "$(ticks_to_s $((cpu_after - cpu_before)))"
    record sync.in_sync.elapsed_ms "$elapsed"
    # One root digest exchange as curl sees it: answer body, answer headers,
    # request (what the pass's own request costs is about the same).
    record sync.in_sync.digest_exchange "$(curl -s --max-time 5 -o /dev/null -H "X-Security-Key: $KEY" \
        -w '%{size_download} %{size_header} %{size_request}' \
        "http://127.0.0.1:$p_t1/do.ashx?action=digest&format=json")"
    record sync.t1_hwm_kib "$(hwm_kib "$t1_pid")"

    # A restart with the index in place: only day folders changed since
    # its last commit are looked at, and only unknown files hashed.
    stop_process "$t2_pid"
    t0=$(now_ms)
    OURS_TOML=$toml OURS_WAIT_SECS=$START_LIMIT start_ours t2 "$p_t2" true info t1 "$p_t1"
    t2_pid=$OURS_PID
    record sync.t2_restart_ms "$(($(now_ms) - t0))"
    stop_process "$t2_pid"
    stop_process "$t1_pid"
}

# ------------------------------------------------------------------- main --
main() {
    install_missing rsync
    command -v python3 >/dev/null || die "python3 is needed to generate the inputs"
    log "building the release binary"
    (cd "$ROOT" && timeout 1200 cargo build --release --quiet) || die "cargo build failed"

    WORK=$(mktemp -d -t multiserver-upload-repair.XXXXXX)
    RESULTS=$WORK/results.tsv
    : >"$RESULTS"
    # shellcheck disable=SC2034 # used by lib.sh
    KEY=bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
    log "temporary folder: $WORK"

    wait_for_low_load
    record machine.nproc "$(nproc)"
    record machine.cpu "$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)"
    record machine.kernel "$(uname -r)"
    record machine.rsync "$(rsync --version | head -1)"
    record machine.load_before "$(cut -d' ' -f1-3 /proc/loadavg)"
    record run.commit "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"

    part_refill
    part_sync

    record machine.load_after "$(cut -d' ' -f1-3 /proc/loadavg)"
    python3 "$HERE/repair_report.py" "$RESULTS" ${BENCH_OUT:+--out "$BENCH_OUT"}
    if [[ -n ${BENCH_OUT:-} ]]; then cp "$RESULTS" "$BENCH_OUT.tsv"; fi
}

main "$@"
