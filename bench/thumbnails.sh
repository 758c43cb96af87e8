#!/usr/bin/env bash
# Thumbnails of 12-megapixel JPEGs (issue "Images as images"), in one command,
# from the repository's top folder:
#
#   bench/thumbnails.sh
#
# 1. One 4000×3000 photo-like JPEG to fit 320×320, ROUNDS times each:
#    vipsthumbnail, ImageMagick (plain, and with -define jpeg:size, which lets
#    libjpeg decode at a reduced scale as ours does), and ours: the first
#    GET {link}-t.jpg of a fresh upload (only the first request makes the
#    thumbnail; later ones are served from data/.variants/). Wall time, CPU
#    time (user + system) and peak RSS of each.
# 2. COUNT different such JPEGs uploaded, then all their thumbnails asked for
#    at once by COUNT clients: thumbnails per second, with [images] workers =
#    2 (the default) and 4; vipsthumbnail over the same files, as many at a
#    time as there are cores, for comparison.
#
# Installs what it needs with apt-get when missing (Debian's imagemagick,
# libvips-tools, time), builds the release binary, runs ours on 127.0.0.1
# only, stops everything it started and deletes its temporary folder.
#
# Settings (environment):
#   BENCH_THUMB_ROUNDS=5        rounds of case 1
#   BENCH_THUMB_COUNT=32        images and clients of case 2
#   BENCH_THUMB_SIZE=4000x3000  size of the generated JPEGs
#   BENCH_THUMB_WORKERS="2 4"   [images] workers values of case 2
#   BENCH_MAX_LOAD=2.0          first wait (at most BENCH_LOAD_WAIT=600 s) for
#                               the 1-minute load average to drop below this
#   BENCH_NO_INSTALL=1          install nothing; fail if something is missing
#   BENCH_KEEP=1                keep the temporary folder (logs, rounds.tsv)
#   BENCH_MAX_SECONDS=1800      the whole run's time limit
set -euo pipefail

ROUNDS=${BENCH_THUMB_ROUNDS:-5}
COUNT=${BENCH_THUMB_COUNT:-32}
SIZE=${BENCH_THUMB_SIZE:-4000x3000}
WORKERS_LIST=${BENCH_THUMB_WORKERS:-2 4}
MAX_SECONDS=${BENCH_MAX_SECONDS:-1800}
BOX=320
# Ours encodes thumbnails at quality 85 (src/images/variant.rs): the other
# tools are asked for the same.
QUALITY=85

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck disable=SC2034 # used by lib.sh
BIN=$ROOT/target/release/multiserver-upload

if [[ -z ${BENCH_TIME_LIMITED:-} ]]; then
    export BENCH_TIME_LIMITED=1
    exec timeout -k 30 "$MAX_SECONDS" "$HERE/thumbnails.sh" "$@"
fi

# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"

[[ $ROUNDS =~ ^[1-9][0-9]*$ && $COUNT =~ ^[1-9][0-9]*$ ]] || die "BENCH_THUMB_ROUNDS and BENCH_THUMB_COUNT must be positive"
((COUNT <= 64)) || die "BENCH_THUMB_COUNT above 64 would overflow the default [images] queue (503s)"
[[ $SIZE =~ ^[0-9]+x[0-9]+$ ]] || die "BENCH_THUMB_SIZE must be WIDTHxHEIGHT"

# ImageMagick's own program (7: magick; Debian's 6: convert-im6.q16), not
# whatever `convert` comes first in PATH.
IM=""
find_imagemagick() {
    IM=$(command -v magick || command -v convert-im6.q16 || command -v convert-im6 || true)
}

install_thumb_tools() {
    local missing=()
    find_imagemagick
    [[ -n $IM ]] || missing+=(imagemagick)
    command -v vipsthumbnail >/dev/null || missing+=(libvips-tools)
    [[ -x /usr/bin/time ]] || missing+=(time)
    command -v curl >/dev/null || missing+=(curl)
    apt_install "${missing[@]}"
    find_imagemagick
    [[ -n $IM ]] || die "ImageMagick not found after installing it"
    command -v python3 >/dev/null || die "python3 is needed for the summary"
}

ROUNDS_TSV=""
# row CASE ROUND WALL_S CPU_S RSS_KIB [NOTE]: one measured round.
row() {
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "${6:-}" >>"$ROUNDS_TSV"
    log "  $1 round $2: wall ${3}s, CPU ${4}s, peak RSS $(($5 / 1024)) MiB${6:+ ($6)}"
}

# timed CASE ROUND COMMAND...: runs COMMAND under GNU time, one row.
timed() {
    local name=$1 round=$2 wall user sys rss
    shift 2
    timeout 300 /usr/bin/time -f '%e %U %S %M' -o "$WORK/time.out" "$@" >/dev/null 2>"$WORK/tool.err" ||
        die "$name failed: $(tail -3 "$WORK/tool.err")"
    read -r wall user sys rss <"$WORK/time.out"
    row "$name" "$round" "$wall" "$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')" "$rss"
}

# upload PORT FILE: prints the stored file's path (/yyyy/M/d/uuid.jpg).
upload() {
    local port=$1 file=$2 out
    out=$(curl -sS --max-time 120 -H "X-Security-Key: $KEY" \
        -F "file=@$file;type=image/jpeg" \
        "http://127.0.0.1:$port/do.ashx?action=upload") || die "upload to port $port failed"
    [[ $out == *'<success>1</success>'* ]] || die "upload answered: ${out:0:400}"
    sed -n 's|.*<link>[a-z]*://[^/]*\(/[^<]*\)</link>.*|\1|p' <<<"$out" | head -1
}

# status_kib PID FIELD: VmRSS or VmHWM of PID, in KiB.
status_kib() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }

# Resets the kernel's peak-RSS mark of PID to its current RSS, so that VmHWM
# then measures one request alone (clear_refs "5", Linux 4.0 and later).
# Returns 1 where that is not allowed: VmHWM is then the process's lifetime
# peak, and only its growth is reported.
reset_hwm() { { echo 5 >"/proc/$1/clear_refs"; } 2>/dev/null; }

# ours_once ROUND PORT PID: a fresh upload of the single image, then the
# first GET of its thumbnail, timed; the server's CPU time over that request
# and its peak RSS above its RSS before it.
ours_once() {
    local round=$1 port=$2 pid=$3 path out code secs kind rss0 hwm0 hwm1 cpu0 cpu1 note
    path=$(upload "$port" "$WORK/in/one.jpg")
    [[ -n $path ]] || die "no link in the upload's answer"
    settle
    rss0=$(status_kib "$pid" VmRSS)
    if reset_hwm "$pid"; then note="peak above RSS before"; else note="growth of the lifetime peak"; fi
    hwm0=$(status_kib "$pid" VmHWM)
    ((hwm0 > rss0)) || hwm0=$rss0
    cpu0=$(cpu_ticks "$pid")
    out=$(curl -sS --max-time 120 -o "$WORK/out/ours.$round.jpg" \
        -w '%{http_code} %{time_total} %header{x-thumbnail}' \
        "http://127.0.0.1:$port$path-t.jpg") || die "thumbnail request failed"
    cpu1=$(cpu_ticks "$pid")
    hwm1=$(status_kib "$pid" VmHWM)
    read -r code secs kind <<<"$out"
    [[ $code == 200 && -z ${kind:-} ]] || die "thumbnail answered $code ${kind:-} (a fallback redirects to the original)"
    row ours "$round" "$(awk -v s="$secs" 'BEGIN { printf "%.3f", s }')" "$(awk -v t=$((cpu1 - cpu0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')" \
        "$((hwm1 - hwm0))" "$note; RSS before $((rss0 / 1024)) MiB, VmHWM after $((hwm1 / 1024)) MiB"
    # A second GET is served from the cache: its time, for information.
    out=$(curl -sS --max-time 60 -o /dev/null -w '%{http_code} %{time_total}' "http://127.0.0.1:$port$path-t.jpg")
    log "    cached: $out"
}

# many_ours WORKERS PORT PID: uploads the COUNT images, then COUNT clients
# ask for all thumbnails at once; one row with thumbnails/s in the note.
many_ours() {
    local workers=$1 port=$2 pid=$3 i t0 t1 cpu0 cpu1 rss0 hwm1 ok wall cpu
    : >"$WORK/links.$workers"
    for ((i = 1; i <= COUNT; i++)); do
        echo "http://127.0.0.1:$port$(upload "$port" "$WORK/in/many.$i.jpg")-t.jpg" >>"$WORK/links.$workers"
    done
    settle
    rss0=$(status_kib "$pid" VmRSS)
    reset_hwm "$pid" || true
    cpu0=$(cpu_ticks "$pid")
    t0=$(date +%s.%N)
    timeout 600 xargs -P "$COUNT" -n 1 curl -sS --max-time 300 -o /dev/null \
        -w '%{http_code} %{time_total} %header{x-thumbnail}\n' <"$WORK/links.$workers" >"$WORK/many.$workers.out" ||
        die "concurrent thumbnails failed: $(tail -3 "$WORK/many.$workers.out")"
    t1=$(date +%s.%N)
    cpu1=$(cpu_ticks "$pid")
    hwm1=$(status_kib "$pid" VmHWM)
    ok=$(awk '$1 == 200 && NF == 2' "$WORK/many.$workers.out" | wc -l)
    ((ok == COUNT)) || die "only $ok of $COUNT thumbnails made: $(sort "$WORK/many.$workers.out" | uniq -c | head -5)"
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    cpu=$(awk -v t=$((cpu1 - cpu0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')
    row "many.ours.workers$workers" 1 "$wall" "$cpu" "$((hwm1 - rss0))" \
        "$(awk -v n="$COUNT" -v w="$wall" -v c="$cpu" 'BEGIN { printf "%.2f thumbnails/s, %.3f CPU-s each", n / w, c / n }'); slowest client $(sort -k2 -n "$WORK/many.$workers.out" | tail -1 | cut -d' ' -f2)s"
}

# many_vips: vipsthumbnail over the same COUNT files, one process per core.
many_vips() {
    local t0 t1 wall
    t0=$(date +%s.%N)
    # shellcheck disable=SC2016
    timeout 600 /usr/bin/time -f '%e %U %S %M' -o "$WORK/time.out" \
        xargs -P "$(nproc)" -I{} sh -c 'vipsthumbnail "$1" -s "$2" -o "$3/vips-many-%s.jpg[Q=$4]"' sh {} "$BOX" "$WORK/out" "$QUALITY" \
        < <(for ((i = 1; i <= COUNT; i++)); do echo "$WORK/in/many.$i.jpg"; done) || die "vipsthumbnail over $COUNT files failed"
    t1=$(date +%s.%N)
    local w user sys rss
    read -r w user sys rss <"$WORK/time.out"
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    row many.vipsthumbnail 1 "$wall" "$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')" "$rss" \
        "$(awk -v n="$COUNT" -v w="$wall" -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f thumbnails/s, %.3f CPU-s each", n / w, (u + s) / n }'), $(nproc) at a time; RSS is the largest process"
}

main() {
    install_thumb_tools
    log "building the release binary"
    (cd "$ROOT" && timeout 1200 cargo build --release --quiet) || die "cargo build failed"

    WORK=$(mktemp -d -t multiserver-upload-thumbs.XXXXXX)
    ROUNDS_TSV=$WORK/rounds.tsv
    : >"$ROUNDS_TSV"
    # shellcheck disable=SC2034 # used by lib.sh
    KEY=bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
    mkdir -p "$WORK/in" "$WORK/out"
    log "temporary folder: $WORK"

    # Plasma fractals: smooth areas, edges and fine noise, so they compress
    # like photos (about 3 MB at quality 90 for 12 megapixels). Seed 0 is
    # the single image, seeds 1..COUNT the set; generated one per core.
    log "generating $((COUNT + 1)) JPEGs of $SIZE (plasma fractals, quality 90)"
    # shellcheck disable=SC2016
    {
        echo "0 $WORK/in/one.jpg"
        for ((i = 1; i <= COUNT; i++)); do echo "$i $WORK/in/many.$i.jpg"; done
    } | timeout 900 xargs -P "$(nproc)" -L 1 sh -c '"$0" -size "$1" -seed "$2" plasma:fractal -quality 90 "$3"' "$IM" "$SIZE" ||
        die "generating the inputs failed"
    log "single image: $(stat -c %s "$WORK/in/one.jpg") bytes"

    # Free ports of 127.0.0.1: one for case 1, one per workers value.
    local -a ports
    read -r -a ports < <(python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))' $((1 + $(wc -w <<<"$WORKERS_LIST"))))
    local port_one=${ports[0]}
    log "starting ours (fsync = false, default [images])"
    start_ours one "$port_one" false warn
    local pid_one=$OURS_PID

    wait_for_low_load
    echo "load_before	$(cut -d' ' -f1-3 /proc/loadavg)" >"$WORK/meta.tsv"
    {
        echo "commit	$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
        echo "input	$SIZE, $(stat -c %s "$WORK/in/one.jpg") bytes"
        echo "vips	$(vipsthumbnail --vips-version 2>/dev/null | head -1)"
        echo "imagemagick	$("$IM" -version | head -1)"
        echo "nproc	$(nproc)"
    } >>"$WORK/meta.tsv"

    # Case 1: each tool in turn, the order rotating from round to round.
    log "case 1: one $SIZE JPEG to fit ${BOX}x$BOX, $ROUNDS rounds"
    local -a tools=(vipsthumbnail imagemagick imagemagick_jpeg_size ours)
    local r j n=${#tools[@]}
    for ((r = 1; r <= ROUNDS; r++)); do
        for ((j = 0; j < n; j++)); do
            case ${tools[(r + j) % n]} in
            vipsthumbnail)
                timed vipsthumbnail "$r" vipsthumbnail "$WORK/in/one.jpg" -s "$BOX" -o "$WORK/out/vips.$r.jpg[Q=$QUALITY]" ;;
            imagemagick)
                timed imagemagick "$r" "$IM" "$WORK/in/one.jpg" -thumbnail "${BOX}x$BOX" -quality "$QUALITY" "$WORK/out/im.$r.jpg" ;;
            imagemagick_jpeg_size)
                timed imagemagick_jpeg_size "$r" "$IM" -define "jpeg:size=$((2 * BOX))x$((2 * BOX))" "$WORK/in/one.jpg" \
                    -thumbnail "${BOX}x$BOX" -quality "$QUALITY" "$WORK/out/imjs.$r.jpg" ;;
            ours) ours_once "$r" "$port_one" "$pid_one" ;;
            esac
        done
    done
    log "thumbnail sizes: ours $(identify_size "$WORK/out/ours.1.jpg"), vipsthumbnail $(identify_size "$WORK/out/vips.1.jpg"), ImageMagick $(identify_size "$WORK/out/im.1.jpg")"

    # Case 2: COUNT clients, COUNT different images, first generation.
    log "case 2: $COUNT thumbnails of $COUNT different images at once"
    settle
    many_vips
    local w k=0
    for w in $WORKERS_LIST; do
        [[ $w =~ ^[1-9][0-9]*$ ]] || die "bad workers value: $w"
        k=$((k + 1))
        OURS_TOML=$(printf '[images]\nworkers = %s' "$w") start_ours "w$w" "${ports[k]}" false warn
        many_ours "$w" "${ports[k]}" "$OURS_PID"
        kill -TERM "$OURS_PID" 2>/dev/null || true
    done
    echo "load_after	$(cut -d' ' -f1-3 /proc/loadavg)" >>"$WORK/meta.tsv"

    python3 - "$WORK/meta.tsv" "$ROUNDS_TSV" <<'PY'
import sys, statistics
meta = dict(l.rstrip("\n").split("\t", 1) for l in open(sys.argv[1]) if "\t" in l)
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[2]) if l.strip()]
for k, v in meta.items():
    print(f"{k}: {v}")
print()
print("| case | rounds: wall s / CPU s / peak MiB | best wall s | best CPU s | median CPU s | max peak MiB |")
print("| --- | --- | --- | --- | --- | --- |")
names = []
for r in rows:
    if r[0] not in names:
        names.append(r[0])
for name in names:
    rs = [r for r in rows if r[0] == name]
    walls = [float(r[2]) for r in rs]
    cpus = [float(r[3]) for r in rs]
    rss = [int(r[4]) / 1024 for r in rs]
    rounds = ", ".join(f"{w:.2f}/{c:.2f}/{m:.0f}" for w, c, m in zip(walls, cpus, rss))
    print(f"| {name} | {rounds} | {min(walls):.2f} | {min(cpus):.2f} | {statistics.median(cpus):.2f} | {max(rss):.0f} |")
print()
for r in rows:
    if r[5] and r[0].startswith("many"):
        print(f"{r[0]}: {r[5]}")
ours = [r for r in rows if r[0] == "ours"]
if ours:
    print(f"ours, memory: {ours[0][5]}")
PY
}

# identify_size FILE: WIDTHxHEIGHT, or ? when unreadable.
identify_size() { vipsheader "$1" 2>/dev/null | sed -n 's/.* \([0-9]*x[0-9]*\) .*/\1/p' | head -1 || echo "?"; }

main "$@"
