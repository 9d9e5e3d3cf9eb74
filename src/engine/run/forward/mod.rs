//! The batched forward of the Llama family (Llama, Qwen2 with q/k/v biases, Qwen3 with q/k
//! norms) over a paged KV cache ([`crate::engine::run::kv`]).
//!
//! One [`LlamaBatchModel::forward`] runs a [`Batch`] that mixes prefill chunks and single
//! decode tokens of many sequences, each at its own position. All new tokens are flattened
//! into one `[total_tokens, dim]` activation, so every weight matmul runs once for the whole
//! batch (one pass over the weights for all sequences); only attention is per sequence
//! (rotary at each token's own position, causal attention over the sequence's cached and
//! new tokens, read from its blocks).
//!
//! Determinism: every step but attention computes each row on its own (candle's quantized
//! CPU matmul quantizes and multiplies row by row). Attention is [`AttentionBackend`]:
//! - `CpuKernel` (default on CPU): computes each (token, head) in an order fixed by the
//!   token's position alone, so a sequence's logits are bit-identical whether it runs alone
//!   or batched, and however its prompt was cut into chunks (or shared a cached prefix).
//! - `CandleOps` (any device): candle ops laid out as candle-transformers' `quantized_llama`,
//!   bit-identical to it; batch-independent too, but gemm's summation order follows the chunk
//!   length, and on a 30-layer Q4_1 model those last-bit differences grow to ~1 logit.
//!
//! What costs time (CPU): the quantized matmuls (one pass over the weights per forward,
//! whatever the batch), then attention (the kernel reads K/V in place; `CandleOps` copies
//! each sequence's keys per query head with `index_select`, `heads / kv_heads` times the
//! cache bytes), then per-op overhead: about 15 candle ops per layer, plus 6 per sequence
//! per layer with `CandleOps`.

mod attention;
mod config;
mod linear;
mod model;
mod plan;

#[cfg(test)]
mod tests;

pub use attention::AttentionBackend;
pub use config::BatchModelConfig;
pub use linear::MatmulBackend;
pub use model::LlamaBatchModel;
pub(crate) use model::WeightSource;

use crate::engine::run::kv::BlockTable;
use crate::engine::run::vision::ImageFeatures;

/// Rows of an image's features that replace the embeddings of some new tokens of an entry
/// (a prompt chunk may hold part of an image).
#[derive(Clone, Copy, Debug)]
pub struct VisualRows<'a> {
    /// The first token they replace, counted from the entry's first new token.
    pub row: usize,
    /// The image's features.
    pub features: &'a ImageFeatures,
    /// The first feature row used.
    pub from: usize,
    /// Rows used.
    pub len: usize,
}

/// One sequence's part of a [`Batch`].
#[derive(Clone, Copy, Debug)]
pub struct BatchEntry<'a> {
    /// The new tokens: a prefill chunk, or the one token of a decode step.
    pub tokens: &'a [u32],
    /// The position of the first new token (the number of tokens already in the cache).
    pub start_pos: usize,
    /// The sequence's blocks, already holding room for positions
    /// `..start_pos + tokens.len()`.
    pub block_table: &'a BlockTable,
    /// Whether the logits of the last new token are wanted (false for a prefill chunk that
    /// is not the prompt's last).
    pub wants_logits: bool,
    /// Multimodal rotary positions `[time, row, column]` of the new tokens (a model with
    /// M-RoPE); `None` for the ordinary positions `start_pos..`.
    pub positions: Option<&'a [[u32; 3]]>,
    /// Image features that replace the embeddings of some of the new tokens.
    pub visual: &'a [VisualRows<'a>],
}

/// The work of one forward: sequences, each at its own position. A sequence appears at
/// most once.
#[derive(Clone, Debug, Default)]
pub struct Batch<'a> {
    /// The sequences, in the order their logits come back.
    pub entries: Vec<BatchEntry<'a>>,
}

impl<'a> Batch<'a> {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a sequence's new tokens at `start_pos`.
    pub fn push(&mut self, tokens: &'a [u32], start_pos: usize, block_table: &'a BlockTable, wants_logits: bool) {
        self.entries.push(BatchEntry {
            tokens,
            start_pos,
            block_table,
            wants_logits,
            positions: None,
            visual: &[],
        });
    }

    /// Adds a sequence of a vision-language model: its new tokens' multimodal positions
    /// (`None`: ordinary) and the image rows among them.
    pub fn push_multimodal(
        &mut self,
        tokens: &'a [u32],
        start_pos: usize,
        block_table: &'a BlockTable,
        wants_logits: bool,
        positions: Option<&'a [[u32; 3]]>,
        visual: &'a [VisualRows<'a>],
    ) {
        self.entries.push(BatchEntry {
            tokens,
            start_pos,
            block_table,
            wants_logits,
            positions,
            visual,
        });
    }

    /// New tokens over all sequences (the rows of every matmul).
    pub fn num_tokens(&self) -> usize {
        self.entries.iter().map(|e| e.tokens.len()).sum()
    }

    /// Rows of the logits the forward returns.
    pub fn num_logits(&self) -> usize {
        self.entries.iter().filter(|e| e.wants_logits).count()
    }
}
