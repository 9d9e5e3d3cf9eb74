//! Prefix caching: full KV blocks remembered by the tokens they hold (and everything before
//! them), so that a new sequence whose prompt starts the same way (a shared system prompt, a
//! regenerated answer, the next turn of a conversation) reuses them instead of recomputing.
//!
//! A block is keyed by a hash chained over its tokens and its parent block's key; the entry
//! keeps the tokens to rule out collisions. The cache holds one reference on each block it
//! remembers, so a block outlives the sequence that computed it; when the allocator runs dry,
//! the least recently used blocks that nobody else holds are given back ([`PrefixCache::evict`]).
//! With the batch-invariant forward, reused blocks hold exactly the values the new sequence
//! would have computed, so caching never changes an output.

use std::collections::{BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};

use crate::engine::run::kv::{BlockId, BlockTable, KvCache};

/// The key of the chain's first block's parent.
pub(crate) const ROOT: u64 = 0x0065_6e63_6c61_7665; // "enclave"

/// One remembered block.
#[derive(Debug)]
struct Entry {
    /// The block holding the KV.
    block: BlockId,
    /// The key of the block before it ([`ROOT`] for the first).
    parent: u64,
    /// The tokens it holds.
    tokens: Box<[u32]>,
    /// When it was last used (a tick of [`PrefixCache::clock`]).
    last_used: u64,
}

/// The key of a full block holding `tokens` after the block keyed `parent`.
pub(crate) fn block_key(parent: u64, tokens: &[u32]) -> u64 {
    let mut hasher = DefaultHasher::new();
    parent.hash(&mut hasher);
    tokens.hash(&mut hasher);
    hasher.finish()
}

/// Full blocks by content, with a least-recently-used order for eviction.
#[derive(Debug, Default)]
pub(crate) struct PrefixCache {
    /// Remembered blocks by key.
    entries: HashMap<u64, Entry>,
    /// `(last_used, key)` of every entry, oldest first.
    by_age: BTreeSet<(u64, u64)>,
    /// A counter that orders uses.
    clock: u64,
}

impl PrefixCache {
    /// Blocks remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The key chain of the full blocks of `tokens` (as many as `tokens` fills).
    #[cfg(test)]
    pub(crate) fn keys(tokens: &[u32], block_size: usize) -> Vec<u64> {
        let mut parent = ROOT;
        tokens
            .chunks_exact(block_size)
            .map(|block| {
                parent = block_key(parent, block);
                parent
            })
            .collect()
    }

    /// Appends to `table` (which must be empty) the remembered blocks that hold a prefix of
    /// `tokens`, at most `max_blocks` of them, each now also held by the table. Returns the
    /// keys of the blocks reused.
    pub(crate) fn lookup(
        &mut self,
        tokens: &[u32],
        max_blocks: usize,
        table: &mut BlockTable,
        kv: &mut KvCache,
    ) -> Vec<u64> {
        debug_assert!(table.blocks().is_empty());
        let block_size = table.block_size();
        let mut parent = ROOT;
        let mut reused = Vec::new();
        for chunk in tokens.chunks_exact(block_size).take(max_blocks) {
            let key = block_key(parent, chunk);
            let Some(entry) = self.entries.get_mut(&key) else { break };
            if entry.parent != parent || *entry.tokens != *chunk {
                break;
            }
            if table.push_shared(kv.allocator_mut(), entry.block).is_err() {
                // The cache's own reference keeps the block allocated; this cannot happen
                // unless the bookkeeping is broken, and then recomputing is the safe answer.
                break;
            }
            self.clock += 1;
            self.by_age.remove(&(entry.last_used, key));
            entry.last_used = self.clock;
            self.by_age.insert((entry.last_used, key));
            parent = key;
            reused.push(key);
        }
        reused
    }

    /// Remembers `block` as holding `tokens` after the block keyed `parent` (keyed `key`).
    /// Takes a reference on the block. A key already remembered keeps its block.
    pub(crate) fn insert(&mut self, key: u64, parent: u64, tokens: &[u32], block: BlockId, kv: &mut KvCache) {
        if self.entries.contains_key(&key) {
            return;
        }
        if kv.allocator_mut().retain(block).is_err() {
            return;
        }
        self.clock += 1;
        self.entries.insert(
            key,
            Entry {
                block,
                parent,
                tokens: tokens.into(),
                last_used: self.clock,
            },
        );
        self.by_age.insert((self.clock, key));
    }

    /// Blocks that only the cache holds (eviction would free them now).
    pub(crate) fn evictable(&self, kv: &KvCache) -> usize {
        let allocator = kv.allocator();
        self.entries
            .values()
            .filter(|e| allocator.ref_count(e.block) == 1)
            .count()
    }

    /// Frees up to `wanted` blocks that only the cache holds, least recently used first.
    /// Returns how many were freed.
    pub(crate) fn evict(&mut self, wanted: usize, kv: &mut KvCache) -> usize {
        let mut freed = 0;
        let mut victims = Vec::new();
        for &(age, key) in &self.by_age {
            if freed == wanted {
                break;
            }
            let block = self.entries[&key].block;
            if kv.allocator().ref_count(block) == 1 {
                victims.push((age, key));
                freed += 1;
            }
        }
        for (age, key) in victims {
            self.by_age.remove(&(age, key));
            if let Some(entry) = self.entries.remove(&key) {
                // Held once (checked above): this frees it.
                let _ = kv.allocator_mut().release(entry.block);
            }
        }
        freed
    }

    /// Forgets every block (after a failure that may have left blocks half written).
    pub(crate) fn clear(&mut self, kv: &mut KvCache) {
        for entry in self.entries.values() {
            let _ = kv.allocator_mut().release(entry.block);
        }
        self.entries.clear();
        self.by_age.clear();
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;
    use crate::engine::run::kv::KvCacheConfig;

    fn cache(blocks: usize) -> KvCache {
        let config = KvCacheConfig {
            num_layers: 1,
            num_kv_heads: 1,
            head_dim: 2,
            block_size: 2,
            dtype: DType::F32,
        };
        KvCache::with_blocks(config, blocks, &Device::Cpu).unwrap()
    }

    /// A sequence that computed `tokens` and registered its full blocks.
    fn computed(tokens: &[u32], prefix: &mut PrefixCache, kv: &mut KvCache) -> BlockTable {
        let mut table = kv.new_table();
        kv.reserve(&mut table, tokens.len()).unwrap();
        let keys = PrefixCache::keys(tokens, 2);
        let mut parent = ROOT;
        for (i, &key) in keys.iter().enumerate() {
            prefix.insert(key, parent, &tokens[i * 2..i * 2 + 2], table.blocks()[i], kv);
            parent = key;
        }
        table
    }

    #[test]
    fn a_shared_prefix_is_found_block_by_block() {
        let mut kv = cache(8);
        let mut prefix = PrefixCache::default();
        let mut first = computed(&[1, 2, 3, 4, 5], &mut prefix, &mut kv);
        assert_eq!(prefix.len(), 2);

        let mut table = kv.new_table();
        assert_eq!(prefix.lookup(&[1, 2, 3, 4, 9, 9], 10, &mut table, &mut kv).len(), 2);
        assert_eq!(table.blocks(), &first.blocks()[..2]);
        let mut other = kv.new_table();
        assert_eq!(
            prefix.lookup(&[1, 2, 7, 4], 10, &mut other, &mut kv).len(),
            1,
            "second block differs"
        );
        let mut capped = kv.new_table();
        assert_eq!(prefix.lookup(&[1, 2, 3, 4], 1, &mut capped, &mut kv).len(), 1);
        let mut none = kv.new_table();
        assert!(
            prefix.lookup(&[3, 4], 10, &mut none, &mut kv).is_empty(),
            "same tokens, other parent"
        );

        // The cache keeps its blocks after every sequence is gone, and frees them on demand.
        for t in [&mut first, &mut table, &mut other, &mut capped] {
            kv.release(t).unwrap();
        }
        assert_eq!(kv.allocator().num_used(), 2);
        assert_eq!(prefix.evictable(&kv), 2);
        assert_eq!(prefix.evict(1, &mut kv), 1);
        assert_eq!(kv.allocator().num_used(), 1);
        prefix.clear(&mut kv);
        assert_eq!(kv.allocator().num_used(), 0);
    }

    #[test]
    fn blocks_in_use_are_not_evicted_and_old_ones_go_first() {
        let mut kv = cache(8);
        let mut prefix = PrefixCache::default();
        let mut a = computed(&[1, 1], &mut prefix, &mut kv);
        let mut b = computed(&[2, 2], &mut prefix, &mut kv);
        let c = computed(&[3, 3], &mut prefix, &mut kv);
        kv.release(&mut a).unwrap();
        kv.release(&mut b).unwrap();
        // Using a's block makes b's the oldest unused one.
        let mut again = kv.new_table();
        assert_eq!(prefix.lookup(&[1, 1], 1, &mut again, &mut kv).len(), 1);
        kv.release(&mut again).unwrap();
        assert_eq!(prefix.evictable(&kv), 2, "c is still held by its sequence");
        let b_block = PrefixCache::keys(&[2, 2], 2)[0];
        assert_eq!(prefix.evict(1, &mut kv), 1);
        assert!(!prefix.entries.contains_key(&b_block));
        assert_eq!(prefix.evict(5, &mut kv), 1, "only a's is left to evict");
        assert_eq!(prefix.len(), 1);
        assert_eq!(kv.allocator().ref_count(c.blocks()[0]), 2);
    }
}
