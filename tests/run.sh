#!/usr/bin/env bash
# The test command: installs the Python readers the tests check the lake with, then runs
# every Rust test (unit and integration; the integration tests run the debug binary).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/fxpipe-target}"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r tests/requirements.txt
cargo test "$@"
