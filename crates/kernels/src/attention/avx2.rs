//! [`super::attend_item`] with AVX2 and FMA, eight lanes at a time: the same operations on
//! every value in the same order (fused multiply-adds in eight lanes summed in the same tree,
//! the same exponential, sums in key order), so the same bits. f16 keys and values are
//! widened with F16C's `vcvtph2ps`, exact as [`super::KvValue::to_f32`].

use std::arch::x86_64::*;

use super::lanes::Lanes;
use super::{Geometry, Inputs, Item, EXP_MIN, EXP_POLY, LN2_HI, LN2_LO};

/// Eight values of the cache from `values[at..at + 8]`, as f32.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn load_kv<E: Lanes>(values: &[E], at: usize) -> __m256 {
    let chunk = &values[at..at + 8];
    // SAFETY: `chunk` holds 8 readable values; the CPU has AVX2 and F16C (this function's
    // features).
    unsafe { E::load8(chunk.as_ptr()) }
}

/// Eight lanes of [`super::exp`].
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) fn exp8(x: __m256) -> __m256 {
    let x = _mm256_max_ps(x, _mm256_set1_ps(EXP_MIN));
    let n = _mm256_floor_ps(_mm256_fmadd_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
        _mm256_set1_ps(0.5),
    ));
    let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_HI), x);
    let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_LO), r);
    let mut p = _mm256_set1_ps(EXP_POLY[0]);
    for &c in &EXP_POLY[1..] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let y = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0));
    let bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    _mm256_mul_ps(y, _mm256_castsi256_ps(bits))
}

/// Eight f32 from `values[at..at + 8]`.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) fn load(values: &[f32], at: usize) -> __m256 {
    let chunk = &values[at..at + 8];
    // SAFETY: `chunk` holds 8 readable values; `loadu` takes any alignment.
    unsafe { _mm256_loadu_ps(chunk.as_ptr()) }
}

/// Stores eight f32 to `values[at..at + 8]`.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) fn store(values: &mut [f32], at: usize, v: __m256) {
    let chunk = &mut values[at..at + 8];
    // SAFETY: `chunk` holds 8 writable values; `storeu` takes any alignment.
    unsafe { _mm256_storeu_ps(chunk.as_mut_ptr(), v) }
}

/// As [`super::dot`]: eight lanes of products added in order, then the same tree.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn dot<E: Lanes>(a: &[f32], b: &[E]) -> f32 {
    let full = a.len() / 8 * 8;
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    while i < full {
        acc = _mm256_fmadd_ps(load(a, i), load_kv(b, i), acc);
        i += 8;
    }
    let mut lanes = [0f32; 8];
    store(&mut lanes, 0, acc);
    let mut tail = 0f32;
    for j in full..a.len() {
        tail = a[j].mul_add(b[j].to_f32(), tail);
    }
    ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7])) + tail
}

/// Replaces `row` by `e^(row - max)` and returns the sum of the results, added as
/// [`super::sum`] adds.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) fn softmax_numerators(row: &mut [f32]) -> f32 {
    let full = row.len() / 8 * 8;
    let mut max8 = _mm256_set1_ps(f32::NEG_INFINITY);
    let mut i = 0;
    while i < full {
        max8 = _mm256_max_ps(max8, load(row, i));
        i += 8;
    }
    let mut lanes = [0f32; 8];
    store(&mut lanes, 0, max8);
    let max = row[full..]
        .iter()
        .chain(&lanes)
        .fold(f32::NEG_INFINITY, |m, &s| m.max(s));
    let m = _mm256_set1_ps(max);
    let mut sum8 = _mm256_setzero_ps();
    let mut i = 0;
    while i < full {
        let e = exp8(_mm256_sub_ps(load(row, i), m));
        store(row, i, e);
        sum8 = _mm256_add_ps(sum8, e);
        i += 8;
    }
    let mut tail = 0f32;
    for x in &mut row[full..] {
        *x = super::exp(*x - max);
        tail += *x;
    }
    // As [`super::sum`].
    store(&mut lanes, 0, sum8);
    ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7])) + tail
}

/// Each query's scores of an item (`scores`, a row of `ctx` per query) turned into softmax
/// numerators up to its token's own position, and their sums into `sums`.
#[target_feature(enable = "avx2,fma")]
pub(super) fn softmax_every_query(geometry: &Geometry<'_>, scores: &mut [f32], sums: &mut [f32]) {
    let (group, ctx) = (geometry.group, geometry.ctx);
    for (t, &(_, pos)) in geometry.tokens.iter().enumerate() {
        for j in 0..group {
            let qi = t * group + j;
            sums[qi] = softmax_numerators(&mut scores[qi * ctx..qi * ctx + pos as usize + 1]);
        }
    }
}

/// The most eight-lane vectors of one head (head sizes up to 256).
pub(super) const MAX_VECTORS: usize = 32;

/// The horizontal trees of [`dot`] of eight accumulators at once: lane `n` of the result is
/// the tree of `acc[n]`'s lanes, the same additions in the same tree (each lane's halves added, then two
/// levels of neighbouring pairs), with 2 permutes and 1 add per pair of accumulators and 3
/// horizontal adds in all instead of 8 stores and 56 scalar adds.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) fn trees8(acc: [__m256; 8]) -> __m256 {
    // y[n]: lanes 0..4 are (l0 + l4, l1 + l5, l2 + l6, l3 + l7) of acc[n], lanes 4..8 the same
    // of acc[n + 4].
    let y: [__m256; 4] = std::array::from_fn(|n| {
        let low = _mm256_permute2f128_ps::<0x20>(acc[n], acc[n + 4]);
        let high = _mm256_permute2f128_ps::<0x31>(acc[n], acc[n + 4]);
        _mm256_add_ps(low, high)
    });
    // Per 128-bit half: ((l0 + l4) + (l1 + l5), (l2 + l6) + (l3 + l7)) of two accumulators each,
    // then their sums: accumulators 0, 1, 2, 3 in the low half, 4, 5, 6, 7 in the high one.
    let pairs01 = _mm256_hadd_ps(y[0], y[1]);
    let pairs23 = _mm256_hadd_ps(y[2], y[3]);
    _mm256_hadd_ps(pairs01, pairs23)
}

/// `out[..8 V] += sum over keys of weights[key] * v[at(key)..][..8 V]`, the sum in key order
/// continuing from what `out` holds (or from zero when `first`), its `V` eight-lane
/// accumulators in registers. Returns `V`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn weighted_sum<const V: usize, E: Lanes>(
    v: &[E],
    weights: &[f32],
    at: impl Fn(usize) -> usize,
    first: bool,
    out: &mut [f32],
) -> usize {
    let mut acc = [_mm256_setzero_ps(); V];
    if !first {
        for (b, a) in acc.iter_mut().enumerate() {
            *a = load(out, 8 * b);
        }
    }
    for (key_index, &weight) in weights.iter().enumerate() {
        let start = at(key_index);
        let w = _mm256_set1_ps(weight);
        for (b, a) in acc.iter_mut().enumerate() {
            *a = _mm256_fmadd_ps(w, load_kv(v, start + 8 * b), *a);
        }
    }
    for (b, a) in acc.iter().enumerate() {
        store(out, 8 * b, *a);
    }
    V
}

/// Bytes of keys (or values) of one key/value head read per block of keys: each block's rows
/// stay in the core's L1 cache while every query of the item goes over them (a whole context's
/// rows, 512 KiB for 2,048 keys of 64 dimensions, come from L2 at best, once per query).
pub(super) const KEY_BLOCK_BYTES: usize = 16 * 1024;

/// [`super::attend_item`], eight lanes at a time, for head sizes that are a multiple of 8
/// (at most `8 * MAX_VECTORS`). Keys are taken in blocks of [`KEY_BLOCK_BYTES`], each block
/// for every query of the item. Dot products run eight keys at once (eight independent sums,
/// each in the order of [`super::dot`], their lanes summed together by [`trees8`]); the
/// weighted sum of values keeps each query's output in registers over a block's keys and in
/// the output row between blocks, in key order throughout.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `head_dim % 8 == 0` and
/// `head_dim <= 8 * MAX_VECTORS`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn attend_item<E: Lanes>(inputs: &Inputs<'_, E>, item: &Item, scratch: &mut Vec<f32>) {
    let op = inputs.op;
    let geometry = Geometry::new(op, item);
    let (d, group, tokens, ctx) = (geometry.d, geometry.group, geometry.tokens, geometry.ctx);
    let vectors = d / 8;
    let block = (KEY_BLOCK_BYTES / (std::mem::size_of::<E>() * d)).max(8);
    scratch.clear();
    scratch.resize(geometry.queries * ctx + geometry.queries, 0.0);
    let (scores, sums) = scratch.split_at_mut(geometry.queries * ctx);
    let query_start = |t: usize, j: usize| geometry.query_start(t, j);
    let key_start = |key_index: usize| geometry.key_start(key_index);
    let (k, v) = (inputs.k, inputs.v);
    for block_start in (0..ctx).step_by(block) {
        for (t, &(_, pos)) in tokens.iter().enumerate() {
            let end = (block_start + block).min(pos as usize + 1);
            for j in 0..group {
                let q = &inputs.q[query_start(t, j)..query_start(t, j) + d];
                let scores = &mut scores[(t * group + j) * ctx..(t * group + j) * ctx + ctx];
                let mut key_index = block_start;
                // Eight keys at once while there are eight, each key's sum in [`dot`]'s order.
                while key_index + 8 <= end {
                    // Each row checked once here, not at every load of the loop below.
                    let rows: [*const E; 8] = std::array::from_fn(|n| {
                        let start = key_start(key_index + n);
                        k[start..start + d].as_ptr()
                    });
                    let mut acc = [_mm256_setzero_ps(); 8];
                    for b in 0..vectors {
                        let qb = load(q, 8 * b);
                        for (a, &row) in acc.iter_mut().zip(&rows) {
                            // SAFETY: `row` starts a slice of `d` values and `8 b + 8 <= d`.
                            *a = _mm256_fmadd_ps(qb, unsafe { E::load8(row.add(8 * b)) }, *a);
                        }
                    }
                    store(scores, key_index, _mm256_mul_ps(trees8(acc), _mm256_set1_ps(op.scale)));
                    key_index += 8;
                }
                for (i, score) in scores.iter_mut().enumerate().take(end).skip(key_index) {
                    let start = key_start(i);
                    *score = dot(q, &k[start..start + d]) * op.scale;
                }
            }
        }
    }
    softmax_every_query(&geometry, scores, sums);
    for block_start in (0..ctx).step_by(block) {
        for (t, &(_, pos)) in tokens.iter().enumerate() {
            let seen = pos as usize + 1;
            if block_start >= seen {
                continue;
            }
            let end = (block_start + block).min(seen);
            for j in 0..group {
                let qi = t * group + j;
                let weights = &scores[qi * ctx + block_start..qi * ctx + end];
                // SAFETY: the item owns the output rows of its tokens' heads in its group; no
                // other item writes them (items differ in token or in key/value head).
                let out = unsafe { inputs.out.part(query_start(t, j), d) };
                // Columns in chunks whose accumulators fit in registers.
                let mut column = 0;
                while column < d {
                    let left = (d - column) / 8;
                    let at = |key_index: usize| key_start(block_start + key_index) + column;
                    let (first, out) = (block_start == 0, &mut out[column..]);
                    column += 8 * match left {
                        8.. => weighted_sum::<8, E>(v, weights, at, first, out),
                        4..=7 => weighted_sum::<4, E>(v, weights, at, first, out),
                        2..=3 => weighted_sum::<2, E>(v, weights, at, first, out),
                        _ => weighted_sum::<1, E>(v, weights, at, first, out),
                    };
                }
            }
        }
    }
    for (t, _) in tokens.iter().enumerate() {
        for j in 0..group {
            let scale = _mm256_set1_ps(1.0 / sums[t * group + j]);
            // SAFETY: as above.
            let out = unsafe { inputs.out.part(query_start(t, j), d) };
            for b in 0..vectors {
                store(out, 8 * b, _mm256_mul_ps(load(out, 8 * b), scale));
            }
        }
    }
}
