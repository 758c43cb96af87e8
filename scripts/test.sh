#!/usr/bin/env bash
# The test command: installs the test tools, checks formatting and lints, then
# runs every test (unit tests, integration tests against the real binary, the
# original C# client, the browser page in Chromium, nginx in front), then
# builds the Windows .exe for Server 2008 R2, checks its imports and runs a
# selection of the same integration tests against it under Wine.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-tools.sh
cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test --no-fail-fast
bash scripts/windows-build.sh
