//! The small row-wise operations of a transformer block on the CPU, as candle ops: RMS norm,
//! SiLU-gated product, and rotary embeddings at each row's own position.
//!
//! candle's versions run on rayon, beside the pool the other kernels use; on a few cores two
//! pools of spinning workers take turns badly. These run on the calling thread for small inputs
//! (a decode step) and on the kernels' pool ([`crate::pool`]) for large ones (a prefill chunk), and do
//! each row's arithmetic in a fixed order, so a row's result does not depend on the others.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape};

use super::disjoint::Disjoint;

/// Elements below which an op runs on the calling thread.
const PARALLEL_ELEMENTS: usize = 1 << 16;

/// The `T` values of a contiguous storage (an error naming `what` otherwise).
pub(crate) fn contiguous<'a, T: candle_core::WithDType>(
    storage: &'a CpuStorage,
    layout: &Layout,
    what: &str,
) -> candle_core::Result<&'a [T]> {
    let data = storage.as_slice::<T>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{what} is not contiguous"),
    }
}

/// Runs `f(row, output_row)` for every row of `out` (rows of `width`), on the calling thread
/// or, for large outputs, on the kernels' pool.
pub(crate) fn for_each_row(out: &mut [f32], width: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let rows = out.len() / width.max(1);
    if out.len() < PARALLEL_ELEMENTS || rows < 2 {
        for (r, row) in out.chunks_exact_mut(width).enumerate() {
            f(r, row);
        }
        return;
    }
    let out = Disjoint::new(out);
    crate::pool::execute_chunked(rows, |range| {
        for r in range {
            // SAFETY: each row index is handed to exactly one call, and rows do not overlap.
            let row = unsafe { out.part(r * width, width) };
            f(r, row);
        }
    });
}

/// `x / rms(x) * weight` over the last dimension: `x [.., d]`, `weight [d]`.
#[derive(Clone, Copy, Debug)]
pub struct RmsNorm {
    /// Added to the mean square.
    pub eps: f32,
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "enclave-rms-norm"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        w: &CpuStorage,
        w_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, w) = (
            contiguous::<f32>(x, x_layout, "rms norm input")?,
            contiguous::<f32>(w, w_layout, "rms norm weight")?,
        );
        let d = w.len();
        if d == 0 || x.len() % d != 0 || x_layout.dims().last() != Some(&d) {
            candle_core::bail!("rms norm: the input's last dimension is not the weight's {d}")
        }
        let mut out = vec![0f32; x.len()];
        let eps = self.eps;
        for_each_row(&mut out, d, |r, row| {
            let src = &x[r * d..(r + 1) * d];
            let sum = crate::reduce::sum_of_squares(src);
            let scale = 1.0 / (sum / d as f32 + eps).sqrt();
            for ((o, &v), &g) in row.iter_mut().zip(src).zip(w) {
                *o = v * scale * g;
            }
        });
        Ok((CpuStorage::F32(out), x_layout.shape().clone()))
    }
}

/// `silu(gate) * up`, element-wise, for two tensors of one shape.
#[derive(Clone, Copy, Debug)]
pub struct SiluMul;

impl CustomOp2 for SiluMul {
    fn name(&self) -> &'static str {
        "enclave-silu-mul"
    }

    fn cpu_fwd(
        &self,
        gate: &CpuStorage,
        gate_layout: &Layout,
        up: &CpuStorage,
        up_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        element_wise("silu-mul", (gate, gate_layout), (up, up_layout), |out, gate, up| {
            out.copy_from_slice(gate);
            crate::fast_exp::silu_mul(out, up);
        })
    }
}

/// `f(out_row, a_row, b_row)` for each row of two contiguous f32 tensors of one shape, on
/// [`for_each_row`].
fn element_wise(
    what: &str,
    (a, a_layout): (&CpuStorage, &Layout),
    (b, b_layout): (&CpuStorage, &Layout),
    f: impl Fn(&mut [f32], &[f32], &[f32]) + Sync,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let (a, b) = (
        contiguous::<f32>(a, a_layout, what)?,
        contiguous::<f32>(b, b_layout, what)?,
    );
    if a_layout.shape() != b_layout.shape() {
        candle_core::bail!("{what}: {:?} and {:?} differ", a_layout.shape(), b_layout.shape())
    }
    let width = a_layout.dims().last().copied().unwrap_or(1).max(1);
    let mut out = vec![0f32; a.len()];
    for_each_row(&mut out, width, |r, row| {
        let rows = r * width..(r + 1) * width;
        f(row, &a[rows.clone()], &b[rows]);
    });
    Ok((CpuStorage::F32(out), a_layout.shape().clone()))
}

/// `a + b` element by element (the residual adds of a transformer block), for tensors of the
/// same shape: the same additions as candle's, on the kernels' pool for a prefill chunk's
/// large ones (candle's run them on its own barrier pool, whose worker then spins beside the
/// kernels' for the second core).
#[derive(Clone, Copy, Debug)]
pub struct ResidualAdd;

impl CustomOp2 for ResidualAdd {
    fn name(&self) -> &'static str {
        "enclave-residual-add"
    }

    fn cpu_fwd(
        &self,
        a: &CpuStorage,
        a_layout: &Layout,
        b: &CpuStorage,
        b_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        element_wise("residual add", (a, a_layout), (b, b_layout), |out, a, b| {
            for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
                *o = x + y;
            }
        })
    }
}

/// Rotary embeddings, each row at its own position: `x [rows, heads, d]` with `cos, sin
/// [rows, d / 2]` (the tables at each row's position). NEOX pairs `(i, i + d/2)` or
/// interleaved pairs `(2i, 2i + 1)` (GGUF Llama).
#[derive(Clone, Copy, Debug)]
pub struct Rope {
    /// NEOX layout (else interleaved).
    pub neox: bool,
}

impl CustomOp3 for Rope {
    fn name(&self) -> &'static str {
        "enclave-rope"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        cos: &CpuStorage,
        cos_layout: &Layout,
        sin: &CpuStorage,
        sin_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x_data = contiguous::<f32>(x, x_layout, "rope input")?;
        let cos = contiguous::<f32>(cos, cos_layout, "rope cos")?;
        let sin = contiguous::<f32>(sin, sin_layout, "rope sin")?;
        let Ok((rows, heads, d)) = x_layout.shape().dims3() else {
            candle_core::bail!("rope: the input must be [rows, heads, d], got {:?}", x_layout.shape())
        };
        let half = d / 2;
        if d % 2 != 0 || cos.len() != rows * half || sin.len() != rows * half {
            candle_core::bail!("rope: the tables must be [rows, d / 2]")
        }
        let mut out = vec![0f32; x_data.len()];
        let neox = self.neox;
        for_each_row(&mut out, heads * d, |r, row| {
            let (c, s) = (&cos[r * half..(r + 1) * half], &sin[r * half..(r + 1) * half]);
            let src_row = &x_data[r * heads * d..(r + 1) * heads * d];
            for (dst, src) in row.chunks_exact_mut(d).zip(src_row.chunks_exact(d)) {
                // Each layout as its own loop over zipped slices: no index arithmetic or bounds
                // checks inside, so both vectorise (indexing pairs through one loop kept the
                // rotation scalar, 1.1% of the engine thread at 8 streams).
                if neox {
                    let (dst_a, dst_b) = dst.split_at_mut(half);
                    let (src_a, src_b) = src.split_at(half);
                    for ((((oa, ob), (&a, &b)), &c), &s) in
                        dst_a.iter_mut().zip(dst_b).zip(src_a.iter().zip(src_b)).zip(c).zip(s)
                    {
                        *oa = a * c - b * s;
                        *ob = a * s + b * c;
                    }
                } else {
                    for (((out, pair), &c), &s) in dst.chunks_exact_mut(2).zip(src.chunks_exact(2)).zip(c).zip(s) {
                        let (a, b) = (pair[0], pair[1]);
                        out[0] = a * c - b * s;
                        out[1] = a * s + b * c;
                    }
                }
            }
        });
        Ok((CpuStorage::F32(out), x_layout.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    fn tensor(values: Vec<f32>, shape: &[usize]) -> Tensor {
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    fn ramp(n: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect()
    }

    fn close(a: &Tensor, b: &Tensor) -> f32 {
        let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn the_ops_agree_with_candle_small_and_large() {
        // 3 rows (calling thread) and 700 rows (the pool).
        for rows in [3usize, 700] {
            let d = 128;
            let x = tensor(ramp(rows * d), &[rows, d]);
            let w = tensor(ramp(d).iter().map(|v| v + 3.0).collect(), &[d]);
            let ours = x.apply_op2_no_bwd(&w, &RmsNorm { eps: 1e-5 }).unwrap();
            let theirs = candle_nn::ops::rms_norm(&x, &w, 1e-5).unwrap();
            assert!(close(&ours, &theirs) < 1e-5, "rms norm, {rows} rows");

            let up = tensor(ramp(rows * d).iter().map(|v| v * 0.5).collect(), &[rows, d]);
            let ours = x.apply_op2_no_bwd(&up, &SiluMul).unwrap();
            let theirs = (candle_nn::ops::silu(&x).unwrap() * &up).unwrap();
            assert!(close(&ours, &theirs) < 1e-6, "silu-mul, {rows} rows");

            let ours = x.apply_op2_no_bwd(&up, &ResidualAdd).unwrap();
            assert_eq!(close(&ours, &(&x + &up).unwrap()), 0.0, "residual add, {rows} rows");

            let heads = 2;
            let x3 = tensor(ramp(rows * heads * d), &[rows, heads, d]);
            let angles: Vec<f32> = (0..rows * d / 2).map(|i| i as f32 * 0.01).collect();
            let cos = tensor(angles.iter().map(|a| a.cos()).collect(), &[rows, d / 2]);
            let sin = tensor(angles.iter().map(|a| a.sin()).collect(), &[rows, d / 2]);
            for neox in [true, false] {
                let ours = x3.apply_op3_no_bwd(&cos, &sin, &Rope { neox }).unwrap();
                // candle's: each row as a batch of one position.
                let x4 = x3.reshape((rows, heads, 1, d)).unwrap();
                let (c, s) = (
                    cos.reshape((rows, 1, d / 2)).unwrap(),
                    sin.reshape((rows, 1, d / 2)).unwrap(),
                );
                let theirs = if neox {
                    candle_nn::rotary_emb::rope(&x4, &c, &s).unwrap()
                } else {
                    candle_nn::rotary_emb::rope_i(&x4, &c, &s).unwrap()
                };
                assert_eq!(
                    close(&ours, &theirs.reshape((rows, heads, d)).unwrap()),
                    0.0,
                    "rope {neox}"
                );
            }
        }
    }
}
