//! Causal attention of every new token over its own sequence's blocks.
//!
//! Two implementations of the same math:
//! - [`AttentionBackend::CpuKernel`]: one custom op over the whole batch
//!   ([`enclave_kernels::PagedAttention`]) that reads K and V
//!   in place from the cache. Each (token, head) pair is computed on its own, in a fixed
//!   order that depends only on the token's position, so a sequence's logits do not depend on
//!   the batch nor on how its prompt was cut into chunks. No gather, no repeated keys.
//! - [`AttentionBackend::CandleOps`]: candle ops per sequence (`index_select` of its keys
//!   per query head, matmul, softmax, matmul), laid out exactly as candle-transformers'
//!   `quantized_llama` does, so it matches that reference bit for bit. Runs on any device.
//!   gemm's summation order depends on the matrix shapes, so a prompt cut into other chunks
//!   gives last-bit differences (which 8-bit activation quantization over many layers can
//!   amplify to visible logit differences).
//! - [`AttentionBackend::GpuKernel`] (CUDA): every single-token entry of the batch (the decode
//!   steps) in one launch per layer ([`enclave_kernels::GpuPagedAttention`], K and V read in
//!   place), prompt chunks with candle ops as above (their matmuls are what a GPU does best).
//!   Without it a step of 32 decodes costs some 300 small launches per layer.

use candle_core::Tensor;
use candle_nn::ops::softmax_last_dim;

/// Which attention implementation the forward uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionBackend {
    /// The batch-wide CPU kernel (the default on CPU): exact batch and chunking independence.
    CpuKernel,
    /// candle ops, bit-identical to candle-transformers; any device (the default on CUDA).
    CandleOps,
    /// The batch-wide CUDA kernel for decode tokens, candle ops for prompt chunks
    /// (`ENCLAVE_CUDA_ATTENTION=kernel`).
    GpuKernel,
}

/// Attention of one sequence with candle ops, in candle-transformers' layout:
/// `q [n, heads * d]`, its keys and values already gathered per query head as
/// `[heads, ctx, d]`, `mask [n, ctx]` when `n > 1`. Returns `[n, heads * d]`.
pub(crate) fn attend_candle(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    heads: usize,
    d: usize,
) -> candle_core::Result<Tensor> {
    let n = q.dim(0)?;
    let q = if n == 1 {
        q.reshape((heads, 1, d))?
    } else {
        q.reshape((n, heads, d))?.transpose(0, 1)?.contiguous()?
    };
    let scores = (q.matmul(&k.t()?)? / (d as f64).sqrt())?;
    let scores = match mask {
        Some(mask) => scores.broadcast_add(mask)?,
        None => scores,
    };
    let probs = softmax_last_dim(&scores)?;
    let out = probs.matmul(v)?;
    if n == 1 {
        out.reshape((1, heads * d))
    } else {
        out.transpose(0, 1)?.contiguous()?.reshape((n, heads * d))
    }
}
