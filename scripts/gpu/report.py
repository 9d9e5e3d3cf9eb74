#!/usr/bin/env python3
"""Gathers the GPU check's files in OUT_DIR into OUT_DIR/report.json and prints a summary:
each single-stream decode figure beside its bandwidth limit (bytes a decode step reads over
the HBM bandwidth: the datasheet's 4.8 TB/s for an H200 and the copy bandwidth measured in
the same run), and Enclave beside llama.cpp, model by model."""
import json
import os
import sys

DATASHEET_BYTES_PER_S = {"H200": 4.8e12, "H100": 3.35e12}


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def main():
    out = sys.argv[1]
    report = {"gpu": open(os.path.join(out, "gpu.txt")).read() if os.path.exists(os.path.join(out, "gpu.txt")) else None}
    bandwidth = load(os.path.join(out, "bandwidth.json")) or {}
    # A copy reads and writes every byte: the read bandwidth is about the copy figure.
    measured = bandwidth.get("copy_read_plus_write_gb_per_s")
    datasheet = next((v for k, v in DATASHEET_BYTES_PER_S.items() if report["gpu"] and k in report["gpu"]), None)
    report["bandwidth"] = {"datasheet_bytes_per_s": datasheet, "measured_copy_gb_per_s": measured}
    models = {}
    if os.path.exists(os.path.join(out, "models.txt")):
        for line in open(os.path.join(out, "models.txt")):
            try:
                m = json.loads(line)
                models[m["weights"]] = m
            except (ValueError, KeyError):
                pass
    report["models"] = models
    report["selftest"] = load(os.path.join(out, "selftest.json"))
    report["runs"] = {}
    lines = []
    if report["selftest"]:
        for check in report["selftest"]["checks"]:
            lines.append(("PASS " if check["passed"] else "FAIL ") + check["name"])
    for weights in ("q4_k_m", "f16"):
        model = models.get(weights, {})
        per_token = model.get("bytes_read_per_token")
        limit = datasheet / per_token if datasheet and per_token else None
        limit_measured = measured * 1e9 / per_token if measured and per_token else None
        runs = {}
        for kind, name in (("enclave", f"enclave-{weights}"), ("enclave/gpu-kernel", f"enclave-{weights}-gpu-kernel"),
                           ("enclave/candle-attn", f"enclave-{weights}-candle-attention"),
                           ("llama.cpp", f"llama.cpp-{weights}")):
            run = load(os.path.join(out, f"{name}.json"))
            if run:
                runs[kind] = run
        report["runs"][weights] = {"limit_tokens_per_s_datasheet": limit, "limit_tokens_per_s_measured": limit_measured,
                                   "bytes_read_per_token": per_token, **runs}
        lines.append(f"--- {model.get('shape', '?')} shape, {weights}: {per_token or 0:,} bytes read per token; "
                     f"decode limit {limit or 0:.0f} tok/s (datasheet), {limit_measured or 0:.0f} (measured copy)")
        for kind, run in runs.items():
            for level in run.get("levels", []):
                single = level["stream_decode_tokens_per_s_mean"]
                share = f" = {100 * single / limit:.0f}% of the limit" if single and limit and level["streams"] == 1 else ""
                lines.append(f"{kind:19} {level['streams']:>3} streams: {level['aggregate_tokens_per_s']:8.1f} tok/s aggregate, "
                             f"{single or 0:7.1f} tok/s per stream{share}, TTFT p50 {level['ttft_s_median'] or 0:.3f} s, "
                             f"{level['completed']}/{level['streams']} complete"
                             + (f", errors {level['errors']}" if level["errors"] else ""))
            if run.get("long_prompt"):
                lp = run["long_prompt"]
                lines.append(f"{kind:19} TTFT of a {lp['prompt_tokens']}-token prompt: {lp['ttft_s_median']} s")
            if run.get("start_to_ready_s") is not None:
                lines.append(f"{kind:19} start to ready: {run['start_to_ready_s']:.1f} s")
            if run.get("errors"):
                lines.append(f"{kind:19} errors: {run['errors']}")
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
