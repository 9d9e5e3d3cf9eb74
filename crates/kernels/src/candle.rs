//! [`QuantMatrix`] as a candle op, so that model code can use it where it used `QMatMul`; and
//! its fused products ([`QuantMatrix::forward_many`], [`QuantMatrix::forward_gated`]) on
//! candle tensors.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Module, Result, Shape, Storage, Tensor};

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

    /// `x Wᵢᵀ` for each of `matrices` (one input width) and a CPU tensor `x [.., in_features]`
    /// (f32): [`QuantMatrix::matmul_many`], one parallel loop and one quantization of `x` for
    /// all of them. Each result has shape `[.., out_featuresᵢ]` and the bits of
    /// [`QuantMatrix::forward`].
    pub fn forward_many(matrices: &[&QuantMatrix], x: &Tensor) -> Result<Vec<Tensor>> {
        let Some(first) = matrices.first() else {
            return Ok(Vec::new());
        };
        if matrices
            .iter()
            .any(|matrix| matrix.in_features() != first.in_features())
        {
            candle_core::bail!("QuantMatrix::forward_many: the matrices take inputs of different widths");
        }
        let (batch, m) = first.rows_of(x)?;
        let mut outs = Vec::new();
        with_f32_rows(x, |rows| outs = QuantMatrix::matmul_many_vecs(matrices, rows, m))?;
        matrices
            .iter()
            .zip(outs)
            .map(|(matrix, out)| Tensor::from_vec(out, output_shape(&batch, matrix.out_features()), x.device()))
            .collect()
    }

    /// `silu(x Gᵀ) ⊙ (x Uᵀ)` for a CPU tensor `x [.., in_features]` (f32), `self` the gate
    /// `G`: [`QuantMatrix::gated_matmul`].
    pub fn forward_gated(&self, up: &QuantMatrix, x: &Tensor) -> Result<Tensor> {
        if (self.out_features(), self.in_features()) != (up.out_features(), up.in_features()) {
            candle_core::bail!("QuantMatrix::forward_gated: the gate and up matrices differ in shape");
        }
        let (batch, m) = self.rows_of(x)?;
        let mut out = Vec::new();
        with_f32_rows(x, |rows| out = self.gated_matmul_vec(up, rows, m))?;
        Tensor::from_vec(out, output_shape(&batch, self.out_features()), x.device())
    }

    /// The leading dimensions of `x` and the rows they make, after checking that `x` is an f32
    /// CPU tensor whose rows are this matrix's inputs.
    fn rows_of(&self, x: &Tensor) -> Result<(Vec<usize>, usize)> {
        if !x.device().is_cpu() || x.dtype() != DType::F32 {
            candle_core::bail!(
                "QuantMatrix takes f32 CPU tensors, got {:?} on {:?}",
                x.dtype(),
                x.device()
            );
        }
        self.rows_of_dims(x.dims())
    }

    /// The leading dimensions of `dims` and the rows they make, after checking that the last
    /// is this matrix's input width.
    fn rows_of_dims(&self, dims: &[usize]) -> Result<(Vec<usize>, usize)> {
        let (&k, batch) = dims
            .split_last()
            .ok_or_else(|| candle_core::Error::Msg("QuantMatrix: a scalar input".into()))?;
        if k != self.in_features() {
            candle_core::bail!(
                "QuantMatrix: the input ends in {k} values, the weights take {}",
                self.in_features()
            );
        }
        Ok((batch.to_vec(), batch.iter().product()))
    }
}

/// Runs `f` on the values of the f32 CPU tensor `x`, row-major (copied first only when `x` is
/// not contiguous).
fn with_f32_rows(x: &Tensor, f: impl FnOnce(&[f32])) -> Result<()> {
    let x = x.contiguous()?;
    let (storage, layout) = x.storage_and_layout();
    let Storage::Cpu(storage) = &*storage else {
        candle_core::bail!("QuantMatrix runs on the CPU");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("QuantMatrix: the input is not contiguous ({layout:?})");
    };
    f(&storage.as_slice::<f32>()?[start..end]);
    Ok(())
}

/// `batch` followed by `columns`.
fn output_shape(batch: &[usize], columns: usize) -> Shape {
    let mut shape = batch.to_vec();
    shape.push(columns);
    Shape::from(shape)
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
        let (batch, m) = self.rows_of_dims(layout.shape().dims())?;
        let x = &storage.as_slice::<f32>()?[start..end];
        let out = self.matmul_vec(x, m);
        Ok((CpuStorage::F32(out), output_shape(&batch, self.out_features())))
    }
}
