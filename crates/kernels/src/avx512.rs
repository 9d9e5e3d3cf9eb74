//! AVX-512 VNNI micro-kernels (on 256-bit vectors, through AVX-512 VL): the AVX2 kernels with
//! `vpdpbusd` for the integer dot products.
//!
//! `vpdpbusd` multiplies unsigned by signed bytes and adds each four products straight into a
//! 32-bit lane: the `maddubs` + `madd` pair of the AVX2 kernels and their 16-bit intermediate
//! sums become one instruction, with no widening step and no saturation to keep away from.
//! The weights' layout is the same (one 32-bit lane per output, four inputs to a lane), the
//! integer sums are the same exact integers, and the float steps after them are the same
//! fused multiply-adds in the same order, so the results are bit-identical to the AVX2 and
//! scalar kernels. The K-quants multiply a sub-block's 32-bit sum by its integer scale with
//! `vpmulld` where the AVX2 kernels do it inside `madd`.
//!
//! 256-bit vectors rather than 512: a tile is eight outputs, one 32-bit lane each, and CPUs
//! that lower their clock for 512-bit instructions do not for these.

use std::arch::x86_64::*;

use super::activations::Q8Block;
use super::avx2::{fifth_bits, load_f16x8, load_u8x32, load_u8x8_as_f32, to_array, upper_pairs};
use super::kquants::{ScaledNibbles, TileQ6K, SUB_BLOCKS};
use super::packed::{FiveBits, Nibbles, TileQ8_0, TILE_COLS};
use super::prefetch::{entry_ahead, weights_ahead};

/// Proof that this CPU runs AVX-512 F, BW, VL and VNNI besides AVX2, FMA and F16C: only
/// [`Avx512Vnni::detect`] makes one, so the methods below may call the `#[target_feature]`
/// functions.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx512Vnni(());

impl Avx512Vnni {
    /// `Some` when the CPU has every feature these kernels use.
    pub(crate) fn detect() -> Option<Self> {
        super::isa::avx512_vnni_available().then_some(Self(()))
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
}

/// The rows' activation blocks at index `b`.
#[inline(always)]
fn blocks_at<const R: usize>(rows: [&[Q8Block]; R], b: usize) -> [&Q8Block; R] {
    std::array::from_fn(|r| &rows[r][b])
}

/// `acc += lo · x(2h) + hi · x(2h + 1)` per 32-bit lane: group `h` of one block against the
/// row's activations.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn dot_group(acc: __m256i, lo: __m256i, hi: __m256i, x: &Q8Block, h: usize) -> __m256i {
    let acc = _mm256_dpbusd_epi32(acc, lo, _mm256_set1_epi32(x.group(2 * h)));
    _mm256_dpbusd_epi32(acc, hi, _mm256_set1_epi32(x.group(2 * h + 1)))
}

/// The eight lanes of each row's accumulator.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn outputs<const R: usize>(acc: [__m256; R]) -> [[f32; TILE_COLS]; R] {
    std::array::from_fn(|r| to_array(acc[r]))
}

/// See [`super::scalar::q4`].
// The row loops index several arrays in step; LLVM unrolls them for a constant `R`.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q4<T: Nibbles, const R: usize>(tiles: &[T], rows: [&[Q8Block]; R]) -> [[f32; TILE_COLS]; R] {
    let low = _mm256_set1_epi8(0x0F);
    let mut acc = [_mm256_setzero_ps(); R];
    for (b, tile) in tiles.iter().enumerate() {
        entry_ahead::<R, _>(tile);
        let xs = blocks_at(rows, b);
        let mut sums = [_mm256_setzero_si256(); R];
        for (h, group) in tile.qs().iter().enumerate() {
            let codes = load_u8x32(group);
            let lo = _mm256_and_si256(codes, low);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(codes), low);
            for r in 0..R {
                sums[r] = dot_group(sums[r], lo, hi, xs[r], h);
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
                sum = _mm256_sub_epi32(sum, _mm256_set1_epi32(8 * xs[r].qsum));
            }
            let scale = _mm256_mul_ps(d, _mm256_set1_ps(xs[r].d));
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), scale, acc[r]);
            if T::HAS_MIN {
                acc[r] = _mm256_fmadd_ps(m, _mm256_set1_ps(xs[r].s), acc[r]);
            }
        }
    }
    outputs(acc)
}

/// See [`super::scalar::q5`].
// The row loops index several arrays in step; LLVM unrolls them for a constant `R`.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q5<T: FiveBits, const R: usize>(tiles: &[T], rows: [&[Q8Block]; R]) -> [[f32; TILE_COLS]; R] {
    let low = _mm256_set1_epi8(0x0F);
    let mut acc = [_mm256_setzero_ps(); R];
    for (b, tile) in tiles.iter().enumerate() {
        entry_ahead::<R, _>(tile);
        let xs = blocks_at(rows, b);
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
                sums[r] = dot_group(sums[r], lo, hi, xs[r], h);
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
    outputs(acc)
}

/// Eight bytes (one per output) widened to eight 32-bit lanes, `SIGNED` or not.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn lanes_of<const SIGNED: bool>(bytes: &[u8; 8]) -> __m256i {
    // SAFETY: the reference covers 8 readable bytes, and `loadl` takes any alignment.
    let v = unsafe { _mm_loadl_epi64(bytes.as_ptr().cast()) };
    if SIGNED {
        _mm256_cvtepi8_epi32(v)
    } else {
        _mm256_cvtepu8_epi32(v)
    }
}

/// See [`super::scalar::q45k`].
// The row loops index several arrays in step; LLVM unrolls them for a constant `R`.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q45k<T: ScaledNibbles, const R: usize>(tiles: &[T], rows: [&[Q8Block]; R]) -> [[f32; TILE_COLS]; R] {
    let low = _mm256_set1_epi8(0x0F);
    let mut acc = [_mm256_setzero_ps(); R];
    for (b, tile) in tiles.iter().enumerate() {
        entry_ahead::<R, _>(tile);
        let d = load_f16x8(tile.d());
        let dmin = load_f16x8(tile.dmin());
        for j in 0..SUB_BLOCKS {
            let xs = blocks_at(rows, SUB_BLOCKS * b + j);
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
                    sums[r] = dot_group(sums[r], lo, hi, xs[r], h);
                }
            }
            let scales = lanes_of::<false>(&tile.scales()[j]);
            let mins = _mm256_mul_ps(dmin, load_u8x8_as_f32(&tile.mins()[j]));
            for r in 0..R {
                let sum = _mm256_mullo_epi32(sums[r], scales);
                let scale = _mm256_mul_ps(d, _mm256_set1_ps(xs[r].d));
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), scale, acc[r]);
                acc[r] = _mm256_fnmadd_ps(mins, _mm256_set1_ps(xs[r].s), acc[r]);
            }
        }
    }
    outputs(acc)
}

/// See [`super::scalar::q6k`]: each half of a sub-block summed apart, its −32 offset taken
/// out with the activations' half sum, times its scale.
// The row loops index several arrays in step; LLVM unrolls them for a constant `R`.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q6k<const R: usize>(tiles: &[TileQ6K], rows: [&[Q8Block]; R]) -> [[f32; TILE_COLS]; R] {
    let low = _mm256_set1_epi8(0x0F);
    let mut acc = [_mm256_setzero_ps(); R];
    for (b, tile) in tiles.iter().enumerate() {
        // Q6_K's arithmetic per byte is the heaviest: ahead even for one row.
        weights_ahead(tile, std::mem::size_of_val(tile));
        let d = load_f16x8(&tile.d);
        for j in 0..SUB_BLOCKS {
            let xs = blocks_at(rows, SUB_BLOCKS * b + j);
            let mut sums = [_mm256_setzero_si256(); R];
            for half in 0..2 {
                let qh = load_u8x32(&tile.qh[j][half]);
                let mut halves = [_mm256_setzero_si256(); R];
                for h in 2 * half..2 * half + 2 {
                    let codes = load_u8x32(&tile.qs[j][h]);
                    let lo = _mm256_or_si256(_mm256_and_si256(codes, low), upper_pairs::<false>(qh, h));
                    let hi = _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16::<4>(codes), low),
                        upper_pairs::<true>(qh, h),
                    );
                    for r in 0..R {
                        halves[r] = dot_group(halves[r], lo, hi, xs[r], h);
                    }
                }
                let scales = lanes_of::<true>(&tile.scales[2 * j + half].map(|s| s as u8));
                for r in 0..R {
                    let offset = _mm256_set1_epi32(32 * i32::from(xs[r].half_sums[half]));
                    let half_sum = _mm256_mullo_epi32(_mm256_sub_epi32(halves[r], offset), scales);
                    sums[r] = _mm256_add_epi32(sums[r], half_sum);
                }
            }
            for r in 0..R {
                let scale = _mm256_mul_ps(d, _mm256_set1_ps(xs[r].d));
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums[r]), scale, acc[r]);
            }
        }
    }
    outputs(acc)
}

/// See [`super::scalar::q8`]: the offset-binary codes (code + 128) straight into `vpdpbusd`,
/// and the offset taken out with the activations' block sum (as Q4_0's −8).
// The row loops index several arrays in step; LLVM unrolls them for a constant `R`.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q8<const R: usize>(tiles: &[TileQ8_0], rows: [&[Q8Block]; R]) -> [[f32; TILE_COLS]; R] {
    let mut acc = [_mm256_setzero_ps(); R];
    for (b, tile) in tiles.iter().enumerate() {
        entry_ahead::<R, _>(tile);
        let xs = blocks_at(rows, b);
        let mut sums = [_mm256_setzero_si256(); R];
        for (g, group) in tile.qs.iter().enumerate() {
            let w = load_u8x32(group);
            for r in 0..R {
                sums[r] = _mm256_dpbusd_epi32(sums[r], w, _mm256_set1_epi32(xs[r].group(g)));
            }
        }
        let d = load_f16x8(&tile.d);
        for r in 0..R {
            let sum = _mm256_sub_epi32(sums[r], _mm256_set1_epi32(128 * xs[r].qsum));
            let scale = _mm256_mul_ps(d, _mm256_set1_ps(xs[r].d));
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), scale, acc[r]);
        }
    }
    outputs(acc)
}
