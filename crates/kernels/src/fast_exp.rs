//! `exp` over slices of f32, branch-free so that it vectorises, compiled three times (AVX-512,
//! AVX2 + FMA, baseline) and chosen at run time. The encoder's softmax and GELU call `exp` for
//! every attention score and every intermediate activation: glibc's scalar `expf` was a seventh
//! of an embedding model's time. The chat models' SiLU-gated MLP calls it for every
//! intermediate activation too ([`silu_mul`]: glibc's `expf` was 2% of a 32-stream step).
//!
//! Method (Cephes `expf`): `x = n·ln 2 + r` with `n = round(x / ln 2)` and `|r| ≤ ln 2 / 2`
//! (ln 2 split in two constants so that `r` is exact), `e^r` by a degree-6 polynomial, and
//! `2^n` built in the exponent bits. Relative error below 2e-7 over the range where the result
//! is a normal f32; inputs are clamped to that range (below it the result is 0 to within f32's
//! normal range, which is what softmax and GELU need).

use super::reduce;

/// `e^x` for one value (the body every vectorised loop inlines).
#[inline(always)]
fn exp_one(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Above 88.3, n would reach 128 (no f32 exponent); below -87.3 the result is no longer a
    // normal number.
    let x = x.clamp(-87.3, 88.3);
    // floor(y + 0.5) rather than round(): it is one instruction in every vector width.
    let n = x.mul_add(LOG2E, 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p.mul_add(r, 1.398_199_9e-3);
    let p = p.mul_add(r, 8.333_452e-3);
    let p = p.mul_add(r, 4.166_579_6e-2);
    let p = p.mul_add(r, 1.666_666_5e-1);
    let p = p.mul_add(r, 0.5);
    let e_r = (p * r).mul_add(r, r) + 1.0;
    // 2^n through the exponent field (n is an integer in -126..=128 after the clamp). n is
    // read from the mantissa of n + 1.5·2²³ rather than by `n as i32`, whose saturating
    // semantics compile to one scalar conversion and two compares per lane: that was most of
    // the softmax's time.
    let n = (n + 12_582_912.0).to_bits().wrapping_sub(0x4B40_0000) as i32;
    let scale = f32::from_bits(((n + 127) as u32) << 23);
    e_r * scale
}

/// Applies `f(x, e)` to every `x` of `values` where `e = exp(scale · x + shift)`; `f` gets
/// the value and its exponential and returns the new value.
#[inline(always)]
fn map_with_exp(values: &mut [f32], scale: f32, shift: f32, f: impl Fn(f32, f32) -> f32) {
    for v in values.iter_mut() {
        let e = exp_one(scale.mul_add(*v, shift));
        *v = f(*v, e);
    }
}

#[inline(always)]
fn softmax_body(row: &mut [f32]) -> f32 {
    let max = reduce::max_of(row);
    map_with_exp(row, 1.0, -max, |_, e| e);
    let total = reduce::sum_of(row);
    let inverse = 1.0 / total;
    row.iter_mut().for_each(|v| *v *= inverse);
    total
}

/// GELU with the exact error function, `x · Φ(x)`, in place. The error function is
/// Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7), whose `exp(-a²)` is [`exp_one`].
#[inline(always)]
fn gelu_body(values: &mut [f32]) {
    for v in values.iter_mut() {
        let x = *v;
        let a = (x * std::f32::consts::FRAC_1_SQRT_2).abs();
        let t = 1.0 / 0.327_591_1f32.mul_add(a, 1.0);
        let poly = t * (0.254_829_6 + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152 + t * 1.061_405_4))));
        let erf_abs = 1.0 - poly * exp_one(-a * a);
        let erf = erf_abs.copysign(x);
        *v = 0.5 * x * (1.0 + erf);
    }
}

/// Defines a public function that runs `$body` compiled for AVX-512, for AVX2 + FMA, or for
/// the baseline, whichever the CPU has (the body's loops vectorise to that width).
macro_rules! dispatched {
    ($(#[$doc:meta])* pub fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty = $body:ident;) => {
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512dq,avx512vl,fma")]
                unsafe fn wide($($arg: $ty),*) -> $ret {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn narrow($($arg: $ty),*) -> $ret {
                    $body($($arg),*)
                }
                use std::arch::is_x86_feature_detected as has;
                if has!("avx512f") && has!("avx512dq") && has!("avx512vl") && has!("fma") {
                    // SAFETY: the features `wide` is compiled for were just detected.
                    return unsafe { wide($($arg),*) };
                }
                if has!("avx2") && has!("fma") {
                    // SAFETY: as above, for `narrow`.
                    return unsafe { narrow($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

dispatched! {
    /// Softmax of `row` in place (returns the sum of the exponentials before normalising).
    pub fn softmax(row: &mut [f32]) -> f32 = softmax_body;
}

dispatched! {
    /// GELU (exact, BERT's) of every value, in place.
    pub fn gelu(values: &mut [f32]) -> () = gelu_body;
}

/// `gate = silu(gate) ⊙ up`, `silu(g) = g / (1 + e^-g)`: the gated MLP's activation. The same
/// operations in every vector width (fused multiply-adds, one division), so the same bits on
/// every CPU.
#[inline(always)]
fn silu_mul_body(gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len(), "silu-mul of slices of different lengths");
    for (g, &u) in gate.iter_mut().zip(up) {
        let x = *g;
        *g = x / (exp_one(-x) + 1.0) * u;
    }
}

dispatched! {
    /// `gate = silu(gate) ⊙ up`, element by element.
    pub fn silu_mul(gate: &mut [f32], up: &[f32]) -> () = silu_mul_body;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silu_mul_matches_its_definition_and_every_cpu_gives_the_same_bits() {
        let gate: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) * 0.23).collect();
        let up: Vec<f32> = (0..1000).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
        let mut dispatched = gate.clone();
        silu_mul(&mut dispatched, &up);
        let mut baseline = gate.clone();
        silu_mul_body(&mut baseline, &up);
        for ((&g, &u), (&ours, &base)) in gate.iter().zip(&up).zip(dispatched.iter().zip(&baseline)) {
            assert_eq!(ours.to_bits(), base.to_bits(), "silu({g}) * {u}");
            let (g, u) = (f64::from(g), f64::from(u));
            let exact = g / (1.0 + (-g).exp()) * u;
            // Relative error 1e-6; below e^-87 (the clamp) the product is within 1e-30 of 0.
            let error = (f64::from(ours) - exact).abs();
            assert!(
                error <= 1e-6 * exact.abs() + 1e-30,
                "silu({g}) * {u}: {ours} vs {exact}"
            );
        }
    }

    #[test]
    fn exp_is_within_two_ten_millionths_of_the_standard_library() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.3 {
            let want = (x as f64).exp();
            let got = exp_one(x) as f64;
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 2e-7, "worst relative error {worst}");
        assert_eq!(exp_one(-1000.0), exp_one(-87.3));
        assert!(exp_one(-1000.0) < 1e-37);
        assert!(exp_one(1000.0).is_finite());
    }

    #[test]
    fn softmax_sums_to_one_and_keeps_the_order() {
        let mut row: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin() * 20.0).collect();
        let original = row.clone();
        softmax(&mut row);
        let total: f32 = row.iter().sum();
        assert!((total - 1.0).abs() < 1e-5, "{total}");
        let max = original.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let denominator: f64 = original.iter().map(|v| ((v - max) as f64).exp()).sum();
        for (got, x) in row.iter().zip(&original) {
            let want = ((x - max) as f64).exp() / denominator;
            assert!((*got as f64 - want).abs() < 1e-6, "{got} vs {want}");
        }
    }

    /// erf in f64 by its Maclaurin series (cancellation below 1e-9 for |x| <= 4.5).
    fn series_erf(x: f64) -> f64 {
        let mut sum = 0.0;
        let mut term = x;
        let mut n = 0.0;
        while term.abs() > 1e-17 {
            sum += term / (2.0 * n + 1.0);
            n += 1.0;
            term *= -x * x / n;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn gelu_matches_the_exact_definition() {
        let mut values: Vec<f32> = (-600..=600).map(|i| i as f32 * 0.01).collect();
        let inputs = values.clone();
        gelu(&mut values);
        for (got, x) in values.iter().zip(&inputs) {
            let x = f64::from(*x);
            let want = 0.5 * x * (1.0 + series_erf(x / std::f64::consts::SQRT_2));
            assert!((f64::from(*got) - want).abs() < 1e-6, "gelu({x}) = {got}, want {want}");
        }
    }
}
