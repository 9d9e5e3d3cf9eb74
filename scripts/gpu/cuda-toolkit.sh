#!/usr/bin/env bash
# Assembles a CUDA 13.0 toolkit for building Enclave's GPU engine from NVIDIA's wheels on PyPI
# (nvcc, the runtime, cuBLAS, cuRAND, NVRTC, their headers), once, into CACHE_DIR (default
# ~/.cache/enclave/cuda-13.0), and prints its root (for CUDA_PATH).
# Why: Debian's toolkit is CUDA 11.8, and a binary linked against it needs CUDA 11 libraries
# where it runs; GPU machines of today have a CUDA 13 driver and libraries (PyTorch's wheels
# carry them). CUDA 13.0 matches the oldest CUDA 13 driver (580), so its PTX loads there.
# The build links libcuda (the driver) through a stub made here from the symbols cudarc
# names: the real one is the GPU machine's driver, loaded at run time.
set -euo pipefail
root=${1:-$HOME/.cache/enclave/cuda-13.0}
if [ -x "$root/bin/nvcc" ] && [ -f "$root/lib/stubs/libcuda.so" ]; then echo "$root"; exit 0; fi
wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT
python3 -m pip --version >/dev/null 2>&1 || { echo "cuda-toolkit: python3 -m pip is needed" >&2; exit 1; }
python3 -m pip download -q --no-deps --only-binary=:all: -d "$wheels" \
  --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux_2_12_x86_64 --platform manylinux2010_x86_64 --python-version 3.11 \
  nvidia-cuda-nvcc==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-nvrtc==13.0.88 nvidia-cuda-cccl==13.0.85 \
  nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-curand==10.4.0.35 nvidia-cublas==13.0.2.14 >&2
for w in "$wheels"/*.whl; do python3 -m zipfile -e "$w" "$wheels/x" >/dev/null; done
rm -rf "$root" && mkdir -p "$(dirname "$root")"
cp -a "$wheels/x/nvidia/cu13" "$root"
chmod +x "$root"/bin/* "$root"/nvvm/bin/* 2>/dev/null || true
(cd "$root/lib" && for l in cublas cublasLt cudart nvrtc; do ln -sf "lib$l.so.13" "lib$l.so"; done && ln -sf libcurand.so.10 libcurand.so)
# The driver stub: every cu* function cudarc declares, returning an error.
sys=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -path '*cudarc-*/src/driver/sys/mod.rs' 2>/dev/null | sort | tail -1)
[ -n "$sys" ] || { echo "cuda-toolkit: cudarc's source is not in the cargo registry yet (run cargo fetch)" >&2; exit 1; }
mkdir -p "$root/lib/stubs"
grep -o '^pub unsafe fn cu[A-Za-z0-9_]*' "$sys" | sed 's/pub unsafe fn //' | sort -u \
  | awk '{print "int "$1"(void){return 999;}"}' >"$wheels/cuda_stub.c"
cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$root/lib/stubs/libcuda.so" "$wheels/cuda_stub.c"
ln -sf libcuda.so "$root/lib/stubs/libcuda.so.1"
echo "$root"
