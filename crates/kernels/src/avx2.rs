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
use super::kquants::{ScaledNibbles, TileQ6K, SUB_BLOCKS};
use super::packed::{FiveBits, Nibbles, TileQ8_0, QK, TILE_COLS};
use super::prefetch::{entry_ahead, weights_ahead};

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

    /// As [`super::scalar::q45k`].
    pub(crate) fn q45k<T: ScaledNibbles, const R: usize>(
        self,
        tiles: &[T],
        rows: [&[Q8Block]; R],
    ) -> [[f32; TILE_COLS]; R] {
        // SAFETY: `self` exists only on a CPU with the features `q45k` is compiled for.
        unsafe { q45k(tiles, rows) }
    }

    /// As [`super::scalar::q6k`].
    pub(crate) fn q6k<const R: usize>(self, tiles: &[TileQ6K], rows: [&[Q8Block]; R]) -> [[f32; TILE_COLS]; R] {
        // SAFETY: `self` exists only on a CPU with the features `q6k` is compiled for.
        unsafe { q6k(tiles, rows) }
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
pub(crate) fn load_u8x32(bytes: &[u8; 32]) -> __m256i {
    // SAFETY: the reference covers 32 readable bytes, and `loadu` takes any alignment.
    unsafe { _mm256_loadu_si256(bytes.as_ptr().cast()) }
}

/// Loads 8 f16 values as f32.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) fn load_f16x8(bits: &[u16; 8]) -> __m256 {
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
pub(crate) fn to_array(v: __m256) -> [f32; 8] {
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
        entry_ahead::<R, _>(tile);
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
pub(crate) fn fifth_bits<const HIGH: bool>(qh: __m256i, h: usize) -> __m256i {
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
        entry_ahead::<R, _>(tile);
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

/// Eight bytes (one per output) widened to sixteen 16-bit lanes, each byte twice: the
/// multiplier of `madd` that scales both 16-bit halves of output `c`'s 32-bit lane by byte `c`.
/// `SIGNED` bytes are sign-extended, the others zero-extended.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn pairs_of<const SIGNED: bool>(bytes: &[u8; 8]) -> __m256i {
    // SAFETY: the reference covers 8 readable bytes, and `loadl` takes any alignment.
    let v = unsafe { _mm_loadl_epi64(bytes.as_ptr().cast()) };
    let doubled = _mm_unpacklo_epi8(v, v);
    if SIGNED {
        _mm256_cvtepi8_epi16(doubled)
    } else {
        _mm256_cvtepu8_epi16(doubled)
    }
}

/// Eight unsigned bytes as f32.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) fn load_u8x8_as_f32(bytes: &[u8; 8]) -> __m256 {
    // SAFETY: the reference covers 8 readable bytes, and `loadl` takes any alignment.
    let v = unsafe { _mm_loadl_epi64(bytes.as_ptr().cast()) };
    _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v))
}

/// See [`super::scalar::q45k`]. Q4_K sums a sub-block's four groups in 16 bits as Q4_0 does
/// and Q5_K each group's two products as Q5_0 does; the widening `madd` multiplies by the
/// sub-block scales (at most 63) instead of by ones, which keeps every sum exact in 32 bits.
// The row loops index several arrays in step; LLVM unrolls them for a constant `R`.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma,f16c")]
fn q45k<T: ScaledNibbles, const R: usize>(tiles: &[T], rows: [&[Q8Block]; R]) -> [[f32; TILE_COLS]; R] {
    let low = _mm256_set1_epi8(0x0F);
    let mut acc = [_mm256_setzero_ps(); R];
    for (b, tile) in tiles.iter().enumerate() {
        entry_ahead::<R, _>(tile);
        let d = load_f16x8(tile.d());
        let dmin = load_f16x8(tile.dmin());
        for j in 0..SUB_BLOCKS {
            let mut xs = [&rows[0][SUB_BLOCKS * b + j]; R];
            for r in 1..R {
                xs[r] = &rows[r][SUB_BLOCKS * b + j];
            }
            let scales = pairs_of::<false>(&tile.scales()[j]);
            let mut sums16 = [_mm256_setzero_si256(); R];
            let mut sums = [_mm256_setzero_si256(); R];
            let qh = if T::FIVE_BITS {
                load_u8x32(tile.qh(j))
            } else {
                _mm256_setzero_si256()
            };
            for (h, group) in tile.qs(j).iter().enumerate() {
                let codes = load_u8x32(group);
                let mut lo = _mm256_and_si256(codes, low);
                let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(codes), low);
                if T::FIVE_BITS {
                    lo = _mm256_or_si256(lo, fifth_bits::<false>(qh, h));
                    hi = _mm256_or_si256(hi, fifth_bits::<true>(qh, h));
                }
                for r in 0..R {
                    let x0 = _mm256_set1_epi32(xs[r].group(2 * h));
                    let x1 = _mm256_set1_epi32(xs[r].group(2 * h + 1));
                    let pairs = _mm256_add_epi16(_mm256_maddubs_epi16(lo, x0), _mm256_maddubs_epi16(hi, x1));
                    if T::FIVE_BITS {
                        sums[r] = _mm256_add_epi32(sums[r], _mm256_madd_epi16(pairs, scales));
                    } else {
                        sums16[r] = _mm256_add_epi16(sums16[r], pairs);
                    }
                }
            }
            let mins = _mm256_mul_ps(dmin, load_u8x8_as_f32(&tile.mins()[j]));
            for r in 0..R {
                let sum = if T::FIVE_BITS {
                    sums[r]
                } else {
                    _mm256_madd_epi16(sums16[r], scales)
                };
                let scale = _mm256_mul_ps(d, _mm256_set1_ps(xs[r].d));
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), scale, acc[r]);
                acc[r] = _mm256_fnmadd_ps(mins, _mm256_set1_ps(xs[r].s), acc[r]);
            }
        }
    }
    let mut out = [[0f32; TILE_COLS]; R];
    for r in 0..R {
        out[r] = to_array(acc[r]);
    }
    out
}

/// Group `h`'s two upper bits of the low (`HIGH = false`) or high nibbles moved to bits 4 and
/// 5 of each byte, from the upper-bit vector of its pair of groups (see
/// [`super::kquants::TileQ6K::qh`]): one 16-bit shift and a mask.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) fn upper_pairs<const HIGH: bool>(qh: __m256i, h: usize) -> __m256i {
    let moved = match (h % 2, HIGH) {
        (0, false) => _mm256_slli_epi16::<4>(qh),
        (0, true) => _mm256_slli_epi16::<2>(qh),
        (1, false) => qh,
        _ => _mm256_srli_epi16::<2>(qh),
    };
    _mm256_and_si256(moved, _mm256_set1_epi8(0x30))
}

/// See [`super::scalar::q6k`]. 6-bit codes times activations reach 2 × 63 × 127 = 16002 per
/// `maddubs` lane, so one group's two products fit in 16 bits and are widened at once, times
/// the half's scales; the −32 offset is one `madd` of the two halves' scales against the
/// activations' half sums per sub-block.
// The row loops index several arrays in step; LLVM unrolls them for a constant `R`.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma,f16c")]
fn q6k<const R: usize>(tiles: &[TileQ6K], rows: [&[Q8Block]; R]) -> [[f32; TILE_COLS]; R] {
    let low = _mm256_set1_epi8(0x0F);
    let mut acc = [_mm256_setzero_ps(); R];
    for (b, tile) in tiles.iter().enumerate() {
        // Q6_K's arithmetic per byte is the heaviest: ahead even for one row.
        weights_ahead(tile, std::mem::size_of_val(tile));
        let d = load_f16x8(&tile.d);
        for j in 0..SUB_BLOCKS {
            let mut xs = [&rows[0][SUB_BLOCKS * b + j]; R];
            for r in 1..R {
                xs[r] = &rows[r][SUB_BLOCKS * b + j];
            }
            let (first, second) = (&tile.scales[2 * j], &tile.scales[2 * j + 1]);
            let as_bytes = |scales: &[i8; 8]| scales.map(|s| s as u8);
            let halves = [pairs_of::<true>(&as_bytes(first)), pairs_of::<true>(&as_bytes(second))];
            // Lane c: (first[c], second[c]) as two 16-bit values.
            // SAFETY: each reference covers 8 readable bytes, and `loadl` takes any alignment.
            let (first, second) = unsafe {
                (
                    _mm_loadl_epi64(first.as_ptr().cast()),
                    _mm_loadl_epi64(second.as_ptr().cast()),
                )
            };
            let both = _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(first, second));
            let mut sums = [_mm256_setzero_si256(); R];
            for half in 0..2 {
                let qh = load_u8x32(&tile.qh[j][half]);
                for h in 2 * half..2 * half + 2 {
                    let codes = load_u8x32(&tile.qs[j][h]);
                    let lo = _mm256_or_si256(_mm256_and_si256(codes, low), upper_pairs::<false>(qh, h));
                    let hi = _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16::<4>(codes), low),
                        upper_pairs::<true>(qh, h),
                    );
                    for r in 0..R {
                        let x0 = _mm256_set1_epi32(xs[r].group(2 * h));
                        let x1 = _mm256_set1_epi32(xs[r].group(2 * h + 1));
                        let pairs = _mm256_add_epi16(_mm256_maddubs_epi16(lo, x0), _mm256_maddubs_epi16(hi, x1));
                        sums[r] = _mm256_add_epi32(sums[r], _mm256_madd_epi16(pairs, halves[half]));
                    }
                }
            }
            for r in 0..R {
                let offsets = _mm256_madd_epi16(both, _mm256_set1_epi32(xs[r].half_sums_word()));
                let sum = _mm256_sub_epi32(sums[r], _mm256_slli_epi32::<5>(offsets));
                let scale = _mm256_mul_ps(d, _mm256_set1_ps(xs[r].d));
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), scale, acc[r]);
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
    let top_bits = _mm256_set1_epi8(0x80u8 as i8);
    let mut acc = [_mm256_setzero_ps(); R];
    for (b, tile) in tiles.iter().enumerate() {
        entry_ahead::<R, _>(tile);
        let mut xs = [&rows[0][b]; R];
        for r in 1..R {
            xs[r] = &rows[r][b];
        }
        let mut sums = [_mm256_setzero_si256(); R];
        for (g, group) in tile.qs.iter().enumerate() {
            // Offset binary back to the signed codes.
            let w = _mm256_xor_si256(load_u8x32(group), top_bits);
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

/// The sum of the eight 32-bit lanes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn horizontal_sum(v: __m256i) -> i32 {
    let sum = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let sum = _mm_add_epi32(sum, _mm_shuffle_epi32::<0b01_00_11_10>(sum));
    _mm_cvtsi128_si32(_mm_add_epi32(sum, _mm_shuffle_epi32::<0b10_11_00_01>(sum)))
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
        let half_sums = [
            horizontal_sum(_mm256_add_epi32(q[0], q[1])),
            horizontal_sum(_mm256_add_epi32(q[2], q[3])),
        ];
        // Each half sums 16 codes of at most 127 in magnitude: it fits in 16 bits.
        let half_sums = half_sums.map(|sum| sum as i16);
        let qsum = i32::from(half_sums[0]) + i32::from(half_sums[1]);
        // packs work within 128-bit lanes: the permutation puts the 32 codes back in order.
        let bytes = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        let bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        store_i8x32(bytes, &mut block.qs);
        block.d = d;
        block.qsum = qsum;
        block.half_sums = half_sums;
        block.s = d * qsum as f32;
    }
}
