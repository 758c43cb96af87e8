#!/usr/bin/env bash
# Build the Windows .exe that must run on Windows 7 / Windows Server 2008 R2,
# then check its import table against scripts/win7-missing-imports.txt, then
# run a selection of the integration tests against it under Wine
# (scripts/windows-test.sh).
#
# Why this is not a plain `cargo build --target x86_64-pc-windows-gnu`:
# since Rust 1.78 the tier-1 Windows targets need Windows 10 (std imports
# ProcessPrng from bcryptprimitives.dll, WaitOnAddress from an API set, ...).
# The tier-3 target x86_64-win7-windows-gnu keeps Windows 7 support, but Rust
# ships no prebuilt std for it, so std is compiled from the rust-src component
# with the nightly-only -Zbuild-std, and linked by MinGW-w64's gcc.
#
# Usage: scripts/windows-build.sh [options]
#   --skip-install      do not try to install missing tools
#   --check-only        do not build; only check (and test) the existing .exe
#   --no-wine-test      do not run the integration tests under Wine
#   --wine-smoke        also run `<exe> --help` under Wine (installs wine64)
#   --manifest-dir DIR  build the crate in DIR instead of this repository
#   -h, --help          this text
#   -- ARGS...          extra arguments for `cargo build` (e.g. -- --features x)
# Environment:
#   WIN7_TOOLCHAIN   rustup toolchain to use (default: nightly), e.g. nightly-2026-05-19
#   WIN7_TARGET_DIR  cargo target dir (default: <crate>/target/win7)
#   WIN7_BIN         name of the binary (default: the [package] name)
#   WIN7_NICE        niceness of the build (default: 10)
#   WIN7_LOCKED      1 (default): build with --locked when Cargo.lock exists
#   CARGO_BUILD_JOBS as usual for cargo
#
# Result: <target dir>/x86_64-win7-windows-gnu/release/<bin>.exe, plus
# <bin>.imports.txt next to it (every imported DLL!function).
set -euo pipefail

TARGET=x86_64-win7-windows-gnu
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CRATE_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
LIST="$SCRIPT_DIR/win7-missing-imports.txt"
TOOLCHAIN=${WIN7_TOOLCHAIN:-nightly}
NICE=${WIN7_NICE:-10}
MINGW=x86_64-w64-mingw32

install=1 build=1 smoke=0 wine_test=1
cargo_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --skip-install) install=0 ;;
        --check-only) build=0 ;;
        --no-wine-test) wine_test=0 ;;
        --wine-smoke) smoke=1 ;;
        --manifest-dir) shift; CRATE_DIR=$(cd "${1:?--manifest-dir needs a directory}" && pwd) ;;
        --) shift; cargo_args=("$@"); break ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

TARGET_DIR=${WIN7_TARGET_DIR:-$CRATE_DIR/target/win7}
log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else die "need root to run: $*"; fi
}

apt_updated=0
apt_install() { # apt_install PKG... (Debian/Ubuntu)
    command -v apt-get >/dev/null 2>&1 || die "missing $*; install them with your package manager"
    if [ "$apt_updated" -eq 0 ]; then
        log "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive timeout 600 apt-get update -qq
        apt_updated=1
    fi
    log "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive timeout 1200 \
        apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "$@" >/dev/null
}

need_cmd() { # need_cmd COMMAND DEBIAN-PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    [ "$install" -eq 1 ] || die "$1 not found (Debian package $2)"
    apt_install "$2"
    command -v "$1" >/dev/null 2>&1 || die "$1 still missing after installing $2"
}

# ---------------------------------------------------------------- tools
need_cmd "$MINGW-objdump" binutils-mingw-w64-x86-64
if [ "$build" -eq 1 ]; then
    need_cmd "$MINGW-gcc" gcc-mingw-w64-x86-64
    need_cmd "$MINGW-ar" binutils-mingw-w64-x86-64
    command -v rustup >/dev/null 2>&1 || die "rustup not found (https://rustup.rs)"
    if ! rustup run "$TOOLCHAIN" rustc --version >/dev/null 2>&1; then
        [ "$install" -eq 1 ] || die "rust toolchain $TOOLCHAIN not installed"
        log "rustup toolchain install $TOOLCHAIN"
        rustup toolchain install "$TOOLCHAIN" --profile minimal
    fi
    sysroot=$(rustup run "$TOOLCHAIN" rustc --print sysroot)
    if [ ! -d "$sysroot/lib/rustlib/src/rust/library/std" ]; then
        [ "$install" -eq 1 ] || die "rust-src missing for $TOOLCHAIN"
        log "rustup component add rust-src --toolchain $TOOLCHAIN"
        rustup component add rust-src --toolchain "$TOOLCHAIN"
    fi
    rustup run "$TOOLCHAIN" rustc --print target-list | grep -qx "$TARGET" \
        || die "$(rustup run "$TOOLCHAIN" rustc --version) does not know the target $TARGET"
fi

# ---------------------------------------------------------------- binary name
BIN=${WIN7_BIN:-}
if [ -z "$BIN" ]; then
    BIN=$(awk '/^\[/{p=($0=="[package]")} p && /^name[ \t]*=/{gsub(/^name[ \t]*=[ \t]*"|".*$/,""); print; exit}' \
        "$CRATE_DIR/Cargo.toml")
    [ -n "$BIN" ] || die "cannot read the package name from $CRATE_DIR/Cargo.toml; set WIN7_BIN"
fi
EXE="$TARGET_DIR/$TARGET/release/$BIN.exe"

# ---------------------------------------------------------------- build
if [ "$build" -eq 1 ]; then
    log "building $BIN for $TARGET with $(rustup run "$TOOLCHAIN" rustc --version)"
    # A shipped binary is built from the committed lock file, never a new resolve.
    if [ "${WIN7_LOCKED:-1}" = 1 ] && [ -f "$CRATE_DIR/Cargo.lock" ]; then
        cargo_args=(--locked "${cargo_args[@]}")
    fi
    start=$(date +%s)
    # Everything is passed here so that no .cargo/config.toml is needed.
    # CC_/AR_<target>: C code (ring's build script) must be compiled by MinGW.
    env \
        CARGO_TARGET_DIR="$TARGET_DIR" \
        CARGO_TARGET_X86_64_WIN7_WINDOWS_GNU_LINKER="$MINGW-gcc" \
        CC_x86_64_win7_windows_gnu="$MINGW-gcc" \
        AR_x86_64_win7_windows_gnu="$MINGW-ar" \
        nice -n "$NICE" \
        cargo "+$TOOLCHAIN" build \
            --manifest-path "$CRATE_DIR/Cargo.toml" \
            --release \
            --target "$TARGET" \
            -Zbuild-std=std,panic_abort \
            --bin "$BIN" \
            "${cargo_args[@]}"
    log "build took $(( $(date +%s) - start )) s"
fi
[ -f "$EXE" ] || die "$EXE not found"
log "$EXE ($(stat -c %s "$EXE") bytes)"

# ---------------------------------------------------------------- import check
dump=$("$MINGW-objdump" -p "$EXE")
# Lines "<tab>vma<tab> hint  Name" under each "DLL Name: x.dll"; ordinal-only
# imports show "<none>" or a number and are listed as DLL!#ordinal.
imports=$(printf '%s\n' "$dump" | awk '
    /^The Import Tables/ { inimp = 1; next }
    inimp && /^[A-Za-z]/ { inimp = 0 }   # next section header ends the table
    !inimp { next }
    /DLL Name:/ { dll = $3; next }
    dll != "" && /^\t[0-9a-fA-F]+\t/ {
        n = split($0, f, /[ \t]+/); name = f[n]
        if (name ~ /^[0-9]+$/ || name == "<none>") name = "#" name
        print dll "!" name
    }' | sort -uf)
[ -n "$imports" ] || die "no imports parsed from $EXE (objdump output format changed?)"
printf '%s\n' "$imports" > "${EXE%.exe}.imports.txt"
dlls=$(printf '%s\n' "$imports" | cut -d'!' -f1 | sort -uf)
log "imports: $(printf '%s\n' "$imports" | wc -l) functions from $(printf '%s\n' "$dlls" | wc -l) DLLs:" \
    "$(printf '%s\n' "$dlls" | tr '\n' ' ')"

[ -f "$LIST" ] || die "$LIST not found"
shopt -s nocasematch
bad=()
while IFS= read -r line || [ -n "$line" ]; do
    entry=${line%%#*}
    entry=$(printf '%s' "$entry" | tr -d '[:space:]')
    [ -n "$entry" ] || continue
    case "$entry" in
        string:*)
            needle=${entry#string:}
            if LC_ALL=C grep -aqiF -- "$needle" "$EXE"; then
                bad+=("string \"$needle\" in the binary (looked up at run time)")
            fi ;;
        *.dll|*.DLL|*-\*|*\*)
            # DLL entry (or wildcard): match against DLL names, then function names.
            while IFS= read -r d; do
                # shellcheck disable=SC2053 # glob match intended
                [[ $d == $entry ]] && bad+=("DLL $d (rule: $entry)")
            done <<< "$dlls"
            if [[ $entry != *.dll ]]; then
                while IFS= read -r imp; do
                    # shellcheck disable=SC2053
                    [[ ${imp#*!} == $entry ]] && bad+=("$imp (rule: $entry)")
                done <<< "$imports"
            fi ;;
        *)
            while IFS= read -r imp; do
                [[ ${imp#*!} == "$entry" ]] && bad+=("$imp")
            done <<< "$imports" ;;
    esac
done < "$LIST"
shopt -u nocasematch

# The loader refuses an image whose subsystem version is above the OS (6.1).
subsys=$(printf '%s\n' "$dump" | awk '/^MajorSubsystemVersion/{ma=$2} /^MinorSubsystemVersion/{mi=$2} END{print ma "." mi}')
case "$subsys" in
    [0-5].*|6.0|6.1) ;;
    *) bad+=("PE subsystem version $subsys > 6.1") ;;
esac

if [ "${#bad[@]}" -gt 0 ]; then
    printf 'error: %s is not Windows 7 / Server 2008 R2 compatible:\n' "$EXE" >&2
    printf '  %s\n' "${bad[@]}" >&2
    exit 1
fi
log "OK: no import from $(basename "$LIST"); PE subsystem version $subsys"

# ---------------------------------------------------------------- optional Wine smoke test
if [ "$smoke" -eq 1 ]; then
    if ! command -v wine >/dev/null 2>&1; then
        [ "$install" -eq 1 ] || die "wine not found (Debian packages wine wine64)"
        apt_install wine wine64
    fi
    prefix=$(mktemp -d "${TMPDIR:-/tmp}/win7-wine.XXXXXX")
    trap 'WINEPREFIX="$prefix" timeout 30 wineserver -k >/dev/null 2>&1 || true; rm -rf "$prefix"' EXIT
    log "wine smoke test: $BIN.exe --help (fresh prefix; the first start creates it)"
    if ! out=$(WINEPREFIX="$prefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml=" \
        timeout 300 wine "$EXE" --help 2>&1); then
        printf '%s\n' "$out" >&2
        die "$BIN.exe --help failed under wine"
    fi
    printf '%s\n' "$out" | grep -v '^wine: ' | head -n 5 >&2
    log "wine smoke test passed"
fi

# ---------------------------------------------------------------- integration tests under Wine
if [ "$wine_test" -eq 1 ]; then
    wt_args=(--manifest-dir "$CRATE_DIR")
    [ "$install" -eq 1 ] || wt_args+=(--skip-install)
    bash "$SCRIPT_DIR/windows-test.sh" "${wt_args[@]}" "$EXE"
fi
