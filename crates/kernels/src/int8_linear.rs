//! An encoder's linear layer in 8-bit integers on CPUs with AVX-512 VNNI: `vpdpbusd` does 64
//! multiply-adds of bytes in one instruction where an f32 FMA does 16, so the layers that hold
//! nine tenths of an embedding model's arithmetic run about three times the f32 rate.
//!
//! Precision is kept by quantizing in groups of [`GROUP`] along the inner dimension, both
//! sides: each weight column has a symmetric int8 scale per group (chosen once at load), each
//! activation row an asymmetric u8 scale and zero point per group (chosen per product, so an
//! outlier costs its own group only). The integer dot product of one group is converted to
//! f32 and scaled into an f32 accumulator:
//!
//! ```text
//! x ≈ s·(q − z)      w ≈ a·v      Σ x·w ≈ Σ_groups s·a·(Σ q·v) − (s·z)·(a·Σ v)
//! ```
//!
//! where `a·Σ v` is a per-(column, group) constant computed at load. On all-MiniLM-L6-v2 over
//! 256 chunks of a real manual, the lowest cosine to the f32 vectors is 0.9988 with groups of
//! 64 and 0.9994 with groups of 32 (the goal is 0.999), for 6% less speed; per-row scales
//! alone were worse still (0.9985 in a simulation over 48 chunks). docs/BENCHMARKS.md.
//!
//! Weights are packed at load into panels of 16 columns, 4 consecutive inputs per column
//! side by side (the operand layout of `vpdpbusd`); a tile of up to 4 rows × 3 panels keeps
//! its 12 integer and 12 float accumulators in registers. Every row is computed by the same
//! arithmetic whatever the rows around it, so a text's vector does not depend on its batch.

use super::disjoint::Disjoint;

/// Inputs per quantization group (both sides).
pub const GROUP: usize = 32;
/// Output columns per packed panel (one 512-bit register of i32 or f32).
const PANEL: usize = 16;
/// Rows of a register tile.
const TILE_ROWS: usize = 4;
/// Panels of a register tile.
const TILE_PANELS: usize = 3;
/// Rows one work item covers (its activations stay in cache across its panels).
const BLOCK_ROWS: usize = 64;
/// Multiply-adds below which a product runs on the calling thread: a search query's few
/// tokens take tens of microseconds, less than waking the pool, and far less than waiting for
/// a pool thread that the vector store's threads have pushed off a core (that wait was the
/// query embedding's p99: 39 ms against a 5 ms p50).
const PARALLEL_MACS: usize = 1 << 25;

/// A linear layer `y = x · wᵀ + bias` with int8 weights, for CPUs with AVX-512 VNNI.
pub struct Int8Linear {
    /// Outputs.
    n: usize,
    /// Inputs.
    k: usize,
    /// `[panel][k / 4][16 columns][4 inputs]`, int8.
    weights: Vec<i8>,
    /// `[panel][group][16]`: each column's scale in each group.
    scale: Vec<f32>,
    /// `[panel][group][16]`: scale × the sum of the column's int8 weights in the group.
    correction: Vec<f32>,
    /// `[panels × 16]`, zero past `n`.
    bias: Vec<f32>,
}

/// Activation rows quantized for one product: `x ≈ scale · (q − zero)` per row and group.
struct QuantizedRows {
    /// `[rows][k]`.
    q: Vec<u8>,
    /// `[rows][groups]`.
    scale: Vec<f32>,
    /// `[rows][groups]`: scale × zero point.
    offset: Vec<f32>,
}

impl Int8Linear {
    /// Whether this CPU runs the int8 kernel (AVX-512 F, BW and VNNI).
    pub fn available() -> bool {
        vnni_available()
    }

    /// Quantizes `w` (row-major `[n, k]`, a PyTorch / safetensors linear weight as stored) and
    /// packs it. `None` when this CPU lacks VNNI or `k` is not a multiple of [`GROUP`].
    pub fn new(w: &[f32], bias: &[f32]) -> Option<Self> {
        let n = bias.len();
        if n == 0 || !w.len().is_multiple_of(n) {
            return None;
        }
        let k = w.len() / n;
        if !Self::available() || k == 0 || !k.is_multiple_of(GROUP) {
            return None;
        }
        Some(Self::pack(w, n, k, bias))
    }

    /// Outputs.
    pub fn outputs(&self) -> usize {
        self.n
    }

    /// Inputs.
    pub fn inputs(&self) -> usize {
        self.k
    }

    /// Quantizes and packs (any CPU; [`Self::new`] checks that the kernel can run).
    fn pack(w: &[f32], n: usize, k: usize, bias: &[f32]) -> Self {
        let panels = n.div_ceil(PANEL);
        let groups = k / GROUP;
        let mut weights = vec![0i8; panels * PANEL * k];
        let mut scale = vec![0f32; panels * groups * PANEL];
        let mut correction = vec![0f32; panels * groups * PANEL];
        let mut padded_bias = vec![0f32; panels * PANEL];
        padded_bias[..n].copy_from_slice(bias);
        for column in 0..n {
            let (panel, lane) = (column / PANEL, column % PANEL);
            let row = &w[column * k..(column + 1) * k];
            for g in 0..groups {
                let values = &row[g * GROUP..(g + 1) * GROUP];
                let max = values.iter().fold(0f32, |m, v| m.max(v.abs()));
                let a = max / 127.0;
                let inverse = if a > 0.0 { 1.0 / a } else { 0.0 };
                let mut sum = 0i32;
                for (i, v) in values.iter().enumerate() {
                    let q = (v * inverse).round().clamp(-127.0, 127.0) as i8;
                    sum += i32::from(q);
                    let input = g * GROUP + i;
                    weights[packed_index(k, column, input)] = q;
                }
                let at = (panel * groups + g) * PANEL + lane;
                scale[at] = a;
                correction[at] = a * sum as f32;
            }
        }
        Self {
            n,
            k,
            weights,
            scale,
            correction,
            bias: padded_bias,
        }
    }

    /// `out[rows, n] = x[rows, k] · wᵀ + bias`.
    pub fn forward(&self, x: &[f32], rows: usize, out: &mut [f32]) {
        assert_eq!(x.len(), rows * self.k, "x is not rows × k");
        assert_eq!(out.len(), rows * self.n, "out is not rows × n");
        if rows == 0 {
            return;
        }
        let quantized = quantize_rows(x, rows, self.k);
        let panels = self.n.div_ceil(PANEL);
        let panel_blocks = panels.div_ceil(TILE_PANELS);
        let row_blocks = rows.div_ceil(BLOCK_ROWS);
        let out = Disjoint::new(out);
        let work = |item: usize| {
            let (row_block, panel_block) = (item / panel_blocks, item % panel_blocks);
            let first_row = row_block * BLOCK_ROWS;
            let last_row = (first_row + BLOCK_ROWS).min(rows);
            let first_panel = panel_block * TILE_PANELS;
            let count = TILE_PANELS.min(panels - first_panel);
            let mut row = first_row;
            while row < last_row {
                let tile_rows = TILE_ROWS.min(last_row - row);
                // SAFETY: the tile covers rows `row..row + tile_rows` and the columns of panels
                // `first_panel..first_panel + count`, which no other item writes (items
                // partition rows × panels); `self.tile` bounds-checks its reads.
                unsafe { self.tile(&quantized, row, tile_rows, first_panel, count, &out) };
                row += tile_rows;
            }
        };
        let items = row_blocks * panel_blocks;
        if items == 1 || rows * self.n * self.k < PARALLEL_MACS {
            (0..items).for_each(work);
        } else {
            crate::pool::execute_chunked(items, |range| range.for_each(work));
        }
    }

    /// One register tile: `tile_rows` rows (≤ 4) × `count` panels (≤ 3) from `first_panel`.
    ///
    /// # Safety
    /// No other thread may touch these rows' outputs in these panels' columns meanwhile.
    unsafe fn tile(
        &self,
        rows: &QuantizedRows,
        row: usize,
        tile_rows: usize,
        first_panel: usize,
        count: usize,
        out: &Disjoint<'_, f32>,
    ) {
        #[cfg(target_arch = "x86_64")]
        let groups = self.k / GROUP;
        assert!((row + tile_rows) * self.k <= rows.q.len(), "tile rows out of range");
        assert!(
            (first_panel + count) * PANEL * self.k <= self.weights.len(),
            "tile panels out of range"
        );
        let mut result = [[0f32; PANEL * TILE_PANELS]; TILE_ROWS];
        #[cfg(target_arch = "x86_64")]
        {
            let args = TileArgs {
                q: rows.q[row * self.k..].as_ptr(),
                row_scale: rows.scale[row * groups..].as_ptr(),
                row_offset: rows.offset[row * groups..].as_ptr(),
                weights: self.weights[first_panel * PANEL * self.k..].as_ptr(),
                scale: self.scale[first_panel * groups * PANEL..].as_ptr(),
                correction: self.correction[first_panel * groups * PANEL..].as_ptr(),
                k: self.k,
            };
            // SAFETY: the CPU has VNNI (checked when `self` was built); the pointers cover
            // `tile_rows` rows and `count` panels (asserted above).
            unsafe {
                match (tile_rows, count) {
                    (4, 3) => vnni::tile::<4, 3>(&args, &mut result),
                    (4, 2) => vnni::tile::<4, 2>(&args, &mut result),
                    (4, 1) => vnni::tile::<4, 1>(&args, &mut result),
                    (3, 3) => vnni::tile::<3, 3>(&args, &mut result),
                    (3, 2) => vnni::tile::<3, 2>(&args, &mut result),
                    (3, 1) => vnni::tile::<3, 1>(&args, &mut result),
                    (2, 3) => vnni::tile::<2, 3>(&args, &mut result),
                    (2, 2) => vnni::tile::<2, 2>(&args, &mut result),
                    (2, 1) => vnni::tile::<2, 1>(&args, &mut result),
                    (1, 3) => vnni::tile::<1, 3>(&args, &mut result),
                    (1, 2) => vnni::tile::<1, 2>(&args, &mut result),
                    _ => vnni::tile::<1, 1>(&args, &mut result),
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        reference_tile(self, rows, row, tile_rows, first_panel, count, &mut result);
        let first_column = first_panel * PANEL;
        let columns = (count * PANEL).min(self.n - first_column);
        for (r, sums) in result.iter().enumerate().take(tile_rows) {
            // SAFETY: this row's columns of these panels are this tile's alone (caller's promise).
            let target = unsafe { out.part((row + r) * self.n + first_column, columns) };
            for ((o, sum), bias) in target.iter_mut().zip(sums).zip(&self.bias[first_column..]) {
                *o = sum + bias;
            }
        }
    }
}

/// The pointers one tile reads.
#[cfg(target_arch = "x86_64")]
struct TileArgs {
    q: *const u8,
    row_scale: *const f32,
    row_offset: *const f32,
    weights: *const i8,
    scale: *const f32,
    correction: *const f32,
    k: usize,
}

/// Quantizes each row of `x` in groups of [`GROUP`] to u8 with a scale and zero point (the
/// group's range widened to include 0, so that zeros stay exact).
fn quantize_rows(x: &[f32], rows: usize, k: usize) -> QuantizedRows {
    let groups = k / GROUP;
    let mut quantized = QuantizedRows {
        q: vec![0u8; rows * k],
        scale: vec![0f32; rows * groups],
        offset: vec![0f32; rows * groups],
    };
    let vector = vnni_available();
    for ((values, q), (scale, offset)) in x
        .chunks_exact(GROUP)
        .zip(quantized.q.chunks_exact_mut(GROUP))
        .zip(quantized.scale.iter_mut().zip(quantized.offset.iter_mut()))
    {
        #[cfg(target_arch = "x86_64")]
        let (s, z) = if vector {
            // SAFETY: the CPU has AVX-512 F and BW (part of `vnni_available`); both slices
            // hold GROUP elements (chunks_exact).
            unsafe { vnni::quantize_group(values, q) }
        } else {
            quantize_group(values, q)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let (s, z) = {
            let _ = vector;
            quantize_group(values, q)
        };
        *scale = s;
        *offset = s * z;
    }
    quantized
}

/// Where input `input` of column `column` lies in the packed weights (`[panel][k / 4][16][4]`).
fn packed_index(k: usize, column: usize, input: usize) -> usize {
    (column / PANEL) * PANEL * k + (input / 4) * PANEL * 4 + (column % PANEL) * 4 + input % 4
}

/// A group's scale, its inverse and its zero point for the range `low..=high` (which holds
/// 0); `None` when the group is all zeros (or not finite): it quantizes to zeros, scale 0.
fn scale_and_zero(low: f32, high: f32) -> Option<(f32, f32, f32)> {
    let s = (high - low) / 255.0;
    if s <= 0.0 || !s.is_finite() {
        return None;
    }
    let inverse = 1.0 / s;
    Some((s, inverse, (-low * inverse).round_ties_even()))
}

/// One group: `values ≈ s · (q − z)`; returns `(s, z)`. Rounds half to even and multiplies
/// before adding, exactly as the vector version does, so that both give the same bytes.
fn quantize_group(values: &[f32], q: &mut [u8]) -> (f32, f32) {
    let (low, high) = values.iter().fold((0f32, 0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let Some((s, inverse, z)) = scale_and_zero(low, high) else {
        q.fill(0);
        return (0.0, 0.0);
    };
    for (q, v) in q.iter_mut().zip(values) {
        *q = (v * inverse + z).round_ties_even().clamp(0.0, 255.0) as u8;
    }
    (s, z)
}

/// The tile in portable Rust, for other architectures and as the tests' reference: the same
/// quantized arithmetic (integer sums per group, then the same scaling).
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn reference_tile(
    linear: &Int8Linear,
    rows: &QuantizedRows,
    row: usize,
    tile_rows: usize,
    first_panel: usize,
    count: usize,
    result: &mut [[f32; PANEL * TILE_PANELS]; TILE_ROWS],
) {
    let (k, groups) = (linear.k, linear.k / GROUP);
    for (r, sums) in result.iter_mut().enumerate().take(tile_rows) {
        for p in 0..count {
            let panel = first_panel + p;
            for lane in 0..PANEL {
                let mut sum = 0f32;
                for g in 0..groups {
                    let mut dot = 0i32;
                    for input in g * GROUP..(g + 1) * GROUP {
                        let w = linear.weights[packed_index(k, panel * PANEL + lane, input)];
                        dot += i32::from(rows.q[(row + r) * k + input]) * i32::from(w);
                    }
                    let at = (panel * groups + g) * PANEL + lane;
                    sum = (dot as f32 * linear.scale[at]).mul_add(rows.scale[(row + r) * groups + g], sum);
                    sum = (-linear.correction[at]).mul_add(rows.offset[(row + r) * groups + g], sum);
                }
                sums[p * PANEL + lane] = sum;
            }
        }
    }
}

/// AVX-512 F, BW and VNNI, detected at run time.
#[cfg(target_arch = "x86_64")]
fn vnni_available() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vnni")
}

/// Never on other architectures.
#[cfg(not(target_arch = "x86_64"))]
fn vnni_available() -> bool {
    false
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use std::arch::x86_64::*;

    use super::{TileArgs, GROUP, PANEL, TILE_PANELS, TILE_ROWS};

    /// [`super::quantize_group`] on AVX-512 (the same bytes).
    ///
    /// # Safety
    /// The CPU has AVX-512 F and BW; `values` and `q` hold GROUP elements.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn quantize_group(values: &[f32], q: &mut [u8]) -> (f32, f32) {
        assert!(values.len() == GROUP && q.len() == GROUP, "a group is GROUP values");
        let mut low = _mm512_setzero_ps();
        let mut high = _mm512_setzero_ps();
        for part in values.chunks_exact(16) {
            // SAFETY: 16 floats of `part`.
            let v = unsafe { _mm512_loadu_ps(part.as_ptr()) };
            low = _mm512_min_ps(low, v);
            high = _mm512_max_ps(high, v);
        }
        let (low, high) = (_mm512_reduce_min_ps(low), _mm512_reduce_max_ps(high));
        let Some((s, inverse, z)) = super::scale_and_zero(low, high) else {
            q.fill(0);
            return (0.0, 0.0);
        };
        let (inverse_v, z_v) = (_mm512_set1_ps(inverse), _mm512_set1_ps(z));
        let (zero, top) = (_mm512_setzero_ps(), _mm512_set1_ps(255.0));
        for (part, out) in values.chunks_exact(16).zip(q.chunks_exact_mut(16)) {
            // SAFETY: 16 floats of `part`.
            let v = unsafe { _mm512_loadu_ps(part.as_ptr()) };
            let shifted = _mm512_add_ps(_mm512_mul_ps(v, inverse_v), z_v);
            let rounded = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(shifted);
            let clamped = _mm512_min_ps(_mm512_max_ps(rounded, zero), top);
            let bytes = _mm512_cvtusepi32_epi8(_mm512_cvtps_epi32(clamped));
            // SAFETY: 16 bytes of `out`.
            unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), bytes) };
        }
        (s, z)
    }

    /// `R` rows × `P` panels of sums (bias not added) into `result`.
    ///
    /// # Safety
    /// The CPU has AVX-512 F, BW and VNNI; `args` points at `R` rows of activations (k bytes
    /// each, `k / GROUP` scales and offsets each) and `P` panels of weights and scales.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn tile<const R: usize, const P: usize>(
        args: &TileArgs,
        result: &mut [[f32; PANEL * TILE_PANELS]; TILE_ROWS],
    ) {
        let k = args.k;
        let groups = k / GROUP;
        let panel_bytes = PANEL * k;
        let panel_scales = groups * PANEL;
        let mut sums = [[_mm512_setzero_ps(); P]; R];
        for g in 0..groups {
            let mut dots = [[_mm512_setzero_si512(); P]; R];
            for step in 0..GROUP / 4 {
                let input = g * GROUP + step * 4;
                let mut w = [_mm512_setzero_si512(); P];
                for (p, w) in w.iter_mut().enumerate() {
                    // SAFETY: inside panel p's `k × 16` bytes (caller's promise).
                    *w = unsafe { _mm512_loadu_si512(args.weights.add(p * panel_bytes + input * PANEL).cast()) };
                }
                for (r, dots) in dots.iter_mut().enumerate() {
                    // SAFETY: 4 bytes inside row r's k bytes (caller's promise).
                    let four = unsafe { std::ptr::read_unaligned(args.q.add(r * k + input).cast::<i32>()) };
                    let a = _mm512_set1_epi32(four);
                    for (dot, w) in dots.iter_mut().zip(&w) {
                        *dot = _mm512_dpbusd_epi32(*dot, a, *w);
                    }
                }
            }
            for p in 0..P {
                // SAFETY: inside panel p's `groups × 16` scales (caller's promise).
                let (scale, correction) = unsafe {
                    (
                        _mm512_loadu_ps(args.scale.add(p * panel_scales + g * PANEL)),
                        _mm512_loadu_ps(args.correction.add(p * panel_scales + g * PANEL)),
                    )
                };
                for r in 0..R {
                    // SAFETY: row r's scales (caller's promise).
                    let (s, offset) = unsafe {
                        (
                            _mm512_set1_ps(*args.row_scale.add(r * groups + g)),
                            _mm512_set1_ps(*args.row_offset.add(r * groups + g)),
                        )
                    };
                    let scaled = _mm512_mul_ps(_mm512_cvtepi32_ps(dots[r][p]), scale);
                    sums[r][p] = _mm512_fmadd_ps(scaled, s, sums[r][p]);
                    sums[r][p] = _mm512_fnmadd_ps(correction, offset, sums[r][p]);
                }
            }
        }
        for (r, row) in sums.iter().enumerate() {
            for (p, sum) in row.iter().enumerate() {
                // SAFETY: 16 floats inside `result[r]` (P ≤ TILE_PANELS).
                unsafe { _mm512_storeu_ps(result[r][p * PANEL..].as_mut_ptr(), *sum) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in about [-1, 1] with a few larger ones, like real activations.
    fn values(count: usize, seed: u32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(2_654_435_761).max(1);
        (0..count)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let v = (state % 20_001) as f32 / 10_000.0 - 1.0;
                if i % 97 == 0 {
                    v * 8.0
                } else {
                    v
                }
            })
            .collect()
    }

    fn exact(x: &[f32], rows: usize, w: &[f32], bias: &[f32]) -> Vec<f32> {
        let (n, k) = (bias.len(), w.len() / bias.len());
        let mut out = vec![0f32; rows * n];
        for r in 0..rows {
            for c in 0..n {
                let dot: f64 = (0..k).map(|i| f64::from(x[r * k + i]) * f64::from(w[c * k + i])).sum();
                out[r * n + c] = dot as f32 + bias[c];
            }
        }
        out
    }

    /// The whole product through the portable reference tile, bias added.
    fn reference_forward(linear: &Int8Linear, x: &[f32], rows: usize) -> Vec<f32> {
        let (n, k) = (linear.n, linear.k);
        let quantized = quantize_rows(x, rows, k);
        let mut out = vec![0f32; rows * n];
        for row in 0..rows {
            let mut result = [[0f32; PANEL * TILE_PANELS]; TILE_ROWS];
            for first_panel in (0..n.div_ceil(PANEL)).step_by(TILE_PANELS) {
                let count = TILE_PANELS.min(n.div_ceil(PANEL) - first_panel);
                reference_tile(linear, &quantized, row, 1, first_panel, count, &mut result);
                for c in first_panel * PANEL..((first_panel + count) * PANEL).min(n) {
                    out[row * n + c] = result[0][c - first_panel * PANEL] + linear.bias[c];
                }
            }
        }
        out
    }

    #[test]
    fn the_grouped_int8_product_stays_close_to_the_exact_one() {
        // 70 outputs: four full panels and a partial one; 9 rows: two tiles and a remainder.
        let (rows, n, k) = (9, 70, 192);
        let x = values(rows * k, 1);
        let w: Vec<f32> = values(n * k, 2).iter().map(|v| v * 0.05).collect();
        let bias = values(n, 3);
        let want = exact(&x, rows, &w, &bias);
        let linear = Int8Linear::pack(&w, n, k, &bias);
        let got = reference_forward(&linear, &x, rows);
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < scale * 0.01, "worst error {worst} of {scale}");
        assert!(Int8Linear::new(&w, &bias).is_some() == Int8Linear::available());
    }

    #[test]
    fn the_vnni_kernel_gives_the_reference_arithmetic() {
        if !Int8Linear::available() {
            eprintln!("this CPU has no AVX-512 VNNI: only the portable reference ran");
            return;
        }
        for (rows, n, k) in [
            (1, 16, 64),
            (9, 70, 192),
            (130, 384, 384),
            (5, 1536, 384),
            (3, 384, 1536),
        ] {
            let x = values(rows * k, rows as u32);
            let w: Vec<f32> = values(n * k, n as u32).iter().map(|v| v * 0.05).collect();
            let bias = values(n, 7);
            let linear = Int8Linear::new(&w, &bias).expect("VNNI is available");
            let mut got = vec![0f32; rows * n];
            linear.forward(&x, rows, &mut got);
            let want = reference_forward(&linear, &x, rows);
            for (i, (have, want)) in got.iter().zip(&want).enumerate() {
                // Same integer sums; the f32 scaling may round differently (FMA order).
                assert!(
                    (have - want).abs() <= 1e-4 * want.abs().max(1.0),
                    "{rows}×{n}×{k} [{},{}]: {have} vs {want}",
                    i / n,
                    i % n
                );
            }
        }
    }

    #[test]
    fn a_row_gives_the_same_bits_alone_and_in_a_batch() {
        if !Int8Linear::available() {
            return;
        }
        let (rows, n, k) = (67, 100, 128);
        let x = values(rows * k, 11);
        let w = values(n * k, 12);
        let bias = values(n, 13);
        let linear = Int8Linear::new(&w, &bias).expect("VNNI is available");
        let mut batch = vec![0f32; rows * n];
        linear.forward(&x, rows, &mut batch);
        for row in [0, 5, 66] {
            let mut alone = vec![0f32; n];
            linear.forward(&x[row * k..(row + 1) * k], 1, &mut alone);
            assert_eq!(alone, batch[row * n..(row + 1) * n], "row {row}");
        }
    }

    #[test]
    fn a_group_of_zeros_quantizes_to_exact_zeros() {
        let mut q = [7u8; GROUP];
        assert_eq!(quantize_group(&[0.0; GROUP], &mut q), (0.0, 0.0));
        assert!(q.iter().all(|&v| v == 0));
        // A zero inside a range stays exactly zero after dequantization.
        let mut values = [0.5f32; GROUP];
        values[3] = 0.0;
        values[4] = -1.0;
        let (s, z) = quantize_group(&values, &mut q);
        assert_eq!(s * (f32::from(q[3]) - z), 0.0);
    }
}
