//! The KV tensors: for every layer one K and one V tensor of
//! `[num_blocks * block_size, kv_heads, head_dim]` (block `b` holds rows
//! `b * block_size..(b + 1) * block_size`, "slots") on the model's device, read with candle ops
//! (`index_select`) or the attention kernels, and written with the kernels' in-place write on
//! the CPU and candle's `scatter_set` on other devices.

use candle_core::{DType, Device, Tensor};

use super::block::{BlockAllocator, BlockTable, KvError};

/// The shape of a KV cache: what one block holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvCacheConfig {
    /// Transformer layers.
    pub num_layers: usize,
    /// Key/value heads per layer.
    pub num_kv_heads: usize,
    /// Dimensions per head.
    pub head_dim: usize,
    /// Tokens per block.
    pub block_size: usize,
    /// Element type of the stored K and V.
    pub dtype: DType,
}

impl KvCacheConfig {
    /// Values of one token in one layer for K (and as many for V).
    pub fn kv_dim(&self) -> usize {
        self.num_kv_heads * self.head_dim
    }

    /// Bytes of one block: K and V of every layer.
    pub fn block_bytes(&self) -> usize {
        2 * self.num_layers * self.block_size * self.kv_dim() * self.dtype.size_in_bytes()
    }

    /// Blocks that fit `budget_bytes`.
    pub fn blocks_for_budget(&self, budget_bytes: usize) -> usize {
        budget_bytes / self.block_bytes().max(1)
    }
}

/// The K and V of one layer. Both views of each tensor share one storage.
#[derive(Debug)]
struct LayerKv {
    /// `[num_blocks * block_size, kv_heads, head_dim]`: gathered by slot for attention.
    k: Tensor,
    /// Same layout as `k`.
    v: Tensor,
    /// `k` as `[num_blocks * block_size, kv_dim]`, for writes.
    k_rows: Tensor,
    /// `v` as `[num_blocks * block_size, kv_dim]`, for writes.
    v_rows: Tensor,
}

/// A paged KV cache: a pool of fixed-size blocks of K and V for every layer, and the
/// allocator that hands them out to sequences' [`BlockTable`]s.
#[derive(Debug)]
pub struct KvCache {
    /// What a block holds.
    config: KvCacheConfig,
    /// Who holds which block.
    allocator: BlockAllocator,
    /// The tensors, one entry per layer.
    layers: Vec<LayerKv>,
    /// Where the tensors live.
    device: Device,
}

impl KvCache {
    /// A cache with as many blocks as `budget_bytes` holds.
    pub fn with_budget(config: KvCacheConfig, budget_bytes: usize, device: &Device) -> Result<Self, KvError> {
        let num_blocks = config.blocks_for_budget(budget_bytes);
        if num_blocks == 0 {
            return Err(KvError::BudgetTooSmall {
                budget: budget_bytes,
                block_bytes: config.block_bytes(),
            });
        }
        Self::with_blocks(config, num_blocks, device).map_err(|e| KvError::Device(e.to_string()))
    }

    /// A cache of `num_blocks` blocks, zeroed.
    pub fn with_blocks(config: KvCacheConfig, num_blocks: usize, device: &Device) -> candle_core::Result<Self> {
        let slots = num_blocks * config.block_size;
        let layers = (0..config.num_layers)
            .map(|_| {
                let k = zeros((slots, config.num_kv_heads, config.head_dim), config.dtype, device)?;
                let v = zeros((slots, config.num_kv_heads, config.head_dim), config.dtype, device)?;
                Ok(LayerKv {
                    k_rows: k.reshape((slots, config.kv_dim()))?,
                    v_rows: v.reshape((slots, config.kv_dim()))?,
                    k,
                    v,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            config,
            allocator: BlockAllocator::new(num_blocks),
            layers,
            device: device.clone(),
        })
    }

    /// What a block holds.
    pub fn config(&self) -> &KvCacheConfig {
        &self.config
    }

    /// Blocks in the pool.
    pub fn num_blocks(&self) -> usize {
        self.allocator.num_blocks()
    }

    /// Where the tensors live.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Who holds which block.
    pub fn allocator(&self) -> &BlockAllocator {
        &self.allocator
    }

    /// Who holds which block, to allocate and release.
    pub fn allocator_mut(&mut self) -> &mut BlockAllocator {
        &mut self.allocator
    }

    /// An empty block table for this cache's block size.
    pub fn new_table(&self) -> BlockTable {
        BlockTable::new(self.config.block_size)
    }

    /// Grows `table` to hold `num_tokens` positions (see [`BlockTable::reserve`]).
    pub fn reserve(&mut self, table: &mut BlockTable, num_tokens: usize) -> Result<(), KvError> {
        table.reserve(&mut self.allocator, num_tokens)
    }

    /// Releases every block of `table`.
    pub fn release(&mut self, table: &mut BlockTable) -> Result<(), KvError> {
        table.release(&mut self.allocator)
    }

    /// Writes the K and V rows of `layer` (`[tokens, kv_dim]` each) into the slots named by
    /// `slot_ids`, built once per batch by [`write_slot_ids`]: on the CPU the kernels' in-place
    /// write ([`crate::engine::kernels::KvWrite`], each row converted and copied to its slot),
    /// elsewhere `scatter_set`.
    pub fn write(&mut self, layer: usize, slot_ids: &Tensor, k: &Tensor, v: &Tensor) -> candle_core::Result<()> {
        let entry = &self.layers[layer];
        if self.device.is_cpu() {
            let op = crate::engine::kernels::KvWrite;
            entry.k.inplace_op3(&k.contiguous()?, slot_ids, &op)?;
            return entry.v.inplace_op3(&v.contiguous()?, slot_ids, &op);
        }
        let dtype = self.config.dtype;
        entry
            .k_rows
            .scatter_set(slot_ids, &k.to_dtype(dtype)?.contiguous()?, 0)?;
        entry
            .v_rows
            .scatter_set(slot_ids, &v.to_dtype(dtype)?.contiguous()?, 0)?;
        Ok(())
    }

    /// The K and V of `layer` at `slots` (a u32 tensor of pool slots), each
    /// `[slots, kv_heads, head_dim]` in the cache's dtype.
    pub fn gather(&self, layer: usize, slots: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let entry = &self.layers[layer];
        Ok((entry.k.index_select(slots, 0)?, entry.v.index_select(slots, 0)?))
    }

    /// The whole K and V of `layer`, `[num_blocks * block_size, kv_heads, head_dim]` (for
    /// kernels that read blocks in place, and for tests).
    pub fn layer(&self, layer: usize) -> (&Tensor, &Tensor) {
        let entry = &self.layers[layer];
        (&entry.k, &entry.v)
    }
}

/// A zeroed tensor whose pages the OS maps only when written: candle fills an f16 tensor's
/// zeros one by one (only f32 and the integer types come from zeroed allocations), which made a
/// 2 GiB f16 cache resident at start (peak RSS 2.3 GiB instead of 1.0, a second more to start).
fn zeros(shape: (usize, usize, usize), dtype: DType, device: &Device) -> candle_core::Result<Tensor> {
    if dtype == DType::F16 && device.is_cpu() {
        use half::vec::HalfBitsVecExt;
        let (a, b, c) = shape;
        // `vec![0u16; n]` is a zeroed allocation; the f16 of bits 0 is +0.0.
        let values: Vec<half::f16> = vec![0u16; a * b * c].reinterpret_into();
        return Tensor::from_vec(values, shape, device);
    }
    Tensor::zeros(shape, dtype, device)
}

/// Builds the `slot_ids` argument of [`KvCache::write`] for a cache on `device`: on the CPU the
/// slots as they are (`[tokens]`); elsewhere each slot repeated `kv_dim` times (`[tokens,
/// kv_dim]`, the layout `scatter_set` wants).
pub fn write_slot_ids(slots: &[u32], kv_dim: usize, device: &Device) -> candle_core::Result<Tensor> {
    if device.is_cpu() {
        return Tensor::new(slots, device);
    }
    let ids: Vec<u32> = slots
        .iter()
        .flat_map(|&slot| std::iter::repeat_n(slot, kv_dim))
        .collect();
    Tensor::from_vec(ids, (slots.len(), kv_dim), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> KvCacheConfig {
        KvCacheConfig {
            num_layers: 2,
            num_kv_heads: 2,
            head_dim: 4,
            block_size: 4,
            dtype: DType::F32,
        }
    }

    #[test]
    fn the_budget_sets_the_number_of_blocks() {
        let config = config();
        // 2 (K, V) x 2 layers x 4 tokens x 8 values x 4 bytes.
        assert_eq!(config.block_bytes(), 512);
        let cache = KvCache::with_budget(config, 512 * 10 + 100, &Device::Cpu).unwrap();
        assert_eq!(cache.num_blocks(), 10);
        assert_eq!(cache.layer(1).0.dims(), &[40, 2, 4]);
        assert_eq!(
            KvCache::with_budget(config, 511, &Device::Cpu).unwrap_err(),
            KvError::BudgetTooSmall {
                budget: 511,
                block_bytes: 512
            }
        );
    }

    #[test]
    fn writes_land_in_their_slots_and_gather_reads_them_back() {
        for dtype in [DType::F32, DType::F16] {
            writes_land_in_their_slots(dtype);
        }
    }

    fn writes_land_in_their_slots(dtype: DType) {
        let device = Device::Cpu;
        let mut cache = KvCache::with_blocks(KvCacheConfig { dtype, ..config() }, 4, &device).unwrap();
        assert_eq!(cache.layer(0).0.dtype(), dtype);
        let mut table = cache.new_table();
        cache.reserve(&mut table, 6).unwrap();
        let mut other = cache.new_table();
        cache.reserve(&mut other, 1).unwrap();
        let slots: Vec<u32> = (0..6).map(|p| table.slot(p).unwrap() as u32).collect();
        assert_eq!(slots, [0, 1, 2, 3, 4, 5]);
        let k = Tensor::arange(0f32, 48., &device).unwrap().reshape((6, 8)).unwrap();
        let v = (&k * -1.0).unwrap();
        let ids = write_slot_ids(&slots, 8, &device).unwrap();
        cache.write(1, &ids, &k, &v).unwrap();
        // Another sequence's write does not disturb them.
        let other_slot = other.slot(0).unwrap() as u32;
        let ids = write_slot_ids(&[other_slot], 8, &device).unwrap();
        let ones = Tensor::ones((1, 8), DType::F32, &device).unwrap();
        cache.write(1, &ids, &ones, &ones).unwrap();

        let gather = Tensor::new(&[5u32, 0, other_slot], &device).unwrap();
        let (gk, gv) = cache.gather(1, &gather).unwrap();
        assert_eq!(gk.dims(), &[3, 2, 4]);
        // Small integers: exact in f16 too.
        let (gk, gv) = (gk.to_dtype(DType::F32).unwrap(), gv.to_dtype(DType::F32).unwrap());
        let gk = gk.flatten_from(1).unwrap().to_vec2::<f32>().unwrap();
        let gv = gv.flatten_from(1).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(gk[0], (40..48).map(|x| x as f32).collect::<Vec<_>>());
        assert_eq!(gk[1], (0..8).map(|x| x as f32).collect::<Vec<_>>());
        assert_eq!(gk[2], vec![1.0; 8]);
        assert_eq!(gv[0], (40..48).map(|x| -(x as f32)).collect::<Vec<_>>());
        // Layer 0 is untouched.
        let (k0, _) = cache.gather(0, &gather).unwrap();
        let k0 = k0.to_dtype(DType::F32).unwrap();
        assert_eq!(k0.sum_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);
    }

    /// Resident memory of this process, from `/proc/self/statm` (pages of 4 KiB).
    #[cfg(target_os = "linux")]
    fn resident_bytes() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * 4096
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn an_f16_cache_takes_memory_only_as_it_is_written() {
        // 512 MiB of f16 K and V: a cache whose zeros were written one by one would be resident
        // at once (tests running beside this one allocate far less than the margin).
        let config = KvCacheConfig {
            num_layers: 8,
            num_kv_heads: 4,
            head_dim: 64,
            block_size: 16,
            dtype: DType::F16,
        };
        let before = resident_bytes();
        let cache = KvCache::with_budget(config, 512 << 20, &Device::Cpu).unwrap();
        let grown = resident_bytes().saturating_sub(before);
        assert_eq!(cache.layer(0).0.dtype(), DType::F16);
        assert!(
            grown < 128 << 20,
            "allocating the cache made {} MiB resident",
            grown >> 20
        );
    }

    #[test]
    fn blocks_are_reused_after_release() {
        let mut cache = KvCache::with_blocks(config(), 2, &Device::Cpu).unwrap();
        let mut a = cache.new_table();
        cache.reserve(&mut a, 8).unwrap();
        let mut b = cache.new_table();
        assert!(matches!(
            cache.reserve(&mut b, 1),
            Err(KvError::OutOfBlocks { needed: 1, free: 0 })
        ));
        let held = a.blocks().to_vec();
        cache.release(&mut a).unwrap();
        cache.reserve(&mut b, 8).unwrap();
        let mut reused = b.blocks().to_vec();
        reused.sort_unstable();
        assert_eq!(reused, held);
    }
}
