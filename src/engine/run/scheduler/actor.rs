//! The scheduler thread: owns the model's KV cache, the waiting and running sequences and the
//! prefix cache; takes submissions from a channel and runs one batched step at a time.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, TryRecvError};
use std::sync::Arc;
use std::time::Instant;

use super::metrics::SchedulerMetrics;
use super::prefix::PrefixCache;
use super::queue::FairQueue;
use super::schedule::Scheduled;
use super::sequence::{Progress, Sequence};
use super::vision::SequenceVision;
use super::{SchedulerConfig, SchedulerHandle, Submission};
use crate::engine::error::EngineError;
use crate::engine::load::tokenizer::TextTokenizer;
use crate::engine::run::forward::{Batch, LlamaBatchModel, VisualRows};
use crate::engine::run::kv::KvCache;
use crate::engine::run::priority::{gate, Priority};
use crate::engine::run::request::StopReason;
use crate::engine::run::sampling::Sampler;
use crate::engine::run::stats::{Ending, StatsCounters};
use crate::engine::run::vision::VisionEncoder;

/// How a sequence leaves the scheduler.
pub(super) enum Exit {
    /// It ran to an end (end of sequence, stop string, length).
    Finished(StopReason),
    /// Its client went away.
    Cancelled,
    /// It failed; the message goes to the client.
    Failed(String),
}

/// The positions and image rows of a sequence with images, for one step.
type Multimodal<'a> = (Vec<[u32; 3]>, Vec<VisualRows<'a>>);

/// Everything the scheduler thread owns.
pub(crate) struct Scheduler {
    /// The model's id, for logs and metric labels.
    pub(super) model_id: String,
    /// The weights and the batched forward.
    pub(super) model: LlamaBatchModel,
    /// Keys and values of every running sequence (and of remembered prefixes).
    pub(super) kv: KvCache,
    /// For incremental detokenization.
    pub(super) tokenizer: Arc<TextTokenizer>,
    /// Token ids that end a sequence.
    pub(super) eos_ids: Vec<u32>,
    /// The most tokens one sequence may hold.
    pub(super) context_length: usize,
    /// Batching limits.
    pub(super) config: SchedulerConfig,
    /// The most prompt tokens in a step that also runs decode tokens, for this device.
    pub(super) prefill_while_decoding: usize,
    /// Sequences waiting to start or to resume after a preemption.
    pub(super) waiting: FairQueue,
    /// Running sequences, in admission order.
    pub(super) running: Vec<Sequence>,
    /// Full blocks by content.
    pub(super) prefix: PrefixCache,
    /// Counters shared with the engine handles.
    pub(super) stats: Arc<StatsCounters>,
    /// Submitted requests not yet started, shared with the handles.
    pub(super) waiting_count: Arc<AtomicUsize>,
    /// The next sequence id.
    next_id: u64,
    /// Admissions so far (orders running sequences for preemption).
    pub(super) admissions: u64,
    /// Prometheus metrics.
    pub(super) metrics: SchedulerMetrics,
    /// The vision encoder of a vision-language model.
    pub(super) vision: Option<VisionEncoder>,
    /// The image token of a vision-language model.
    image_token: Option<u32>,
}

impl Scheduler {
    /// A scheduler for `model` (with its vision encoder and image token, a vision-language
    /// model) with a KV cache sized by `config`.
    #[allow(clippy::too_many_arguments)] // the loaded model's parts, each used once
    pub(crate) fn new(
        model_id: String,
        model: LlamaBatchModel,
        tokenizer: Arc<TextTokenizer>,
        eos_ids: Vec<u32>,
        context_length: usize,
        config: SchedulerConfig,
        stats: Arc<StatsCounters>,
        vision: Option<(VisionEncoder, u32)>,
    ) -> Result<Self, EngineError> {
        config.validate()?;
        let (vision, image_token) = match vision {
            Some((encoder, token)) => (Some(encoder), Some(token)),
            None => (None, None),
        };
        let mut model = model;
        if let Some(dtype) = config.kv_dtype {
            model.set_kv_dtype(dtype)?;
        }
        let kv_config = model.kv_config(config.block_size);
        let kv = KvCache::with_budget(kv_config, config.kv_cache_bytes, model.device())
            .map_err(|e| EngineError::InvalidRequest(format!("KV cache: {e}")))?;
        tracing::info!(
            model = %model_id,
            blocks = kv.num_blocks(),
            block_tokens = config.block_size,
            tokens = kv.num_blocks() * config.block_size,
            dtype = ?kv.config().dtype,
            megabytes = config.kv_cache_bytes >> 20,
            "KV cache allocated"
        );
        let metrics = SchedulerMetrics::new(&model_id);
        let prefill_while_decoding = config.prefill_while_decoding(model.device());
        Ok(Self {
            model_id,
            model,
            kv,
            tokenizer,
            eos_ids,
            context_length,
            config,
            prefill_while_decoding,
            waiting: FairQueue::default(),
            running: Vec::new(),
            prefix: PrefixCache::default(),
            stats,
            waiting_count: Arc::new(AtomicUsize::new(0)),
            next_id: 1,
            admissions: 0,
            metrics,
            vision,
            image_token,
        })
    }

    /// Starts the thread and returns the handle that feeds it.
    pub(crate) fn spawn(self) -> Result<SchedulerHandle, EngineError> {
        let (sender, submissions) = channel();
        let handle = SchedulerHandle {
            sender,
            waiting: self.waiting_count.clone(),
            capacity: self.config.queue_capacity,
            max_sequence_tokens: self.kv.num_blocks() * self.config.block_size,
        };
        std::thread::Builder::new()
            .name(format!("engine-{}", self.model_id))
            .spawn(move || self.run(submissions))?;
        Ok(handle)
    }

    /// The loop: take submissions, step while there is work, sleep on the channel when not.
    fn run(mut self, submissions: Receiver<Submission>) {
        tracing::info!(model = %self.model_id, "scheduler started");
        let mut connected = true;
        loop {
            if self.running.is_empty() && self.waiting.is_empty() {
                if !connected {
                    break;
                }
                match submissions.recv() {
                    Ok(submission) => self.accept(submission),
                    Err(_) => break,
                }
            }
            while connected {
                match submissions.try_recv() {
                    Ok(submission) => self.accept(submission),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => connected = false,
                }
            }
            self.drop_cancelled();
            if catch_unwind(AssertUnwindSafe(|| self.step())).is_err() {
                tracing::error!(model = %self.model_id, "engine step panicked; failing the running sequences");
                self.recover_from_panic();
            }
            self.metrics.occupancy(
                self.waiting.len(),
                self.running.len(),
                self.kv.allocator().num_used(),
                self.kv.num_blocks(),
            );
        }
        tracing::info!(model = %self.model_id, "scheduler stopped");
    }

    /// Turns a submission into a waiting sequence (or ends it at once when it asks for no
    /// tokens).
    fn accept(&mut self, submission: Submission) {
        let Submission {
            request,
            events,
            queued_at,
        } = submission;
        let id = self.next_id;
        self.next_id += 1;
        let sampler = Sampler::new(&request.sampling, &request.prompt_tokens);
        let key: Arc<str> = request.fairness_key.as_str().into();
        let vision = if request.images.is_empty() {
            None
        } else {
            // The engine checked the request before submitting it; a failure here is
            // answered without running it.
            let vision = self
                .image_token
                .ok_or_else(|| EngineError::InvalidRequest("this model cannot see images".into()))
                .and_then(|token| SequenceVision::new(&request.prompt_tokens, request.images, token));
            match vision {
                Ok(vision) => Some(vision),
                Err(error) => {
                    self.waiting_count.fetch_sub(1, Ordering::AcqRel);
                    let _ = events.send(crate::engine::run::request::GenerateEvent::Failed(error.to_string()));
                    return;
                }
            }
        };
        let sequence = Sequence::new(
            id,
            key,
            request.prompt_tokens,
            request.sampling.max_tokens_or_default() as usize,
            request.sampling.ignore_eos,
            sampler,
            &request.sampling.stop,
            events,
            queued_at,
            self.kv.new_table(),
            vision,
        );
        self.waiting.push(sequence);
    }

    /// Frees the sequences whose client is gone, running or waiting.
    fn drop_cancelled(&mut self) {
        let mut i = 0;
        while i < self.running.len() {
            if self.running[i].is_cancelled() {
                let sequence = self.running.remove(i);
                self.retire(sequence, Exit::Cancelled);
            } else {
                i += 1;
            }
        }
        for sequence in self.waiting.remove_where(Sequence::is_cancelled) {
            if sequence.admission == 0 {
                self.waiting_count.fetch_sub(1, Ordering::AcqRel);
            }
            self.retire(sequence, Exit::Cancelled);
        }
    }

    /// One iteration: schedule, one forward over the batch, sample and stream.
    fn step(&mut self) {
        let work = self.schedule();
        if work.is_empty() {
            return;
        }
        let decode_tokens = work.iter().filter(|w| self.running[w.index].pending() == 1).count();
        // Chat computes before background work (document embeddings) on the same cores.
        let turn = gate().turn(Priority::Interactive);
        let started = Instant::now();
        let result = self.forward(&work);
        drop(turn);
        let tokens: usize = work.iter().map(|w| w.tokens).sum();
        self.metrics.step(started.elapsed(), tokens, work.len());
        self.stats
            .record_step(work.len(), decode_tokens, tokens - decode_tokens);
        match result {
            Ok(logits) => self.advance(&work, logits),
            Err(error) => {
                tracing::warn!(model = %self.model_id, %error, sequences = work.len(), "forward failed");
                let mut indices: Vec<usize> = work.iter().map(|w| w.index).collect();
                indices.sort_unstable_by(|a, b| b.cmp(a));
                for index in indices {
                    let sequence = self.running.remove(index);
                    self.retire(sequence, Exit::Failed(format!("the model failed: {error}")));
                }
            }
        }
    }

    /// Runs the forward of `work`; returns the logits of the sequences that want them, row
    /// after row.
    fn forward(&mut self, work: &[Scheduled]) -> Result<Vec<f32>, EngineError> {
        self.encode_images(work)?;
        // The positions and image rows of sequences with images, owned here for the batch
        // to borrow.
        let multimodal: Vec<Option<Multimodal<'_>>> = work
            .iter()
            .map(|w| {
                let sequence = &self.running[w.index];
                let range = sequence.computed..sequence.computed + w.tokens;
                sequence
                    .vision
                    .as_ref()
                    .map(|v| (v.positions(range.clone()), v.visual_rows(range)))
            })
            .collect();
        let mut batch = Batch::new();
        for (w, extra) in work.iter().zip(&multimodal) {
            let sequence = &self.running[w.index];
            let start = sequence.computed;
            let tokens = &sequence.tokens[start..start + w.tokens];
            match extra {
                None => batch.push(tokens, start, &sequence.table, w.wants_logits),
                Some((positions, visual)) => {
                    batch.push_multimodal(tokens, start, &sequence.table, w.wants_logits, Some(positions), visual)
                }
            }
        }
        let logits = self.model.forward(&batch, &mut self.kv)?;
        Ok(logits.flatten_all()?.to_vec1::<f32>()?)
    }

    /// After a forward: marks the tokens computed, remembers full blocks, samples and
    /// streams, ends the sequences that are done.
    fn advance(&mut self, work: &[Scheduled], mut logits: Vec<f32>) {
        let vocab = self.model.config().vocab_size;
        let now = Instant::now();
        let mut row = 0;
        let mut ended: Vec<(usize, Result<StopReason, EngineError>)> = Vec::new();
        let mut sampled = 0;
        let mut prompt_tokens = 0;
        for w in work {
            let sequence = &mut self.running[w.index];
            prompt_tokens += w.tokens.min(sequence.prompt_len.saturating_sub(sequence.computed));
            sequence.computed += w.tokens;
            if self.config.prefix_caching {
                sequence.register_full_blocks(&mut self.prefix, &mut self.kv);
            }
            if !w.wants_logits {
                continue;
            }
            let row_logits = &mut logits[row * vocab..(row + 1) * vocab];
            row += 1;
            let token = sequence.sampler.sample(row_logits);
            sampled += 1;
            match sequence.last_token_at {
                None => self.metrics.time_to_first_token(now - sequence.queued_at),
                Some(last) => self.metrics.inter_token_latency(now - last),
            }
            sequence.last_token_at = Some(now);
            match sequence.accept(token, &self.eos_ids, &self.tokenizer, self.context_length) {
                Ok(Progress::Continue) => {}
                Ok(Progress::Finished(reason)) => ended.push((w.index, Ok(reason))),
                Err(error) => ended.push((w.index, Err(error))),
            }
        }
        self.metrics.prompt_tokens(prompt_tokens);
        self.metrics.generated(sampled);
        ended.sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
        for (index, outcome) in ended {
            let sequence = self.running.remove(index);
            let exit = match outcome {
                Ok(StopReason::Cancelled) => Exit::Cancelled,
                Ok(reason) => Exit::Finished(reason),
                Err(error) => Exit::Failed(error.to_string()),
            };
            self.retire(sequence, exit);
        }
    }

    /// Gives a sequence's blocks back (the prefix cache keeps its own references).
    pub(super) fn release(&mut self, sequence: &mut Sequence) {
        if let Err(error) = self.kv.release(&mut sequence.table) {
            tracing::error!(model = %self.model_id, %error, "KV bookkeeping error on release");
        }
        sequence.block_keys.clear();
        sequence.computed = 0;
    }

    /// Takes a sequence out for good: frees its blocks, counts and logs it, then sends its
    /// last events (after the counting, so that a client that saw the end sees the counts).
    pub(super) fn retire(&mut self, mut sequence: Sequence, exit: Exit) {
        self.release(&mut sequence);
        let (ending, reason, outcome) = match &exit {
            Exit::Finished(reason) => (Ending::Finished, Some(*reason), "finished"),
            Exit::Cancelled => (Ending::Cancelled, None, "cancelled"),
            Exit::Failed(_) => (Ending::Failed, None, "failed"),
        };
        self.stats.record(ending, sequence.prompt_len, sequence.generated());
        self.metrics.ended(outcome);
        tracing::info!(
            model = %self.model_id,
            outcome,
            reason = ?reason,
            prompt_tokens = sequence.prompt_len,
            completion_tokens = sequence.generated(),
            preemptions = sequence.preemptions,
            seconds = format_args!("{:.3}", sequence.queued_at.elapsed().as_secs_f64()),
            "generation ended"
        );
        match exit {
            Exit::Finished(reason) => sequence.finish(reason),
            Exit::Cancelled => {}
            Exit::Failed(message) => sequence.fail(message),
        }
    }

    /// After a panic inside a step: every running sequence fails (its state may be half
    /// updated) and the prefix cache is dropped; waiting sequences are kept.
    fn recover_from_panic(&mut self) {
        let running = std::mem::take(&mut self.running);
        for sequence in running {
            self.retire(sequence, Exit::Failed("internal error in the engine".into()));
        }
        self.prefix.clear(&mut self.kv);
    }
}
