//! Batch-wide causal attention over a paged KV cache, as one candle op on the CPU.
//!
//! Each (token, head) pair is computed on its own, in a fixed order that depends only on the
//! token's position, so a sequence's result does not depend on the batch nor on how its prompt
//! was cut into chunks. K and V are read in place from the cache: no gather, no repeated keys.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp3, Layout, Shape};

/// The batch-wide CPU attention: `q [tokens, heads * d]` against the layer's whole cache
/// `k, v [slots, kv_heads, d]`, returning `[tokens, heads * d]`.
#[derive(Debug)]
pub struct PagedAttention {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Dimensions per head.
    pub head_dim: usize,
    /// `1 / sqrt(head_dim)`.
    pub scale: f32,
    /// Per new token: its sequence (index into `slots`) and its position.
    pub tokens: Vec<(u32, u32)>,
    /// Per sequence: the slots of positions `0..end`.
    pub slots: Vec<Arc<Vec<u32>>>,
}

/// The f32 data of a contiguous storage.
fn contiguous<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    let data = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("paged attention: {what} is not contiguous"),
    }
}

/// A pointer to the output that workers write disjoint rows of.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: every work item writes its own `head_dim` values only.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper).
    fn get(self) -> *mut f32 {
        self.0
    }
}

impl CustomOp3 for PagedAttention {
    fn name(&self) -> &'static str {
        "enclave-paged-attention"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        q_layout: &Layout,
        k: &CpuStorage,
        k_layout: &Layout,
        v: &CpuStorage,
        v_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (q, k, v) = (
            contiguous(q, q_layout, "q")?,
            contiguous(k, k_layout, "k")?,
            contiguous(v, v_layout, "v")?,
        );
        let (heads, kv_heads, d) = (self.heads, self.kv_heads, self.head_dim);
        let n_tokens = self.tokens.len();
        if q.len() != n_tokens * heads * d || k.len() != v.len() || k.len() % (kv_heads * d) != 0 {
            candle_core::bail!("paged attention: inconsistent shapes")
        }
        let slots_total = k.len() / (kv_heads * d);
        for slots in &self.slots {
            if slots.iter().any(|&s| s as usize >= slots_total) {
                candle_core::bail!("paged attention: slot outside the cache")
            }
        }
        let group = heads / kv_heads;
        let mut out = vec![0f32; n_tokens * heads * d];
        let out_ptr = OutPtr(out.as_mut_ptr());
        let work = |items: std::ops::Range<usize>| {
            let mut scores = Vec::new();
            for item in items {
                let (token, head) = (item / heads, item % heads);
                let (seq, pos) = self.tokens[token];
                let slots = &self.slots[seq as usize][..pos as usize + 1];
                let query = &q[item * d..(item + 1) * d];
                let kv_offset = (head / group) * d;
                // SAFETY: item `item` owns out[item * d..(item + 1) * d].
                let out = unsafe { std::slice::from_raw_parts_mut(out_ptr.get().add(item * d), d) };
                attend_one(
                    query,
                    k,
                    v,
                    slots,
                    kv_heads * d,
                    kv_offset,
                    self.scale,
                    &mut scores,
                    out,
                );
            }
        };
        let items = n_tokens * heads;
        // One thread for small work: waking the pool costs more than it saves.
        let flops: usize = self.tokens.iter().map(|&(_, p)| p as usize + 1).sum::<usize>() * heads * d * 4;
        if flops < 1 << 18 {
            work(0..items);
        } else {
            candle_core::utils::barrier_pool().execute_chunked(items, work);
        }
        let shape = Shape::from((n_tokens, heads * d));
        Ok((CpuStorage::F32(out), shape))
    }
}

/// One query head over `slots` (the positions it sees, in order): softmax of the scaled dot
/// products with the keys, applied to the values. Keys and values of slot `s` start at
/// `s * row + offset`. The summation order is fixed by `slots.len()` and `query.len()`.
#[allow(clippy::too_many_arguments)]
fn attend_one(
    query: &[f32],
    k: &[f32],
    v: &[f32],
    slots: &[u32],
    row: usize,
    offset: usize,
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let d = query.len();
    scores.clear();
    let mut max = f32::NEG_INFINITY;
    for &slot in slots {
        let start = slot as usize * row + offset;
        let score = dot(query, &k[start..start + d]) * scale;
        max = max.max(score);
        scores.push(score);
    }
    let mut sum = 0f32;
    for score in scores.iter_mut() {
        *score = (*score - max).exp();
        sum += *score;
    }
    out.fill(0.0);
    for (&slot, &weight) in slots.iter().zip(scores.iter()) {
        let start = slot as usize * row + offset;
        for (o, &x) in out.iter_mut().zip(&v[start..start + d]) {
            *o += weight * x;
        }
    }
    let inv = 1.0 / sum;
    for o in out.iter_mut() {
        *o *= inv;
    }
}

/// A dot product in eight lanes (vectorizes without fast-math), lanes summed in a fixed
/// tree.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = a.len() / 8;
    for (ca, cb) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for i in 0..8 {
            lanes[i] += ca[i] * cb[i];
        }
    }
    let mut tail = 0f32;
    for i in chunks * 8..a.len() {
        tail += a[i] * b[i];
    }
    ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7])) + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dot_product_is_exact_on_small_integers() {
        let a: Vec<f32> = (0..19).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..19).map(|i| (i % 3) as f32).collect();
        let expected: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert_eq!(dot(&a, &b), expected);
    }

    #[test]
    fn one_position_returns_its_value() {
        // Two slots of 1 kv head x 2 dims; the query sees slot 1 only.
        let k = [9.0, 9.0, 1.0, 2.0];
        let v = [7.0, 7.0, 3.0, 4.0];
        let mut out = [0.0; 2];
        attend_one(&[0.5, 0.5], &k, &v, &[1], 2, 0, 1.0, &mut Vec::new(), &mut out);
        assert_eq!(out, [3.0, 4.0]);
    }
}
