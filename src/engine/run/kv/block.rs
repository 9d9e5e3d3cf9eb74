//! Block bookkeeping on the host: which blocks are free, how many sequences hold each one,
//! and which blocks hold a sequence's positions.

/// The index of a block in the KV pool.
pub type BlockId = u32;

/// What can go wrong with KV blocks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// Not enough free blocks: the scheduler should preempt a sequence (free its blocks,
    /// recompute it later) or wait. Nothing was allocated.
    #[error("out of KV cache blocks: {needed} needed, {free} free")]
    OutOfBlocks {
        /// Blocks the request needed.
        needed: usize,
        /// Blocks free at the time.
        free: usize,
    },
    /// A block id beyond the pool, or one that is not allocated (double free, stale table).
    #[error("KV block {0} is not allocated")]
    NotAllocated(BlockId),
    /// The memory budget does not hold a single block.
    #[error("a KV cache budget of {budget} bytes holds no block of {block_bytes} bytes")]
    BudgetTooSmall {
        /// The budget in bytes.
        budget: usize,
        /// The bytes of one block (K and V of every layer).
        block_bytes: usize,
    },
    /// The device could not allocate the cache tensors.
    #[error("cannot allocate the KV cache: {0}")]
    Device(String),
}

/// Hands out blocks from a fixed pool: a free list and a reference count per block, so that
/// sequences with an identical prompt prefix can hold the same full blocks.
#[derive(Clone, Debug)]
pub struct BlockAllocator {
    /// Holders of each block; 0 = free.
    ref_counts: Vec<u32>,
    /// Free blocks, a stack: the most recently freed block is reused first.
    free: Vec<BlockId>,
}

impl BlockAllocator {
    /// A pool of `num_blocks` free blocks.
    pub fn new(num_blocks: usize) -> Self {
        assert!(num_blocks <= BlockId::MAX as usize, "too many KV blocks");
        Self {
            ref_counts: vec![0; num_blocks],
            // Reversed so that block 0 is handed out first.
            free: (0..num_blocks as BlockId).rev().collect(),
        }
    }

    /// Blocks in the pool.
    pub fn num_blocks(&self) -> usize {
        self.ref_counts.len()
    }

    /// Blocks free now.
    pub fn num_free(&self) -> usize {
        self.free.len()
    }

    /// Blocks held by at least one sequence.
    pub fn num_used(&self) -> usize {
        self.num_blocks() - self.num_free()
    }

    /// Holders of `block` (0 when free or out of range).
    pub fn ref_count(&self, block: BlockId) -> u32 {
        self.ref_counts.get(block as usize).copied().unwrap_or(0)
    }

    /// One free block, held once.
    pub fn allocate(&mut self) -> Result<BlockId, KvError> {
        let block = self.free.pop().ok_or(KvError::OutOfBlocks { needed: 1, free: 0 })?;
        self.ref_counts[block as usize] = 1;
        Ok(block)
    }

    /// `n` free blocks, each held once; all or nothing.
    pub fn allocate_n(&mut self, n: usize) -> Result<Vec<BlockId>, KvError> {
        if n > self.free.len() {
            return Err(KvError::OutOfBlocks {
                needed: n,
                free: self.free.len(),
            });
        }
        let blocks = self.free.split_off(self.free.len() - n);
        for &block in &blocks {
            self.ref_counts[block as usize] = 1;
        }
        // split_off keeps the stack order: hand out the lowest-popped first.
        Ok(blocks.into_iter().rev().collect())
    }

    /// One more holder of an allocated block (a sequence sharing a prefix block).
    pub fn retain(&mut self, block: BlockId) -> Result<(), KvError> {
        match self.ref_counts.get_mut(block as usize) {
            Some(count) if *count > 0 => {
                *count += 1;
                Ok(())
            }
            _ => Err(KvError::NotAllocated(block)),
        }
    }

    /// One holder fewer; the block returns to the free list when none is left. Returns
    /// whether it did.
    pub fn release(&mut self, block: BlockId) -> Result<bool, KvError> {
        match self.ref_counts.get_mut(block as usize) {
            Some(count) if *count > 0 => {
                *count -= 1;
                if *count == 0 {
                    self.free.push(block);
                    Ok(true)
                } else {
                    Ok(false)
                }
            }
            _ => Err(KvError::NotAllocated(block)),
        }
    }
}

/// The blocks that hold one sequence's positions, in order: position `p` lives in slot
/// `p % block_size` of block `blocks[p / block_size]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockTable {
    /// Tokens per block.
    block_size: usize,
    /// The blocks, in position order.
    blocks: Vec<BlockId>,
}

impl BlockTable {
    /// An empty table for blocks of `block_size` tokens.
    pub fn new(block_size: usize) -> Self {
        assert!(block_size > 0, "block size 0");
        Self {
            block_size,
            blocks: Vec::new(),
        }
    }

    /// Tokens per block.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// The blocks, in position order.
    pub fn blocks(&self) -> &[BlockId] {
        &self.blocks
    }

    /// Positions the table can hold.
    pub fn capacity(&self) -> usize {
        self.blocks.len() * self.block_size
    }

    /// Blocks to add so that the table holds `num_tokens` positions.
    pub fn blocks_needed(&self, num_tokens: usize) -> usize {
        num_tokens.div_ceil(self.block_size).saturating_sub(self.blocks.len())
    }

    /// Grows the table to hold `num_tokens` positions; all or nothing, so a
    /// [`KvError::OutOfBlocks`] leaves both the table and the allocator unchanged.
    pub fn reserve(&mut self, allocator: &mut BlockAllocator, num_tokens: usize) -> Result<(), KvError> {
        let needed = self.blocks_needed(num_tokens);
        if needed > 0 {
            self.blocks.extend(allocator.allocate_n(needed)?);
        }
        Ok(())
    }

    /// Appends a block another table holds (a shared, full prefix block) and counts this
    /// table as one more holder. Only full blocks may be shared: the forward refuses to
    /// write into a block with more than one holder.
    pub fn push_shared(&mut self, allocator: &mut BlockAllocator, block: BlockId) -> Result<(), KvError> {
        allocator.retain(block)?;
        self.blocks.push(block);
        Ok(())
    }

    /// Releases the blocks past the first `num_tokens` positions (for example to drop
    /// blocks reserved for tokens that were not kept).
    pub fn truncate(&mut self, allocator: &mut BlockAllocator, num_tokens: usize) -> Result<(), KvError> {
        let keep = num_tokens.div_ceil(self.block_size);
        while self.blocks.len() > keep {
            let block = self.blocks.pop().expect("len > keep");
            allocator.release(block)?;
        }
        Ok(())
    }

    /// Releases every block (the sequence ended or was preempted).
    pub fn release(&mut self, allocator: &mut BlockAllocator) -> Result<(), KvError> {
        self.truncate(allocator, 0)
    }

    /// The pool slot (`block * block_size + offset`) of `position`, if the table holds it.
    pub fn slot(&self, position: usize) -> Option<usize> {
        let block = *self.blocks.get(position / self.block_size)?;
        Some(block as usize * self.block_size + position % self.block_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_frees_and_reuses_blocks() {
        let mut alloc = BlockAllocator::new(4);
        assert_eq!((alloc.num_blocks(), alloc.num_free(), alloc.num_used()), (4, 4, 0));
        let a = alloc.allocate().unwrap();
        let b = alloc.allocate().unwrap();
        assert_eq!((a, b), (0, 1));
        assert_eq!(alloc.ref_count(a), 1);
        assert_eq!(alloc.num_free(), 2);
        assert!(alloc.release(a).unwrap());
        assert_eq!(alloc.ref_count(a), 0);
        // The freed block is the next one handed out.
        assert_eq!(alloc.allocate().unwrap(), a);
        assert_eq!(alloc.release(b), Ok(true));
        assert_eq!(alloc.release(b), Err(KvError::NotAllocated(b)), "double free");
        assert_eq!(alloc.release(99), Err(KvError::NotAllocated(99)));
        assert_eq!(alloc.retain(b), Err(KvError::NotAllocated(b)), "retain of a free block");
    }

    #[test]
    fn reference_counts_keep_shared_blocks_alive() {
        let mut alloc = BlockAllocator::new(2);
        let block = alloc.allocate().unwrap();
        alloc.retain(block).unwrap();
        assert_eq!(alloc.ref_count(block), 2);
        assert_eq!(alloc.release(block), Ok(false));
        assert_eq!(alloc.num_free(), 1);
        assert_eq!(alloc.release(block), Ok(true));
        assert_eq!(alloc.num_free(), 2);
    }

    #[test]
    fn running_out_is_a_clear_error_and_changes_nothing() {
        let mut alloc = BlockAllocator::new(3);
        let mut table = BlockTable::new(16);
        table.reserve(&mut alloc, 33).unwrap();
        assert_eq!(table.blocks(), &[0, 1, 2]);
        assert_eq!(table.capacity(), 48);
        let mut other = BlockTable::new(16);
        let err = other.reserve(&mut alloc, 1).unwrap_err();
        assert_eq!(err, KvError::OutOfBlocks { needed: 1, free: 0 });
        assert!(other.blocks().is_empty());
        // All or nothing: 2 needed, 1 free.
        table.truncate(&mut alloc, 32).unwrap();
        assert_eq!(alloc.num_free(), 1);
        assert_eq!(
            other.reserve(&mut alloc, 17),
            Err(KvError::OutOfBlocks { needed: 2, free: 1 })
        );
        assert_eq!(alloc.num_free(), 1);
        assert!(other.blocks().is_empty());
        // Preempting the first sequence makes room, and its blocks are reused.
        table.release(&mut alloc).unwrap();
        assert_eq!(alloc.num_free(), 3);
        other.reserve(&mut alloc, 40).unwrap();
        assert_eq!(other.blocks().len(), 3);
        assert_eq!(alloc.num_free(), 0);
    }

    #[test]
    fn tables_grow_by_whole_blocks_and_map_positions_to_slots() {
        let mut alloc = BlockAllocator::new(8);
        let mut filler = BlockTable::new(4);
        filler.reserve(&mut alloc, 4).unwrap(); // block 0
        let mut table = BlockTable::new(4);
        assert_eq!(table.blocks_needed(0), 0);
        assert_eq!(table.blocks_needed(1), 1);
        table.reserve(&mut alloc, 5).unwrap(); // blocks 1, 2
        assert_eq!(table.blocks(), &[1, 2]);
        assert_eq!(table.blocks_needed(8), 0);
        assert_eq!(table.blocks_needed(9), 1);
        table.reserve(&mut alloc, 8).unwrap();
        assert_eq!(table.blocks().len(), 2, "no new block while the capacity suffices");
        assert_eq!(table.slot(0), Some(4));
        assert_eq!(table.slot(3), Some(7));
        assert_eq!(table.slot(4), Some(8));
        assert_eq!(table.slot(8), None);
    }

    #[test]
    fn shared_prefix_blocks_outlive_one_holder() {
        let mut alloc = BlockAllocator::new(4);
        let mut first = BlockTable::new(4);
        first.reserve(&mut alloc, 6).unwrap();
        let mut second = BlockTable::new(4);
        second.push_shared(&mut alloc, first.blocks()[0]).unwrap();
        second.reserve(&mut alloc, 6).unwrap();
        assert_eq!(second.blocks()[0], first.blocks()[0]);
        assert_ne!(second.blocks()[1], first.blocks()[1]);
        assert_eq!(alloc.ref_count(first.blocks()[0]), 2);
        assert_eq!(alloc.num_free(), 1);
        first.release(&mut alloc).unwrap();
        assert_eq!(alloc.num_free(), 2, "the shared block stays with the second table");
        assert_eq!(alloc.ref_count(second.blocks()[0]), 1);
        second.release(&mut alloc).unwrap();
        assert_eq!(alloc.num_free(), 4);
    }
}
