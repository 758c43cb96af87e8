#!/usr/bin/env bash
# The test command: installs the test tools (and builds Garage once), checks
# formatting and lints, then runs every test (unit tests, integration tests
# against the real binary, the original C# client, the browser page in
# Chromium, nginx in front, the S3 backend against a three-node Garage), then
# builds the Windows .exe for Server 2008 R2, checks its imports and runs a
# selection of the same integration tests against it under Wine.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-tools.sh
# Garage, the S3 store of tests/s3.rs: built once into a cache outside the
# checkout (about 20 minutes cold), found again on every later run.
MULTISERVER_UPLOAD_GARAGE=$(bash scripts/install-garage.sh)
export MULTISERVER_UPLOAD_GARAGE
cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test --no-fail-fast
bash scripts/windows-build.sh
