//! Quantized matmul on the CPU: Enclave's kernels (`QuantMatrix`) vs candle's `QMatMul`, both
//! through a candle `Tensor` in and out, at SmolLM2-135M's shapes, for one decode row, small
//! and large decode batches, and a prefill chunk. Throughput is in FLOP (2 × m × k × n).
//!
//! Where the CPU has AVX-512 VNNI (the default kernels then), the AVX2 kernels are measured
//! beside them (`ours-avx2`, on plain slices rather than tensors).
//!
//! `cargo bench --bench matmul` (a filter such as `-- Q4_0` runs a part). Under `cargo test`
//! (no `--bench` argument) criterion runs each benchmark once: only the small cases then.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use enclave::engine::kernels::{Isa, QuantMatrix};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The weight formats compared.
const DTYPES: [GgmlDType; 8] = [
    GgmlDType::Q4_1,
    GgmlDType::Q4_0,
    GgmlDType::Q5_0,
    GgmlDType::Q5_1,
    GgmlDType::Q8_0,
    GgmlDType::Q4K,
    GgmlDType::Q5K,
    GgmlDType::Q6K,
];
/// SmolLM2-135M's shapes, (in_features, out_features): attention projections, MLP up/gate,
/// MLP down, and the output head.
const SHAPES: [(usize, usize); 4] = [(576, 576), (576, 1536), (1536, 576), (576, 49152)];
/// The K-quants' super-blocks span 256 inputs, which 576 is not a multiple of: SmolLM2's MLP
/// down projection, and a 1B-class model's (TinyLlama's 2048 wide) attention and MLP up/gate.
const K_SHAPES: [(usize, usize); 3] = [(1536, 576), (2048, 2048), (2048, 5632)];
/// Activation rows: one decode step, small and large decode batches, a prefill chunk.
const ROWS: [usize; 4] = [1, 8, 32, 512];

/// Uniform values in [-scale, scale).
fn random(rng: &mut StdRng, len: usize, scale: f32) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-scale..scale)).collect()
}

fn matmul(c: &mut Criterion) {
    let measuring = std::env::args().any(|arg| arg == "--bench");
    let mut rng = StdRng::seed_from_u64(42);
    for dtype in DTYPES {
        let k_quant = matches!(dtype, GgmlDType::Q4K | GgmlDType::Q5K | GgmlDType::Q6K);
        for (k, n) in if k_quant { &K_SHAPES[..] } else { &SHAPES[..] } {
            let (k, n) = (*k, *n);
            if !measuring && n > 1536 {
                continue;
            }
            let weights = Tensor::from_vec(random(&mut rng, n * k, 0.05), (n, k), &Device::Cpu).unwrap();
            let qtensor = Arc::new(QTensor::quantize(&weights, dtype).unwrap());
            let ours = QuantMatrix::from_qtensor(&qtensor).unwrap();
            let candle = QMatMul::from_arc(qtensor).unwrap();
            let mut group = c.benchmark_group(format!("{dtype:?} {k}x{n}"));
            group
                .sample_size(10)
                .warm_up_time(Duration::from_millis(300))
                .measurement_time(Duration::from_secs(1));
            for m in ROWS {
                if !measuring && m > 8 {
                    continue;
                }
                let x = Tensor::from_vec(random(&mut rng, m * k, 1.0), (m, k), &Device::Cpu).unwrap();
                group.throughput(Throughput::Elements((2 * m * k * n) as u64));
                group.bench_with_input(BenchmarkId::new("ours", m), &x, |b, x| {
                    b.iter(|| black_box(ours.forward(x).unwrap()))
                });
                if Isa::detect() != Isa::Avx2 && Isa::Avx2.is_available() {
                    // The AVX2 kernels beside the AVX-512 VNNI ones the CPU runs by default.
                    let values = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                    let mut out = vec![0f32; m * n];
                    group.bench_function(BenchmarkId::new("ours-avx2", m), |b| {
                        b.iter(|| ours.matmul_with(Isa::Avx2, black_box(&values), m, &mut out))
                    });
                }
                group.bench_with_input(BenchmarkId::new("candle", m), &x, |b, x| {
                    b.iter(|| black_box(candle.forward(x).unwrap()))
                });
            }
            group.finish();
        }
    }
}

criterion_group!(benches, matmul);
criterion_main!(benches);
