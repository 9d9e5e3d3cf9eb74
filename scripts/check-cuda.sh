#!/usr/bin/env bash
# Checks that the CUDA engine (`--features cuda`) compiles, on a machine without a GPU.
# Installs Debian's CUDA toolkit (11.8, from the non-free component) when nvcc is missing.
# CUDA 11.8 has no sm_90a target, so candle's kernels are compiled for sm_80 here unless
# CUDA_COMPUTE_CAP says otherwise; Dockerfile.cuda builds with CUDA 12 for the GPU it names.
# Separate target folder: the cuda feature rebuilds candle and everything above it.
set -euo pipefail
cd "$(dirname "$0")/.."
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v nvcc >/dev/null; then
  . /etc/os-release
  [ "${ID:-}" = debian ] || { echo "check-cuda: install the CUDA toolkit (nvcc) first" >&2; exit 1; }
  sources=/etc/apt/sources.list.d/enclave-cuda-toolkit.sources
  if [ ! -f "$sources" ]; then
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: %s %s-updates\nComponents: contrib non-free\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$VERSION_CODENAME" "$VERSION_CODENAME" | as_root tee "$sources" >/dev/null
  fi
  echo "check-cuda: installing Debian's nvidia-cuda-toolkit (about 3 GB)..." >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nvidia-cuda-toolkit >/dev/null
fi
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-80}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/enclave/target-cuda}
cargo check --features cuda --workspace --all-targets "$@"
