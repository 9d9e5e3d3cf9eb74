//! The scheduler: one thread per model owns the weights' KV cache and runs every request in
//! iteration-level (continuous) batches.
//!
//! Requests arrive over a channel ([`SchedulerHandle::submit`]); a counter bounds how many may
//! wait, so a flood is answered `Overloaded` at once instead of queueing without limit. Each
//! step the thread:
//! 1. drops sequences whose client went away (their blocks return to the pool at once);
//! 2. schedules work under a token budget: one token for every running sequence in decode,
//!    then chunks of unfinished prompts, then new sequences admitted fairly across clients
//!    while their whole prompt fits in the free (or evictable) KV blocks ([`schedule`]);
//!    when a running sequence needs a block and none is left, the newest sequence is
//!    preempted (its blocks freed, its tokens kept to be recomputed later);
//! 3. runs ONE forward over the whole batch, samples each sequence that reached its end with
//!    its own sampler, streams text out, and ends sequences that are done.
//!
//! Full blocks are remembered by content ([`prefix`]), so identical prompt prefixes (system
//! prompts, regenerated answers, earlier turns) are computed once. With the batch-invariant
//! forward, none of this changes a sequence's tokens: greedy output is the same alone, in a
//! batch of 32, after a preemption or from cached blocks.

mod actor;
mod metrics;
mod prefix;
mod queue;
mod schedule;
mod sequence;
mod vision;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod vision_tests;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc::UnboundedSender;

pub(crate) use actor::Scheduler;

use crate::engine::error::EngineError;
use crate::engine::run::request::{GenerateEvent, GenerateRequest};

/// Prompt tokens in a CPU step that also runs decode tokens, unless configured: on the serving
/// benchmark (2 cores, 32 streams) it halves the inter-token latency p99 for 3-10% of the
/// throughput (docs/BENCHMARKS.md).
pub const CPU_PREFILL_WHILE_DECODING: usize = 128;

/// How a model's scheduler batches, and how much memory it may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Tokens per KV block.
    pub block_size: usize,
    /// Bytes of KV cache (keys and values of every layer) the model may hold.
    pub kv_cache_bytes: usize,
    /// What the KV cache stores keys and values in (f16 or f32); `None` lets the model choose
    /// for its attention ([`crate::engine::LlamaBatchModel::kv_dtype`]: f16 under the CPU
    /// kernel, f32 elsewhere).
    pub kv_dtype: Option<candle_core::DType>,
    /// The most tokens (decode tokens and prefill chunks together) in one forward step.
    pub max_batch_tokens: usize,
    /// The most prompt tokens in a step that also runs decode tokens: smaller keeps the
    /// inter-token latency of streaming answers low while new prompts arrive; larger starts
    /// new answers sooner and batches more work per step. `None` picks for the device: on a
    /// CPU, where a step's time grows with its tokens, [`CPU_PREFILL_WHILE_DECODING`]; on a
    /// GPU, where a step of 512 tokens costs little more than one of 128, `max_batch_tokens`.
    pub max_prefill_while_decoding: Option<usize>,
    /// The most sequences running at once.
    pub max_running: usize,
    /// The most requests waiting to start; more are refused as overloaded.
    pub queue_capacity: usize,
    /// Whether identical prompt prefixes share KV blocks.
    pub prefix_caching: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            block_size: 16,
            kv_cache_bytes: 1 << 30,
            kv_dtype: None,
            max_batch_tokens: 512,
            max_prefill_while_decoding: None,
            max_running: 64,
            queue_capacity: 64,
            prefix_caching: true,
        }
    }
}

impl SchedulerConfig {
    /// [`Self::max_prefill_while_decoding`] for a model on `device`.
    pub fn prefill_while_decoding(&self, device: &candle_core::Device) -> usize {
        match self.max_prefill_while_decoding {
            Some(tokens) => tokens,
            None if device.is_cpu() => CPU_PREFILL_WHILE_DECODING.min(self.max_batch_tokens),
            None => self.max_batch_tokens,
        }
    }

    /// Checks the values against each other.
    pub fn validate(&self) -> Result<(), EngineError> {
        let bad = |what: &str| Err(EngineError::InvalidRequest(format!("scheduler configuration: {what}")));
        if self.block_size == 0
            || self.max_batch_tokens == 0
            || self.max_prefill_while_decoding == Some(0)
            || self.max_running == 0
            || self.queue_capacity == 0
        {
            return bad(
                "block size, batch tokens, prefill tokens, running sequences and queue capacity must be at least 1",
            );
        }
        if self.max_running > self.max_batch_tokens {
            return bad("max_running may not exceed max_batch_tokens (every running sequence needs a token a step)");
        }
        Ok(())
    }
}

/// A request on its way to the scheduler thread.
pub(crate) struct Submission {
    /// What to generate.
    pub(crate) request: GenerateRequest,
    /// Where its events go.
    pub(crate) events: UnboundedSender<GenerateEvent>,
    /// When it was submitted.
    pub(crate) queued_at: Instant,
}

/// The sending side of a scheduler; cheap to share. The thread ends when every handle is
/// gone and its last sequence is done.
#[derive(Debug)]
pub(crate) struct SchedulerHandle {
    /// Submissions to the thread.
    sender: Sender<Submission>,
    /// Requests submitted and not yet started (shared with the thread, which decrements it).
    waiting: Arc<AtomicUsize>,
    /// The most requests that may wait.
    capacity: usize,
    /// The most tokens one sequence can hold in the KV cache.
    max_sequence_tokens: usize,
}

impl SchedulerHandle {
    /// The most tokens (prompt and answer) one sequence can hold in the KV cache.
    pub(crate) fn max_sequence_tokens(&self) -> usize {
        self.max_sequence_tokens
    }

    /// Hands `submission` to the thread, or refuses it when the queue is full or the thread
    /// is gone.
    pub(crate) fn submit(&self, submission: Submission) -> Result<(), EngineError> {
        let reserved = self.waiting.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < self.capacity).then_some(n + 1)
        });
        if reserved.is_err() {
            return Err(EngineError::Overloaded);
        }
        self.sender.send(submission).map_err(|_| {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            EngineError::Stopped
        })
    }
}
