//! The kernels of an encoder (BERT-family embedding models), on plain f32 rows: a linear layer
//! with its bias, layer norm over a residual sum, GELU, and bidirectional attention over packed
//! sequences of different lengths (no padding is ever computed).
//!
//! The linear layers run on the gemm crate (what candle's matmul uses); the rest is fused here
//! so that no intermediate (attention scores above all: `[batch, heads, len, len]`) is ever
//! materialised, and runs on the kernels' pool ([`crate::pool`]) like the chat kernels, so that
//! the process keeps one set of worker threads for them.

use std::ops::Range;

use super::disjoint::Disjoint;
use super::fast_exp;
use super::ops::for_each_row;
use super::reduce;

/// `out[rows, n] = x[rows, k] · wᵀ + bias`, with `w` row-major `[n, k]` (a PyTorch / safetensors
/// linear weight as stored).
pub fn linear(x: &[f32], rows: usize, w: &[f32], bias: &[f32], out: &mut [f32]) {
    let n = bias.len();
    let k = x.len().checked_div(rows).unwrap_or(0);
    assert_eq!(x.len(), rows * k, "x is not rows × k");
    assert_eq!(w.len(), n * k, "w is not n × k");
    assert_eq!(out.len(), rows * n, "out is not rows × n");
    if rows == 0 {
        return;
    }
    for row in out.chunks_exact_mut(n) {
        row.copy_from_slice(bias);
    }
    let threads = candle_core::utils::get_num_threads();
    // Small products (a search query's few tokens) stay on the calling thread, as in
    // `int8_linear` (PARALLEL_MACS).
    let parallelism = if threads > 1 && rows * n * k >= 1 << 25 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: every pointer covers the extent the strides and sizes describe (asserted above):
    // dst rows × n row-major, lhs rows × k row-major, rhs k × n read through w's transpose.
    unsafe {
        gemm::gemm(
            rows,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            true,
            x.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            k as isize,
            1,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `x = layer_norm(x + residual) * gamma + beta`, row by row (`width` = `gamma.len()`).
pub fn add_layer_norm(x: &mut [f32], residual: Option<&[f32]>, gamma: &[f32], beta: &[f32], eps: f32) {
    let width = gamma.len();
    assert_eq!(beta.len(), width);
    if let Some(residual) = residual {
        assert_eq!(residual.len(), x.len());
    }
    for_each_row(x, width, |r, row| {
        if let Some(residual) = residual {
            for (v, add) in row.iter_mut().zip(&residual[r * width..(r + 1) * width]) {
                *v += add;
            }
        }
        let mean = reduce::sum_of(row) / width as f32;
        let variance = reduce::squared_deviations(row, mean) / width as f32;
        let scale = 1.0 / (variance + eps).sqrt();
        for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
            *v = (*v - mean) * scale * g + b;
        }
    });
}

/// GELU as BERT defines it, `x · Φ(x)` with the exact error function (to 1.5e-7), in place.
pub fn gelu_erf(x: &mut [f32], width: usize) {
    for_each_row(x, width, |_, row| fast_exp::gelu(row));
}

/// Self-attention without a mask inside each sequence: `qkv` holds, for every token, its
/// query, key and value (`3 × heads × head_dim` values: all queries, then all keys, then all
/// values); `sequences` are the token ranges of each text. Writes each token's attended values
/// (`heads × head_dim`) into `out`.
///
/// Work items are (text, head, block of queries); each computes its block's scores against all
/// of the text's keys with one small matrix product, a softmax per row, and one product with
/// the values: the scores of a whole text never exist at once.
pub fn bidirectional_attention(
    qkv: &[f32],
    sequences: &[Range<usize>],
    heads: usize,
    head_dim: usize,
    out: &mut [f32],
) {
    let hidden = heads * head_dim;
    let stride = 3 * hidden;
    let tokens = qkv.len() / stride;
    assert_eq!(qkv.len(), tokens * stride, "qkv is not tokens × 3 × hidden");
    assert_eq!(out.len(), tokens * hidden, "out is not tokens × hidden");
    let scale = 1.0 / (head_dim as f32).sqrt();
    const QUERY_BLOCK: usize = 64;
    let mut items: Vec<(usize, usize, Range<usize>)> = Vec::new();
    for (s, sequence) in sequences.iter().enumerate() {
        assert!(sequence.end <= tokens, "sequence out of range");
        for head in 0..heads {
            let mut start = sequence.start;
            while start < sequence.end {
                let end = (start + QUERY_BLOCK).min(sequence.end);
                items.push((s, head, start..end));
                start = end;
            }
        }
    }
    let out = Disjoint::new(out);
    let work = |item: &(usize, usize, Range<usize>), scores: &mut Vec<f32>| {
        let (s, head, queries) = item;
        let keys = &sequences[*s];
        let (m, n) = (queries.len(), keys.len());
        scores.clear();
        scores.resize(m * n, 0.0);
        let q = qkv[queries.start * stride + head * head_dim..].as_ptr();
        let k = qkv[keys.start * stride + hidden + head * head_dim..].as_ptr();
        let v = qkv[keys.start * stride + 2 * hidden + head * head_dim..].as_ptr();
        // SAFETY: the pointers and strides stay inside `qkv` (queries and keys are rows of
        // this text, head slices inside each row) and inside `scores` (m × n).
        unsafe {
            gemm::gemm(
                m,
                n,
                head_dim,
                scores.as_mut_ptr(),
                1,
                n as isize,
                false,
                q,
                1,
                stride as isize,
                k,
                stride as isize,
                1,
                0.0f32,
                scale,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        for row in scores.chunks_exact_mut(n) {
            fast_exp::softmax(row);
        }
        // The (query, head) slots of `out` this item writes: rows `queries`, columns of `head`.
        let first = queries.start * hidden + head * head_dim;
        let last = (queries.end - 1) * hidden + (head + 1) * head_dim;
        assert!(last <= out.len(), "attention output out of range");
        // SAFETY: those slots belong to this item alone (items partition (query, head) pairs)
        // and lie inside `out` (asserted); `v` and `scores` as above.
        unsafe {
            gemm::gemm(
                m,
                head_dim,
                n,
                out.as_mut_ptr().add(first),
                1,
                hidden as isize,
                false,
                scores.as_ptr(),
                1,
                n as isize,
                v,
                1,
                stride as isize,
                0.0f32,
                1.0f32,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    };
    // A short text (a search query) runs on the calling thread, as in `int8_linear`.
    let work_size: usize = sequences.iter().map(|s| s.len() * s.len()).sum::<usize>() * hidden;
    if items.len() < 2 || work_size < 1 << 22 {
        let mut scores = Vec::new();
        items.iter().for_each(|item| work(item, &mut scores));
        return;
    }
    crate::pool::execute_chunked(items.len(), |range| {
        let mut scores = Vec::new();
        for item in &items[range] {
            work(item, &mut scores);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_adds_the_bias_to_x_times_w_transposed() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2 × 3
        let w = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]; // 2 × 3
        let bias = [10.0, 20.0];
        let mut out = [0.0; 4];
        linear(&x, 2, &w, &bias, &mut out);
        assert_eq!(out, [14.0, 22.0, 20.0, 25.0]);
    }

    #[test]
    fn attention_stays_inside_each_sequence() {
        // Two sequences of one token each, one head of width 2: each attends only to itself.
        let qkv = [
            1.0, 0.0, 1.0, 0.0, 5.0, 6.0, // token 0: q, k, v
            0.0, 1.0, 0.0, 1.0, 7.0, 8.0, // token 1
        ];
        let mut out = [0.0; 4];
        bidirectional_attention(&qkv, &[0..1, 1..2], 1, 2, &mut out);
        assert_eq!(out, [5.0, 6.0, 7.0, 8.0]);
        // One sequence of both: an average weighted by the softmax of the scores.
        let both = std::slice::from_ref(&(0..2));
        bidirectional_attention(&qkv, both, 1, 2, &mut out);
        let w = 1.0 / (1.0 + (-1.0f32 / 2f32.sqrt()).exp());
        assert!((out[0] - (w * 5.0 + (1.0 - w) * 7.0)).abs() < 1e-5);
    }

    #[test]
    fn layer_norm_centres_and_scales_each_row() {
        let mut x = [1.0, 2.0, 3.0, 10.0, 10.0, 10.0];
        add_layer_norm(&mut x, Some(&[0.0, 0.0, 0.0, 1.0, 2.0, 3.0]), &[1.0; 3], &[0.5; 3], 0.0);
        // Both rows are (-1, 0, 1) · sqrt(3/2) after centring and scaling, then + 0.5.
        let expected = [0.5 - 1.224_745, 0.5, 0.5 + 1.224_745];
        for (got, want) in x.iter().zip(expected.iter().chain(expected.iter())) {
            assert!((got - want).abs() < 1e-5, "{x:?}");
        }
    }
}
