//! Reductions of f32 slices (max, sum, squared deviations) in 16 independent lanes. A plain
//! `fold` or `sum` is one serial chain of scalar operations, which floating-point semantics
//! forbid the compiler to split; in lanes the loop vectorises (16 lanes fill a 512-bit register,
//! and narrower registers take them in parts). Was the softmax's bottleneck.

/// Lanes of the reductions below: one 512-bit register of f32.
const LANES: usize = 16;

/// The largest value (NEG_INFINITY for none).
#[inline(always)]
pub(crate) fn max_of(values: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = if v > *lane { v } else { *lane };
        }
    }
    let mut max = lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for &v in rest {
        max = max.max(v);
    }
    max
}

/// The sum.
#[inline(always)]
pub(crate) fn sum_of(values: &[f32]) -> f32 {
    let mut lanes = [0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += v;
        }
    }
    lanes.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

/// `Σ v²` accumulated in f64 (as ggml's RMS norm does), in 8 lanes: as one serial chain of
/// f32 additions it held a decode step's norms at one addition per four cycles (1.7% of the
/// engine thread at 8 streams); f32 lanes instead of that chain moved the sums by an ulp, enough
/// to flip a near tie of SmolLM2's greedy answers. In f64 the sum is exact to well below an
/// f32 ulp whatever the order.
#[inline(always)]
pub(crate) fn sum_of_squares(values: &[f32]) -> f32 {
    const WIDE: usize = 8;
    let mut lanes = [0f64; WIDE];
    let chunks = values.chunks_exact(WIDE);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            let v = f64::from(v);
            *lane += v * v;
        }
    }
    let sum = lanes.iter().sum::<f64>() + rest.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>();
    sum as f32
}

/// `Σ (v − mean)²`.
#[inline(always)]
pub(crate) fn squared_deviations(values: &[f32], mean: f32) -> f32 {
    let mut lanes = [0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += (v - mean) * (v - mean);
        }
    }
    lanes.iter().sum::<f32>() + rest.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_reductions_match_the_serial_ones() {
        let values: Vec<f32> = (0..37).map(|i| ((i * 7919) % 101) as f32 / 10.0 - 3.0).collect();
        for n in [0, 1, 15, 16, 17, 37] {
            let v = &values[..n];
            assert_eq!(max_of(v), v.iter().copied().fold(f32::NEG_INFINITY, f32::max), "{n}");
            let serial: f32 = v.iter().sum();
            assert!((sum_of(v) - serial).abs() < 1e-4, "{n}");
            let mean = if n > 0 { serial / n as f32 } else { 0.0 };
            let want: f32 = v.iter().map(|x| (x - mean) * (x - mean)).sum();
            assert!((squared_deviations(v, mean) - want).abs() < 1e-3, "{n}");
            let squares: f32 = v.iter().map(|x| x * x).sum();
            assert!((sum_of_squares(v) - squares).abs() < 1e-3, "{n}");
        }
    }
}
