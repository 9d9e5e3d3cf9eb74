//! The one matmul type of the batched forward: `x [rows, in] -> x W^T [rows, out]`.
//!
//! Today candle's `QMatMul` (its CPU kernel quantizes each activation row to 8 bits, then
//! does integer dot products against the quantized weights; F32/F16 weights go through
//! gemm). A faster kernel replaces the inside of this type, nothing else.

use std::sync::Arc;

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{Module, Result, Tensor};

/// A weight matrix `[out, in]` applied to rows of activations.
#[derive(Debug)]
pub(crate) struct QLinear {
    /// candle's quantized matmul over the weight.
    inner: QMatMul,
    /// Output features.
    out_features: usize,
}

impl QLinear {
    /// Wraps a weight of shape `[out, in]` as stored in GGUF.
    pub(crate) fn new(weight: Arc<QTensor>) -> Result<Self> {
        let (out_features, _) = weight.shape().dims2()?;
        Ok(Self {
            inner: QMatMul::from_arc(weight)?,
            out_features,
        })
    }

    /// Output features.
    pub(crate) fn out_features(&self) -> usize {
        self.out_features
    }

    /// `x [rows, in]` (contiguous f32) to `[rows, out]`. Row `i` of the result depends on
    /// row `i` of `x` only, bit for bit, whatever the other rows (true of candle's quantized
    /// CPU kernels; see the batch-independence tests).
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.inner.forward(x)
    }
}
