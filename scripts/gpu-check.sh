#!/usr/bin/env bash
# The one-command GPU check, prepared on a machine without a GPU (see docs/GPU.md):
#   1. assembles CUDA 13.0 from NVIDIA's PyPI wheels (scripts/gpu/cuda-toolkit.sh), once;
#   2. builds a release `enclave` with `--features cuda` (candle's kernels for compute
#      capability CUDA_COMPUTE_CAP, default 90: H100/H200), strips and compresses it;
#   3. packs llama.cpp's source (the peer, built with CUDA on the GPU machine);
#   4. runs the CPU half: the CUDA binary starts here and passes `selftest --device cpu`.
# Everything the GPU machine needs lands in .gpu/ (git-ignored, under 64 MiB); there, run
#   scripts/gpu/device-run.sh OUT_DIR
# (about 6 minutes: self-test on CUDA, Llama-3-8B-shaped models in Q4_K_M and F16 served by
# Enclave and by llama.cpp at 1-128 streams, TTFT of a 2,000-token prompt, report.json).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v xz >/dev/null || { echo "gpu-check: xz is needed (apt-get install xz-utils)" >&2; exit 1; }
cuda=$(scripts/gpu/cuda-toolkit.sh "${ENCLAVE_CUDA_ROOT:-$HOME/.cache/enclave/cuda-13.0}")
export CUDA_PATH=$cuda PATH="$cuda/bin:$PATH" CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/enclave/target}
echo "gpu-check: building enclave --features cuda (compute capability $CUDA_COMPUTE_CAP, CUDA at $cuda)..." >&2
cargo build --release --features cuda --bin enclave
mkdir -p .gpu
# The GPU machine takes 64 MiB in all (the repository included): xz's strongest setting
# brings the 330 MB stripped binary to about 56 MB.
strip -o .gpu/enclave "$CARGO_TARGET_DIR/release/enclave"
xz -9e -T0 -f .gpu/enclave
# The peer's source: LLAMA_CPP_SRC, or the llama-cpp-python sdist's copy the CPU benchmarks use.
src=${LLAMA_CPP_SRC:-$HOME/.cache/enclave-peer/llama-cpp-python-0.3.36/vendor/llama.cpp}
if [ ! -f "$src/CMakeLists.txt" ]; then
  sdist=$(mktemp -d)
  python3 -m pip download -q --no-deps --no-binary llama-cpp-python "llama-cpp-python==0.3.36" -d "$sdist" >&2
  mkdir -p "$src" && tar xzf "$sdist"/llama_cpp_python-0.3.36.tar.gz -C "$sdist"
  cp -a "$sdist"/llama_cpp_python-0.3.36/vendor/llama.cpp/. "$src"/
fi
# What a CUDA llama-server build reads (4 MB compressed): no other GPU backend, no web UI
# sources (the server is started with --no-webui), no models or tests.
(
  cd "$src/.."
  find llama.cpp/CMakeLists.txt llama.cpp/cmake llama.cpp/ggml llama.cpp/src llama.cpp/include llama.cpp/common \
    llama.cpp/tools llama.cpp/vendor llama.cpp/app llama.cpp/licenses llama.cpp/LICENSE llama.cpp/scripts/ui-assets.cmake \
    -type f 2>/dev/null \
    | grep -Ev 'ggml/src/ggml-(virtgpu|cann|openvino|webgpu|et|metal|hexagon|sycl|vulkan|opencl|zdnn|musa|hip|kompute|zendnn)/|tools/ui/.+/|tools/ui/[^/]*$|\.gguf$|/build/' \
    >"$OLDPWD/.gpu/llama-files.txt"
  echo llama.cpp/tools/ui/CMakeLists.txt >>"$OLDPWD/.gpu/llama-files.txt"
  ls llama.cpp/tools/ui/*.in >>"$OLDPWD/.gpu/llama-files.txt"
  tar -cJf "$OLDPWD/.gpu/llama.cpp.tar.xz" -T "$OLDPWD/.gpu/llama-files.txt"
)
rm -f .gpu/llama-files.txt
du -ch .gpu/* | tail -1
# The CPU half: the binary runs here (the stub stands in for the driver) and computes right.
LD_LIBRARY_PATH="$cuda/lib/stubs:$cuda/lib" "$CARGO_TARGET_DIR/release/enclave" selftest --device cpu >/dev/null
echo "gpu-check: CPU half passed. On the GPU machine (with .gpu/ beside the repository): scripts/gpu/device-run.sh OUT_DIR" >&2
