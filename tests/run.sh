#!/usr/bin/env bash
# The test command: installs the Python readers the tests check the lake with, then runs
# every Rust test (unit and integration; the integration tests run the debug binary).
# It builds where `cargo run` builds (cargo's default ./target, or CARGO_TARGET_DIR when set), so
# the README's `cargo run -- quickstart` followed by this script compiles fxpipe once.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r tests/requirements.txt
# tests/html_report.rs renders the HTML credit report in Debian's Chromium, driven by Playwright
# (never `playwright install`: no browser download outside the system packages); tests/repl.rs
# types into the SQL shell through tmux. Installed once; where they cannot be (not root, no apt),
# those tests say they are skipped, and FXPIPE_TEST_REQUIRE_BROWSER=1 / FXPIPE_TEST_REQUIRE_TMUX=1
# (.ci/run) make that a failure.
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v tmux >/dev/null || missing+=(tmux)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; } ||
            echo "could not install ${missing[*]}: the tests that need them will be skipped" >&2
    else
        echo "no ${missing[*]} and no root apt-get to install them: the tests that need them will be skipped" >&2
    fi
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# The cluster tests start the scheduler and executor binaries of the workspace.
cargo build --workspace --bins 2>&1 | tee "$log" || status=$?
cargo test "$@" 2>&1 | tee -a "$log" || status=$?
# The S3 tests give fxpipe this secret key (tests/common/moto.rs) and capture its trace logs:
# it must appear nowhere in the run's output (a failing test prints what fxpipe printed).
# The same for the Open Exchange Rates key the ingest tests use (tests/common/oxr.rs).
for secret in \
    "$(sed -n 's/^pub const SECRET_KEY: &str = "\(.*\)";$/\1/p' tests/common/moto.rs)" \
    "$(sed -n 's/^pub const KEY: &str = "\(.*\)";$/\1/p' tests/common/oxr.rs)"; do
    if [ -z "$secret" ]; then
        echo "a test secret could not be read from tests/common" >&2
        status=1
    elif grep -qF "$secret" "$log"; then
        echo "a test secret key appears in the test output" >&2
        status=1
    fi
done
# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
