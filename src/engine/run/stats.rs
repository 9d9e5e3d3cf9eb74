//! Counters of what the scheduler did, for logs, metrics and tests.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a model's counters since it was loaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct EngineStats {
    /// Generations that ran to an end (end of sequence, stop string or length).
    pub requests_finished: u64,
    /// Generations stopped because their receiver was dropped (queued ones included).
    pub requests_cancelled: u64,
    /// Generations that failed.
    pub requests_failed: u64,
    /// Prompt tokens processed.
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
    /// Forward steps run.
    pub steps: u64,
    /// The most sequences one step has run.
    pub max_step_sequences: u64,
    /// The most prompt tokens one step has run beside decode tokens.
    pub max_prefill_beside_decodes: u64,
    /// Sequences preempted for lack of KV blocks (and recomputed later).
    pub preemptions: u64,
    /// Prompt tokens looked up in the prefix cache.
    pub prefix_queried_tokens: u64,
    /// Of those, tokens whose KV came from the cache.
    pub prefix_hit_tokens: u64,
}

/// The live counters, shared by the runner (writer) and the engine handles (readers).
#[derive(Debug, Default)]
pub(crate) struct StatsCounters {
    /// See [`EngineStats::requests_finished`].
    finished: AtomicU64,
    /// See [`EngineStats::requests_cancelled`].
    cancelled: AtomicU64,
    /// See [`EngineStats::requests_failed`].
    failed: AtomicU64,
    /// See [`EngineStats::prompt_tokens`].
    prompt_tokens: AtomicU64,
    /// See [`EngineStats::completion_tokens`].
    completion_tokens: AtomicU64,
    /// See [`EngineStats::steps`].
    steps: AtomicU64,
    /// See [`EngineStats::max_step_sequences`].
    max_step_sequences: AtomicU64,
    /// See [`EngineStats::max_prefill_beside_decodes`].
    max_prefill_beside_decodes: AtomicU64,
    /// See [`EngineStats::preemptions`].
    preemptions: AtomicU64,
    /// See [`EngineStats::prefix_queried_tokens`].
    prefix_queried_tokens: AtomicU64,
    /// See [`EngineStats::prefix_hit_tokens`].
    prefix_hit_tokens: AtomicU64,
}

/// How a request ended, for [`StatsCounters::record`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Ran to an end.
    Finished,
    /// The receiver went away.
    Cancelled,
    /// An error.
    Failed,
}

impl StatsCounters {
    /// Counts one request that ended as `ending` after the given work.
    pub(crate) fn record(&self, ending: Ending, prompt_tokens: usize, completion_tokens: usize) {
        let counter = match ending {
            Ending::Finished => &self.finished,
            Ending::Cancelled => &self.cancelled,
            Ending::Failed => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.prompt_tokens.fetch_add(prompt_tokens as u64, Ordering::Relaxed);
        self.completion_tokens
            .fetch_add(completion_tokens as u64, Ordering::Relaxed);
    }

    /// Counts one forward step over `sequences` sequences, `decode_tokens` of its tokens
    /// continuing answers and `prompt_tokens` computing prompts.
    pub(crate) fn record_step(&self, sequences: usize, decode_tokens: usize, prompt_tokens: usize) {
        self.steps.fetch_add(1, Ordering::Relaxed);
        self.max_step_sequences.fetch_max(sequences as u64, Ordering::Relaxed);
        if decode_tokens > 0 {
            self.max_prefill_beside_decodes
                .fetch_max(prompt_tokens as u64, Ordering::Relaxed);
        }
    }

    /// Counts one preemption.
    pub(crate) fn record_preemption(&self) {
        self.preemptions.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a prefix-cache lookup of `queried` tokens that found `hit`.
    pub(crate) fn record_prefix_lookup(&self, queried: usize, hit: usize) {
        self.prefix_queried_tokens.fetch_add(queried as u64, Ordering::Relaxed);
        self.prefix_hit_tokens.fetch_add(hit as u64, Ordering::Relaxed);
    }

    /// The current values.
    pub(crate) fn snapshot(&self) -> EngineStats {
        EngineStats {
            requests_finished: self.finished.load(Ordering::Relaxed),
            requests_cancelled: self.cancelled.load(Ordering::Relaxed),
            requests_failed: self.failed.load(Ordering::Relaxed),
            prompt_tokens: self.prompt_tokens.load(Ordering::Relaxed),
            completion_tokens: self.completion_tokens.load(Ordering::Relaxed),
            steps: self.steps.load(Ordering::Relaxed),
            max_step_sequences: self.max_step_sequences.load(Ordering::Relaxed),
            max_prefill_beside_decodes: self.max_prefill_beside_decodes.load(Ordering::Relaxed),
            preemptions: self.preemptions.load(Ordering::Relaxed),
            prefix_queried_tokens: self.prefix_queried_tokens.load(Ordering::Relaxed),
            prefix_hit_tokens: self.prefix_hit_tokens.load(Ordering::Relaxed),
        }
    }
}
