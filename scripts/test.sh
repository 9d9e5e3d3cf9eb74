#!/usr/bin/env bash
# Runs the whole test suite (unit tests and the integration tests, which start real server
# processes). Debug build: the numeric crates are optimised even there (see Cargo.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --all-targets "$@"
