#!/usr/bin/env bash
# Installs everything the test suite needs that cargo does not bring:
# mono (to compile and run the original C# client), exiftool (reads back the
# metadata of stored pictures), curl, nginx and openssl (reverse-proxy
# test), Debian's chromium (browser test), the browser test's npm packages, and
# for scripts/windows-build.sh MinGW-w64 (links the Windows .exe), Wine (runs
# the integration tests against it) and the nightly toolchain's rust-src.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v curl >/dev/null || need+=(curl)
command -v exiftool >/dev/null || need+=(libimage-exiftool-perl)
command -v mcs >/dev/null || need+=(mono-mcs)
command -v mono >/dev/null || need+=(mono-runtime)
[ -e /usr/lib/mono/4.5/System.dll ] || need+=(libmono-system4.0-cil)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v openssl >/dev/null || need+=(openssl)
command -v chromium >/dev/null || need+=(chromium)
# Chinese text in the page's screenshots
[ -d /usr/share/fonts/opentype/noto ] || need+=(fonts-noto-cjk)
command -v node >/dev/null || need+=(nodejs npm)
command -v x86_64-w64-mingw32-gcc >/dev/null || need+=(gcc-mingw-w64-x86-64)
command -v x86_64-w64-mingw32-objdump >/dev/null || need+=(binutils-mingw-w64-x86-64)
command -v wine >/dev/null && command -v wineserver >/dev/null || need+=(wine wine64)
# systemd-analyze verifies the shipped unit (contrib/systemd)
command -v systemd-analyze >/dev/null || need+=(systemd)

if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq -o DPkg::Lock::Timeout=600 \
    --no-install-recommends "${need[@]}" >/dev/null
fi

# -Zbuild-std compiles std for the win7 target from the rust-src component.
nightly=${WIN7_TOOLCHAIN:-nightly}
if rustup run "$nightly" rustc --version >/dev/null 2>&1 \
  && [ ! -d "$(rustup run "$nightly" rustc --print sysroot)/lib/rustlib/src/rust/library/std" ]; then
  rustup component add rust-src --toolchain "$nightly"
fi

if [ ! -d tests/browser/node_modules/playwright-core ] || [ ! -d tests/browser/node_modules/tus-js-client ]; then
  npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
fi
