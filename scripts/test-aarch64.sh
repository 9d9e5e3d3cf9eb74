#!/usr/bin/env bash
# Cross-compiles the CPU kernels' tests for aarch64 and runs them under qemu-user: the NEON
# (dot-product) kernels against the scalar ones, bit for bit, and every accuracy test. Not part
# of CI (about 8 minutes on 2 cores, most of it building candle for the target); installs
# Debian's cross gcc and qemu-user and the Rust target when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
    sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
    sudo_if_needed apt-get install -y gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
fi
rustup target add aarch64-unknown-linux-gnu

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
# qemu's default CPU model has every extension, the dot product included.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
cargo clippy -p enclave-kernels --target aarch64-unknown-linux-gnu --all-targets -- -D warnings
cargo test -p enclave-kernels --target aarch64-unknown-linux-gnu --lib "$@"
