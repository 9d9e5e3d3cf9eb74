//! Activation rows quantized to 8 bits once per matmul, in blocks of 32 like ggml's Q8_0 but
//! with an f32 scale and the block sums that the weights' offsets and minimums need.
//!
//! A row is quantized from its own values only, with the same operations on every CPU (the
//! AVX2 code and the scalar code give the same bytes), so a row's quants never depend on the
//! other rows of the batch.

use super::disjoint::Disjoint;
use super::isa::Isa;
use super::packed::QK;

/// One block of 32 activations: `x ≈ d × q`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
pub(crate) struct Q8Block {
    /// The 8-bit codes, in −127..=127.
    pub(crate) qs: [i8; QK],
    /// The scale: the block's largest magnitude / 127.
    pub(crate) d: f32,
    /// `d × qsum`, for the minimum term of Q4_1 weights.
    pub(crate) s: f32,
    /// The sum of the codes, for the −8 offset of Q4_0 weights.
    pub(crate) qsum: i32,
    /// The sums of codes 0..16 and 16..32, for the −32 offset of Q6_K weights, whose scales
    /// change every 16 inputs (each at most 16 × 127 in magnitude).
    pub(crate) half_sums: [i16; 2],
}

impl Q8Block {
    /// The two half sums as one word (the first in the low 16 bits), the unit a kernel
    /// broadcasts against pairs of 16-bit scales.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub(crate) fn half_sums_word(&self) -> i32 {
        i32::from(self.half_sums[0] as u16) | (i32::from(self.half_sums[1]) << 16)
    }

    /// Codes `4g..4g + 4` as one little-endian word, the unit a kernel broadcasts.
    #[inline(always)]
    pub(crate) fn group(&self, g: usize) -> i32 {
        let q = &self.qs[4 * g..4 * g + 4];
        i32::from_le_bytes([q[0] as u8, q[1] as u8, q[2] as u8, q[3] as u8])
    }
}

/// `m` activation rows of `k / 32` blocks each.
#[derive(Clone, Debug)]
pub(crate) struct Q8Rows {
    /// Row `r` is `blocks[r * per_row..(r + 1) * per_row]`.
    blocks: Vec<Q8Block>,
    /// Blocks in one row.
    per_row: usize,
}

/// Above this many activations, rows are quantized on several threads.
const PARALLEL_VALUES: usize = 1 << 16;

impl Q8Rows {
    /// Quantizes the `m` rows of `k` values of `x` (row-major; `k` a multiple of 32).
    pub(crate) fn quantize(isa: Isa, x: &[f32], m: usize, k: usize) -> Self {
        assert!(k.is_multiple_of(QK), "k = {k} is not a multiple of {QK}");
        assert_eq!(x.len(), m * k);
        let per_row = k / QK;
        let mut blocks = vec![Q8Block::default(); m * per_row];
        if x.len() >= PARALLEL_VALUES && m > 1 {
            let out = Disjoint::new(&mut blocks);
            crate::pool::execute_chunked(m, |rows| {
                for r in rows {
                    // SAFETY: each row's blocks are written by the one call that gets `r`.
                    let row = unsafe { out.part(r * per_row, per_row) };
                    quantize_row(isa, &x[r * k..(r + 1) * k], row);
                }
            });
        } else if k > 0 {
            x.chunks_exact(k)
                .zip(blocks.chunks_exact_mut(per_row))
                .for_each(|(values, out)| quantize_row(isa, values, out));
        }
        Self { blocks, per_row }
    }

    /// The blocks of row `r`.
    pub(crate) fn row(&self, r: usize) -> &[Q8Block] {
        &self.blocks[r * self.per_row..(r + 1) * self.per_row]
    }
}

/// Quantizes one row into its blocks.
fn quantize_row(isa: Isa, values: &[f32], out: &mut [Q8Block]) {
    #[cfg(target_arch = "x86_64")]
    if let (Isa::Avx2 | Isa::Avx512Vnni, Some(avx2)) = (isa, super::avx2::Avx2::detect()) {
        return avx2.quantize_row(values, out);
    }
    let _ = isa;
    for (values, block) in values.chunks_exact(QK).zip(out.iter_mut()) {
        *block = quantize_block(values.try_into().expect("chunks of 32"));
    }
}

/// Portable quantization of one block; the AVX2 version gives the same bytes.
pub(crate) fn quantize_block(values: &[f32; QK]) -> Q8Block {
    let amax = values.iter().fold(0f32, |amax, v| amax.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut block = Q8Block {
        d,
        ..Q8Block::default()
    };
    for (q, &v) in block.qs.iter_mut().zip(values) {
        *q = round_half_even(v * id).clamp(-127.0, 127.0) as i8;
    }
    let half_sum = |half: &[i8]| half.iter().map(|&q| i16::from(q)).sum::<i16>();
    block.half_sums = [half_sum(&block.qs[..16]), half_sum(&block.qs[16..])];
    block.qsum = i32::from(block.half_sums[0]) + i32::from(block.half_sums[1]);
    block.s = d * block.qsum as f32;
    block
}

/// Rounds to the nearest integer, ties to even, like the SIMD `round` instruction; exact for
/// |v| < 2^22 (larger values here are NaN or clamped anyway).
fn round_half_even(v: f32) -> f32 {
    // 1.5 × 2^23: around it the f32 spacing is 1, so the addition itself rounds to an integer.
    const SHIFT: f32 = 12_582_912.0;
    if v.abs() < 4_194_304.0 {
        (v + SHIFT) - SHIFT
    } else {
        v
    }
}
