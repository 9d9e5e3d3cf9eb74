//! [`KvWrite`]: a batch's new key (or value) rows written into a paged KV cache on the CPU, in
//! place, converted to the cache's dtype on the way.
//!
//! candle's way, `to_dtype` then `scatter_set` with one slot index per value, converts each
//! value alone (no F16C vectors) into a temporary tensor and then copies value by value
//! through the index tensor: 2.9% of the engine thread at 8 streams, a serial part of every
//! layer. Here each row goes straight to its slot: one vectorised conversion (half's slice
//! conversion, F16C where the CPU has it, the same round-to-nearest-even as candle's) or one
//! copy per row.

use candle_core::{CpuStorage, InplaceOp3, Layout};
use half::slice::HalfFloatSliceExt;

use super::ops::contiguous;

/// Writes row `i` of `rows` (`[tokens, kv_heads * head_dim]`, f32) into slot `slots[i]` of the
/// cache (`[cache slots, kv_heads, head_dim]`, f32 or f16): `cache.inplace_op3(&rows, &slots,
/// &KvWrite)`, with `slots` a u32 tensor of `[tokens]`.
#[derive(Clone, Copy, Debug)]
pub struct KvWrite;

impl InplaceOp3 for KvWrite {
    fn name(&self) -> &'static str {
        "enclave-kv-write"
    }

    fn cpu_fwd(
        &self,
        cache: &mut CpuStorage,
        cache_layout: &Layout,
        rows: &CpuStorage,
        rows_layout: &Layout,
        slots: &CpuStorage,
        slots_layout: &Layout,
    ) -> candle_core::Result<()> {
        let Ok((cache_slots, heads, d)) = cache_layout.shape().dims3() else {
            candle_core::bail!("kv write: the cache must be [slots, kv_heads, head_dim]")
        };
        let width = heads * d;
        let rows = contiguous::<f32>(rows, rows_layout, "kv write rows")?;
        let slots = contiguous::<u32>(slots, slots_layout, "kv write slots")?;
        if rows.len() != slots.len() * width {
            candle_core::bail!("kv write: {} values for {} slots of {width}", rows.len(), slots.len())
        }
        if let Some(&slot) = slots.iter().find(|&&slot| slot as usize >= cache_slots) {
            candle_core::bail!("kv write: slot {slot} outside the cache's {cache_slots}")
        }
        let Some((start, end)) = cache_layout.contiguous_offsets() else {
            candle_core::bail!("kv write: the cache is not contiguous")
        };
        let targets = slots.iter().map(|&slot| slot as usize * width);
        match cache {
            CpuStorage::F32(values) => {
                let cache = &mut values[start..end];
                for (row, at) in rows.chunks_exact(width).zip(targets) {
                    cache[at..at + width].copy_from_slice(row);
                }
            }
            CpuStorage::F16(values) => {
                let cache = &mut values[start..end];
                for (row, at) in rows.chunks_exact(width).zip(targets) {
                    cache[at..at + width].convert_from_f32_slice(row);
                }
            }
            _ => candle_core::bail!("kv write: the cache must be f32 or f16"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};

    use super::*;

    #[test]
    fn rows_land_in_their_slots_as_scatter_set_puts_them() {
        // 3 rows into slots 5, 0 and 2 of an 8-slot cache of 2 heads × 4, f32 and f16: the
        // same values as candle's conversion and scatter, the other slots untouched.
        let (slots, heads, d) = (8, 2, 4);
        let values: Vec<f32> = (0..3 * heads * d).map(|i| i as f32 * 0.37 - 3.1).collect();
        let rows = Tensor::from_vec(values, (3, heads * d), &Device::Cpu).unwrap();
        let targets = [5u32, 0, 2];
        for dtype in [DType::F32, DType::F16] {
            let ours = Tensor::ones((slots, heads, d), dtype, &Device::Cpu).unwrap();
            let slot_tensor = Tensor::new(&targets[..], &Device::Cpu).unwrap();
            ours.inplace_op3(&rows, &slot_tensor, &KvWrite).unwrap();

            let theirs = Tensor::ones((slots, heads * d), dtype, &Device::Cpu).unwrap();
            let ids: Vec<u32> = targets.iter().flat_map(|&s| [s; 8]).collect();
            let ids = Tensor::from_vec(ids, (3, heads * d), &Device::Cpu).unwrap();
            theirs.scatter_set(&ids, &rows.to_dtype(dtype).unwrap(), 0).unwrap();

            let bits = |t: &Tensor| {
                t.flatten_all()
                    .unwrap()
                    .to_dtype(DType::F32)
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
            };
            assert_eq!(bits(&ours), bits(&theirs), "{dtype:?}");
        }
    }

    #[test]
    fn a_slot_outside_the_cache_is_an_error() {
        let cache = Tensor::zeros((4, 1, 2), DType::F32, &Device::Cpu).unwrap();
        let rows = Tensor::zeros((1, 2), DType::F32, &Device::Cpu).unwrap();
        let slots = Tensor::new(&[4u32], &Device::Cpu).unwrap();
        let error = cache.inplace_op3(&rows, &slots, &KvWrite).unwrap_err();
        assert!(error.to_string().contains("slot 4 outside"), "{error}");
    }
}
