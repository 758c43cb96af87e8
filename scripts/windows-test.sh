#!/usr/bin/env bash
# Runs a selection of the integration tests against the Windows .exe under
# Wine, on loopback. They are the same tests `cargo test` runs against the
# Linux binary: tests/common's `Node::start` runs `wine <exe>` instead of the
# Linux binary when MULTISERVER_UPLOAD_TEST_EXE is set (the test code itself,
# the HTTP client and the checks on disk stay on Linux; the harness's /tmp
# paths reach the .exe through Wine's Z: drive).
#
# Selected: uploads, downloads (HEAD, Range, ETag), the shipped configuration,
# replication between three servers with journal and replay, and every bad
# replica refused; the index rebuilt after damage and shared by two
# processes; one volume per name; a resumable (tus) upload by tus-js-client
# replicated to a peer, and one resumed after the server was killed and
# started again (its offset durable on disk). Not selected: tests that need
# SIGTERM, /proc, mount, nginx, mono or a browser, or a file lock taken by a
# Linux process, which mean nothing under Wine.
#
# Wine passing is not proof that the .exe starts on Windows 7 / Server 2008 R2
# (Wine implements newer APIs too); the import check of windows-build.sh is.
#
# Usage: scripts/windows-test.sh [options] [EXE]
#   EXE                 the .exe (default: what windows-build.sh builds)
#   --skip-install      do not install Wine when it is missing
#   --manifest-dir DIR  the crate whose tests to run (default: this repository)
#   -h, --help          this text
# Environment:
#   WIN7_TARGET_DIR     as for windows-build.sh, to find the default EXE
#   WINE_TEST_TIMEOUT   seconds for the whole cargo test run (default: 600)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CRATE_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
install=1 exe=""
while [ $# -gt 0 ]; do
    case "$1" in
        --skip-install) install=0 ;;
        --manifest-dir) shift; CRATE_DIR=$(cd "${1:?--manifest-dir needs a directory}" && pwd) ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
        *) exe=$1 ;;
    esac
    shift
done

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# test target -> tests of it, run with --exact. Every name must exist: the
# count of passed tests is checked, so a renamed test fails here loudly.
SELECTION=(
    upload:single_upload_answers_the_original_xml_and_serves_the_same_bytes
    upload:multi_file_upload_in_json
    upload:stored_files_support_head_range_and_etag
    config:the_shipped_files_serve_uploads_out_of_the_box
    replication:a_peer_that_was_down_gets_every_missed_file_from_the_journals
    replication:sync_refuses_every_bad_replica_and_writes_nothing
    hostile_uploads:magic_bytes_without_an_image_behind_them_are_refused
    hostile_uploads:uploads_over_the_in_flight_limit_get_503_with_retry_after
    peers:a_copy_refused_for_good_is_kept_for_an_operator_and_not_resent
    peers:a_peer_answer_that_is_not_a_stored_copy_is_journaled_and_read_only_a_little
    delete:a_delete_reaches_every_server_and_one_that_was_down_learns_it_from_the_journal
    repair:a_file_held_by_one_server_only_reaches_every_other
    variants:a_turned_photo_gets_a_portrait_thumbnail_and_offered_widths_only
    image_intake:a_decompression_bomb_is_refused_at_once_and_leaves_nothing
    volumes:uploads_go_to_the_least_busy_volume_and_every_link_is_served
    volumes:repair_and_scrub_cover_every_volume
    volumes:two_replicas_of_one_name_at_once_keep_one_file_on_one_volume
    volumes:a_delete_racing_a_replica_leaves_nothing_served
    volumes:a_delete_racing_a_replica_on_one_folder_leaves_nothing_served
    index:a_damaged_index_is_set_aside_and_rebuilt_from_the_files
    index:two_processes_of_one_server_share_the_index_as_in_an_iis_recycle
    index:a_replica_is_served_with_its_hash_at_once
    repair:healthz_shows_a_peers_state_never_its_answer
    stream_replica:a_large_upload_reaches_the_peer_while_it_still_arrives
    stream_replica:the_sync_form_publishes_only_a_replica_whose_hash_came_and_matched
    tus:tus_js_client_uploads_a_large_jpeg_in_1_mib_chunks_to_every_server
    tus:a_client_stopped_half_way_resumes_after_the_server_was_killed
)

if [ -z "$exe" ]; then
    name=$(awk '/^\[/{p=($0=="[package]")} p && /^name[ \t]*=/{gsub(/^name[ \t]*=[ \t]*"|".*$/,""); print; exit}' \
        "$CRATE_DIR/Cargo.toml")
    exe="${WIN7_TARGET_DIR:-$CRATE_DIR/target/win7}/x86_64-win7-windows-gnu/release/$name.exe"
fi
[ -f "$exe" ] || die "$exe not found (build it with scripts/windows-build.sh)"
exe=$(cd "$(dirname "$exe")" && pwd)/$(basename "$exe")

# ---------------------------------------------------------------- Wine
if ! command -v wine >/dev/null 2>&1 || ! command -v wineserver >/dev/null 2>&1; then
    [ "$install" -eq 1 ] || die "wine not found (Debian packages wine wine64)"
    command -v apt-get >/dev/null 2>&1 || die "wine not found; install it with your package manager"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    log "apt-get install wine wine64"
    $sudo env DEBIAN_FRONTEND=noninteractive timeout 600 apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive timeout 1200 \
        apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 wine wine64 >/dev/null
    command -v wine >/dev/null 2>&1 || die "wine still missing after installing it"
fi

# A throwaway prefix; its wineserver (and every process of it) dies on exit.
WINEPREFIX=$(mktemp -d "${TMPDIR:-/tmp}/wine-test.XXXXXX")
export WINEPREFIX
export WINEDEBUG=-all                   # also silences /usr/bin/wine's "wine32 is missing"
export WINEDLLOVERRIDES="mscoree,mshtml=" # no Mono / Gecko install prompts
cleanup() {
    timeout 30 wineserver -k >/dev/null 2>&1 || true
    timeout 30 wineserver -w >/dev/null 2>&1 || true
    rm -rf "$WINEPREFIX"
}
trap cleanup EXIT

start=$(date +%s)
# Create the prefix now (~5 s), not in the first test's 20 s readiness wait,
# and keep one wineserver for the whole run so each start is quick. Its
# output (a dump of leftover objects when it is killed) is noise.
wineserver -p >/dev/null 2>&1
log "wineboot -i (new prefix)"
timeout 120 wineboot -i >/dev/null 2>&1 || die "wineboot -i failed or took over 120 s"
out=$(timeout 60 wine "$exe" --help 2>&1) || { printf '%s\n' "$out" >&2; die "$exe --help failed under wine"; }
log "wine $(wine --version 2>/dev/null) runs $(basename "$exe") ($(( $(date +%s) - start )) s)"

# ---------------------------------------------------------------- tests
targets=() names=()
for t in "${SELECTION[@]}"; do
    case " ${targets[*]} " in *" --test ${t%%:*} "*) ;; *) targets+=(--test "${t%%:*}") ;; esac
    names+=("${t#*:}")
done
results=$(mktemp "${TMPDIR:-/tmp}/wine-test-results.XXXXXX")
trap 'rm -f "$results"; cleanup' EXIT
log "cargo test under wine: ${#names[@]} tests"
status=0
MULTISERVER_UPLOAD_TEST_EXE="$exe" MULTISERVER_UPLOAD_TEST_RUNNER=wine \
    timeout -k 10 "${WINE_TEST_TIMEOUT:-600}" \
    cargo test --manifest-path "$CRATE_DIR/Cargo.toml" --no-fail-fast "${targets[@]}" \
        -- --exact "${names[@]}" 2>&1 | tee "$results" || status=$?
passed=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i + 1) ~ /^passed/) n += $i } END { print n + 0 }' "$results")
[ "$status" -eq 0 ] || die "tests under wine failed (exit $status; 124: over ${WINE_TEST_TIMEOUT:-600} s)"
[ "$passed" -eq "${#names[@]}" ] \
    || die "$passed of the ${#names[@]} selected tests ran and passed under wine (a test renamed or removed?)"
log "OK: ${#names[@]} integration tests passed against $(basename "$exe") under wine ($(( $(date +%s) - start )) s)"
