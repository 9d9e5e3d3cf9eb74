#!/usr/bin/env bash
# The GPU half of the GPU check: runs ON the GPU machine, from the repository root, with the
# bundle that scripts/gpu-check.sh built here in .gpu/ (the CUDA `enclave`, compressed, and
# llama.cpp's source). Leaves in OUT_DIR results.tar.gz (brought up to date after every
# stage, so a run cut short keeps what finished), and at the end report.json and summary.txt.
# The archive holds:
#   gpu.txt           the GPU, driver and CUDA libraries found
#   selftest.json     `enclave selftest --device cuda`: logits against the CPU, greedy output
#                     alone and batched
#   enclave-*.json    serving figures of Enclave on the random-weight Llama-3-8B-shaped model
#                     (Q4_K_M and F16): aggregate tokens/s at 1/8/32/128 streams, each
#                     stream's decode tokens/s, TTFT of a 2,000-token prompt
#   llama.cpp-*.json  the same for llama.cpp built with CUDA here, in the same run
#   report.json       all of it, with the bandwidth limit of each figure
# Every stage goes on when another fails; the whole run keeps under about 6 minutes.
# Usage: scripts/gpu/device-run.sh OUT_DIR [stages], stages a comma list of
# selftest,enclave-q4,enclave-q4-kernel,enclave-f16,llama-q4,llama-f16 (default: all;
# enclave-q4-kernel: Enclave with its GPU attention kernel, ENCLAVE_CUDA_ATTENTION=kernel).
# For a dry run of the flow elsewhere: ENCLAVE_GPU_BINARY=an enclave build to use instead of
# the bundle's, ENCLAVE_GPU_SHAPE=small (default llama3-8b), ENCLAVE_GPU_DEVICE=cpu (default cuda),
# LLAMA_SERVER=a built llama-server.
set -uo pipefail
cd "$(dirname "$0")/../.."
results=${1:?usage: scripts/gpu/device-run.sh OUT_DIR [stages]}
stages=${2:-selftest,enclave-q4,enclave-q4-kernel,enclave-f16,llama-q4,llama-f16}
work=/tmp/enclave-gpu
out=$work/out
mkdir -p "$results" "$out" "$work/models"
t0=$(date +%s)
# Each message also brings the archive up to date (the GPU machine returns few files).
say() { tar -C "$out" -czf "$results/results.tar.gz" . 2>/dev/null; echo "[$(( $(date +%s) - t0 ))s] $*"; }
want() { [[ ",$stages," == *",$1,"* ]]; }

say "the GPU"
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap,clocks.max.sm,clocks.max.mem --format=csv | tee "$out/gpu.txt"

# llama.cpp with CUDA, built while Enclave is measured (16 cores; the GPU is not used).
if [ -n "${LLAMA_SERVER:-}" ]; then
  mkdir -p "$work/llama-build/bin" && cp "$LLAMA_SERVER" "$work/llama-build/bin/llama-server"
elif want llama-q4 || want llama-f16; then
  (
    set -e
    tar -C "$work" -xJf .gpu/llama.cpp.tar.xz
    cmake -S "$work/llama.cpp" -B "$work/llama-build" -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON \
      -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
      -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
    nice -n 10 cmake --build "$work/llama-build" --target llama-server -j 14
  ) >"$out/llama-build.log" 2>&1 &
  llama_build=$!
fi

# The CUDA libraries Enclave was linked against (CUDA 13: cuBLAS, cuRAND, NVRTC, the
# runtime), from the image's toolkit or its Python wheels.
roots="/usr/local /opt $(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null)"
libdirs=$(find $roots \( -name 'libcublas.so.13' -o -name 'libcurand.so.10' -o -name 'libnvrtc.so.13' -o -name 'libcudart.so.13' \) \
  2>/dev/null | xargs -r -n1 dirname | sort -u | tr '\n' ':')
export LD_LIBRARY_PATH="${libdirs}${LD_LIBRARY_PATH:-}"
if [ -n "${ENCLAVE_GPU_BINARY:-}" ]; then
  cp "$ENCLAVE_GPU_BINARY" "$work/enclave"
else
  python3 -c "import lzma,shutil; shutil.copyfileobj(lzma.open('.gpu/enclave.xz'), open('$work/enclave','wb'))"
fi
chmod +x "$work/enclave"
{ echo "library folders: $libdirs"; ldd "$work/enclave" | grep -E 'cuda|cublas|curand|nvrtc|not found'; } | tee -a "$out/gpu.txt"

# The device's copy bandwidth, the ceiling of a memory-bound decode.
python3 - "$out/bandwidth.json" <<'EOF' || true
import json, sys, torch
x = torch.empty(4 << 30, dtype=torch.uint8, device="cuda"); y = torch.empty_like(x)
for _ in range(3): y.copy_(x)
torch.cuda.synchronize(); s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
s.record()
for _ in range(10): y.copy_(x)
e.record(); torch.cuda.synchronize()
gbs = 2 * 10 * x.numel() / (s.elapsed_time(e) / 1000) / 1e9
print(f"device copy: {gbs:.0f} GB/s (read + write)")
json.dump({"copy_read_plus_write_gb_per_s": gbs}, open(sys.argv[1], "w"))
EOF

if want selftest; then
  say "enclave selftest --device ${ENCLAVE_GPU_DEVICE:-cuda}"
  timeout 120 "$work/enclave" selftest --device "${ENCLAVE_GPU_DEVICE:-cuda}" --json "$out/selftest.json" >/dev/null 2>"$out/selftest.log"
  echo "selftest exit $?"; tail -5 "$out/selftest.log"
  python3 -c "import json; r=json.load(open('$out/selftest.json')); [print(('PASS ' if c['passed'] else 'FAIL ')+c['name'], json.dumps(c['figures'])) for c in r['checks']]" 2>/dev/null
fi

bench() { # KIND BINARY MODEL NAME LEVELS
  say "$1 on $4 ($5 streams)"
  timeout 150 python3 scripts/gpu/serve_bench.py --kind "$1" --binary "$2" --model "$3" --levels "$5" \
    --level-seconds 25 --log "$out/$1-$4.log" --out "$out/$1-$4.json" | tail -n 8
}

# Enclave's stages while llama.cpp builds (about 5 minutes on 16 cores), then llama.cpp's.
shape=${ENCLAVE_GPU_SHAPE:-llama3-8b}
q4=$work/models/$shape-q4_k_m.gguf
f16=$work/models/$shape-f16.gguf
if want enclave-q4 || want llama-q4 || want enclave-q4-kernel; then
  say "writing the $shape-shaped Q4_K_M model"
  "$work/enclave" synth-model --shape "$shape" --weights q4_k_m "$q4" | tee -a "$out/models.txt"
fi
want enclave-q4 && bench enclave "$work/enclave" "$q4" q4_k_m 1,8,32,128
want enclave-q4-kernel && ENCLAVE_CUDA_ATTENTION=kernel bench enclave "$work/enclave" "$q4" q4_k_m-gpu-kernel 1,8,32
if want enclave-f16 || want llama-f16; then
  say "writing the $shape-shaped F16 model"
  "$work/enclave" synth-model --shape "$shape" --weights f16 "$f16" | tee -a "$out/models.txt"
fi
want enclave-f16 && bench enclave "$work/enclave" "$f16" f16 1,32
server="$work/llama-build/bin/llama-server"
if [ -n "${llama_build:-}" ]; then
  say "waiting for llama.cpp's build"
  wait "$llama_build"; echo "llama.cpp build exit $?"; tail -3 "$out/llama-build.log"
fi
want llama-q4 && [ -x "$server" ] && bench llama.cpp "$server" "$q4" q4_k_m 1,8,32,128
want llama-f16 && [ -x "$server" ] && bench llama.cpp "$server" "$f16" f16 1,32

say "report"
python3 scripts/gpu/report.py "$out" | tee "$out/summary.txt"
cp "$out/report.json" "$out/summary.txt" "$results/" 2>/dev/null
say "done"
