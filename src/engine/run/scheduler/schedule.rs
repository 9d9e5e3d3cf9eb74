//! Choosing one step's work: which sequences run how many tokens, under the token budget and
//! the KV blocks there are; preemption when blocks run out; fair admission of new sequences.

use std::sync::atomic::Ordering;

use super::actor::{Exit, Scheduler};
use crate::engine::run::kv::KvError;
use crate::engine::run::request::StopReason;

/// One sequence's part of a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Scheduled {
    /// Its index in the running list.
    pub(crate) index: usize,
    /// Tokens it runs this step (from its `computed` position).
    pub(crate) tokens: usize,
    /// Whether the step reaches its last token, so that it samples.
    pub(crate) wants_logits: bool,
}

/// Whether growing a sequence worked.
enum Growth {
    /// Its blocks hold the step's tokens.
    Ready,
    /// It was preempted or ended instead.
    Gone,
}

impl Scheduler {
    /// Plans the next step. Running sequences come first (decode tokens, then the rest of
    /// unfinished prompts, oldest first), then new admissions while budget, slots and blocks
    /// allow. Reserves every block the plan writes.
    pub(crate) fn schedule(&mut self) -> Vec<Scheduled> {
        let mut budget = self.config.max_batch_tokens;
        let mut picked: Vec<(u64, usize)> = Vec::new();
        let decoding: Vec<u64> = self.running.iter().filter(|s| s.pending() == 1).map(|s| s.id).collect();
        let prefilling = self.running.iter().filter(|s| s.pending() > 1).map(|s| s.id);
        let order: Vec<u64> = decoding.iter().copied().chain(prefilling).collect();
        let mut capped = false;
        for (at, id) in order.into_iter().enumerate() {
            if at == decoding.len() {
                self.cap_prefill(&picked, &mut budget);
                capped = true;
            }
            if budget == 0 {
                break;
            }
            let Some(index) = self.position(id) else {
                // Preempted to make room for an older sequence.
                continue;
            };
            let tokens = self.running[index].pending().min(budget);
            if let Growth::Ready = self.grow(id, tokens, &mut picked, &mut budget) {
                picked.push((id, tokens));
                budget -= tokens;
            }
        }
        if !capped {
            // No prompt was left to finish, so the loop never reached the prompts.
            self.cap_prefill(&picked, &mut budget);
        }
        self.admit(&mut picked, &mut budget);
        picked
            .into_iter()
            .filter_map(|(id, tokens)| {
                let index = self.position(id)?;
                let sequence = &self.running[index];
                Some(Scheduled {
                    index,
                    tokens,
                    wants_logits: sequence.computed + tokens == sequence.tokens.len(),
                })
            })
            .collect()
    }

    /// Limits the prompt tokens of a step that carries decode tokens: a long step delays the
    /// next token of every answer in it, so prompts are fed in smaller chunks while answers
    /// stream, and in full-size ones when nothing else waits for the step.
    fn cap_prefill(&self, picked: &[(u64, usize)], budget: &mut usize) {
        if !picked.is_empty() {
            *budget = (*budget).min(self.prefill_while_decoding);
        }
    }

    /// The index of running sequence `id`.
    fn position(&self, id: u64) -> Option<usize> {
        self.running.iter().position(|s| s.id == id)
    }

    /// Makes room in sequence `id`'s blocks for `tokens` more: frees remembered prefix blocks
    /// first, then preempts the newest running sequence (which may be this one). A sequence
    /// that runs alone and still lacks room has filled the whole cache: it ends as `Length`.
    fn grow(&mut self, id: u64, tokens: usize, picked: &mut Vec<(u64, usize)>, budget: &mut usize) -> Growth {
        loop {
            let Some(index) = self.position(id) else {
                return Growth::Gone;
            };
            let sequence = &self.running[index];
            let end = sequence.computed + tokens;
            let needed = sequence.table.blocks_needed(end);
            if needed == 0 {
                return Growth::Ready;
            }
            let free = self.kv.allocator().num_free();
            if needed > free {
                self.prefix.evict(needed - free, &mut self.kv);
            }
            match self.kv.reserve(&mut self.running[index].table, end) {
                Ok(()) => return Growth::Ready,
                Err(KvError::OutOfBlocks { .. }) => {
                    let victim = self.newest_running();
                    if victim == index && self.running.len() == 1 {
                        let sequence = self.running.remove(index);
                        tracing::warn!(model = %self.model_id, tokens = sequence.tokens.len(), "a sequence filled the whole KV cache");
                        self.retire(sequence, Exit::Finished(StopReason::Length));
                        return Growth::Gone;
                    }
                    let victim_id = self.running[victim].id;
                    if let Some(at) = picked.iter().position(|&(picked_id, _)| picked_id == victim_id) {
                        *budget += picked[at].1;
                        picked.remove(at);
                    }
                    self.preempt(victim);
                    if victim == index {
                        return Growth::Gone;
                    }
                }
                Err(error) => {
                    let sequence = self.running.remove(index);
                    tracing::error!(model = %self.model_id, %error, "KV bookkeeping error");
                    self.retire(sequence, Exit::Failed(format!("KV cache error: {error}")));
                    return Growth::Gone;
                }
            }
        }
    }

    /// The index of the most recently admitted running sequence (there is at least one).
    fn newest_running(&self) -> usize {
        self.running
            .iter()
            .enumerate()
            .max_by_key(|(_, s)| s.admission)
            .map_or(0, |(i, _)| i)
    }

    /// Frees a running sequence's blocks and sends it back to wait; it resumes by
    /// recomputing its tokens (from remembered blocks where they are still cached).
    fn preempt(&mut self, index: usize) {
        let mut sequence = self.running.remove(index);
        self.release(&mut sequence);
        sequence.preemptions += 1;
        self.stats.record_preemption();
        self.metrics.preempted();
        tracing::debug!(model = %self.model_id, tokens = sequence.tokens.len(), "sequence preempted");
        self.waiting.push_preempted(sequence);
    }

    /// Starts waiting sequences while the budget, `max_running` and the KV blocks allow:
    /// a sequence starts only when all its tokens (and the next one) fit in the free and
    /// evictable blocks beyond a small reserve for the running sequences' growth.
    fn admit(&mut self, picked: &mut Vec<(u64, usize)>, budget: &mut usize) {
        let block_size = self.config.block_size;
        let total_blocks = self.kv.num_blocks();
        while *budget > 0 && self.running.len() < self.config.max_running {
            let Some(mut sequence) = self.waiting.pop() else { break };
            if self.config.prefix_caching {
                // Leave at least one token to compute: its logits are needed.
                let max_blocks = (sequence.tokens.len() - 1) / block_size;
                let cache_tokens = sequence.cache_tokens(0..sequence.tokens.len()).into_owned();
                let keys = self
                    .prefix
                    .lookup(&cache_tokens, max_blocks, &mut sequence.table, &mut self.kv);
                let hit = keys.len() * block_size;
                self.metrics.prefix_lookup(sequence.tokens.len(), hit);
                self.stats.record_prefix_lookup(sequence.tokens.len(), hit);
                sequence.computed = hit;
                sequence.block_keys = keys;
            }
            let needed = sequence.table.blocks_needed(sequence.tokens.len() + 1);
            let available = self.kv.allocator().num_free() + self.prefix.evictable(&self.kv);
            let reserve = if self.running.is_empty() {
                0
            } else {
                self.running.len().min(total_blocks / 100).max(1)
            };
            if needed + reserve > available {
                self.release(&mut sequence);
                if self.running.is_empty() && picked.is_empty() && needed > total_blocks {
                    // It can never fit; nothing else will free blocks for it.
                    if sequence.admission == 0 {
                        self.waiting_count.fetch_sub(1, Ordering::AcqRel);
                    }
                    let message = format!("the sequence needs {needed} KV blocks, the cache has {total_blocks}");
                    self.retire(sequence, Exit::Failed(message));
                    continue;
                }
                self.waiting.put_back(sequence);
                break;
            }
            let tokens = sequence.pending().min(*budget);
            let end = sequence.computed + tokens;
            let chunk_blocks = sequence.table.blocks_needed(end);
            let free = self.kv.allocator().num_free();
            if chunk_blocks > free {
                self.prefix.evict(chunk_blocks - free, &mut self.kv);
            }
            if let Err(error) = self.kv.reserve(&mut sequence.table, end) {
                // Counted as available above; bookkeeping is off. Try again next step.
                tracing::error!(model = %self.model_id, %error, "admission reserve failed");
                self.release(&mut sequence);
                self.waiting.put_back(sequence);
                break;
            }
            if sequence.admission == 0 {
                self.waiting_count.fetch_sub(1, Ordering::AcqRel);
                self.waiting.served(&sequence.fairness_key);
            }
            self.admissions += 1;
            sequence.admission = self.admissions;
            picked.push((sequence.id, tokens));
            *budget -= tokens;
            self.running.push(sequence);
        }
    }
}
