#!/usr/bin/env bash
# A real Garage cluster on 127.0.0.1, for the S3-backend tests and benchmarks:
#
#   scripts/garage-cluster.sh up DIR NODES   write DIR/nodeK.toml for K = 1..NODES,
#                                            start the nodes, connect them, lay
#                                            them out one zone per node, create
#                                            bucket "images" and a key that may
#                                            read, write and own it, wait until
#                                            a PUT works, write DIR/env
#   scripts/garage-cluster.sh start DIR K    start node K again (same config and
#                                            data) and wait until it answers
#   scripts/garage-cluster.sh stop DIR K     SIGKILL node K (a power cut)
#   scripts/garage-cluster.sh down DIR       stop every node of DIR
#
# Every port is a free ephemeral one of 127.0.0.1; nothing listens elsewhere.
# Replication factor 3 for three nodes or more (1 below), consistency mode
# "consistent": a write needs 2 of the 3 copies. DIR/env holds shell lines:
#   S3_ENDPOINT=http://127.0.0.1:PORT       node 1's S3 API
#   S3_ENDPOINTS="http://... http://..."     every node's, in node order
#   S3_ENDPOINT_K=http://127.0.0.1:PORT     node K's
#   AWS_ACCESS_KEY_ID=GK...  AWS_SECRET_ACCESS_KEY=...
#   S3_BUCKET=images  S3_REGION=garage
# Logs in DIR/nodeK.log, pids in DIR/nodeK.pid, node ids (id@address) in
# DIR/nodeK.id, data in DIR/nodeK/.
#
# The binary: $GARAGE_BIN, else $MULTISERVER_UPLOAD_GARAGE, else what
# scripts/install-garage.sh prints (it builds Garage once, into a cache).
# GARAGE_LOG sets the nodes' RUST_LOG (default: warnings only).
# GARAGE_CLUSTER_OWNER=PID: `up` also leaves a watcher that stops the nodes
# once process PID is gone (a test run killed before it could clean up);
# it gives up after 6 hours.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
BUCKET=images
REGION=garage
KEY_NAME=multiserver-upload-test

die() { echo "garage-cluster: $*" >&2; exit 1; }

garage_bin() {
    local bin=${GARAGE_BIN:-${MULTISERVER_UPLOAD_GARAGE:-}}
    [[ -n $bin ]] || bin=$(bash "$HERE/install-garage.sh")
    [[ -x $bin ]] || die "no Garage binary at $bin"
    echo "$bin"
}

# g K ARGS...: the Garage CLI against node K (over RPC, with K's config).
g() {
    local k=$1
    shift
    timeout 30 "$GARAGE" -c "$DIR/node$k.toml" "$@"
}

# free_ports N: N distinct free TCP ports of 127.0.0.1, on one line.
free_ports() {
    python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))' "$1"
}

write_config() {
    local k=$1 rpc=$2 s3=$3 factor=$4 secret=$5
    mkdir -p "$DIR/node$k/meta" "$DIR/node$k/data"
    cat >"$DIR/node$k.toml" <<EOF
metadata_dir = "$DIR/node$k/meta"
data_dir = "$DIR/node$k/data"
db_engine = "lmdb"
# LMDB maps its file into memory; the default (1 TiB) is only address space,
# but a small map keeps the test machine's virtual memory readable.
lmdb_map_size = "4G"
# Test data: nothing to gain from fsync or compressing random bytes.
metadata_fsync = false
data_fsync = false
compression_level = "none"

replication_factor = $factor
consistency_mode = "consistent"

rpc_secret = "$secret"
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"

[s3_api]
api_bind_addr = "127.0.0.1:$s3"
s3_region = "$REGION"
EOF
}

# The RPC port of node K, from its config.
rpc_port() { sed -n 's/^rpc_bind_addr = "127.0.0.1:\([0-9]*\)"$/\1/p' "$DIR/node$1.toml"; }
s3_port() { sed -n 's/^api_bind_addr = "127.0.0.1:\([0-9]*\)"$/\1/p' "$DIR/node$1.toml"; }

# start_node K: starts node K in its own session (it outlives this script)
# and waits (bounded) until its RPC answers; prints its node id.
start_node() {
    local k=$1 id="" i
    [[ -f $DIR/node$k.toml ]] || die "no $DIR/node$k.toml"
    if [[ -f $DIR/node$k.pid ]] && kill -0 "$(cat "$DIR/node$k.pid")" 2>/dev/null; then
        die "node $k is already running (pid $(cat "$DIR/node$k.pid"))"
    fi
    RUST_LOG=${GARAGE_LOG:-warn} setsid "$GARAGE" -c "$DIR/node$k.toml" server \
        </dev/null >>"$DIR/node$k.log" 2>&1 &
    echo $! >"$DIR/node$k.pid"
    for ((i = 0; i < 300; i++)); do
        kill -0 "$(cat "$DIR/node$k.pid")" 2>/dev/null ||
            die "node $k exited at start: $(tail -5 "$DIR/node$k.log")"
        if id=$(g "$k" node id -q 2>/dev/null) && [[ -n $id ]]; then
            echo "$id"
            return 0
        fi
        sleep 0.05
    done
    die "node $k did not answer within 15 s: $(tail -5 "$DIR/node$k.log")"
}

# wait_port PORT: until something accepts connections there (bounded, 15 s).
wait_port() {
    local i
    for ((i = 0; i < 300; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    die "nothing listens on 127.0.0.1:$1"
}

# s3 METHOD URL [curl args...]: an S3 request signed with the test key;
# prints the HTTP status. Garage wants x-amz-content-sha256, which curl
# before 8.x does not send by itself; with the header given, curl signs it.
s3() {
    local method=$1 url=$2
    shift 2
    curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X "$method" \
        --aws-sigv4 "aws:amz:$REGION:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
        -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@" "$url" || true
}

up() {
    local nodes=$1 factor=1 k secret
    [[ $nodes =~ ^[1-9][0-9]*$ ]] || die "NODES must be a positive number"
    ((nodes >= 3)) && factor=3
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd)
    secret=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
    local -a ports ids
    read -r -a ports < <(free_ports $((2 * nodes)))
    for ((k = 1; k <= nodes; k++)); do
        write_config "$k" "${ports[2 * k - 2]}" "${ports[2 * k - 1]}" "$factor" "$secret"
        : >"$DIR/node$k.log"
    done
    for ((k = 1; k <= nodes; k++)); do
        ids[k]=$(start_node "$k")
        echo "${ids[k]}" >"$DIR/node$k.id"
    done
    for ((k = 2; k <= nodes; k++)); do
        g 1 node connect "${ids[k]}" >/dev/null
    done
    for ((k = 1; k <= nodes; k++)); do
        g 1 layout assign -z "z$k" -c 1G "${ids[k]%@*}" >/dev/null
    done
    g 1 layout apply --version 1 >/dev/null
    g 1 bucket create "$BUCKET" >/dev/null
    local info
    info=$(g 1 key create "$KEY_NAME")
    AWS_ACCESS_KEY_ID=$(sed -n 's/^Key ID:[[:space:]]*//p' <<<"$info" | head -1)
    AWS_SECRET_ACCESS_KEY=$(sed -n 's/^Secret key:[[:space:]]*//p' <<<"$info" | head -1)
    [[ -n $AWS_ACCESS_KEY_ID && -n $AWS_SECRET_ACCESS_KEY ]] || die "no key in: $info"
    g 1 bucket allow --read --write --owner "$BUCKET" --key "$KEY_NAME" >/dev/null

    # The layout and the key reach every node through gossip: wait until a
    # PUT (then a DELETE, so the bucket is empty) works through each of them.
    local endpoints="" i status url
    for ((k = 1; k <= nodes; k++)); do
        url="http://127.0.0.1:$(s3_port "$k")"
        endpoints+="${endpoints:+ }$url"
        for ((i = 0; i < 200; i++)); do
            status=$(s3 PUT "$url/$BUCKET/.cluster-probe-$k" --data-binary probe)
            [[ $status == 200 ]] && break
            sleep 0.05
        done
        [[ $status == 200 ]] || die "a PUT through node $k answers $status"
        status=$(s3 DELETE "$url/$BUCKET/.cluster-probe-$k")
        [[ $status == 204 ]] || die "a DELETE through node $k answers $status"
    done
    {
        echo "S3_ENDPOINT=http://127.0.0.1:$(s3_port 1)"
        echo "S3_ENDPOINTS=\"$endpoints\""
        for ((k = 1; k <= nodes; k++)); do
            echo "S3_ENDPOINT_$k=http://127.0.0.1:$(s3_port "$k")"
        done
        echo "AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID"
        echo "AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY"
        echo "S3_BUCKET=$BUCKET"
        echo "S3_REGION=$REGION"
        echo "GARAGE_NODES=$nodes"
    } >"$DIR/env"
    if [[ -n ${GARAGE_CLUSTER_OWNER:-} ]]; then
        local owner=$GARAGE_CLUSTER_OWNER script
        script=$HERE/$(basename "$0")
        setsid bash -c '
            for ((i = 0; i < 21600; i++)); do kill -0 "$1" 2>/dev/null || break; sleep 1; done
            [[ -d $3 ]] && bash "$2" down "$3"' watcher "$owner" "$script" "$DIR" \
            </dev/null >/dev/null 2>&1 &
    fi
}

start() {
    local k=$1 f j i id status
    DIR=$(cd "$DIR" && pwd)
    start_node "$k" >/dev/null
    wait_port "$(s3_port "$k")"
    id=$(cat "$DIR/node$k.id")
    # The running nodes would find the restarted one by themselves, but only
    # after their reconnection backoff (30 s seen); told to connect, they do
    # at once. Then wait (bounded) until they list it as connected (its
    # hostname and version follow with the next status exchange, seconds
    # later; writes do not wait for that).
    for f in "$DIR"/node*.id; do
        j=${f##*/node}
        j=${j%.id}
        [[ $j == "$k" ]] && continue
        kill -0 "$(cat "$DIR/node$j.pid")" 2>/dev/null || continue
        for ((i = 0; i < 50; i++)); do
            g "$j" node connect "$id" >/dev/null 2>&1 && break
            sleep 0.1
        done
        for ((i = 0; i < 100; i++)); do
            # (no pipe into grep -q: with pipefail, an early exit of grep
            # would read as "not found")
            status=$(g "$j" status 2>/dev/null | sed '/FAILED/q') || status=""
            grep "^${id:0:16} " <<<"$status" >/dev/null && break
            sleep 0.1
        done
    done
}

stop() {
    local k=$1 pid
    [[ -f $DIR/node$k.pid ]] || die "no node $k in $DIR"
    pid=$(cat "$DIR/node$k.pid")
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.02; done
    die "node $k (pid $pid) is still running"
}

down() {
    local f pid
    for f in "$DIR"/node*.pid; do
        [[ -f $f ]] || continue
        pid=$(cat "$f")
        kill -TERM "$pid" 2>/dev/null || true
    done
    for f in "$DIR"/node*.pid; do
        [[ -f $f ]] || continue
        pid=$(cat "$f")
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill -KILL "$pid" 2>/dev/null || true
    done
}

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

(($# >= 2)) || usage
command=$1
DIR=$2
case $command in
    up) (($# == 3)) || usage; GARAGE=$(garage_bin); up "$3" ;;
    start) (($# == 3)) || usage; GARAGE=$(garage_bin); start "$3" ;;
    stop) (($# == 3)) || usage; stop "$3" ;;
    down) down ;;
    *) usage ;;
esac
