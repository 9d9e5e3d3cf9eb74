//! [`QuantMatrix`]: a weight matrix repacked once for the kernels, and its product with rows
//! of activations, tiled over rows and output columns and parallel over output columns.
//!
//! Several products of one input run as one parallel loop over all their column tiles, the
//! input quantized once ([`QuantMatrix::matmul_many`]: a layer's query, key and value
//! projections), and the SiLU-gated pair of an MLP writes `silu(x Gᵀ) ⊙ (x Uᵀ)` straight from
//! each tile's two results ([`QuantMatrix::gated_matmul`]): a decode step then runs three
//! loops a layer where it ran seven, and quantizes each input once. Every output is the same,
//! bit for bit, as the matrix's own product.

use std::mem::MaybeUninit;
use std::ops::Range;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Result};

use super::activations::{Q8Block, Q8Rows};
use super::disjoint::Disjoint;
use super::isa::Isa;
use super::kquants::{ScaledNibbles, TileQ6K, QK_K};
use super::packed::{FiveBits, Nibbles, Packed, TileQ8_0, QK, TILE_COLS};
use super::scalar;

/// Activation rows processed per pass over a task's weights, so that their quantized blocks
/// stay in the core's L2 cache while the weights are read again for the next rows.
const ROW_BLOCK: usize = 64;
/// Below this many multiply-adds one thread does the whole product: waking the others would
/// cost more than it saves. The pool keeps its workers spinning briefly between products, so
/// a decode step's one-row products (576 × 576 = 0.33 M for SmolLM2) gain from
/// both cores: at 2^20 they ran on one, and one stream decoded at 0.7-0.9x llama.cpp's speed;
/// at 2^18, 1.4-1.5x (docs/BENCHMARKS.md).
const PARALLEL_MACS: usize = 1 << 18;
/// Column tasks per thread, so that a thread that finishes early takes over another's work.
const TASKS_PER_THREAD: usize = 4;
/// Activation rows per micro-kernel call where the CPU has 16 vector registers (AVX2, and the
/// scalar kernels): a row's integer and float accumulators, and the unpacked weights, fill them.
const ROW_TILE: usize = 4;
/// Activation rows per micro-kernel call with AVX-512 VL's 32 vector registers: unpacking a
/// tile's weights (the nibble masks, Q5's fifth bits, Q8_0's magnitudes) is shared by twice as
/// many rows.
const WIDE_ROW_TILE: usize = 8;

/// How the weights are stored once repacked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightFormat {
    /// GGUF Q4_0 blocks: 4-bit codes, one f16 scale per 32 weights.
    Q4_0,
    /// GGUF Q4_1 blocks: 4-bit codes, an f16 scale and minimum per 32 weights.
    Q4_1,
    /// GGUF Q5_0 blocks: 5-bit codes, one f16 scale per 32 weights.
    Q5_0,
    /// GGUF Q5_1 blocks: 5-bit codes, an f16 scale and minimum per 32 weights.
    Q5_1,
    /// GGUF Q8_0 blocks: 8-bit codes, one f16 scale per 32 weights.
    Q8_0,
    /// GGUF Q4_K super-blocks: 4-bit codes, 6-bit scales and minimums per 32 weights, f16
    /// scales per 256.
    Q4K,
    /// GGUF Q5_K super-blocks: 5-bit codes, scaled as Q4_K.
    Q5K,
    /// GGUF Q6_K super-blocks: 6-bit codes, 8-bit scales per 16 weights, an f16 scale per 256.
    Q6K,
    /// Plain f32 (F32, F16 and BF16 tensors, and any dequantized one).
    F32,
}

/// A weight matrix of `out_features × in_features` (a linear layer, `y = x Wᵀ`) in the
/// kernels' layout.
///
/// Every output row is computed with the same operations whatever the number of rows and
/// whatever the other rows are (the activation row is quantized alone, then each output sums
/// its blocks in a fixed order), and the result is the same bit for bit with or without SIMD:
/// a sequence gives the same logits alone or in any batch.
#[derive(Clone, Debug)]
pub struct QuantMatrix {
    /// Outputs: rows of the weight matrix.
    n: usize,
    /// Inputs: columns of the weight matrix.
    k: usize,
    /// The dtype the weights were read in.
    source: GgmlDType,
    /// The weights in the kernels' layout.
    packed: Packed,
}

impl QuantMatrix {
    /// Repacks a 2-D `(out_features, in_features)` tensor of Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K,
    /// Q5_K, Q6_K, F32, F16 or BF16 weights (F16 and BF16 are widened to f32). Other dtypes are
    /// refused with an error that names them; [`QuantMatrix::from_qtensor_dequantized`] takes
    /// any dtype.
    pub fn from_qtensor(qtensor: &QTensor) -> Result<Self> {
        let (n, k) = qtensor.shape().dims2()?;
        let source = qtensor.dtype();
        let block = match source {
            GgmlDType::Q4_0 | GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1 | GgmlDType::Q8_0 => QK,
            GgmlDType::Q4K | GgmlDType::Q5K | GgmlDType::Q6K => QK_K,
            _ => 1,
        };
        if !k.is_multiple_of(block) {
            candle_core::bail!("QuantMatrix: {source:?} weights need in_features divisible by {block}, got {k}");
        }
        let data = qtensor.data()?;
        let Some(packed) = Packed::from_gguf(source, &data, n, k) else {
            candle_core::bail!(
                "QuantMatrix: no kernel for {source:?} weights (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K, F32, F16 \
                 and BF16 have one); QuantMatrix::from_qtensor_dequantized runs them in f32"
            );
        };
        Ok(Self { n, k, source, packed })
    }

    /// Dequantizes a 2-D tensor of any dtype to f32 weights (four bytes a weight: for the
    /// dtypes without a kernel of their own).
    pub fn from_qtensor_dequantized(qtensor: &QTensor) -> Result<Self> {
        let (n, k) = qtensor.shape().dims2()?;
        let values = qtensor.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
        Ok(Self {
            n,
            k,
            source: qtensor.dtype(),
            packed: Packed::from_f32(&values, n, k),
        })
    }

    /// f32 weights from a row-major `out_features × in_features` slice.
    pub fn from_f32(values: &[f32], out_features: usize, in_features: usize) -> Self {
        let packed = Packed::from_f32(values, out_features, in_features);
        Self {
            n: out_features,
            k: in_features,
            source: GgmlDType::F32,
            packed,
        }
    }

    /// Outputs per row (`n`).
    pub fn out_features(&self) -> usize {
        self.n
    }

    /// Inputs per row (`k`).
    pub fn in_features(&self) -> usize {
        self.k
    }

    /// How the weights are stored.
    pub fn format(&self) -> WeightFormat {
        match self.packed {
            Packed::Q4_0(_) => WeightFormat::Q4_0,
            Packed::Q4_1(_) => WeightFormat::Q4_1,
            Packed::Q5_0(_) => WeightFormat::Q5_0,
            Packed::Q5_1(_) => WeightFormat::Q5_1,
            Packed::Q8_0(_) => WeightFormat::Q8_0,
            Packed::Q4K(_) => WeightFormat::Q4K,
            Packed::Q5K(_) => WeightFormat::Q5K,
            Packed::Q6K(_) => WeightFormat::Q6K,
            Packed::F32(_) => WeightFormat::F32,
        }
    }

    /// The dtype the weights were read in.
    pub fn source_dtype(&self) -> GgmlDType {
        self.source
    }

    /// Bytes of memory the repacked weights take.
    pub fn size_in_bytes(&self) -> usize {
        self.packed.size_in_bytes()
    }

    /// `out = x Wᵀ` for `m` rows: `x` is `m × in_features` and `out` is `m × out_features`,
    /// both row-major; runs the fastest kernels of this CPU ([`Isa::detect`]).
    ///
    /// # Panics
    /// When `x` or `out` does not have the size that `m` says.
    pub fn matmul(&self, x: &[f32], m: usize, out: &mut [f32]) {
        self.matmul_with(Isa::detect(), x, m, out)
    }

    /// [`QuantMatrix::matmul`] with the kernels of `isa` (the scalar ones where this CPU lacks
    /// `isa`). Every implementation gives the same bits; this is for tests and benchmarks.
    ///
    /// # Panics
    /// When `x` or `out` does not have the size that `m` says.
    pub fn matmul_with(&self, isa: Isa, x: &[f32], m: usize, out: &mut [f32]) {
        Self::matmul_many_with(isa, &[self], x, m, &mut [out]);
    }

    /// `outs[i] = x Wᵢᵀ` for matrices of one input width: one parallel loop over all their
    /// column tiles, `x` quantized once; each result the same bits as its own
    /// [`QuantMatrix::matmul`].
    ///
    /// # Panics
    /// When the matrices' input widths differ, or `x` or an output does not have the size
    /// that `m` says.
    pub fn matmul_many(matrices: &[&QuantMatrix], x: &[f32], m: usize, outs: &mut [&mut [f32]]) {
        Self::matmul_many_with(Isa::detect(), matrices, x, m, outs)
    }

    /// [`QuantMatrix::matmul_many`] with the kernels of `isa`.
    ///
    /// # Panics
    /// As [`QuantMatrix::matmul_many`].
    pub fn matmul_many_with(isa: Isa, matrices: &[&QuantMatrix], x: &[f32], m: usize, outs: &mut [&mut [f32]]) {
        let mut outs: Vec<&mut [MaybeUninit<f32>]> = outs.iter_mut().map(|out| as_uninit(out)).collect();
        Self::matmul_many_into(isa, matrices, x, m, &mut outs);
    }

    /// [`QuantMatrix::matmul`] into a new vector, never zero-filled: the product writes every
    /// element (a decode step's output head alone is 8 × 49,152 values for 8 sequences; zeroing
    /// the outputs took 3% of the engine thread, a serial part of the step).
    ///
    /// # Panics
    /// When `x` does not hold `m` rows.
    pub fn matmul_vec(&self, x: &[f32], m: usize) -> Vec<f32> {
        written_vec(m * self.n, |out| {
            Self::matmul_many_into(Isa::detect(), &[self], x, m, &mut [out])
        })
    }

    /// [`QuantMatrix::matmul_many`] into new vectors, as [`QuantMatrix::matmul_vec`].
    ///
    /// # Panics
    /// As [`QuantMatrix::matmul_many`].
    pub fn matmul_many_vecs(matrices: &[&QuantMatrix], x: &[f32], m: usize) -> Vec<Vec<f32>> {
        let mut vecs: Vec<Vec<f32>> = matrices.iter().map(|matrix| Vec::with_capacity(m * matrix.n)).collect();
        let mut outs: Vec<&mut [MaybeUninit<f32>]> = vecs
            .iter_mut()
            .zip(matrices)
            .map(|(vec, matrix)| &mut vec.spare_capacity_mut()[..m * matrix.n])
            .collect();
        Self::matmul_many_into(Isa::detect(), matrices, x, m, &mut outs);
        for (vec, matrix) in vecs.iter_mut().zip(matrices) {
            // SAFETY: the capacity holds `m * n` values, all written by `matmul_many_into`.
            unsafe { vec.set_len(m * matrix.n) };
        }
        vecs
    }

    /// The products of `matmul_many_with` into outputs that may be uninitialized: every
    /// element is written.
    fn matmul_many_into(
        isa: Isa,
        matrices: &[&QuantMatrix],
        x: &[f32],
        m: usize,
        outs: &mut [&mut [MaybeUninit<f32>]],
    ) {
        assert_eq!(matrices.len(), outs.len(), "one output per matrix");
        for (matrix, out) in matrices.iter().zip(outs.iter()) {
            matrix.check_sizes(x, m, out.len());
        }
        let kernels = Kernels::new(isa);
        let input = Input::prepare(kernels, x, m, matrices);
        let products: Vec<(&QuantMatrix, Disjoint<'_, MaybeUninit<f32>>)> = matrices
            .iter()
            .zip(outs.iter_mut())
            .map(|(&matrix, out)| (matrix, Disjoint::new(out)))
            .collect();
        run_products(kernels, &input, m, &products);
    }

    /// `out = silu(x Gᵀ) ⊙ (x Uᵀ)` (the gated MLP's first half, `self` the gate `G`): both
    /// products and the gating in one parallel loop, `x` quantized once; the same bits as the
    /// two products followed by [`crate::SiluMul`].
    ///
    /// # Panics
    /// When the two matrices' shapes differ, or `x` or `out` does not have the size that `m`
    /// says.
    pub fn gated_matmul(&self, up: &QuantMatrix, x: &[f32], m: usize, out: &mut [f32]) {
        self.gated_matmul_with(Isa::detect(), up, x, m, out)
    }

    /// [`QuantMatrix::gated_matmul`] with the kernels of `isa`.
    ///
    /// # Panics
    /// As [`QuantMatrix::gated_matmul`].
    pub fn gated_matmul_with(&self, isa: Isa, up: &QuantMatrix, x: &[f32], m: usize, out: &mut [f32]) {
        self.gated_matmul_into(isa, up, x, m, as_uninit(out));
    }

    /// [`QuantMatrix::gated_matmul`] into a new vector, as [`QuantMatrix::matmul_vec`].
    ///
    /// # Panics
    /// As [`QuantMatrix::gated_matmul`].
    pub fn gated_matmul_vec(&self, up: &QuantMatrix, x: &[f32], m: usize) -> Vec<f32> {
        written_vec(m * self.n, |out| self.gated_matmul_into(Isa::detect(), up, x, m, out))
    }

    /// The product of `gated_matmul_with` into an output that may be uninitialized: every
    /// element is written.
    fn gated_matmul_into(&self, isa: Isa, up: &QuantMatrix, x: &[f32], m: usize, out: &mut [MaybeUninit<f32>]) {
        assert_eq!(
            (self.n, self.k),
            (up.n, up.k),
            "the gate and up matrices differ in shape"
        );
        self.check_sizes(x, m, out.len());
        let kernels = Kernels::new(isa);
        let input = Input::prepare(kernels, x, m, &[self, up]);
        let gated = Gated { gate: self, up };
        run_products(kernels, &input, m, &[(gated, Disjoint::new(out))]);
    }

    /// Panics unless `x` holds `m` rows of this matrix's inputs and the output (of `out_len`
    /// values) `m` rows of its outputs.
    fn check_sizes(&self, x: &[f32], m: usize, out_len: usize) {
        let (n, k) = (self.n, self.k);
        assert_eq!(x.len(), m * k, "x must hold {m} rows of {k} values");
        assert_eq!(out_len, m * n, "out must hold {m} rows of {n} values");
    }

    /// Column tile `t` for rows `r..r + R`.
    fn tile<const R: usize>(&self, kernels: Kernels, input: &Input<'_>, t: usize, r: usize) -> [[f32; TILE_COLS]; R] {
        let entries = self.packed.entries_per_tile(self.k);
        let q8 = || input.q8.as_ref().expect("quantized for quantized weights");
        match &self.packed {
            Packed::Q4_0(w) => kernels.q4(tile_entries(w, t, entries), q8_rows(q8(), r)),
            Packed::Q4_1(w) => kernels.q4(tile_entries(w, t, entries), q8_rows(q8(), r)),
            Packed::Q5_0(w) => kernels.q5(tile_entries(w, t, entries), q8_rows(q8(), r)),
            Packed::Q5_1(w) => kernels.q5(tile_entries(w, t, entries), q8_rows(q8(), r)),
            Packed::Q8_0(w) => kernels.q8(tile_entries(w, t, entries), q8_rows(q8(), r)),
            Packed::Q4K(w) => kernels.q45k(tile_entries(w, t, entries), q8_rows(q8(), r)),
            Packed::Q5K(w) => kernels.q45k(tile_entries(w, t, entries), q8_rows(q8(), r)),
            Packed::Q6K(w) => kernels.q6k(tile_entries(w, t, entries), q8_rows(q8(), r)),
            Packed::F32(w) => {
                let (k, x) = (self.k, input.x);
                kernels.f32s(
                    tile_entries(w, t, entries),
                    std::array::from_fn(|i| &x[(r + i) * k..(r + i + 1) * k]),
                )
            }
        }
    }

    /// Whether these weights' kernel takes [`WIDE_ROW_TILE`] rows per call with `kernels`.
    fn takes_wide_tiles(&self, kernels: Kernels) -> bool {
        // The f32 kernels are AVX2's on every x86 CPU (16 registers); Q6_K's kernel keeps a
        // third set of accumulators (each half sub-block's sum) and spills at 8 rows (measured
        // 0.9-1.05x of its speed at 4, where the other formats gain 1.1-1.3x).
        kernels.has_wide_registers() && !matches!(self.packed, Packed::F32(_) | Packed::Q6K(_))
    }
}

/// What one product of [`run_products`] computes per column tile: a matrix's own product, or
/// the gated pair's.
trait TileSource: Sync {
    /// Output columns.
    fn columns(&self) -> usize;
    /// Multiply-adds per input row.
    fn macs_per_row(&self) -> usize;
    /// Whether [`WIDE_ROW_TILE`] rows per call suit the kernels.
    fn takes_wide_tiles(&self, kernels: Kernels) -> bool;
    /// Column tile `t` for rows `r..r + R`.
    fn tile<const R: usize>(&self, kernels: Kernels, input: &Input<'_>, t: usize, r: usize) -> [[f32; TILE_COLS]; R];
}

impl TileSource for &QuantMatrix {
    fn columns(&self) -> usize {
        self.n
    }

    fn macs_per_row(&self) -> usize {
        self.n * self.k
    }

    fn takes_wide_tiles(&self, kernels: Kernels) -> bool {
        QuantMatrix::takes_wide_tiles(self, kernels)
    }

    fn tile<const R: usize>(&self, kernels: Kernels, input: &Input<'_>, t: usize, r: usize) -> [[f32; TILE_COLS]; R] {
        QuantMatrix::tile(self, kernels, input, t, r)
    }
}

/// The gate and up matrices of a gated MLP, read as one product `silu(x Gᵀ) ⊙ (x Uᵀ)`.
struct Gated<'a> {
    /// `G`.
    gate: &'a QuantMatrix,
    /// `U`, of `G`'s shape.
    up: &'a QuantMatrix,
}

impl TileSource for Gated<'_> {
    fn columns(&self) -> usize {
        self.gate.n
    }

    fn macs_per_row(&self) -> usize {
        2 * self.gate.n * self.gate.k
    }

    fn takes_wide_tiles(&self, kernels: Kernels) -> bool {
        self.gate.takes_wide_tiles(kernels) && self.up.takes_wide_tiles(kernels)
    }

    fn tile<const R: usize>(&self, kernels: Kernels, input: &Input<'_>, t: usize, r: usize) -> [[f32; TILE_COLS]; R] {
        let mut gate = self.gate.tile::<R>(kernels, input, t, r);
        let up = self.up.tile::<R>(kernels, input, t, r);
        crate::fast_exp::silu_mul(gate.as_flattened_mut(), up.as_flattened());
        gate
    }
}

/// Runs `products` (each a source of column tiles and its output) as one loop over all their
/// column tiles: parallel on the kernels' pool when the work is large enough.
fn run_products<S: TileSource>(
    kernels: Kernels,
    input: &Input<'_>,
    m: usize,
    products: &[(S, Disjoint<'_, MaybeUninit<f32>>)],
) {
    let tiles: Vec<usize> = products.iter().map(|(p, _)| p.columns().div_ceil(TILE_COLS)).collect();
    let total: usize = tiles.iter().sum();
    if m == 0 || total == 0 {
        return;
    }
    let macs: usize = m * products.iter().map(|(p, _)| p.macs_per_row()).sum::<usize>();
    let threads = crate::pool::threads();
    let tasks = if threads > 1 && macs >= PARALLEL_MACS {
        (threads * TASKS_PER_THREAD).min(total)
    } else {
        1
    };
    // Task `i` takes tiles `i * total / tasks..` of the products' tiles laid end to end.
    let task = |i: usize| {
        let (start, end) = (i * total / tasks, (i + 1) * total / tasks);
        let mut first = 0;
        for ((product, out), &count) in products.iter().zip(&tiles) {
            let (from, to) = (start.max(first), end.min(first + count));
            if from < to {
                run_tiles(product, kernels, input, m, from - first..to - first, out);
            }
            first += count;
        }
    };
    if tasks == 1 {
        task(0);
    } else {
        // The pool the attention, the norms and the activation quantization use: one set of
        // workers, no second pool spinning beside it.
        crate::pool::execute_chunked(tasks, |range| range.for_each(task));
    }
}

/// All rows of `source` for the column tiles `tiles`: rows in blocks of [`ROW_BLOCK`], each
/// over every tile, [`ROW_TILE`] or [`WIDE_ROW_TILE`] rows per kernel call. Writes only the
/// columns of `tiles`.
fn run_tiles<S: TileSource>(
    source: &S,
    kernels: Kernels,
    input: &Input<'_>,
    m: usize,
    tiles: Range<usize>,
    out: &Disjoint<'_, MaybeUninit<f32>>,
) {
    if source.takes_wide_tiles(kernels) {
        run_tiles_by::<WIDE_ROW_TILE, S>(source, kernels, input, m, tiles, out)
    } else {
        run_tiles_by::<ROW_TILE, S>(source, kernels, input, m, tiles, out)
    }
}

/// [`run_tiles`] with `RT` rows per kernel call (4 or 8), and the rows left over in calls of
/// 4, 3, 2 or 1.
fn run_tiles_by<const RT: usize, S: TileSource>(
    source: &S,
    kernels: Kernels,
    input: &Input<'_>,
    m: usize,
    tiles: Range<usize>,
    out: &Disjoint<'_, MaybeUninit<f32>>,
) {
    let n = source.columns();
    for rows_start in (0..m).step_by(ROW_BLOCK) {
        let rows_end = (rows_start + ROW_BLOCK).min(m);
        for t in tiles.clone() {
            let cols = t * TILE_COLS..((t + 1) * TILE_COLS).min(n);
            let mut r = rows_start;
            while r + RT <= rows_end {
                write_rows(out, n, r, &cols, source.tile::<RT>(kernels, input, t, r));
                r += RT;
            }
            if RT > ROW_TILE && r + ROW_TILE <= rows_end {
                write_rows(out, n, r, &cols, source.tile::<ROW_TILE>(kernels, input, t, r));
                r += ROW_TILE;
            }
            match rows_end - r {
                3 => write_rows(out, n, r, &cols, source.tile::<3>(kernels, input, t, r)),
                2 => write_rows(out, n, r, &cols, source.tile::<2>(kernels, input, t, r)),
                1 => write_rows(out, n, r, &cols, source.tile::<1>(kernels, input, t, r)),
                _ => {}
            }
        }
    }
}

/// The activations as the kernels of the products' formats read them: the f32 rows as given
/// (f32 weights), and quantized once when any weights are quantized.
struct Input<'a> {
    /// The rows as given.
    x: &'a [f32],
    /// The rows quantized, when a product has quantized weights.
    q8: Option<Q8Rows>,
}

impl<'a> Input<'a> {
    /// The input of `matrices` (all of one input width).
    fn prepare(kernels: Kernels, x: &'a [f32], m: usize, matrices: &[&QuantMatrix]) -> Self {
        let Some(first) = matrices.first() else {
            return Self { x, q8: None };
        };
        assert!(
            matrices.iter().all(|matrix| matrix.k == first.k),
            "the products of one input need one input width"
        );
        let quantized = matrices.iter().any(|matrix| !matches!(matrix.packed, Packed::F32(_)));
        Self {
            x,
            q8: (quantized && m > 0).then(|| Q8Rows::quantize(kernels.isa(), x, m, first.k)),
        }
    }
}

/// `out` as a buffer that a product may treat as uninitialized.
fn as_uninit(out: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: `MaybeUninit<f32>` has `f32`'s layout, and the products write only initialized
    // values through the result, so `out` stays initialized.
    unsafe { &mut *(out as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// A vector of `len` values that `fill` writes, every one of them (no zero-filling first).
fn written_vec(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut values = Vec::with_capacity(len);
    fill(&mut values.spare_capacity_mut()[..len]);
    // SAFETY: the capacity holds `len` values, and `fill` wrote all of them.
    unsafe { values.set_len(len) };
    values
}

/// The entries of column tile `t`.
fn tile_entries<T>(packed: &[T], t: usize, per_tile: usize) -> &[T] {
    &packed[t * per_tile..(t + 1) * per_tile]
}

/// Rows `r..r + R` of quantized activations.
fn q8_rows<const R: usize>(x: &Q8Rows, r: usize) -> [&[Q8Block]; R] {
    std::array::from_fn(|i| x.row(r + i))
}

/// Writes `R` rows of a kernel's results from row `r` of the `n`-column output, keeping the
/// columns of `cols`.
fn write_rows<const R: usize>(
    out: &Disjoint<'_, MaybeUninit<f32>>,
    n: usize,
    r: usize,
    cols: &Range<usize>,
    rows: [[f32; TILE_COLS]; R],
) {
    for (i, values) in rows.iter().enumerate() {
        // SAFETY: `matmul_with` gives each task its own column tiles, and `cols` lies in this
        // task's tiles, so no other thread touches these elements.
        unsafe { out.part((r + i) * n + cols.start, cols.len()) }.write_copy_of_slice(&values[..cols.len()]);
    }
}

/// The kernels to run, chosen once per matmul.
#[derive(Clone, Copy, Debug)]
enum Kernels {
    /// [`super::scalar`].
    Scalar,
    /// [`super::avx2`], with the proof that the CPU runs it.
    #[cfg(target_arch = "x86_64")]
    Avx2(super::avx2::Avx2),
    /// [`super::avx512`] (and [`super::avx2`] for f32 weights), with the proofs that the CPU
    /// runs them.
    #[cfg(target_arch = "x86_64")]
    Avx512(super::avx512::Avx512Vnni, super::avx2::Avx2),
    /// [`super::neon`], with the proof that the CPU runs it.
    #[cfg(target_arch = "aarch64")]
    Neon(super::neon::Neon),
}

impl Kernels {
    /// `isa` where this CPU has it, the scalar kernels otherwise.
    fn new(isa: Isa) -> Self {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => super::avx2::Avx2::detect().map_or(Self::Scalar, Self::Avx2),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => match (super::avx512::Avx512Vnni::detect(), super::avx2::Avx2::detect()) {
                (Some(vnni), Some(avx2)) => Self::Avx512(vnni, avx2),
                _ => Self::Scalar,
            },
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => super::neon::Neon::detect().map_or(Self::Scalar, Self::Neon),
            _ => Self::Scalar,
        }
    }

    /// The implementation these kernels are.
    fn isa(self) -> Isa {
        match self {
            Self::Scalar => Isa::Scalar,
            #[cfg(target_arch = "x86_64")]
            Self::Avx2(_) => Isa::Avx2,
            #[cfg(target_arch = "x86_64")]
            Self::Avx512(..) => Isa::Avx512Vnni,
            #[cfg(target_arch = "aarch64")]
            Self::Neon(_) => Isa::Neon,
        }
    }

    /// Whether these kernels have 32 vector registers (room for [`WIDE_ROW_TILE`] rows).
    fn has_wide_registers(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Self::Avx512(..) => true,
            _ => false,
        }
    }

    /// 4-bit weights.
    fn q4<T: Nibbles, const R: usize>(self, tiles: &[T], rows: [&[Q8Block]; R]) -> [[f32; TILE_COLS]; R] {
        match self {
            Self::Scalar => scalar::q4(tiles, rows),
            #[cfg(target_arch = "x86_64")]
            Self::Avx2(avx2) => avx2.q4(tiles, rows),
            #[cfg(target_arch = "x86_64")]
            Self::Avx512(vnni, _) => vnni.q4(tiles, rows),
            #[cfg(target_arch = "aarch64")]
            Self::Neon(neon) => neon.q4(tiles, rows),
        }
    }

    /// 5-bit weights.
    fn q5<T: FiveBits, const R: usize>(self, tiles: &[T], rows: [&[Q8Block]; R]) -> [[f32; TILE_COLS]; R] {
        match self {
            Self::Scalar => scalar::q5(tiles, rows),
            #[cfg(target_arch = "x86_64")]
            Self::Avx2(avx2) => avx2.q5(tiles, rows),
            #[cfg(target_arch = "x86_64")]
            Self::Avx512(vnni, _) => vnni.q5(tiles, rows),
            #[cfg(target_arch = "aarch64")]
            Self::Neon(neon) => neon.q5(tiles, rows),
        }
    }

    /// 4- and 5-bit K-quant weights.
    fn q45k<T: ScaledNibbles, const R: usize>(self, tiles: &[T], rows: [&[Q8Block]; R]) -> [[f32; TILE_COLS]; R] {
        match self {
            Self::Scalar => scalar::q45k(tiles, rows),
            #[cfg(target_arch = "x86_64")]
            Self::Avx2(avx2) => avx2.q45k(tiles, rows),
            #[cfg(target_arch = "x86_64")]
            Self::Avx512(vnni, _) => vnni.q45k(tiles, rows),
            #[cfg(target_arch = "aarch64")]
            Self::Neon(neon) => neon.q45k(tiles, rows),
        }
    }

    /// 6-bit K-quant weights.
    fn q6k<const R: usize>(self, tiles: &[TileQ6K], rows: [&[Q8Block]; R]) -> [[f32; TILE_COLS]; R] {
        match self {
            Self::Scalar => scalar::q6k(tiles, rows),
            #[cfg(target_arch = "x86_64")]
            Self::Avx2(avx2) => avx2.q6k(tiles, rows),
            #[cfg(target_arch = "x86_64")]
            Self::Avx512(vnni, _) => vnni.q6k(tiles, rows),
            #[cfg(target_arch = "aarch64")]
            Self::Neon(neon) => neon.q6k(tiles, rows),
        }
    }

    /// 8-bit weights.
    fn q8<const R: usize>(self, tiles: &[TileQ8_0], rows: [&[Q8Block]; R]) -> [[f32; TILE_COLS]; R] {
        match self {
            Self::Scalar => scalar::q8(tiles, rows),
            #[cfg(target_arch = "x86_64")]
            Self::Avx2(avx2) => avx2.q8(tiles, rows),
            #[cfg(target_arch = "x86_64")]
            Self::Avx512(vnni, _) => vnni.q8(tiles, rows),
            #[cfg(target_arch = "aarch64")]
            Self::Neon(neon) => neon.q8(tiles, rows),
        }
    }

    /// f32 weights.
    fn f32s<const R: usize>(self, tiles: &[[f32; TILE_COLS]], rows: [&[f32]; R]) -> [[f32; TILE_COLS]; R] {
        match self {
            Self::Scalar => scalar::f32s(tiles, rows),
            #[cfg(target_arch = "x86_64")]
            Self::Avx2(avx2) => avx2.f32s(tiles, rows),
            #[cfg(target_arch = "x86_64")]
            Self::Avx512(_, avx2) => avx2.f32s(tiles, rows),
            #[cfg(target_arch = "aarch64")]
            Self::Neon(neon) => neon.f32s(tiles, rows),
        }
    }
}
