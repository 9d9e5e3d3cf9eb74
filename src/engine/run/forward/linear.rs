//! The one matmul type of the batched forward: `x [rows, in] -> x W^T [rows, out]`.
//!
//! On the CPU, Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0 / Q4_K / Q5_K / Q6_K / F32 / F16 / BF16 weights
//! run on our kernels ([`QuantMatrix`]: repacked once at load, each weight block reused across
//! all rows of a step); other formats (Q2_K, Q3_K, Q8_K) and other devices use candle's
//! `QMatMul`. Both compute
//! each output row from its input row alone, so a sequence's result does not depend on the
//! batch around it. Products of one input ([`QLinear::forward_many`]: query, key and value) and
//! the gated MLP pair ([`QLinear::forward_gated`]) run fused when our kernels run all of them:
//! one parallel loop and one activation quantization instead of one per product, the same
//! bits.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Module, Result, Tensor};

use enclave_kernels::{QuantMatrix, SiluMul};

/// How a [`QLinear`] multiplies.
#[derive(Debug)]
enum Kernel {
    /// Our CPU kernels.
    Ours(QuantMatrix),
    /// candle's quantized matmul (any device, any GGUF dtype).
    Candle(QMatMul),
}

/// Which implementation [`QLinear::new`] picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulBackend {
    /// Our kernels where they exist for the weights' format on this device, candle's
    /// elsewhere (the default).
    Fastest,
    /// candle's `QMatMul` everywhere: the arithmetic of candle-transformers' models, for
    /// comparisons against them.
    Candle,
}

/// A weight matrix `[out, in]` applied to rows of activations.
#[derive(Debug)]
pub(crate) struct QLinear {
    /// The implementation.
    kernel: Kernel,
    /// Output features.
    out_features: usize,
    /// The weights' dtype in the file.
    source: GgmlDType,
}

/// GGUF dtypes our CPU kernels take without widening the weights beyond f32.
fn ours_supports(dtype: GgmlDType) -> bool {
    matches!(
        dtype,
        GgmlDType::Q4_0
            | GgmlDType::Q4_1
            | GgmlDType::Q5_0
            | GgmlDType::Q5_1
            | GgmlDType::Q8_0
            | GgmlDType::Q4K
            | GgmlDType::Q5K
            | GgmlDType::Q6K
            | GgmlDType::F32
            | GgmlDType::F16
            | GgmlDType::BF16
    )
}

/// Half-precision weights as candle's f16 product takes them (`x` is cast to f16, the
/// product runs in f16 and the result is cast back). candle's CUDA `dequantize_f16` takes
/// quantized formats only: F16 and BF16 weights are widened, then narrowed.
fn half_weights(weight: &QTensor) -> Result<QMatMul> {
    Ok(QMatMul::TensorF16(
        weight.dequantize(&weight.device())?.to_dtype(DType::F16)?,
    ))
}

impl QLinear {
    /// Wraps a weight of shape `[out, in]` as stored in GGUF.
    pub(crate) fn new(weight: Arc<QTensor>, backend: MatmulBackend) -> Result<Self> {
        let (out_features, _) = weight.shape().dims2()?;
        let source = weight.dtype();
        let ours = backend == MatmulBackend::Fastest && weight.device().is_cpu() && ours_supports(weight.dtype());
        let half_on_gpu = backend == MatmulBackend::Fastest
            && !weight.device().is_cpu()
            && matches!(source, GgmlDType::F16 | GgmlDType::BF16);
        let kernel = if ours {
            Kernel::Ours(QuantMatrix::from_qtensor(&weight)?)
        } else if half_on_gpu {
            // candle widens F16 weights to f32 (twice the memory, half the speed of a
            // memory-bound decode); kept in f16, the product runs in cuBLAS's f16 GEMM.
            Kernel::Candle(half_weights(&weight)?)
        } else {
            Kernel::Candle(QMatMul::from_arc(weight)?)
        };
        Ok(Self {
            kernel,
            out_features,
            source,
        })
    }

    /// Output features.
    pub(crate) fn out_features(&self) -> usize {
        self.out_features
    }

    /// The weights' dtype in the file.
    pub(crate) fn source_dtype(&self) -> GgmlDType {
        self.source
    }

    /// Whether our kernels run this matrix.
    pub(crate) fn uses_own_kernel(&self) -> bool {
        matches!(self.kernel, Kernel::Ours(_))
    }

    /// Bytes of memory the weights take as the kernel reads them (repacked for ours).
    pub(crate) fn size_in_bytes(&self) -> usize {
        match &self.kernel {
            Kernel::Ours(matrix) => matrix.size_in_bytes(),
            Kernel::Candle(QMatMul::QTensor(weights)) => weights.storage_size_in_bytes(),
            Kernel::Candle(QMatMul::Tensor(t) | QMatMul::TensorF16(t)) => t.elem_count() * t.dtype().size_in_bytes(),
        }
    }

    /// `x [rows, in]` (f32) to `[rows, out]`. Row `i` of the result depends on row `i` of `x`
    /// only, bit for bit, whatever the other rows (see the batch-independence tests).
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match &self.kernel {
            Kernel::Ours(matrix) => matrix.forward(x),
            Kernel::Candle(matmul) => matmul.forward(x),
        }
    }

    /// Our kernels' matrix, when they run this one.
    fn ours(&self) -> Option<&QuantMatrix> {
        match &self.kernel {
            Kernel::Ours(matrix) => Some(matrix),
            Kernel::Candle(_) => None,
        }
    }

    /// `x` through each of `linears` (one input width): [`QuantMatrix::forward_many`] when our
    /// kernels run them all and `x` is f32, else each product alone; the same results either
    /// way.
    pub(crate) fn forward_many<const N: usize>(linears: [&QLinear; N], x: &Tensor) -> Result<[Tensor; N]> {
        let ours: Option<Vec<&QuantMatrix>> = linears.iter().map(|linear| linear.ours()).collect();
        let outputs = match ours {
            Some(matrices) if x.dtype() == DType::F32 => QuantMatrix::forward_many(&matrices, x)?,
            _ => linears
                .iter()
                .map(|linear| linear.forward(x))
                .collect::<Result<Vec<_>>>()?,
        };
        outputs
            .try_into()
            .map_err(|_| candle_core::Error::Msg("one output per product".into()))
    }

    /// `silu(x Gᵀ) ⊙ (x Uᵀ)` with [`enclave_kernels::SiluMul`]'s arithmetic: in one loop
    /// ([`QuantMatrix::forward_gated`]) when our kernels run both matrices and `x` is f32,
    /// else both products, then the op.
    pub(crate) fn forward_gated(gate: &QLinear, up: &QLinear, x: &Tensor) -> Result<Tensor> {
        match (gate.ours(), up.ours()) {
            (Some(gate), Some(up)) if x.dtype() == DType::F32 && gate.out_features() == up.out_features() => {
                gate.forward_gated(up, x)
            }
            _ => gate.forward(x)?.apply_op2_no_bwd(&up.forward(x)?, &SiluMul),
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn half_weights_give_the_f32_product_to_f16_precision() {
        // What a CUDA model does with F16 weights, run here on the CPU.
        let device = Device::Cpu;
        let values: Vec<f32> = (0..64 * 96).map(|i| ((i * 37 % 101) as f32 - 50.0) / 200.0).collect();
        let w = Tensor::from_vec(values, (64, 96), &device).unwrap();
        let weight = QTensor::quantize(&w, GgmlDType::F16).unwrap();
        let x = Tensor::from_vec(
            (0..3 * 96).map(|i| (i % 7) as f32 / 7.0).collect::<Vec<f32>>(),
            (3, 96),
            &device,
        )
        .unwrap();
        let want = x.matmul(&w.t().unwrap()).unwrap();
        let half = half_weights(&weight).unwrap();
        let QMatMul::TensorF16(t) = &half else {
            panic!("f16 weights")
        };
        assert_eq!((t.dtype(), t.dims()), (DType::F16, &[64, 96][..]));
        let have = half.forward(&x).unwrap();
        assert_eq!(have.dtype(), DType::F32);
        let diff = (have - &want)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let scale = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < scale * 2e-3, "{diff} vs {scale}");
    }
}
