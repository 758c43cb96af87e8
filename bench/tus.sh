#!/usr/bin/env bash
# Resumable uploads against the plain one (SPEC §9: tus of a 1 GiB file in
# 32 MiB chunks at least 0.8× one multipart upload of it), in one command,
# from the repository's top folder:
#
#   bench/tus.sh
#
# The same 1 GiB file to the same server, ROUNDS times each, alternating: one
# multipart upload (curl -F, as run.sh's case 1) and one tus upload with
# tus-js-client in 32 MiB chunks (bench/node/tus-upload.mjs: POST /files/,
# then one PATCH per chunk), and one tus upload with curl as the client
# (the same POST and PATCHes, each chunk a file of its own sent by curl -T):
# tus-js-client in Node needs several times curl's CPU, which on few cores
# the server then lacks. Every figure is file bytes ÷ the wall time
# until the answer that carries the link (the file then stored, indexed and
# thumbnailed alike). Two servers, one with the shipped fsync = true, one
# with fsync = false; no peer. Peak RSS (VmHWM) of each server after its
# uploads.
#
# Builds the release binary, installs tus-js-client into bench/node when
# missing (npm ci), runs ours on 127.0.0.1 only, stops everything it started
# and deletes its temporary folder.
#
# Settings (environment):
#   BENCH_TUS_ROUNDS=3          rounds (one upload of each kind per server)
#   BENCH_BIG_BYTES=1073741824  size of the file
#   BENCH_TUS_CHUNK=33554432    tus chunk size
#   BENCH_MAX_LOAD=2.0          first wait (at most BENCH_LOAD_WAIT=600 s) for
#                               the 1-minute load average to drop below this
#   BENCH_NO_INSTALL=1          install nothing; fail if something is missing
#   BENCH_KEEP=1                keep the temporary folder (logs, rounds.tsv)
set -euo pipefail

ROUNDS=${BENCH_TUS_ROUNDS:-3}
BIG_BYTES=${BENCH_BIG_BYTES:-1073741824}
CHUNK=${BENCH_TUS_CHUNK:-33554432}
BENCH_MAX_LOAD=${BENCH_MAX_LOAD:-2.0}

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/multiserver-upload
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"

# One tus upload; prints "seconds bytes".
tus_upload_once() {
    local port=$1 out
    out=$(timeout 600 node "$HERE/node/tus-upload.mjs" "http://127.0.0.1:$port/files/" "$KEY" \
        "$WORK/data/big.jpg" "$CHUNK") || die "tus upload to port $port failed: $out"
    local secs bytes link
    read -r secs bytes link <<<"$out"
    [[ -n $link ]] || die "the tus upload to port $port answered no X-Upload-Link"
    echo "$secs $bytes"
}

# One tus upload with curl: POST /files/, then one PATCH per chunk file
# (split beforehand, so that curl sends each with its length); prints
# "seconds bytes".
tus_curl_once() {
    local port=$1 start end location offset=0 chunk headers link
    start=$(date +%s.%N)
    headers=$(timeout 60 curl -sS -D - -o /dev/null -X POST -H "X-Security-Key: $KEY" \
        -H 'Tus-Resumable: 1.0.0' -H "Upload-Length: $BIG_BYTES" "http://127.0.0.1:$port/files/") ||
        die "tus POST to port $port failed"
    location=$(tr -d '\r' <<<"$headers" | awk 'tolower($1) == "location:" { print $2 }')
    [[ -n $location ]] || die "the tus POST to port $port answered no Location"
    [[ $location == http* ]] || location=http://127.0.0.1:$port$location
    for chunk in "$WORK"/chunks/*; do
        headers=$(timeout 600 curl -sS -D - -o /dev/null -X PATCH -T "$chunk" -H "X-Security-Key: $KEY" \
            -H 'Tus-Resumable: 1.0.0' -H "Upload-Offset: $offset" \
            -H 'Content-Type: application/offset+octet-stream' "$location") ||
            die "tus PATCH at $offset to port $port failed"
        offset=$((offset + $(stat -c %s "$chunk")))
    done
    end=$(date +%s.%N)
    link=$(tr -d '\r' <<<"$headers" | awk 'tolower($1) == "x-upload-link:" { print $2 }')
    [[ -n $link ]] || die "the last PATCH to port $port answered no X-Upload-Link"
    echo "$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }') $offset"
}

# one KIND NAME PORT DIR: one upload, a line of rounds.tsv, the stored file
# emptied afterwards.
one() {
    local kind=$1 name=$2 port=$3 dir=$4 out secs bytes
    case $kind in
    multipart) out=$(big_upload_once "$port") ;;
    tus) out=$(tus_upload_once "$port") ;;
    tus-curl) out=$(tus_curl_once "$port") ;;
    esac
    read -r secs bytes <<<"$out"
    printf '%s\t%s\t%s\t%s\n' "$name" "$kind" "$secs" "$bytes" >>"$WORK/rounds.tsv"
    log "  $name $kind: ${secs}s"
    empty_files "$dir/data"
    settle
}

main() {
    command -v node >/dev/null || die "node is needed for tus-js-client"
    if [[ ! -d $HERE/node/node_modules/tus-js-client ]]; then
        [[ ${BENCH_NO_INSTALL:-} == 1 ]] && die "bench/node has no tus-js-client"
        log "installing tus-js-client (npm ci)"
        (cd "$HERE/node" && timeout 600 npm ci --no-audit --no-fund --loglevel=error)
    fi
    log "building the release binary"
    (cd "$ROOT" && timeout 1800 cargo build --release --quiet) || die "cargo build failed"

    WORK=$(mktemp -d -t multiserver-upload-tus.XXXXXX)
    : >"$WORK/rounds.tsv"
    # shellcheck disable=SC2034 # used by lib.sh
    KEY=bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
    log "temporary folder: $WORK"
    timeout 300 python3 "$HERE/make_data.py" "$WORK/data" --big-bytes "$BIG_BYTES"
    mkdir "$WORK/chunks"
    split -a 4 -b "$CHUNK" "$WORK/data/big.jpg" "$WORK/chunks/"

    local p_fs p_nofs fs nofs
    read -r p_fs p_nofs < <(free_ports 2)
    start_ours fs "$p_fs" true info; fs=$OURS_PID
    start_ours nofs "$p_nofs" false info; nofs=$OURS_PID

    wait_for_low_load
    local round kinds kind
    for round in $(seq "$ROUNDS"); do
        log "round $round of $ROUNDS"
        # Which kind goes first alternates, so neither always meets the
        # other's writeback.
        if ((round % 2)); then
            kinds=(multipart tus tus-curl)
        else
            kinds=(tus-curl tus multipart)
        fi
        for kind in "${kinds[@]}"; do one "$kind" fsync "$p_fs" "$WORK/fs"; done
        for kind in "${kinds[@]}"; do one "$kind" nofsync "$p_nofs" "$WORK/nofs"; done
    done

    echo
    echo "1 GiB upload, tus ($((CHUNK >> 20)) MiB chunks; client tus-js-client, or curl) vs multipart, same server, $ROUNDS rounds (median MB/s)"
    awk -F'\t' '
        { v[$1 "\t" $2] = v[$1 "\t" $2] " " ($4 / $3 / 1e6) }
        function median(s,   a, n, i, j, t) {
            n = split(s, a, " ")
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
            return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        END {
            printf "%-8s %10s %10s %7s %10s %7s\n", "server", "multipart", "tus-js", "ratio", "tus-curl", "ratio"
            split("fsync nofsync", names, " ")
            for (k = 1; k <= 2; k++) {
                m = median(v[names[k] "\tmultipart"]); t = median(v[names[k] "\ttus"]); c = median(v[names[k] "\ttus-curl"])
                printf "%-8s %10.0f %10.0f %6.2fx %10.0f %6.2fx (target >= 0.8x)\n", names[k], m, t, t / m, c, c / m
            }
        }' "$WORK/rounds.tsv"
    echo "peak RSS: fsync $(hwm_kib "$fs") KiB, nofsync $(hwm_kib "$nofs") KiB"
}

main "$@"
