#!/usr/bin/env python3
"""Serving benchmark of the GPU check (scripts/gpu/device-run.sh): starts one server
(Enclave or llama.cpp's llama-server) on one model, streams OpenAI chat completions at
several concurrency levels and measures aggregate decode tokens/s, each stream's decode
tokens/s, and the time to first token of a long prompt. Writes one JSON object.

Needs Python 3.9+ and aiohttp (both on the GPU machine's image). Every level has a deadline:
a slow server gives partial figures (tokens received over the time taken), not a hang.
"""
import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import aiohttp

WORDS = (
    "river garden engine quiet market winter planet silver window forest letter bridge harbor "
    "candle mirror orange pencil rocket shadow temple valley wonder yellow basket castle desert "
    "empire falcon glacier island"
).split()


def prompt(i, words):
    """A question of about `words` words, unique to `i` from its first token on (no server
    can reuse a cached prefix)."""
    state = ((i + 1) * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    out = [f"Request {i}. Tell me a story about"]
    for _ in range(words):
        state ^= (state << 13) & 0xFFFFFFFFFFFFFFFF
        state ^= state >> 7
        state ^= (state << 17) & 0xFFFFFFFFFFFFFFFF
        out.append(WORDS[state % len(WORDS)])
    return " ".join(out) + "."


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, kind, binary, model, log_path, streams, context, kv_mb):
        self.kind = kind
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.headers = {}
        self.model_id = "bench" if kind == "enclave" else "model"
        self.log = open(log_path, "w")
        env = dict(os.environ)
        if kind == "enclave":
            self.dir = tempfile.mkdtemp(prefix="enclave-bench-")
            with open(os.path.join(self.dir, "models.toml"), "w") as f:
                f.write(
                    'default_chat = "bench"\n\n[[models]]\nid = "bench"\nrole = "chat"\n'
                    f'provider = "local"\npath = "{model}"\n'
                )
            # Room in the queue for every stream (the default, 64, answers 503 beyond).
            with open(os.path.join(self.dir, "enclave.toml"), "w") as f:
                f.write(f"model_queue_capacity = {max(64, 2 * streams)}\n")
            command = [
                binary, "serve", "--addr", f"127.0.0.1:{self.port}",
                "--data-dir", os.path.join(self.dir, "data"),
                "--models", os.path.join(self.dir, "models.toml"),
                "--config", os.path.join(self.dir, "enclave.toml"),
                "--max-running", str(streams), "--kv-cache-mb", str(kv_mb),
            ]
            env.update({
                "ENCLAVE_LOG": env.get("ENCLAVE_LOG", "info"),
                "ENCLAVE_RATE_LIMIT_PER_MINUTE": "0",
                "ENCLAVE_LOGIN_FAILURES_PER_MINUTE": "0",
            })
            self.ready_path = "/ready"
        else:
            command = [
                binary, "-m", model, "--host", "127.0.0.1", "--port", str(self.port),
                "-ngl", "999", "-np", str(streams), "-c", str(streams * context),
                "--jinja", "--no-webui",
            ]
            self.ready_path = "/health"
        self.started = time.perf_counter()
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True)
        self.ready_s = None

    async def wait_ready(self, session, timeout):
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} exited while starting (code {self.process.returncode})")
            try:
                async with session.get(self.base + self.ready_path) as r:
                    if r.status == 200:
                        self.ready_s = time.perf_counter() - self.started
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
        else:
            raise RuntimeError(f"{self.kind} was not ready after {timeout} s")
        if self.kind == "enclave":
            account = {"email": "bench@example.com", "username": "bench", "password": "bench-password-123"}
            async with session.post(self.base + "/api/v1/auth/register", json=account) as r:
                await r.read()
            async with session.post(self.base + "/api/v1/auth/login", json=account) as r:
                login = await r.json()
            self.headers = {"Authorization": "Bearer " + login["access_token"]}

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


async def stream_once(session, server, text, max_tokens, deadline):
    """One streamed greedy chat completion (end of sequence ignored)."""
    body = {
        "model": server.model_id,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": text},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "ignore_eos": True,
    }
    sent = time.perf_counter()
    first = last = None
    chunks = 0
    usage = None
    async with session.post(server.base + "/v1/chat/completions", json=body, headers=server.headers) as r:
        if r.status != 200:
            raise RuntimeError(f"{server.kind}: {r.status}: {(await r.text())[:300]}")
        async for raw in r.content:
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            try:
                value = json.loads(data)
            except ValueError:
                continue
            choices = value.get("choices") or []
            content = choices[0].get("delta", {}).get("content") if choices else None
            if content:
                now = time.perf_counter()
                first = first or now
                last = now
                chunks += 1
            if value.get("usage"):
                usage = value["usage"]
            if time.perf_counter() > deadline:
                break
    tokens = usage["completion_tokens"] if usage else chunks
    return {
        "ttft_s": (first - sent) if first else None,
        "tokens": tokens,
        "chunks": chunks,
        "prompt_tokens": usage["prompt_tokens"] if usage else None,
        "decode_s": (last - first) if first and last and last > first else None,
        "complete": usage is not None,
    }


async def level(session, server, streams, max_tokens, words, seconds):
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    results = await asyncio.gather(*[
        stream_once(session, server, prompt(streams * 1000 + i, words), max_tokens, deadline)
        for i in range(streams)
    ], return_exceptions=True)
    wall = time.perf_counter() - started
    errors = [str(r) for r in results if isinstance(r, Exception)]
    ok = [r for r in results if not isinstance(r, Exception)]
    tokens = sum(r["tokens"] for r in ok)
    # Each content chunk is a token or a few (a character cut across tokens waits for its end).
    per_stream = [(r["tokens"] - 1) / r["decode_s"] for r in ok if r["decode_s"] and r["chunks"] > r["tokens"] // 2]
    ttfts = [r["ttft_s"] for r in ok if r["ttft_s"] is not None]
    return {
        "streams": streams,
        "max_tokens": max_tokens,
        "aggregate_tokens_per_s": tokens / wall if wall > 0 else 0.0,
        "stream_decode_tokens_per_s_mean": statistics.mean(per_stream) if per_stream else None,
        "ttft_s_median": statistics.median(ttfts) if ttfts else None,
        "completed": sum(1 for r in ok if r["complete"]),
        "tokens": tokens,
        "wall_s": wall,
        "errors": errors[:3],
    }


async def long_prompt_ttft(session, server, target_tokens, seconds):
    """TTFT of a prompt of about `target_tokens` tokens: calibrated with one request, then the
    median of three (each unique from its first token)."""
    probe_words = 300
    probe = await stream_once(session, server, prompt(900001, probe_words), 1, time.perf_counter() + seconds)
    words = max(10, int(probe_words * target_tokens / (probe["prompt_tokens"] or target_tokens)))
    runs = []
    for i in range(3):
        runs.append(await stream_once(session, server, prompt(900100 + i, words), 1, time.perf_counter() + seconds))
    ttfts = sorted(r["ttft_s"] for r in runs if r["ttft_s"] is not None)
    return {
        "prompt_tokens": runs[0]["prompt_tokens"],
        "ttft_s_median": ttfts[len(ttfts) // 2] if ttfts else None,
        "ttft_s_all": ttfts,
    }


def gpu_memory_used_mib():
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10).stdout
        return int(out.split()[0])
    except Exception:  # no nvidia-smi: the figure is left out
        return None


async def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--kind", choices=["enclave", "llama.cpp"], required=True)
    p.add_argument("--binary", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--levels", default="1,8,32,128")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--words", type=int, default=40, help="words of each level's prompts")
    p.add_argument("--level-seconds", type=float, default=40)
    p.add_argument("--long-prompt", type=int, default=2000, help="tokens of the TTFT prompt (0: skip)")
    p.add_argument("--context", type=int, default=2560, help="context per sequence")
    p.add_argument("--kv-cache-mb", type=int, default=24576, help="Enclave's KV cache")
    p.add_argument("--ready-timeout", type=float, default=240)
    p.add_argument("--log", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    levels = [int(x) for x in args.levels.split(",") if x]
    report = {"kind": args.kind, "model": os.path.basename(args.model),
              "model_bytes": os.path.getsize(args.model), "levels": [], "errors": []}
    server = Server(args.kind, args.binary, args.model, args.log, max(levels), args.context, args.kv_cache_mb)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
    # No keep-alive: a stream cut at a level's deadline must not leave a half-read connection
    # for the next request.
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    try:
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            await server.wait_ready(session, args.ready_timeout)
            report["start_to_ready_s"] = server.ready_s
            # One short warm-up request (kernel compilation, first allocations).
            await stream_once(session, server, prompt(7, 20), 8, time.perf_counter() + 120)
            for streams in levels:
                result = await level(session, server, streams, args.max_tokens, args.words, args.level_seconds)
                result["gpu_memory_used_mib"] = gpu_memory_used_mib()
                print(json.dumps(result), flush=True)
                report["levels"].append(result)
                if result["completed"] < streams:
                    # Cut short: let the server drop the abandoned streams first.
                    await asyncio.sleep(3)
            if args.long_prompt:
                report["long_prompt"] = await long_prompt_ttft(session, server, args.long_prompt, 120)
                print(json.dumps(report["long_prompt"]), flush=True)
    except Exception as error:  # the report says what failed; the other runs go on
        report["errors"].append(f"{type(error).__name__}: {error}")
        print(f"{args.kind}: {error}", file=sys.stderr, flush=True)
    finally:
        server.stop()
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
    return 0 if not report["errors"] else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
