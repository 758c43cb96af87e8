#!/usr/bin/env bash
# Builds Garage (the S3 store the S3-backend tests and benchmarks run against)
# once and keeps it in a cache outside the checkout, so a clean clone finds it
# again: ${MULTISERVER_UPLOAD_CACHE:-~/.cache/multiserver-upload}/garage-<version>.
# Prints the path of the binary. A cold build takes about 20 minutes on 2 cores.
set -euo pipefail
version=${GARAGE_VERSION:-2.5.0}
cache=${MULTISERVER_UPLOAD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/multiserver-upload}
root="$cache/garage-$version"
bin="$root/bin/garage"
if [ ! -x "$bin" ]; then
  mkdir -p "$cache"
  # Only what the tests use: the S3 API on the LMDB metadata engine.
  cargo install garage --version "$version" --locked --root "$root.partial" \
    --no-default-features --features bundled-libs,lmdb >&2
  rm -rf "$root"
  mv "$root.partial" "$root"
fi
echo "$bin"
