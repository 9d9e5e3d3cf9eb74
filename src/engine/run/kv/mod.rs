//! The paged KV cache of the batched forward ([`crate::engine::run::forward`]).
//!
//! Keys and values live in fixed-size blocks (e.g. 16 tokens) of a pool sized by a memory
//! budget: one K and one V tensor per layer on the model's device. The host side is plain
//! bookkeeping: a [`BlockAllocator`] (free list and reference counts, so identical prompt
//! prefixes can share full blocks) and one [`BlockTable`] per sequence mapping its positions
//! to blocks.
//!
//! The scheduler's part: before each forward, [`KvCache::reserve`] room in every scheduled
//! sequence's table for its new tokens; a [`KvError::OutOfBlocks`] there means "preempt a
//! sequence or schedule fewer tokens" and changes nothing. When a sequence ends or is
//! preempted, [`KvCache::release`] its table.

mod block;
mod cache;

pub use block::{BlockAllocator, BlockId, BlockTable, KvError};
pub use cache::{write_slot_ids, KvCache, KvCacheConfig};
