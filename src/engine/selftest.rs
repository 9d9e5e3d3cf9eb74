//! `enclave selftest`: does the engine compute right on this machine's device? Two checks,
//! on generated models (no download), that a user or a GPU check runs in seconds:
//!
//! - **Logits against the CPU.** For each model, the logits of a prompt and of eight
//!   teacher-forced decode steps on the device, against candle's CPU arithmetic (the
//!   arithmetic of candle-transformers' models). The figure is the relative RMS error,
//!   `rms(device - cpu) / rms(cpu)` of each step's logits, worst step reported; it passes under
//!   [`LOGIT_TOLERANCE`]. Quantized matmuls quantize their activations (to 8 bits on our CPU
//!   kernels and in candle's CUDA kernels, each its own way), so the two sides differ by a
//!   few tenths of a percent to about a percent; a wrong kernel gives errors of order one.
//! - **Greedy output alone and batched.** Sixteen requests of different lengths, first one at
//!   a time, then all together through the continuous-batching scheduler: every answer must
//!   be the same, token for token. On the CPU the engine guarantees it (its attention and
//!   matmuls do not depend on the batch); on a GPU, where a one-row and a many-row matmul
//!   are different kernels, this check says whether it holds.
//!
//! On the CPU (`--device cpu`) the first check compares our kernels with candle's. On CUDA
//! every check runs twice: with candle's attention ops (the default there) and with the GPU
//! attention kernel (which takes the decode steps; prompts stay on candle's ops).

use std::path::Path;
use std::time::Instant;

use candle_core::quantized::GgmlDType;
use candle_core::Device;
use serde::Serialize;

use crate::engine::load::loader::select_device;
use crate::engine::run::forward::{AttentionBackend, Batch, LlamaBatchModel, MatmulBackend};
use crate::engine::run::kv::KvCache;
use crate::engine::synthetic::{write_synthetic_model, SyntheticShape, SyntheticWeights};
use crate::engine::tiny::{self, TinyArchitecture, TinyShape};
use crate::engine::{
    load, read_to_end, DeviceChoice, EngineError, GenerateEvent, GenerateRequest, LoadProgress, LocalModelConfig,
};
use crate::generation::GenerationParams;

/// The largest relative RMS logit error that passes.
pub const LOGIT_TOLERANCE: f32 = 0.05;

/// What the self-test found.
#[derive(Clone, Debug, Serialize)]
pub struct SelfTestReport {
    /// The device the engine ran on (`Cpu`, `Cuda(..)`).
    pub device: String,
    /// Whether every check passed.
    pub passed: bool,
    /// Each check.
    pub checks: Vec<CheckReport>,
}

/// One check's result.
#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    /// What was checked, on which model.
    pub name: String,
    /// Whether it held.
    pub passed: bool,
    /// The figures behind the verdict.
    pub figures: serde_json::Value,
}

/// Runs every check on the device `choice` names. A check that cannot run (an error on the
/// device) fails with the error in its figures; the others still run.
pub fn run_selftest(choice: DeviceChoice) -> Result<SelfTestReport, EngineError> {
    let device = select_device(choice)?;
    // On CUDA both attention implementations: candle's ops (the default) and the GPU kernel.
    let backends = if device.is_cpu() {
        vec![AttentionBackend::CpuKernel]
    } else {
        vec![AttentionBackend::CandleOps, AttentionBackend::GpuKernel]
    };
    let dir = tempfile::tempdir()?;
    let models = write_models(dir.path())?;
    let mut checks = Vec::new();
    for (name, path) in &models {
        for &backend in &backends {
            let title = format!("logits against the CPU: {name}, {backend:?}");
            checks.push(run_check(title, || logits_against_the_cpu(path, &device, backend)));
        }
    }
    // The tiny Llama: small enough that sixteen requests run in a second on any device.
    for &backend in &backends {
        let title = format!("greedy output alone and batched: {}, {backend:?}", models[0].0);
        checks.push(run_check(title, || {
            greedy_alone_and_batched(&models[0].1, choice, backend)
        }));
    }
    Ok(SelfTestReport {
        device: format!("{device:?}"),
        passed: checks.iter().all(|c| c.passed),
        checks,
    })
}

/// Runs one check: its verdict and figures, or a failure that says what went wrong.
fn run_check(name: String, check: impl FnOnce() -> Result<(bool, serde_json::Value), EngineError>) -> CheckReport {
    match check() {
        Ok((passed, figures)) => CheckReport { name, passed, figures },
        Err(error) => CheckReport {
            name,
            passed: false,
            figures: serde_json::json!({ "error": error.to_string() }),
        },
    }
}

/// The models the checks run on, written into `dir`: the tiny Llama (Q8_0), a Qwen2 with
/// K-quant weights and the real 151,936-token vocabulary, and the synthetic Llama in Q4_K_M
/// and F16.
fn write_models(dir: &Path) -> Result<Vec<(String, std::path::PathBuf)>, EngineError> {
    let tiny_llama = dir.join("tiny-llama-q8_0.gguf");
    tiny::write_tiny_llama(&tiny_llama, 42)?;
    let qwen = dir.join("tiny-qwen2-q4_k-151936.gguf");
    {
        let shape = TinyShape {
            dim: 256,
            ffn: 512,
            heads: 4,
            kv_heads: 2,
            weights: GgmlDType::Q4K,
            layers: 2,
            vocab: 151_936,
            tied: true,
            context: tiny::CONTEXT_LENGTH,
        };
        tiny::write_tiny_model_with(&qwen, 7, TinyArchitecture::Qwen2, &shape)?;
    }
    let mut models = vec![
        ("tiny-llama-q8_0".to_owned(), tiny_llama),
        ("tiny-qwen2-q4_k-151936".to_owned(), qwen),
    ];
    for (weights, name) in [
        (SyntheticWeights::Q4KM, "synthetic-llama-q4_k_m"),
        (SyntheticWeights::F16, "synthetic-llama-f16"),
    ] {
        let path = dir.join(format!("{name}.gguf"));
        write_synthetic_model(&path, &SyntheticShape::SMALL, weights, 5)?;
        models.push((name.to_owned(), path));
    }
    Ok(models)
}

/// Logits of `prompt` (one forward), then of each of `decode` fed one at a time.
fn teacher_forced_logits(
    model: &LlamaBatchModel,
    prompt: &[u32],
    decode: &[u32],
) -> Result<Vec<Vec<f32>>, EngineError> {
    let total = prompt.len() + decode.len();
    let mut kv = KvCache::with_blocks(model.kv_config(16), total.div_ceil(16), model.device())?;
    let mut table = kv.new_table();
    kv.reserve(&mut table, total)
        .map_err(|e| EngineError::Failed(format!("the self-test's KV cache: {e:?}")))?;
    let mut run = |tokens: &[u32], start: usize| -> Result<Vec<f32>, EngineError> {
        let mut batch = Batch::new();
        batch.push(tokens, start, &table, true);
        let logits = model.forward(&batch, &mut kv)?;
        Ok(logits.flatten_all()?.to_device(&Device::Cpu)?.to_vec1::<f32>()?)
    };
    let mut out = vec![run(prompt, 0)?];
    for (step, &token) in decode.iter().enumerate() {
        out.push(run(&[token], prompt.len() + step)?);
    }
    Ok(out)
}

/// `rms(a - b) / rms(b)`.
fn relative_rms_error(a: &[f32], b: &[f32]) -> f32 {
    let diff: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    let base: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    (diff / base.max(f64::MIN_POSITIVE)).sqrt() as f32
}

fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f32::MIN), |best, (i, &v)| if v > best.1 { (i, v) } else { best })
        .0
}

/// The first check (see the module docs) on one model, with `backend`'s attention.
fn logits_against_the_cpu(
    path: &Path,
    device: &Device,
    backend: AttentionBackend,
) -> Result<(bool, serde_json::Value), EngineError> {
    let prompt: Vec<u32> = (0..40).map(|i| 3 + (i * 37 + 11) % 200).collect();
    let decode: Vec<u32> = (0..8).map(|i| 3 + (i * 53 + 5) % 200).collect();
    let mut reference = LlamaBatchModel::load_with(path, &Device::Cpu, MatmulBackend::Candle)?;
    reference.set_attention_backend(AttentionBackend::CandleOps)?;
    let want = teacher_forced_logits(&reference, &prompt, &decode)?;
    drop(reference);
    let started = Instant::now();
    let mut model = LlamaBatchModel::load(path, device)?;
    model.set_attention_backend(backend)?;
    let have = teacher_forced_logits(&model, &prompt, &decode)?;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let errors: Vec<f32> = have.iter().zip(&want).map(|(h, w)| relative_rms_error(h, w)).collect();
    let worst = errors.iter().copied().fold(0.0, f32::max);
    let finite = have.iter().flatten().all(|v| v.is_finite());
    let same_argmax = have.iter().zip(&want).filter(|(h, w)| argmax(h) == argmax(w)).count();
    Ok((
        finite && worst <= LOGIT_TOLERANCE,
        serde_json::json!({
            "worst_relative_rms_error": worst,
            "prefill_relative_rms_error": errors[0],
            "tolerance": LOGIT_TOLERANCE,
            "steps": errors.len(),
            "same_argmax_steps": same_argmax,
            "all_finite": finite,
            "vocab": want[0].len(),
            "attention": format!("{backend:?}"),
            "load_and_run_ms": elapsed_ms,
        }),
    ))
}

/// The second check (see the module docs), on the tiny model at `path`.
fn greedy_alone_and_batched(
    path: &Path,
    choice: DeviceChoice,
    backend: AttentionBackend,
) -> Result<(bool, serde_json::Value), EngineError> {
    let mut config = LocalModelConfig::from_path("selftest", path);
    config.device = choice;
    config.attention = Some(backend);
    let engine = load(&config, &LoadProgress::new())?;
    let requests: Vec<GenerateRequest> = (0..16u64)
        .map(|i| GenerateRequest {
            images: Vec::new(),
            prompt_tokens: tiny::random_prompt(i, 5 + (i as usize * 11) % 57),
            sampling: GenerationParams {
                max_tokens: Some(24 + (i as u32 * 5) % 17),
                ..GenerationParams::default()
            },
            fairness_key: String::new(),
        })
        .collect();
    let alone: Vec<_> = requests
        .iter()
        .map(|r| engine.submit(r.clone()).map(read_to_end))
        .collect::<Result<_, _>>()?;
    let receivers: Vec<_> = requests
        .iter()
        .map(|r| engine.submit(r.clone()))
        .collect::<Result<_, _>>()?;
    let together: Vec<_> = receivers.into_iter().map(read_to_end).collect();
    let stats = engine.stats();
    let finished = |(_, end): &(String, Option<GenerateEvent>)| matches!(end, Some(GenerateEvent::Finished { .. }));
    let all_finished = alone.iter().chain(&together).all(finished);
    let same = alone.iter().zip(&together).filter(|(a, b)| a == b).count();
    let first_different = alone.iter().zip(&together).position(|(a, b)| a != b);
    Ok((
        all_finished && same == requests.len(),
        serde_json::json!({
            "requests": requests.len(),
            "same_output": same,
            "first_different_request": first_different,
            "all_finished": all_finished,
            "largest_batch": stats.max_step_sequences,
            "attention": format!("{backend:?}"),
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_error_is_zero_for_equal_logits_and_grows_with_the_difference() {
        let a = [1.0, -2.0, 3.0];
        assert_eq!(relative_rms_error(&a, &a), 0.0);
        let b = [1.1, -2.0, 3.0];
        let small = relative_rms_error(&b, &a);
        let c = [2.0, -2.0, 3.0];
        assert!(small > 0.0 && relative_rms_error(&c, &a) > 5.0 * small);
    }
}
