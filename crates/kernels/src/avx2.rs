//! AVX2 + FMA + F16C micro-kernels: one column tile (8 outputs, one per 32-bit lane) for `R`
//! activation rows, and the activation quantizer.
//!
//! Integer dot products use `maddubs` (unsigned × signed bytes into 16-bit pair sums) and
//! `madd` (16-bit pairs into 32-bit sums), like ggml. 4-bit codes (0..=15) times 8-bit
//! activations (−127..=127) add up to at most 8 × 2 × 15 × 127 = 30480 per 16-bit lane over a
//! block, so a block is summed in 16 bits and widened once; 8-bit weights use the sign trick
//! (|w| × sign(w)·x) and widen every group. Each output's float work, whatever `R` is, is the
//! same sequence of fused multiply-adds as in [`super::scalar`].

use std::arch::x86_64::*;

use super::activations::Q8Block;
use super::packed::{FiveBits, Nibbles, TileQ8_0, QK, TILE_COLS};

/// Proof that this CPU runs AVX2, FMA and F16C: only [`Avx2::detect`] makes one, so the
/// methods below may call the `#[target_feature]` functions.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2(());

impl Avx2 {
    /// `Some` when the CPU has AVX2, FMA and F16C.
    pub(crate) fn detect() -> Option<Self> {
        super::isa::avx2_available().then_some(Self(()))
    }

    /// As [`super::scalar::q4`].
    pub(crate) fn q4<T: Nibbles, const R: usize>(self, tiles: &[T], rows: [&[Q8Block]; R]) -> [[f32; TILE_COLS]; R] {
        // SAFETY: `self` exists only on a CPU with the features `q4` is compiled for.
        unsafe { q4(tiles, rows) }
    }

    /// As [`super::scalar::q5`].
    pub(crate) fn q5<T: FiveBits, const R: usize>(self, tiles: &[T], rows: [&[Q8Block]; R]) -> [[f32; TILE_COLS]; R] {
        // SAFETY: `self` exists only on a CPU with the features `q5` is compiled for.
        unsafe { q5(tiles, rows) }
    }

    /// As [`super::scalar::q8`].
    pub(crate) fn q8<const R: usize>(self, tiles: &[TileQ8_0], rows: [&[Q8Block]; R]) -> [[f32; TILE_COLS]; R] {
        // SAFETY: `self` exists only on a CPU with the features `q8` is compiled for.
        unsafe { q8(tiles, rows) }
    }

    /// As [`super::scalar::f32s`].
    pub(crate) fn f32s<const R: usize>(self, tiles: &[[f32; TILE_COLS]], rows: [&[f32]; R]) -> [[f32; TILE_COLS]; R] {
        // SAFETY: `self` exists only on a CPU with the features `f32s` is compiled for.
        unsafe { f32s(tiles, rows) }
    }

    /// Quantizes one activation row into `out`, bit-identical to
    /// [`super::activations::quantize_block`] block by block.
    pub(crate) fn quantize_row(self, values: &[f32], out: &mut [Q8Block]) {
        // SAFETY: `self` exists only on a CPU with the features `quantize_row` is compiled for.
        unsafe { quantize_row(values, out) }
    }
}

/// Loads 32 bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load_u8x32(bytes: &[u8; 32]) -> __m256i {
    // SAFETY: the reference covers 32 readable bytes, and `loadu` takes any alignment.
    unsafe { _mm256_loadu_si256(bytes.as_ptr().cast()) }
}

/// Loads 32 signed bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load_i8x32(bytes: &[i8; 32]) -> __m256i {
    // SAFETY: the reference covers 32 readable bytes, and `loadu` takes any alignment.
    unsafe { _mm256_loadu_si256(bytes.as_ptr().cast()) }
}

/// Loads 8 f16 values as f32.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load_f16x8(bits: &[u16; 8]) -> __m256 {
    // SAFETY: the reference covers 16 readable bytes, and `loadu` takes any alignment.
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(bits.as_ptr().cast()) })
}

/// Loads 8 f32 values.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load_f32x8(values: &[f32; 8]) -> __m256 {
    // SAFETY: the reference covers 8 readable floats, and `loadu` takes any alignment.
    unsafe { _mm256_loadu_ps(values.as_ptr()) }
}

/// The 8 lanes of a vector.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn to_array(v: __m256) -> [f32; 8] {
    let mut out = [0f32; 8];
    // SAFETY: `out` has room for 8 floats, and `storeu` takes any alignment.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), v) };
    out
}

/// Stores 32 signed bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn store_i8x32(v: __m256i, out: &mut [i8; 32]) {
    // SAFETY: `out` has room for 32 bytes, and `storeu` takes any alignment.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), v) }
}

/// See [`super::scalar::q4`].
// The row loops index several arrays in step; LLVM unrolls them for a constant `R`.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma,f16c")]
fn q4<T: Nibbles, const R: usize>(tiles: &[T], rows: [&[Q8Block]; R]) -> [[f32; TILE_COLS]; R] {
    let ones = _mm256_set1_epi16(1);
    let low = _mm256_set1_epi8(0x0F);
    let mut acc = [_mm256_setzero_ps(); R];
    for (b, tile) in tiles.iter().enumerate() {
        let mut xs = [&rows[0][b]; R];
        for r in 1..R {
            xs[r] = &rows[r][b];
        }
        let mut sums = [_mm256_setzero_si256(); R];
        for (h, group) in tile.qs().iter().enumerate() {
            let codes = load_u8x32(group);
            let lo = _mm256_and_si256(codes, low);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(codes), low);
            for r in 0..R {
                let x0 = _mm256_set1_epi32(xs[r].group(2 * h));
                let x1 = _mm256_set1_epi32(xs[r].group(2 * h + 1));
                let pairs = _mm256_add_epi16(_mm256_maddubs_epi16(lo, x0), _mm256_maddubs_epi16(hi, x1));
                sums[r] = _mm256_add_epi16(sums[r], pairs);
            }
        }
        let d = load_f16x8(tile.d());
        let m = if T::HAS_MIN {
            load_f16x8(tile.m())
        } else {
            _mm256_setzero_ps()
        };
        for r in 0..R {
            let mut sum = _mm256_madd_epi16(sums[r], ones);
            if !T::HAS_MIN {
                sum = _mm256_sub_epi32(sum, _mm256_set1_epi32(8 * xs[r].qsum));
            }
            let scale = _mm256_mul_ps(d, _mm256_set1_ps(xs[r].d));
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), scale, acc[r]);
            if T::HAS_MIN {
                acc[r] = _mm256_fmadd_ps(m, _mm256_set1_ps(xs[r].s), acc[r]);
            }
        }
    }
    let mut out = [[0f32; TILE_COLS]; R];
    for r in 0..R {
        out[r] = to_array(acc[r]);
    }
    out
}

/// The fifth bits of group `h`'s low (`HIGH = false`) or high nibbles moved to bit 4 of each
/// byte (0x10 or 0): bit `2h` or `2h + 1` of each byte of `qh`, one 16-bit shift and a mask
/// (a bit shifted in from the neighbouring byte never lands on bit 4).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn fifth_bits<const HIGH: bool>(qh: __m256i, h: usize) -> __m256i {
    let moved = match (h, HIGH) {
        (0, false) => _mm256_slli_epi16::<4>(qh),
        (0, true) => _mm256_slli_epi16::<3>(qh),
        (1, false) => _mm256_slli_epi16::<2>(qh),
        (1, true) => _mm256_slli_epi16::<1>(qh),
        (2, false) => qh,
        (2, true) => _mm256_srli_epi16::<1>(qh),
        (3, false) => _mm256_srli_epi16::<2>(qh),
        _ => _mm256_srli_epi16::<3>(qh),
    };
    _mm256_and_si256(moved, _mm256_set1_epi8(0x10))
}

/// See [`super::scalar::q5`]. 5-bit codes (0..=31) times activations reach 2 × 31 × 127 = 7874
/// per 16-bit lane and `maddubs`, so each group's two products are added in 16 bits and
/// widened at once.
// The row loops index several arrays in step; LLVM unrolls them for a constant `R`.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma,f16c")]
fn q5<T: FiveBits, const R: usize>(tiles: &[T], rows: [&[Q8Block]; R]) -> [[f32; TILE_COLS]; R] {
    let ones = _mm256_set1_epi16(1);
    let low = _mm256_set1_epi8(0x0F);
    let mut acc = [_mm256_setzero_ps(); R];
    for (b, tile) in tiles.iter().enumerate() {
        let mut xs = [&rows[0][b]; R];
        for r in 1..R {
            xs[r] = &rows[r][b];
        }
        let mut sums = [_mm256_setzero_si256(); R];
        let qh = load_u8x32(tile.qh());
        for (h, group) in tile.qs().iter().enumerate() {
            let codes = load_u8x32(group);
            let lo = _mm256_or_si256(_mm256_and_si256(codes, low), fifth_bits::<false>(qh, h));
            let hi = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16::<4>(codes), low),
                fifth_bits::<true>(qh, h),
            );
            for r in 0..R {
                let x0 = _mm256_set1_epi32(xs[r].group(2 * h));
                let x1 = _mm256_set1_epi32(xs[r].group(2 * h + 1));
                let pairs = _mm256_add_epi16(_mm256_maddubs_epi16(lo, x0), _mm256_maddubs_epi16(hi, x1));
                sums[r] = _mm256_add_epi32(sums[r], _mm256_madd_epi16(pairs, ones));
            }
        }
        let d = load_f16x8(tile.d());
        let m = if T::HAS_MIN {
            load_f16x8(tile.m())
        } else {
            _mm256_setzero_ps()
        };
        for r in 0..R {
            let mut sum = sums[r];
            if !T::HAS_MIN {
                sum = _mm256_sub_epi32(sum, _mm256_set1_epi32(16 * xs[r].qsum));
            }
            let scale = _mm256_mul_ps(d, _mm256_set1_ps(xs[r].d));
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), scale, acc[r]);
            if T::HAS_MIN {
                acc[r] = _mm256_fmadd_ps(m, _mm256_set1_ps(xs[r].s), acc[r]);
            }
        }
    }
    let mut out = [[0f32; TILE_COLS]; R];
    for r in 0..R {
        out[r] = to_array(acc[r]);
    }
    out
}

/// See [`super::scalar::q8`].
// The row loops index several arrays in step; LLVM unrolls them for a constant `R`.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma,f16c")]
fn q8<const R: usize>(tiles: &[TileQ8_0], rows: [&[Q8Block]; R]) -> [[f32; TILE_COLS]; R] {
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); R];
    for (b, tile) in tiles.iter().enumerate() {
        let mut xs = [&rows[0][b]; R];
        for r in 1..R {
            xs[r] = &rows[r][b];
        }
        let mut sums = [_mm256_setzero_si256(); R];
        for (g, group) in tile.qs.iter().enumerate() {
            let w = load_i8x32(group);
            let magnitude = _mm256_abs_epi8(w);
            for r in 0..R {
                let x = _mm256_sign_epi8(_mm256_set1_epi32(xs[r].group(g)), w);
                sums[r] = _mm256_add_epi32(sums[r], _mm256_madd_epi16(_mm256_maddubs_epi16(magnitude, x), ones));
            }
        }
        let d = load_f16x8(&tile.d);
        for r in 0..R {
            let scale = _mm256_mul_ps(d, _mm256_set1_ps(xs[r].d));
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums[r]), scale, acc[r]);
        }
    }
    let mut out = [[0f32; TILE_COLS]; R];
    for r in 0..R {
        out[r] = to_array(acc[r]);
    }
    out
}

/// See [`super::scalar::f32s`].
// The row loops index several arrays in step; LLVM unrolls them for a constant `R`.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma,f16c")]
fn f32s<const R: usize>(tiles: &[[f32; TILE_COLS]], rows: [&[f32]; R]) -> [[f32; TILE_COLS]; R] {
    let mut acc = [_mm256_setzero_ps(); R];
    for (i, w) in tiles.iter().enumerate() {
        let w = load_f32x8(w);
        for r in 0..R {
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(rows[r][i]), w, acc[r]);
        }
    }
    let mut out = [[0f32; TILE_COLS]; R];
    for r in 0..R {
        out[r] = to_array(acc[r]);
    }
    out
}

/// See [`Avx2::quantize_row`].
#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_row(values: &[f32], out: &mut [Q8Block]) {
    let magnitude_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFF_FFFF));
    let (min, max) = (_mm256_set1_epi32(-127), _mm256_set1_epi32(127));
    for (values, block) in values.chunks_exact(QK).zip(out.iter_mut()) {
        let values: &[f32; QK] = values.try_into().expect("chunks of 32");
        let mut v = [_mm256_setzero_ps(); 4];
        for (i, v) in v.iter_mut().enumerate() {
            *v = load_f32x8(values[8 * i..8 * i + 8].try_into().expect("8 values"));
        }
        let mut amax8 = _mm256_and_ps(v[0], magnitude_mask);
        for &v in &v[1..] {
            amax8 = _mm256_max_ps(amax8, _mm256_and_ps(v, magnitude_mask));
        }
        let amax = to_array(amax8).into_iter().fold(0f32, f32::max);
        let d = amax / 127.0;
        let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
        let mut q = [_mm256_setzero_si256(); 4];
        for (q, v) in q.iter_mut().zip(v) {
            let rounded = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(v, id));
            *q = _mm256_min_epi32(_mm256_max_epi32(_mm256_cvtps_epi32(rounded), min), max);
        }
        let sum = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        let sum = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256::<1>(sum));
        let sum = _mm_add_epi32(sum, _mm_shuffle_epi32::<0b01_00_11_10>(sum));
        let qsum = _mm_cvtsi128_si32(_mm_add_epi32(sum, _mm_shuffle_epi32::<0b10_11_00_01>(sum)));
        // packs work within 128-bit lanes: the permutation puts the 32 codes back in order.
        let bytes = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        let bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        store_i8x32(bytes, &mut block.qs);
        block.d = d;
        block.qsum = qsum;
        block.s = d * qsum as f32;
    }
}
