//! The runner: one thread that owns the model and serves queued requests one at a time.
//!
//! Each request: forward the prompt in chunks, then decode token by token, streaming text
//! out. The receiver is checked every step: once the client is gone the sequence stops and
//! its KV cache is freed at once. An error in one request fails that request only.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::Device;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::Sender;

use super::detokenize::IncrementalDecoder;
use super::error::EngineError;
use super::model::Model;
use super::request::{GenerateEvent, GenerateRequest, StopReason};
use super::stats::{Ending, StatsCounters};
use super::stop::{StopCheck, StopMatcher};
use super::tokenizer::TextTokenizer;

/// Prompt tokens per forward pass during prefill.
const PREFILL_CHUNK: usize = 512;

/// A request waiting for (or being served by) the runner.
pub(crate) struct Job {
    /// What to generate.
    pub(crate) request: GenerateRequest,
    /// Where the events go; closed when the client is gone.
    pub(crate) events: Sender<GenerateEvent>,
    /// When the job was queued, for the queue-time metric.
    pub(crate) queued_at: Instant,
}

/// Everything the runner thread owns.
pub(crate) struct Runner {
    /// The model's id, for logs.
    pub(crate) model_id: String,
    /// The weights and the KV cache of the current sequence.
    pub(crate) model: Model,
    /// Where the model lives.
    pub(crate) device: Device,
    /// For incremental detokenization.
    pub(crate) tokenizer: Arc<TextTokenizer>,
    /// Token ids that end a sequence.
    pub(crate) eos_ids: Vec<u32>,
    /// The most tokens (prompt and completion) a sequence may hold.
    pub(crate) context_length: usize,
    /// What the runner did, shared with the engine handles.
    pub(crate) stats: Arc<StatsCounters>,
}

/// How one request went, for the log line.
struct Outcome {
    /// Why it ended.
    reason: StopReason,
    /// Tokens in the prompt.
    prompt_tokens: usize,
    /// Tokens generated.
    completion_tokens: usize,
    /// Time spent on the prompt.
    prefill: Duration,
    /// Time spent generating.
    decode: Duration,
}

impl Runner {
    /// Starts the runner thread with a queue of `capacity` waiting requests and returns the
    /// queue's sending end. The thread ends when every sender is dropped.
    pub(crate) fn spawn(self, capacity: usize) -> Result<SyncSender<Job>, EngineError> {
        let (queue, jobs) = sync_channel(capacity.max(1));
        std::thread::Builder::new()
            .name(format!("engine-{}", self.model_id))
            .spawn(move || self.run(jobs))?;
        Ok(queue)
    }

    fn run(mut self, jobs: Receiver<Job>) {
        tracing::info!(model = %self.model_id, "runner started");
        while let Ok(job) = jobs.recv() {
            let queued = job.queued_at.elapsed();
            if job.events.is_closed() {
                tracing::debug!(model = %self.model_id, "request dropped while queued");
                self.stats.record(Ending::Cancelled, 0, 0);
                continue;
            }
            let result = catch_unwind(AssertUnwindSafe(|| self.generate(&job)));
            self.model.clear();
            match result {
                Ok(Ok(outcome)) => {
                    let ending = if outcome.reason == StopReason::Cancelled {
                        Ending::Cancelled
                    } else {
                        Ending::Finished
                    };
                    self.stats
                        .record(ending, outcome.prompt_tokens, outcome.completion_tokens);
                    let decode_s = outcome.decode.as_secs_f64();
                    let tokens_per_s = if decode_s > 0.0 {
                        outcome.completion_tokens as f64 / decode_s
                    } else {
                        0.0
                    };
                    tracing::info!(
                        model = %self.model_id,
                        reason = ?outcome.reason,
                        prompt_tokens = outcome.prompt_tokens,
                        completion_tokens = outcome.completion_tokens,
                        queue_ms = queued.as_millis() as u64,
                        prefill_ms = outcome.prefill.as_millis() as u64,
                        decode_tokens_per_s = format_args!("{tokens_per_s:.1}"),
                        "generation finished"
                    );
                }
                Ok(Err(error)) => {
                    tracing::warn!(model = %self.model_id, %error, "generation failed");
                    self.stats.record(Ending::Failed, 0, 0);
                    send(&job.events, GenerateEvent::Failed(error.to_string()));
                }
                Err(_) => {
                    tracing::error!(model = %self.model_id, "generation panicked");
                    self.stats.record(Ending::Failed, 0, 0);
                    send(
                        &job.events,
                        GenerateEvent::Failed("internal error in the engine".into()),
                    );
                }
            }
        }
        tracing::info!(model = %self.model_id, "runner stopped");
    }

    /// Serves one request to its end, sending every event but `Failed` (the caller sends that).
    fn generate(&mut self, job: &Job) -> Result<Outcome, EngineError> {
        let prompt = &job.request.prompt_tokens;
        let params = &job.request.sampling;
        if prompt.is_empty() {
            return Err(EngineError::InvalidRequest("the prompt is empty".into()));
        }
        if prompt.len() >= self.context_length {
            return Err(EngineError::PromptTooLong {
                tokens: prompt.len(),
                limit: self.context_length,
            });
        }
        let events = &job.events;
        let start = Instant::now();
        let mut outcome = Outcome {
            reason: StopReason::Length,
            prompt_tokens: prompt.len(),
            completion_tokens: 0,
            prefill: Duration::ZERO,
            decode: Duration::ZERO,
        };
        let finish = |outcome: Outcome| -> Result<Outcome, EngineError> {
            if outcome.reason != StopReason::Cancelled {
                send(
                    events,
                    GenerateEvent::Finished {
                        reason: outcome.reason,
                        prompt_tokens: outcome.prompt_tokens,
                        completion_tokens: outcome.completion_tokens,
                    },
                );
            }
            Ok(outcome)
        };
        if params.max_tokens == 0 {
            return finish(outcome);
        }

        self.model.clear();
        let mut logits = None;
        for (i, chunk) in prompt.chunks(PREFILL_CHUNK).enumerate() {
            if events.is_closed() {
                outcome.reason = StopReason::Cancelled;
                return finish(outcome);
            }
            logits = Some(self.model.forward(chunk, i * PREFILL_CHUNK, &self.device)?);
        }
        let mut logits = logits.expect("a non-empty prompt has a chunk");
        outcome.prefill = start.elapsed();

        let decode_start = Instant::now();
        let mut sampler = params.logits_processor();
        let mut decoder = IncrementalDecoder::new();
        let mut stops = StopMatcher::new(&params.stop);
        let reason = loop {
            let token = sampler.sample(&logits)?;
            outcome.completion_tokens += 1;
            if self.eos_ids.contains(&token) {
                break StopReason::EndOfSequence;
            }
            if let Some(piece) = decoder.push(&self.tokenizer, token)? {
                let (text, stopped) = match stops.push(&piece) {
                    StopCheck::Continue(text) => (text, false),
                    StopCheck::Stop(text) => (text, true),
                };
                if !text.is_empty() && !send(events, GenerateEvent::Text(text)) {
                    break StopReason::Cancelled;
                }
                if stopped {
                    break StopReason::StopString;
                }
            }
            if events.is_closed() {
                break StopReason::Cancelled;
            }
            let total = prompt.len() + outcome.completion_tokens;
            if outcome.completion_tokens >= params.max_tokens || total >= self.context_length {
                break StopReason::Length;
            }
            logits = self.model.forward(&[token], total - 1, &self.device)?;
        };
        outcome.decode = decode_start.elapsed();
        outcome.reason = reason;
        if matches!(reason, StopReason::EndOfSequence | StopReason::Length) {
            let rest = stops.finish();
            if !rest.is_empty() {
                send(events, GenerateEvent::Text(rest));
            }
        }
        finish(outcome)
    }
}

/// Sends `event`; false when the receiver is gone.
fn send(events: &Sender<GenerateEvent>, event: GenerateEvent) -> bool {
    match events.try_send(event) {
        Ok(()) => true,
        // The channel is sized for the whole generation, so this does not happen; if it
        // does, wait for the client rather than lose text.
        Err(TrySendError::Full(event)) => events.blocking_send(event).is_ok(),
        Err(TrySendError::Closed(_)) => false,
    }
}
