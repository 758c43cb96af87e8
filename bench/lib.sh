# shellcheck shell=bash
# Shared by run.sh and profile.sh: installing the tools, starting and
# stopping the servers (ours, nginx, Express + multer), and cleaning up.
# Expects HERE (bench/), ROOT (the repository) and BIN to be set.

# Settings of the service from the environment would override the files
# written here: none of them may leak into the measurement.
while read -r name; do unset "$name"; done < <(compgen -e | grep -E '^(MULTISERVER_UPLOAD_|HTTP_PLATFORM_PORT$|RUST_LOG$)' || true)

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- install --
# apt_install PACKAGE...: Debian packages, as root or through sudo; with
# BENCH_NO_INSTALL=1 a missing package is an error instead.
apt_install() {
    (($#)) || return 0
    [[ ${BENCH_NO_INSTALL:-} == 1 ]] && die "missing: $*"
    local sudo=()
    ((EUID == 0)) || sudo=(sudo)
    log "installing $* (apt-get)"
    timeout 600 "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 600 "${sudo[@]}" apt-get install -y -qq "$@" >/dev/null
}

# install_missing COMMAND...: the Debian package of the same name for each
# command missing from the PATH.
install_missing() {
    local missing=() cmd
    for cmd in "$@"; do command -v "$cmd" >/dev/null || missing+=("$cmd"); done
    apt_install "${missing[@]}"
}

install_tools() {
    install_missing nginx wrk
    command -v node >/dev/null || die "node is needed for the Express reference"
    command -v python3 >/dev/null || die "python3 is needed to generate the inputs"
    if [[ ! -d $HERE/node/node_modules/multer || ! -d $HERE/node/node_modules/express ]]; then
        [[ ${BENCH_NO_INSTALL:-} == 1 ]] && die "bench/node has no node_modules"
        log "installing express and multer (npm ci)"
        (cd "$HERE/node" && timeout 600 npm ci --no-audit --no-fund --loglevel=error)
    fi
}

# ------------------------------------------------------- processes, ports --
PIDS=()
WORK=""
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do stop_process "$pid"; done
    if [[ -n $WORK && -d $WORK ]]; then
        if [[ ${BENCH_KEEP:-} == 1 ]]; then
            rm -rf "$WORK/data"
            empty_files "$WORK"/*/data "$WORK"/nginx/body
            log "kept $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Stops one process started by spawn: SIGTERM, then SIGKILL after 5 s.
stop_process() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# Starts a command in the background and remembers it for cleanup.
spawn() {
    local out=$1
    shift
    "$@" >"$out" 2>&1 &
    PIDS+=("$!")
    LAST_PID=$!
}

# wait_http URL PID [SECONDS]: waits until URL answers at all (any HTTP
# status), at most SECONDS (15).
wait_http() {
    local url=$1 pid=$2 limit=${3:-15}
    for _ in $(seq $((limit * 10))); do
        kill -0 "$pid" 2>/dev/null || die "the server for $url exited; see its log in the temporary folder (BENCH_KEEP=1)"
        if curl -s -o /dev/null --max-time 1 "$url"; then return 0; fi
        sleep 0.1
    done
    die "$url did not answer within $limit s"
}

# free_ports N: N free TCP ports of 127.0.0.1, on one line.
free_ports() {
    python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))' "$1"
}

# CPU time (clock ticks, user + system) used so far by the given processes.
cpu_ticks() {
    local t=0 pid
    for pid in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$pid/stat"))); done
    echo "$t"
}
# shellcheck disable=SC2034 # used by run.sh
CLK_TCK=$(getconf CLK_TCK)

# Lines in a file (0 when it does not exist).
count_lines() { if [[ -f $1 ]]; then grep -c . "$1" || true; else echo 0; fi; }

hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

# Stored files are emptied, not deleted, between cases: on an ext4 without a
# journal, creating a file skips every inode of its group deleted in the last
# minutes, one by one, so deleting thousands of files slows whatever creates
# files next. Emptying frees the disk space and keeps the inodes.
empty_files() {
    local d
    for d in "$@"; do
        # A client cut off at the end of a run leaves partial files that some
        # servers delete just then: vanished files are no error. Files and
        # folders whose names start with a dot are a server's own (its index,
        # marker, temporary files): emptying the index under a running server
        # made every replica it received fail.
        [[ -d $d ]] && { find "$d" -name '.*' -prune -o -type f -size +0 -print0 2>/dev/null |
            timeout 300 xargs -0 -r truncate -s 0 2>/dev/null || true; }
    done
    return 0
}

# Lets the disk catch up between cases, so that one case's writeback does
# not land in the next one's measurement.
settle() { timeout 300 sync || true; sleep 1; }

# Waits (bounded) for a quiet machine: other work on 2 cores skews figures.
wait_for_low_load() {
    local max=${BENCH_MAX_LOAD:-} waited=0 limit=${BENCH_LOAD_WAIT:-600} load
    [[ -z $max ]] && return 0
    while :; do
        load=$(cut -d' ' -f1 /proc/loadavg)
        awk -v l="$load" -v m="$max" 'BEGIN { exit !(l < m) }' && return 0
        if ((waited >= limit)); then
            log "load average still $load after ${limit}s; measuring anyway"
            return 0
        fi
        log "load average $load >= $max; waiting"
        sleep 20
        waited=$((waited + 20))
    done
}

# ------------------------------------------------------------ our service --
# start_ours ID PORT FSYNC LOG_LEVEL [PEER_ID PEER_PORT] -> OURS_PID
# Each instance has its own folder $WORK/ID with app.toml, servers.xml.config,
# data/ and log/; its server name is its ID. OURS_TOML, when set, is appended
# to app.toml (e.g. a [repair] section); OURS_WAIT_SECS (default 15) is how
# long it may take to answer (it indexes the files of data/ before listening).
start_ours() {
    local id=$1 port=$2 fsync=$3 level=$4 peer=${5:-} peer_port=${6:-}
    local dir=$WORK/$id
    mkdir -p "$dir/data" "$dir/log"
    {
        echo '<Servers>'
        echo "  <Server Name=\"$id\" Uri=\"http://127.0.0.1:$port/do.ashx\" SecurityKey=\"$KEY\" />"
        [[ -n $peer ]] && echo "  <Server Name=\"$peer\" Uri=\"http://127.0.0.1:$peer_port/do.ashx\" SecurityKey=\"$KEY\" />"
        echo '</Servers>'
    } >"$dir/servers.xml.config"
    cat >"$dir/app.toml" <<EOF
server_name = "$id"
security_key = "$KEY"
listen = "127.0.0.1:$port"
data_dir = "data"
log_dir = "log"
servers = "servers.xml.config"
fsync = $fsync
max_file_bytes = 4294967296
max_files_per_request = 32

[replication]
idle_timeout_secs = 30
concurrency = 16
retry_interval_secs = 10
EOF
    # Extra settings from the caller (whole sections, e.g. an "[images]" one).
    if [[ -n ${OURS_TOML:-} ]]; then printf '\n%s\n' "$OURS_TOML" >>"$dir/app.toml"; fi
    spawn "$dir/stdout.log" env RUST_LOG="$level" "$BIN" serve --config "$dir/app.toml"
    OURS_PID=$LAST_PID
    wait_http "http://127.0.0.1:$port/healthz" "$OURS_PID" "${OURS_WAIT_SECS:-15}"
}

start_express() {
    local port=$1
    mkdir -p "$WORK/express/data"
    spawn "$WORK/express/stdout.log" env PORT="$port" UPLOAD_DIR="$WORK/express/data" node "$HERE/node/server.js"
    EXPRESS_PID=$LAST_PID
    wait_http "http://127.0.0.1:$port/" "$EXPRESS_PID"
}

start_nginx() {
    local port=$1 answer_port=$2 user=""
    ((EUID == 0)) && user="user root;"
    mkdir -p "$WORK/nginx/body"
    sed -e "s|@DIR@|$WORK/nginx|g" -e "s|@PORT@|$port|g" -e "s|@ANSWER_PORT@|$answer_port|g" \
        -e "s|@USER@|$user|" "$HERE/nginx.conf" >"$WORK/nginx/nginx.conf"
    spawn "$WORK/nginx/stdout.log" nginx -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf"
    NGINX_PID=$LAST_PID
    wait_http "http://127.0.0.1:$port/" "$NGINX_PID"
}


# ------------------------------------------------------------------ load --
# One large multipart upload with curl; prints "seconds bytes_sent".
big_upload_once() {
    local port=$1 out
    out=$(curl -sS --max-time 600 -o "$WORK/big.resp" \
        -w '%{http_code} %{time_total} %{size_upload}' \
        -H "X-Security-Key: $KEY" \
        -F "file=@$WORK/data/big.jpg;type=application/octet-stream" \
        "http://127.0.0.1:$port/do.ashx?action=upload") || die "curl failed: $out"
    local code secs bytes
    read -r code secs bytes <<<"$out"
    if [[ $code != 200 ]] || ! grep -q '<success>1</success>' "$WORK/big.resp"; then
        die "large upload to port $port answered $code: $(head -c 400 "$WORK/big.resp")"
    fi
    echo "$secs $bytes"
}

# wrk_run OUT PORT SECONDS [--latency]: POSTs the prebuilt 140 KB multipart
# body over CONNECTIONS connections; the script's result line is in OUT.
wrk_run() {
    local out=$1 port=$2 secs=$3
    shift 3
    BENCH_BODY="$WORK/data/small.body" BENCH_BOUNDARY="$(cat "$WORK/data/boundary")" BENCH_KEY="$KEY" \
        timeout $((secs + 60)) wrk -t2 -c"${CONNECTIONS:-32}" -d"${secs}s" --timeout 10s "$@" \
        -s "$HERE/upload.lua" "http://127.0.0.1:$port/do.ashx?action=upload" >"$out" 2>&1 ||
        die "wrk failed: $(tail -5 "$out")"
}
