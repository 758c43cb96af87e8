#!/usr/bin/env bash
# The S3-backend benchmark (issue 13, SPEC §11), in one command, from the
# repository's top folder:
#
#   bench/s3.sh
#
# Against a real Garage cluster on 127.0.0.1 (scripts/garage-cluster.sh; one
# node, then three), in the same run:
#   - 140 KB JPEG uploads, BENCH_CONNECTIONS clients (wrk): our server in S3
#     mode, our server in disk mode, and a direct PUT of the same bytes into
#     Garage (presigned URLs from bench/presign.py, one new key per request,
#     cycled by bench/put.lua);
#   - one BENCH_BIG_BYTES upload (curl): the same three, the direct one a
#     single PUT with curl --aws-sigv4.
# Prints rates, the ratio ours-in-S3-mode / direct PUT (goal: at least 0.8)
# and peak RSS (ours, and the largest Garage node).
#
# Every case gets a fresh cluster (it comes up in about a second): Garage
# frees deleted blocks only after a delay, so reusing one cluster would fill
# the disk with 3 copies of every byte sent. The Garage nodes run without
# fsync (as in the tests); our disk-mode server runs with fsync, as shipped.
#
# Our S3 mode needs a build with the S3 backend: when `check-config` refuses
# the [storage] tables, or an upload does not land in the bucket, its cases
# are reported as "n/a" and the rest is measured anyway.
#
# Settings (environment):
#   BENCH_SECONDS=10            length of each wrk run (after a 2 s warm-up)
#   BENCH_ROUNDS=2              rounds of every case; the best counts
#   BENCH_BIG_BYTES=1073741824  size of the large file
#   BENCH_CONNECTIONS=32        concurrent connections of the 140 KB cases
#   BENCH_GARAGE_NODES="1 3"    cluster sizes to measure
#   BENCH_PRESIGNED=60000       presigned URLs per cluster (wrap-around
#                               overwrites keys; make it larger than the
#                               requests of one run)
#   BENCH_BIN=PATH              measure this binary instead of building
#                               target/release/multiserver-upload
#   BENCH_MAX_LOAD=1.0          first wait (at most BENCH_LOAD_WAIT=600 s) for
#                               the 1-minute load average to drop below this
#   BENCH_NO_INSTALL=1          skip apt-get (wrk already there)
#   BENCH_OUT=FILE              also write the result table (markdown) to FILE
#   BENCH_S3_TSV=FILE           also write the largest cluster's figures as
#                               key<TAB>value lines (bench/run.sh reads them)
#   BENCH_KEEP=1                keep the temporary folder (logs), minus inputs
#   BENCH_MAX_SECONDS=2400      the whole run's time limit
#   GARAGE_BIN or MULTISERVER_UPLOAD_GARAGE: the Garage binary (default: what
#                               scripts/install-garage.sh prints; it builds
#                               Garage once into a cache)
set -euo pipefail

SECONDS_PER_RUN=${BENCH_SECONDS:-10}
ROUNDS=${BENCH_ROUNDS:-2}
BIG_BYTES=${BENCH_BIG_BYTES:-1073741824}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
NODE_COUNTS=${BENCH_GARAGE_NODES:-1 3}
PRESIGNED=${BENCH_PRESIGNED:-60000}
MAX_SECONDS=${BENCH_MAX_SECONDS:-2400}
WARMUP_SECONDS=2
THREADS=2

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN=${BENCH_BIN:-$ROOT/target/release/multiserver-upload}
# lib.sh unsets every MULTISERVER_UPLOAD_* variable: keep this one.
export GARAGE_BIN=${GARAGE_BIN:-${MULTISERVER_UPLOAD_GARAGE:-}}

# The whole run has a time limit: past it, timeout sends SIGTERM and the trap
# of lib.sh stops everything this script started (Garage nodes included:
# their pids join lib.sh's list).
if [[ -z ${BENCH_TIME_LIMITED:-} ]]; then
    export BENCH_TIME_LIMITED=1
    exec timeout -k 30 "$MAX_SECONDS" "$HERE/s3.sh" "$@"
fi

# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"

CLUSTER_SCRIPT=$ROOT/scripts/garage-cluster.sh

# ---------------------------------------------------------------- Garage --
# garage_up NODES: a fresh cluster in $WORK/garage, its env exported
# (S3_ENDPOINT, AWS_ACCESS_KEY_ID, ...), its node pids in lib.sh's PIDS.
GARAGE_DIR=""
GARAGE_PIDS=()
garage_up() {
    GARAGE_DIR=$WORK/garage
    timeout 120 bash "$CLUSTER_SCRIPT" up "$GARAGE_DIR" "$1" >"$WORK/garage-up.log" 2>&1 ||
        die "garage-cluster.sh up failed: $(tail -5 "$WORK/garage-up.log")"
    set -a
    # shellcheck source=/dev/null
    source "$GARAGE_DIR/env"
    set +a
    local f
    GARAGE_PIDS=()
    for f in "$GARAGE_DIR"/node*.pid; do GARAGE_PIDS+=("$(cat "$f")"); done
    PIDS+=("${GARAGE_PIDS[@]}")
}

# garage_down: stops the cluster and deletes its data.
garage_down() {
    [[ -n $GARAGE_DIR ]] || return 0
    timeout 60 bash "$CLUSTER_SCRIPT" down "$GARAGE_DIR" || true
    local keep=() pid g gone
    for pid in "${PIDS[@]}"; do
        gone=0
        for g in "${GARAGE_PIDS[@]}"; do [[ $pid == "$g" ]] && gone=1; done
        ((gone)) || keep+=("$pid")
    done
    PIDS=("${keep[@]}")
    GARAGE_PIDS=()
    [[ ${BENCH_KEEP:-} == 1 ]] && cp "$GARAGE_DIR"/node*.log "$WORK/" 2>/dev/null
    rm -rf "$GARAGE_DIR"
    GARAGE_DIR=""
}

# Largest peak RSS (KiB) among the running Garage nodes.
garage_hwm_kib() {
    local max=0 pid h
    for pid in "${GARAGE_PIDS[@]}"; do
        h=$(hwm_kib "$pid")
        ((h > max)) && max=$h
    done
    echo "$max"
}

# s3_status METHOD KEY [curl args...]: a signed request for object KEY of
# the current cluster; prints the status.
s3_status() {
    local method=$1 key=$2 how=(-X "$1")
    shift 2
    # (-X HEAD would make curl wait for a body that never comes)
    [[ $method == HEAD ]] && how=(-I)
    curl -s -o /dev/null -w '%{http_code}' --max-time 600 "${how[@]}" \
        --aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
        -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@" "$S3_ENDPOINT/$S3_BUCKET/$key" || true
}

# --------------------------------------------------- our server, S3 mode --
S3_OURS=1
S3_OURS_WHY=""
# The [storage] tables for the current cluster (placeholders before any).
storage_toml() {
    cat <<EOF
[storage]
backend = "s3"

[storage.s3]
endpoint = "${S3_ENDPOINT:-http://127.0.0.1:9}"
bucket = "${S3_BUCKET:-images}"
region = "${S3_REGION:-garage}"
path_style = true
key_prefix = ""
part_size_bytes = 16777216
parts_in_flight = 4
buffer_budget_bytes = 268435456
connect_timeout_secs = 5
request_timeout_secs = 60
retries = 3
EOF
}

# Whether this build has the S3 backend: check-config on an S3-mode app.toml.
detect_s3_mode() {
    local dir=$WORK/s3-check out
    mkdir -p "$dir"
    printf 'server_name = "c"\nsecurity_key = "%s"\n\n%s\n' "$KEY" "$(storage_toml)" >"$dir/app.toml"
    printf '<Servers>\n  <Server Name="c" Uri="http://127.0.0.1:1/do.ashx" SecurityKey="%s" />\n</Servers>\n' \
        "$KEY" >"$dir/servers.xml.config"
    if ! out=$("$BIN" check-config --config "$dir/app.toml" 2>&1); then
        S3_OURS=0
        S3_OURS_WHY="this build refuses the [storage] tables: $(head -c 200 <<<"$out")"
        log "our S3 mode: n/a ($S3_OURS_WHY)"
    fi
}

# start_ours_s3 ID PORT -> OURS_PID: our server in S3 mode on the current
# cluster; one upload must land in the bucket, or S3 mode counts as absent.
start_ours_s3() {
    local id=$1 port=$2 answer path
    rm -rf "${WORK:?}/$id"
    OURS_TOML=$(storage_toml) start_ours "$id" "$port" true info
    answer=$(curl -sS --max-time 60 -H "X-Security-Key: $KEY" \
        -F "file=@$WORK/data/small.jpg;type=application/octet-stream" \
        "http://127.0.0.1:$port/do.ashx?action=upload&format=json") || answer=""
    path=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["resp"]["files"][0]["path"])' \
        <<<"$answer" 2>/dev/null) || path=""
    if [[ -z $path || $(s3_status HEAD "$path") != 200 ]]; then
        S3_OURS=0
        S3_OURS_WHY="an upload to our server in S3 mode did not land in the bucket: $(head -c 200 <<<"$answer")"
        log "our S3 mode: n/a ($S3_OURS_WHY)"
        stop_ours "$OURS_PID"
        return 1
    fi
}

stop_ours() {
    local pid=$1 keep=() p
    stop_process "$pid"
    for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# ---------------------------------------------------------- measurements --
RESULTS=""
record() { printf '%s\t%s\n' "$1" "$2" >>"$RESULTS"; }
record_max() { printf '%s\t%s\n' "$1" "$2" >>"$WORK/max.tsv"; }

# wrk_put OUT SECONDS [--latency]: PUTs small.jpg to the presigned URLs of
# $WORK/urls.txt on the current cluster's node 1.
wrk_put() {
    local out=$1 secs=$2
    shift 2
    BENCH_BODY="$WORK/data/small.jpg" BENCH_URLS="$WORK/urls.txt" BENCH_THREADS=$THREADS \
        timeout $((secs + 60)) wrk -t"$THREADS" -c"$CONNECTIONS" -d"${secs}s" --timeout 10s "$@" \
        -s "$HERE/put.lua" "$S3_ENDPOINT/" >"$out" 2>&1 ||
        die "wrk failed: $(tail -5 "$out")"
}

# small_case NAME KIND PORT ROUND: warm-up, then BENCH_SECONDS of wrk; KIND
# is "ours" (multipart POST to PORT) or "direct" (presigned PUTs).
small_case() {
    local name=$1 kind=$2 port=$3 round=$4 out=$WORK/wrk.$1.$4.txt line
    if [[ $kind == direct ]]; then
        wrk_put "$out.warmup" "$WARMUP_SECONDS"
        wrk_put "$out" "$SECONDS_PER_RUN" --latency
    else
        wrk_run "$out.warmup" "$port" "$WARMUP_SECONDS"
        wrk_run "$out" "$port" "$SECONDS_PER_RUN" --latency
    fi
    line=$(grep '^BENCH ' "$out") || die "no result from wrk: $(tail -5 "$out")"
    printf '%s\t%s\n' "$name" "${line#BENCH }" >>"$WORK/small.tsv"
    log "  $name (round $round): ${line#BENCH }"
}

# big_direct: one BENCH_BIG_BYTES PUT into the current cluster with curl
# (unsigned payload: the body streams from the file; Garage wants the
# x-amz-content-sha256 header, which curl before 8.x does not add itself);
# prints "seconds bytes".
big_direct() {
    local out code secs bytes
    out=$(curl -sS --max-time 1200 -o "$WORK/big.resp" -T "$WORK/data/big.jpg" \
        -w '%{http_code} %{time_total} %{size_upload}' \
        --aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
        -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
        "$S3_ENDPOINT/$S3_BUCKET/bench/big.jpg") || die "curl failed: $out"
    read -r code secs bytes <<<"$out"
    [[ $code == 200 ]] || die "direct PUT answered $code: $(head -c 400 "$WORK/big.resp")"
    echo "$secs $bytes"
}

# big_record NAME "SECONDS BYTES": the output of a large upload (empty when
# it failed: die in a $(...) ends only that subshell).
big_record() {
    local name=$1 out=$2 secs bytes
    read -r secs bytes <<<"$out"
    [[ -n $secs && -n $bytes ]] || die "$name: the upload failed"
    printf '%s\t%s\t%s\n' "$name" "$secs" "$bytes" >>"$WORK/big.tsv"
    log "  $name: ${secs}s for $bytes bytes"
}

# One round against a fresh cluster of NODES nodes: the 140 KB cases, in an
# order that rotates from round to round.
small_round() {
    local nodes=$1 round=$2 port=$3 disk_port=$4 disk_pid=$5 s3_pid=""
    garage_up "$nodes"
    if ((S3_OURS)) && start_ours_s3 "s3_$nodes" "$port"; then s3_pid=$OURS_PID; fi
    timeout 300 python3 "$HERE/presign.py" --endpoint "$S3_ENDPOINT" --bucket "$S3_BUCKET" \
        --region "$S3_REGION" --count "$PRESIGNED" --prefix "bench/r$round/small-" \
        --suffix .jpg >"$WORK/urls.txt"
    local -a cases=("small.disk|ours|$disk_port" "small.direct_$nodes|direct|")
    [[ -n $s3_pid ]] && cases+=("small.s3_$nodes|ours|$port")
    local n=${#cases[@]} j name kind p
    for ((j = 0; j < n; j++)); do
        IFS='|' read -r name kind p <<<"${cases[(round + j) % n]}"
        small_case "$name" "$kind" "$p" "$round"
        empty_files "$WORK/disk/data"
        settle
    done
    # The disk-mode server's peak before any large upload raised it.
    grep -q '^big.disk' "$WORK/big.tsv" || record_max small.disk.hwm_kib "$(hwm_kib "$disk_pid")"
    if [[ -n $s3_pid ]]; then
        record_max "small.s3_$nodes.hwm_kib" "$(hwm_kib "$s3_pid")"
        stop_ours "$s3_pid"
    fi
    record_max "small.garage_$nodes.hwm_kib" "$(garage_hwm_kib)"
    garage_down
}

# The large upload: ours in S3 mode and the direct PUT, each on a fresh
# cluster (3 copies of 1 GiB each), then ours in disk mode (in every round,
# so that all three meet the same machine state).
big_round() {
    local nodes=$1 round=$2 port=$3 disk_port=$4 disk_pid=$5 kind
    local -a kinds=(direct s3)
    ((round % 2)) && kinds=(s3 direct)
    for kind in "${kinds[@]}"; do
        garage_up "$nodes"
        if [[ $kind == direct ]]; then
            big_record "big.direct_$nodes" "$(big_direct)"
            record_max "big.garage_$nodes.hwm_kib" "$(garage_hwm_kib)"
        elif ((S3_OURS)) && start_ours_s3 "s3_$nodes" "$port"; then
            local faults
            faults=$(awk '{print $10}' "/proc/$OURS_PID/stat")
            big_record "big.s3_$nodes" "$(big_upload_once "$port")"
            faults=$(($(awk '{print $10}' "/proc/$OURS_PID/stat") - faults))
            log "  big.s3_$nodes: $faults minor page faults of ours during the upload"
            record_max "big.s3_$nodes.hwm_kib" "$(hwm_kib "$OURS_PID")"
            stop_ours "$OURS_PID"
        fi
        garage_down
        settle
    done
    big_record big.disk "$(big_upload_once "$disk_port")"
    record_max big.disk.hwm_kib "$(hwm_kib "$disk_pid")"
    empty_files "$WORK/disk/data"
    settle
}

report() {
    python3 - "$RESULTS" "$WORK/small.tsv" "$WORK/big.tsv" "$WORK/max.tsv" "$NODE_COUNTS" \
        "$S3_OURS_WHY" "${BENCH_OUT:-}" "${BENCH_S3_TSV:-}" <<'EOF'
import sys
results, small_tsv, big_tsv, max_tsv, nodes, why, out, tsv = sys.argv[1:9]
nodes = nodes.split()
info = dict(l.rstrip("\n").split("\t", 1) for l in open(results) if "\t" in l)
small = {}
for line in open(small_tsv):
    name, rest = line.rstrip("\n").split("\t", 1)
    f = dict(kv.split("=") for kv in rest.split())
    if name not in small or float(f["rps"]) > float(small[name]["rps"]):
        small[name] = f
big = {}
for line in open(big_tsv):
    name, secs, size = line.split()
    if name not in big or float(secs) < big[name][0]:
        big[name] = (float(secs), int(float(size)))
peak = {}
for line in open(max_tsv):
    name, v = line.split()
    peak[name] = max(peak.get(name, 0), int(v))

def mib(kib):
    return f"{kib / 1024:.0f} MiB" if kib else "n/a"

rows = ["| case | 140 KB uploads/s | p50 / p99 ms | errors | large upload | MB/s | peak RSS (140 KB / large) |",
        "|---|---|---|---|---|---|---|"]
def row(label, s, b, rss):
    sm = small.get(s)
    bg = big.get(b)
    rows.append("| {} | {} | {} | {} | {} | {} | {} |".format(
        label,
        f"{float(sm['rps']):.0f}" if sm else "n/a",
        f"{int(sm['p50_us'])/1000:.1f} / {int(sm['p99_us'])/1000:.1f}" if sm else "",
        f"{int(sm['errors']) + int(sm['unsuccessful'])}" if sm else "",
        f"{bg[0]:.2f} s" if bg else "n/a",
        f"{bg[1] / bg[0] / 1e6:.0f}" if bg else "",
        rss))
row("ours, disk mode (fsync)", "small.disk", "big.disk",
    f"{mib(peak.get('small.disk.hwm_kib', 0))} / {mib(peak.get('big.disk.hwm_kib', 0))}")
for n in nodes:
    row(f"ours, S3 mode, Garage x{n}", f"small.s3_{n}", f"big.s3_{n}",
        f"{mib(peak.get(f'small.s3_{n}.hwm_kib', 0))} / {mib(peak.get(f'big.s3_{n}.hwm_kib', 0))}")
    row(f"direct PUT into Garage x{n}", f"small.direct_{n}", f"big.direct_{n}",
        f"Garage node: {mib(peak.get(f'small.garage_{n}.hwm_kib', 0))} / {mib(peak.get(f'big.garage_{n}.hwm_kib', 0))}")
rows.append("")
rows.append("| ratio ours S3 / direct PUT (goal >= 0.8) | 140 KB | large |")
rows.append("|---|---|---|")
for n in nodes:
    s3, d = small.get(f"small.s3_{n}"), small.get(f"small.direct_{n}")
    r_small = f"{float(s3['rps']) / float(d['rps']):.2f}" if s3 and d else "n/a"
    s3b, db = big.get(f"big.s3_{n}"), big.get(f"big.direct_{n}")
    r_big = f"{db[0] / s3b[0]:.2f}" if s3b and db else "n/a"
    rows.append(f"| Garage x{n} | {r_small} | {r_big} |")
rows.append("")
rows.append("machine: {} x {}, kernel {}, load {} before, {} after; commit {}".format(
    info.get("machine.nproc"), info.get("machine.cpu"), info.get("machine.kernel"),
    info.get("machine.load_before"), info.get("machine.load_after"), info.get("run.commit")))
rows.append("run: {} s per wrk run, {} rounds (best counts), {} connections, {}-byte large file".format(
    info.get("run.seconds"), info.get("run.rounds"), info.get("run.connections"), info.get("run.big_bytes")))
if why:
    rows.append(f"ours in S3 mode not measured: {why}")
text = "\n".join(rows) + "\n"
sys.stdout.write(text)
if out:
    open(out, "w").write(text)
if tsv and nodes:
    n = nodes[-1]
    with open(tsv, "w") as f:
        for who, key in (("ours", f"s3_{n}"), ("direct", f"direct_{n}")):
            sm, bg = small.get(f"small.{key}"), big.get(f"big.{key}")
            if sm:
                f.write(f"s3.small.{who}\t{float(sm['rps']):.1f}\n")
                f.write(f"s3.small.{who}_text\t{float(sm['rps']):.0f} req/s\n")
            if bg:
                f.write(f"s3.big.{who}\t{bg[1] / bg[0]:.0f}\n")
                f.write(f"s3.big.{who}_text\t{bg[0]:.2f} s ({bg[1] / bg[0] / 1e6:.0f} MB/s)\n")
EOF
}

# ------------------------------------------------------------------- main --
main() {
    install_missing wrk curl
    command -v python3 >/dev/null || die "python3 is needed"
    if [[ -z ${BENCH_BIN:-} ]]; then
        log "building the release binary"
        (cd "$ROOT" && timeout 1200 cargo build --release --quiet) || die "cargo build failed"
    fi
    [[ -x $BIN ]] || die "no binary at $BIN"
    if [[ -z $GARAGE_BIN ]]; then
        log "finding Garage (scripts/install-garage.sh; a first build takes about 20 minutes)"
        GARAGE_BIN=$(timeout 3600 bash "$ROOT/scripts/install-garage.sh") || die "no Garage"
    fi
    log "Garage: $("$GARAGE_BIN" --version 2>/dev/null | head -1)"

    WORK=$(mktemp -d -t multiserver-upload-bench-s3.XXXXXX)
    RESULTS=$WORK/results.tsv
    : >"$RESULTS"
    : >"$WORK/big.tsv"
    : >"$WORK/small.tsv"
    : >"$WORK/max.tsv"
    # shellcheck disable=SC2034 # used by lib.sh
    KEY=bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
    log "temporary folder: $WORK"
    log "generating inputs (140 KB JPEG, $BIG_BYTES-byte JPEG)"
    timeout 300 python3 "$HERE/make_data.py" "$WORK/data" --big-bytes "$BIG_BYTES"

    local p_disk p_s3
    read -r p_disk p_s3 < <(free_ports 2)
    start_ours disk "$p_disk" true info
    local disk=$OURS_PID
    detect_s3_mode

    wait_for_low_load
    record machine.nproc "$(nproc)"
    record machine.cpu "$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)"
    record machine.kernel "$(uname -r)"
    record machine.load_before "$(cut -d' ' -f1-3 /proc/loadavg)"
    record run.commit "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    record run.seconds "$SECONDS_PER_RUN"
    record run.rounds "$ROUNDS"
    record run.connections "$CONNECTIONS"
    record run.big_bytes "$BIG_BYTES"

    local nodes round
    for nodes in $NODE_COUNTS; do
        for ((round = 1; round <= ROUNDS; round++)); do
            log "Garage x$nodes, round $round: 140 KB uploads, $CONNECTIONS connections, ${SECONDS_PER_RUN}s each"
            small_round "$nodes" "$round" "$p_s3" "$p_disk" "$disk"
            log "Garage x$nodes, round $round: one $BIG_BYTES-byte upload each"
            big_round "$nodes" "$round" "$p_s3" "$p_disk" "$disk"
        done
    done
    record machine.load_after "$(cut -d' ' -f1-3 /proc/loadavg)"
    report
}

main "$@"
