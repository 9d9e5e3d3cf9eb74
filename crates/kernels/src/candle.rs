//! [`QuantMatrix`] as a candle op, so that model code can use it where it used `QMatMul`.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Module, Result, Shape, Tensor};

use super::matrix::QuantMatrix;

impl QuantMatrix {
    /// `x Wᵀ` for a CPU tensor `x` of shape `[.., in_features]`: the result has shape
    /// `[.., out_features]` and `x`'s dtype (F16 and BF16 inputs are computed in f32).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !x.device().is_cpu() {
            candle_core::bail!("QuantMatrix runs on the CPU, the input is on {:?}", x.device());
        }
        let dtype = x.dtype();
        let y = x.to_dtype(DType::F32)?.contiguous()?.apply_op1_no_bwd(self)?;
        y.to_dtype(dtype)
    }
}

impl Module for QuantMatrix {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        QuantMatrix::forward(self, xs)
    }
}

impl CustomOp1 for QuantMatrix {
    fn name(&self) -> &'static str {
        "enclave-quant-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("QuantMatrix: the input is not contiguous ({layout:?})");
        };
        let dims = layout.shape().dims();
        let (&k, batch) = dims
            .split_last()
            .ok_or_else(|| candle_core::Error::Msg("QuantMatrix: a scalar input".into()))?;
        if k != self.in_features() {
            candle_core::bail!(
                "QuantMatrix: the input ends in {k} values, the weights take {}",
                self.in_features()
            );
        }
        let x = &storage.as_slice::<f32>()?[start..end];
        let m: usize = batch.iter().product();
        let mut out = vec![0f32; m * self.out_features()];
        self.matmul(x, m, &mut out);
        let mut shape = batch.to_vec();
        shape.push(self.out_features());
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }
}
