//! The weights of a Llama-family model and its batched forward.

use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Tensor};
use candle_nn::ops::{rms_norm, silu};
use candle_nn::rotary_emb::{rope, rope_i};
use enclave_kernels::{ResidualAdd, RmsNorm, Rope};

use super::attention::{attend_candle, AttentionBackend};
use super::config::BatchModelConfig;
use super::linear::{MatmulBackend, QLinear};
use super::plan::{self, Plan};
use super::Batch;
use crate::engine::error::EngineError;
use crate::engine::load::tensor_types::gguf_read_error;
use crate::engine::run::kv::{KvCache, KvCacheConfig};

/// A model's weights by their GGUF names (`token_embd.weight`, `blk.0.attn_q.weight`, ...),
/// whatever the file format.
pub(crate) trait WeightSource {
    /// Whether the model has the tensor `name`.
    fn has(&self, name: &str) -> bool;
    /// The tensor `name`, on `device`.
    fn get(&mut self, name: &str, device: &Device) -> Result<QTensor, EngineError>;
}

/// The tensors of a GGUF file.
struct GgufWeights<'a, R> {
    /// The file's header.
    content: &'a Content,
    /// The file.
    reader: &'a mut R,
}

impl<R: Read + Seek> WeightSource for GgufWeights<'_, R> {
    fn has(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    fn get(&mut self, name: &str, device: &Device) -> Result<QTensor, EngineError> {
        Ok(self.content.tensor(self.reader, name, device)?)
    }
}

/// Typed reads from a [`WeightSource`] while building a model.
struct Weights<'a> {
    /// Where the tensors come from.
    source: &'a mut dyn WeightSource,
    /// Where they go.
    device: &'a Device,
}

impl Weights<'_> {
    /// A required tensor.
    fn get(&mut self, name: &str) -> Result<Arc<QTensor>, EngineError> {
        if !self.source.has(name) {
            return Err(EngineError::InvalidModel(format!("no tensor {name}")));
        }
        Ok(Arc::new(self.source.get(name, self.device)?))
    }

    /// A required vector (norm weights), in f32.
    fn vector(&mut self, name: &str) -> Result<Tensor, EngineError> {
        let device = self.device.clone();
        Ok(self.get(name)?.dequantize(&device)?)
    }

    /// An optional vector (biases, q/k norms).
    fn optional(&mut self, name: &str) -> Result<Option<Tensor>, EngineError> {
        if self.source.has(name) {
            self.vector(name).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// One transformer block.
#[derive(Debug)]
struct Layer {
    /// RMS norm before attention.
    attn_norm: Tensor,
    /// Query projection.
    wq: QLinear,
    /// Key projection.
    wk: QLinear,
    /// Value projection.
    wv: QLinear,
    /// Attention output projection.
    wo: QLinear,
    /// Query bias (Qwen2).
    q_bias: Option<Tensor>,
    /// Key bias (Qwen2).
    k_bias: Option<Tensor>,
    /// Value bias (Qwen2).
    v_bias: Option<Tensor>,
    /// Per-head RMS norm of the queries (Qwen3).
    q_norm: Option<Tensor>,
    /// Per-head RMS norm of the keys (Qwen3).
    k_norm: Option<Tensor>,
    /// RMS norm before the MLP.
    ffn_norm: Tensor,
    /// MLP gate projection (SiLU).
    gate: QLinear,
    /// MLP up projection.
    up: QLinear,
    /// MLP down projection.
    down: QLinear,
}

/// A Llama / Qwen2 / Qwen3 model whose forward runs a [`Batch`] of sequences at different
/// positions over a paged [`KvCache`]. Holds no per-sequence state: any number of
/// sequences share it.
#[derive(Debug)]
pub struct LlamaBatchModel {
    /// Hyper-parameters.
    config: BatchModelConfig,
    /// Token embeddings `[vocab, dim]`, kept quantized; rows are dequantized on lookup.
    embedding: Arc<QTensor>,
    /// The transformer blocks.
    layers: Vec<Layer>,
    /// Final RMS norm.
    norm: Tensor,
    /// Output head `[vocab, dim]` (the embeddings when the file ties them).
    output: QLinear,
    /// Rotary cosines `[max_positions, head_dim / 2]`.
    cos: Tensor,
    /// Rotary sines, same shape.
    sin: Tensor,
    /// Where the weights live.
    device: Device,
    /// Which attention implementation runs.
    attention: AttentionBackend,
    /// The KV cache's element type when chosen ([`LlamaBatchModel::set_kv_dtype`], the
    /// `kv_cache_dtype` setting), else [`LlamaBatchModel::kv_dtype`]'s default.
    kv_dtype: Option<DType>,
}

impl LlamaBatchModel {
    /// Reads the GGUF model at `path` onto `device`, with the fastest matmul kernels.
    pub fn load(path: &Path, device: &Device) -> Result<Self, EngineError> {
        Self::load_with(path, device, MatmulBackend::Fastest)
    }

    /// Reads the GGUF model at `path` onto `device`, its matrices multiplied by `matmul`.
    pub fn load_with(path: &Path, device: &Device, matmul: MatmulBackend) -> Result<Self, EngineError> {
        let mut reader = BufReader::new(File::open(path)?);
        let content = Content::read(&mut reader).map_err(|e| gguf_read_error(path, &e))?;
        Self::from_gguf(&content, &mut reader, device, matmul)
    }

    /// Reads the weights of `content` from `reader` onto `device`.
    pub fn from_gguf<R: Read + Seek>(
        content: &Content,
        reader: &mut R,
        device: &Device,
        matmul: MatmulBackend,
    ) -> Result<Self, EngineError> {
        let mut config = BatchModelConfig::from_gguf(content)?;
        let mut source = GgufWeights { content, reader };
        if source.has("rope_freqs.weight") {
            // Llama 3.1+ long-context rotary scaling: one divisor per frequency.
            let factors = source
                .get("rope_freqs.weight", &Device::Cpu)?
                .dequantize(&Device::Cpu)?;
            config.rope_freq_factors = Some(factors.flatten_all()?.to_vec1::<f32>()?);
        }
        Self::from_source(config, &mut source, device, matmul)
    }

    /// Builds the model of `config` from the weights of `source` (named as in GGUF) on
    /// `device`; the vocabulary size is read from the output head.
    pub(crate) fn from_source(
        mut config: BatchModelConfig,
        source: &mut dyn WeightSource,
        device: &Device,
        matmul: MatmulBackend,
    ) -> Result<Self, EngineError> {
        let mut w = Weights { source, device };
        let embedding = w.get("token_embd.weight")?;
        let output = if w.source.has("output.weight") {
            w.get("output.weight")?
        } else {
            embedding.clone()
        };
        let (vocab_size, _) = output.shape().dims2()?;
        config.vocab_size = vocab_size;
        let norm = w.vector("output_norm.weight")?;
        let linear = |t: Arc<QTensor>| QLinear::new(t, matmul);
        let mut layers = Vec::with_capacity(config.num_layers);
        for i in 0..config.num_layers {
            let p = format!("blk.{i}");
            let layer = Layer {
                attn_norm: w.vector(&format!("{p}.attn_norm.weight"))?,
                wq: linear(w.get(&format!("{p}.attn_q.weight"))?)?,
                wk: linear(w.get(&format!("{p}.attn_k.weight"))?)?,
                wv: linear(w.get(&format!("{p}.attn_v.weight"))?)?,
                wo: linear(w.get(&format!("{p}.attn_output.weight"))?)?,
                q_bias: w.optional(&format!("{p}.attn_q.bias"))?,
                k_bias: w.optional(&format!("{p}.attn_k.bias"))?,
                v_bias: w.optional(&format!("{p}.attn_v.bias"))?,
                q_norm: w.optional(&format!("{p}.attn_q_norm.weight"))?,
                k_norm: w.optional(&format!("{p}.attn_k_norm.weight"))?,
                ffn_norm: w.vector(&format!("{p}.ffn_norm.weight"))?,
                gate: linear(w.get(&format!("{p}.ffn_gate.weight"))?)?,
                up: linear(w.get(&format!("{p}.ffn_up.weight"))?)?,
                down: linear(w.get(&format!("{p}.ffn_down.weight"))?)?,
            };
            let (q_out, kv_out) = (
                config.num_heads * config.head_dim,
                config.num_kv_heads * config.head_dim,
            );
            if layer.wq.out_features() != q_out
                || layer.wk.out_features() != kv_out
                || layer.wv.out_features() != kv_out
            {
                return Err(EngineError::InvalidModel(format!(
                    "{p}: attention projections do not match {} heads x {} ({} key/value heads)",
                    config.num_heads, config.head_dim, config.num_kv_heads
                )));
            }
            layers.push(layer);
        }
        let output = QLinear::new(output, matmul)?;
        let (cos, sin) = rope_tables(&config, device)?;
        Ok(Self {
            config,
            embedding,
            layers,
            norm,
            output,
            cos,
            sin,
            device: device.clone(),
            attention: default_attention(device),
            kv_dtype: None,
        })
    }

    /// Hyper-parameters.
    pub fn config(&self) -> &BatchModelConfig {
        &self.config
    }

    /// Where the weights live (the KV cache must live there too).
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Every weight matrix, the output head last.
    fn matrices(&self) -> impl Iterator<Item = &QLinear> {
        self.layers
            .iter()
            .flat_map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down])
            .chain(std::iter::once(&self.output))
    }

    /// Weight matrices run by our own kernels, and all weight matrices.
    pub fn own_kernel_matrices(&self) -> (usize, usize) {
        self.matrices().fold((0, 0), |(ours, all), m| {
            (ours + usize::from(m.uses_own_kernel()), all + 1)
        })
    }

    /// Bytes the weight matrices take in memory, as their kernels read them.
    pub fn matrix_bytes(&self) -> usize {
        self.matrices().map(QLinear::size_in_bytes).sum()
    }

    /// The formats of the matrices that candle's kernels run, with their counts (`Q3K×24,
    /// Q2K×6`), or `none`: what a load log names so that a slow file explains itself.
    pub fn candle_kernel_formats(&self) -> String {
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        for m in self.matrices().filter(|m| !m.uses_own_kernel()) {
            *counts.entry(format!("{:?}", m.source_dtype())).or_default() += 1;
        }
        if counts.is_empty() {
            return "none".into();
        }
        counts
            .iter()
            .map(|(format, count)| format!("{format}×{count}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Which attention implementation runs.
    pub fn attention_backend(&self) -> AttentionBackend {
        self.attention
    }

    /// Chooses the attention implementation; [`AttentionBackend::CpuKernel`] runs on CPU
    /// only.
    pub fn set_attention_backend(&mut self, backend: AttentionBackend) -> Result<(), EngineError> {
        if backend == AttentionBackend::CpuKernel && !self.device.is_cpu() {
            return Err(EngineError::InvalidRequest(
                "the attention kernel runs on CPU only".into(),
            ));
        }
        if backend == AttentionBackend::GpuKernel && !self.device.is_cuda() {
            return Err(EngineError::InvalidRequest(
                "the GPU attention kernel runs on CUDA devices only".into(),
            ));
        }
        if backend == AttentionBackend::GpuKernel && self.kv_dtype == Some(DType::F16) {
            return Err(EngineError::InvalidRequest(GPU_KERNEL_CACHE.into()));
        }
        self.attention = backend;
        Ok(())
    }

    /// The element type of the KV cache: unless chosen, f16 under the CPU attention kernel (at
    /// many streams a decode step waits on reading the cache, and f16 halves those bytes and
    /// doubles the tokens a memory budget holds; llama.cpp's default cache type too), f32 under
    /// candle's ops (bit-identical to candle-transformers) and the GPU kernel.
    pub fn kv_dtype(&self) -> DType {
        self.kv_dtype.unwrap_or(match self.attention {
            AttentionBackend::CpuKernel => DType::F16,
            AttentionBackend::CandleOps | AttentionBackend::GpuKernel => DType::F32,
        })
    }

    /// Chooses the KV cache's element type: f32, or f16 (not under the GPU kernel).
    pub fn set_kv_dtype(&mut self, dtype: DType) -> Result<(), EngineError> {
        match dtype {
            DType::F32 => {}
            DType::F16 if self.attention != AttentionBackend::GpuKernel => {}
            DType::F16 => return Err(EngineError::InvalidRequest(GPU_KERNEL_CACHE.into())),
            other => {
                return Err(EngineError::InvalidRequest(format!(
                    "KV cache dtype {other:?}: f32 or f16 only"
                )))
            }
        }
        self.kv_dtype = Some(dtype);
        Ok(())
    }

    /// The shape of a KV cache for this model with blocks of `block_size` tokens.
    pub fn kv_config(&self, block_size: usize) -> KvCacheConfig {
        KvCacheConfig {
            num_layers: self.config.num_layers,
            num_kv_heads: self.config.num_kv_heads,
            head_dim: self.config.head_dim,
            block_size,
            dtype: self.kv_dtype(),
        }
    }

    /// Runs `batch`: writes the new tokens' keys and values into their blocks of `kv` and
    /// returns the logits `[sequences wanting logits, vocab]` (f32), in batch order, of the
    /// last new token of each sequence that wants them.
    pub fn forward(&self, batch: &Batch<'_>, kv: &mut KvCache) -> Result<Tensor, EngineError> {
        let c = &self.config;
        let plan = plan::build(batch, c, kv, self.attention, &self.cos, &self.sin, &self.device)?;
        let mut x = self.embedding.embedding(&plan.tokens)?;
        if let Some(visual) = &plan.visual {
            // Image tokens take their image's embeddings (a gather, so every value is copied
            // exactly).
            x = Tensor::cat(&[&x, &visual.embeds], 0)?.index_select(&visual.splice, 0)?;
        }
        for (index, layer) in self.layers.iter().enumerate() {
            let h = self.norm(&x, &layer.attn_norm)?;
            let attn = self.attention(index, layer, &h, &plan, kv)?;
            x = self.residual(&x, &attn)?;
            let h = self.norm(&x, &layer.ffn_norm)?;
            let gated = self.gated(layer, &h)?;
            x = self.residual(&x, &layer.down.forward(&gated)?)?;
            if let Some(features) = plan
                .visual
                .as_ref()
                .and_then(|v| v.deepstack.get(index).map(|f| (v, f)))
            {
                // DeepStack: the image tokens get the features of a shallower vision layer
                // added after this layer (text rows add zero).
                let (visual, features) = features;
                x = self.residual(&x, &features.index_select(&visual.deepstack_rows, 0)?)?;
            }
        }
        let Some(rows) = &plan.logit_rows else {
            return Ok(Tensor::zeros((0, c.vocab_size), DType::F32, &self.device)?);
        };
        let x = self.norm(&x.index_select(rows, 0)?, &self.norm)?;
        Ok(self.output.forward(&x)?)
    }

    /// Whether the CPU engine's own row-wise ops run ([`AttentionBackend::CpuKernel`]), else
    /// candle's (any device, the reference arithmetic).
    fn own_ops(&self) -> bool {
        self.attention == AttentionBackend::CpuKernel
    }

    /// RMS norm of the rows of `x` with `weight`.
    fn norm(&self, x: &Tensor, weight: &Tensor) -> candle_core::Result<Tensor> {
        let eps = self.config.rms_norm_eps;
        if self.own_ops() {
            x.apply_op2_no_bwd(weight, &RmsNorm { eps })
        } else {
            rms_norm(x, weight, eps)
        }
    }

    /// `x + y` (a residual connection).
    fn residual(&self, x: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
        if self.own_ops() {
            x.apply_op2_no_bwd(y, &ResidualAdd)
        } else {
            x + y
        }
    }

    /// `silu(h Gᵀ) * (h Uᵀ)`, the MLP's gated half: fused on our kernels under our ops,
    /// candle's SiLU otherwise.
    fn gated(&self, layer: &Layer, h: &Tensor) -> candle_core::Result<Tensor> {
        if self.own_ops() {
            QLinear::forward_gated(&layer.gate, &layer.up, h)
        } else {
            silu(&layer.gate.forward(h)?)? * layer.up.forward(h)?
        }
    }

    /// Attention of one layer over the whole batch: projections and rotary for all rows at
    /// once, KV written in one scatter, then causal attention per sequence.
    fn attention(
        &self,
        index: usize,
        layer: &Layer,
        h: &Tensor,
        plan: &Plan,
        kv: &mut KvCache,
    ) -> candle_core::Result<Tensor> {
        let c = &self.config;
        let (t, heads, kv_heads, d) = (h.dim(0)?, c.num_heads, c.num_kv_heads, c.head_dim);
        let [mut q, mut k, mut v] = QLinear::forward_many([&layer.wq, &layer.wk, &layer.wv], h)?;
        if let Some(b) = &layer.q_bias {
            q = q.broadcast_add(b)?;
        }
        if let Some(b) = &layer.k_bias {
            k = k.broadcast_add(b)?;
        }
        if let Some(b) = &layer.v_bias {
            v = v.broadcast_add(b)?;
        }
        if let Some(w) = &layer.q_norm {
            q = self.norm(&q.reshape((t * heads, d))?, w)?;
        }
        if let Some(w) = &layer.k_norm {
            k = self.norm(&k.reshape((t * kv_heads, d))?, w)?;
        }
        // Each token is its own rotary "batch" of one position: x [t, heads, 1, d] with
        // cos/sin [t, 1, d/2], so one call rotates every token at its own position.
        let rotate = |x: &Tensor, n: usize| -> candle_core::Result<Tensor> {
            if self.own_ops() {
                let rope = Rope { neox: c.rope_neox };
                return x
                    .reshape((t, n, d))?
                    .apply_op3_no_bwd(&plan.cos, &plan.sin, &rope)?
                    .reshape((t, n * d));
            }
            let x = x.reshape((t, n, 1, d))?;
            let x = if c.rope_neox {
                rope(&x, &plan.cos, &plan.sin)?
            } else {
                rope_i(&x, &plan.cos, &plan.sin)?
            };
            x.reshape((t, n * d))
        };
        let q = rotate(&q, heads)?;
        let k = rotate(&k, kv_heads)?;
        kv.write(index, &plan.write_slots, &k, &v)?;

        let (k_cache, v_cache) = kv.layer(index);
        let y = match (&plan.kernel, &plan.gpu) {
            (Some(kernel), _) => q.apply_op3_no_bwd(k_cache, v_cache, kernel)?,
            (None, Some(gpu)) if plan.seqs.is_empty() => q.apply_op3_no_bwd(k_cache, v_cache, &gpu.op)?,
            _ => {
                // Rows of [slots * kv_heads, d]: one index_select gives a sequence's keys
                // per query head, [heads, ctx, d], as candle-transformers lays them out.
                let rows = k_cache.dim(0)? * kv_heads;
                let (k_rows, v_rows) = (k_cache.reshape((rows, d))?, v_cache.reshape((rows, d))?);
                let mut outputs = Vec::with_capacity(plan.seqs.len() + 1);
                if let Some(gpu) = &plan.gpu {
                    // The decode tokens first, in one launch; `gpu.order` puts the rows back.
                    let rows = gpu.rows.as_ref().expect("rows when prompt chunks are beside");
                    outputs.push(q.index_select(rows, 0)?.apply_op3_no_bwd(k_cache, v_cache, &gpu.op)?);
                }
                for seq in &plan.seqs {
                    let ctx = seq.ctx_len;
                    let head_rows = seq.head_rows.as_ref().expect("built for candle ops");
                    let per_head = |cache: &Tensor| -> candle_core::Result<Tensor> {
                        cache
                            .index_select(head_rows, 0)?
                            .reshape((heads, ctx, d))?
                            .to_dtype(DType::F32)
                    };
                    let q = q.narrow(0, seq.offset, seq.len)?;
                    outputs.push(attend_candle(
                        &q,
                        &per_head(&k_rows)?,
                        &per_head(&v_rows)?,
                        seq.mask.as_ref(),
                        heads,
                        d,
                    )?);
                }
                let y = if outputs.len() == 1 {
                    outputs.pop().expect("one output")
                } else {
                    Tensor::cat(&outputs, 0)?
                };
                match plan.gpu.as_ref().and_then(|gpu| gpu.order.as_ref()) {
                    Some(order) => y.index_select(order, 0)?,
                    None => y,
                }
            }
        };
        layer.wo.forward(&y)
    }
}

/// Why an f16 KV cache and the GPU attention kernel do not go together.
const GPU_KERNEL_CACHE: &str = "the GPU attention kernel reads an f32 KV cache only";

/// The attention a model on `device` runs unless told otherwise: the CPU kernel on the CPU;
/// on CUDA candle's ops, or the GPU kernel with `ENCLAVE_CUDA_ATTENTION=kernel` (2.2x the
/// throughput at 32 streams on an H200, but slower alone and not yet checked against the CPU
/// on a GPU: see docs/BENCHMARKS.md).
fn default_attention(device: &Device) -> AttentionBackend {
    if device.is_cpu() {
        AttentionBackend::CpuKernel
    } else if device.is_cuda() && std::env::var("ENCLAVE_CUDA_ATTENTION").as_deref() == Ok("kernel") {
        AttentionBackend::GpuKernel
    } else {
        AttentionBackend::CandleOps
    }
}

/// The rotary tables `[max_positions, head_dim / 2]`, computed with the same candle ops as
/// the reference implementations so that the values match bit for bit.
fn rope_tables(config: &BatchModelConfig, device: &Device) -> candle_core::Result<(Tensor, Tensor)> {
    let inv_freq = config.rope_inv_freq();
    let half = inv_freq.len();
    let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
    let positions = Tensor::arange(0, config.max_positions as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((config.max_positions, 1))?;
    let angles = positions.matmul(&inv_freq)?;
    Ok((angles.cos()?, angles.sin()?))
}
