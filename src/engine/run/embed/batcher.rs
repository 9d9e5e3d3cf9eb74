//! The batching thread of an encoder (embedding model or cross-encoder): owns it, takes queued texts into
//! batches under a token budget (interactive texts first), waits for its turn at the compute,
//! and answers every text of the batch.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::time::Instant;

use candle_core::Device;

use super::{EmbedderSettings, Encoder};
use crate::engine::error::EngineError;
use crate::engine::run::priority::{gate, Priority};

/// One text waiting to be embedded.
pub(super) struct Entry {
    /// Its tokens, special tokens included.
    pub tokens: Vec<u32>,
    /// Their token types (a cross-encoder's query and passage); empty for all 0.
    pub types: Vec<u32>,
    /// Whether someone waits for it now.
    pub priority: Priority,
    /// Where its vector goes.
    pub reply: tokio::sync::oneshot::Sender<Result<Vec<f32>, EngineError>>,
}

/// Starts the thread; returns the way into it.
pub(super) fn spawn(
    encoder: Encoder,
    settings: &EmbedderSettings,
    waiting: Arc<AtomicUsize>,
) -> Result<Sender<Entry>, EngineError> {
    let (sender, receiver) = channel();
    let mut batcher = Batcher {
        model: settings.id.clone(),
        encoder,
        device: settings.device.clone(),
        window: settings.window,
        budget: settings.batch_tokens,
        interactive: VecDeque::new(),
        background: VecDeque::new(),
        waiting,
    };
    std::thread::Builder::new()
        .name(format!("embed-{}", settings.id))
        .spawn(move || batcher.run(receiver))?;
    Ok(sender)
}

/// The thread's state.
struct Batcher {
    /// Model id, for logs and metrics.
    model: String,
    /// The encoder.
    encoder: Encoder,
    /// Where it runs.
    device: Device,
    /// The most tokens of one text.
    window: usize,
    /// The most tokens (padding included) of one batch.
    budget: usize,
    /// Texts someone waits for, oldest first.
    interactive: VecDeque<Entry>,
    /// Document texts, oldest first.
    background: VecDeque<Entry>,
    /// Texts queued and not yet in a batch (shared with the handles).
    waiting: Arc<AtomicUsize>,
}

impl Batcher {
    /// Takes texts and answers them until every handle is gone and the queues are empty.
    fn run(&mut self, receiver: Receiver<Entry>) {
        let mut connected = true;
        loop {
            if self.interactive.is_empty() && self.background.is_empty() {
                if !connected {
                    break;
                }
                match receiver.recv() {
                    Ok(entry) => self.push(entry),
                    Err(_) => break,
                }
            }
            while connected {
                match receiver.try_recv() {
                    Ok(entry) => self.push(entry),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => connected = false,
                }
            }
            let (priority, batch) = self.next_batch();
            if !batch.is_empty() {
                self.compute(priority, batch);
            }
        }
        tracing::info!(model = %self.model, "embedding thread stopped");
    }

    fn push(&mut self, entry: Entry) {
        match entry.priority {
            Priority::Interactive => self.interactive.push_back(entry),
            Priority::Background => self.background.push_back(entry),
        }
    }

    /// The next batch: interactive texts first; texts in order until the padded batch would
    /// pass the budget. Background batches stay at one window's worth while chat is active,
    /// so that chat never waits long behind them. Texts nobody waits for any more are dropped.
    fn next_batch(&mut self) -> (Priority, Vec<Entry>) {
        let (priority, queue) = if self.interactive.is_empty() {
            (Priority::Background, &mut self.background)
        } else {
            (Priority::Interactive, &mut self.interactive)
        };
        let budget = if priority == Priority::Background && gate().chat_active() {
            self.window
        } else {
            self.budget
        };
        let mut batch: Vec<Entry> = Vec::new();
        let mut longest = 0;
        while let Some(entry) = queue.pop_front() {
            if entry.reply.is_closed() {
                self.waiting.fetch_sub(1, Ordering::AcqRel);
                continue;
            }
            let len = longest.max(entry.tokens.len());
            if !batch.is_empty() && len * (batch.len() + 1) > budget {
                queue.push_front(entry);
                break;
            }
            longest = len;
            batch.push(entry);
        }
        self.waiting.fetch_sub(batch.len(), Ordering::AcqRel);
        (priority, batch)
    }

    /// Runs one batch at its turn and answers each text.
    fn compute(&mut self, priority: Priority, batch: Vec<Entry>) {
        let tokens: Vec<Vec<u32>> = batch.iter().map(|e| e.tokens.clone()).collect();
        let types: Vec<Vec<u32>> = if batch.iter().all(|e| e.types.is_empty()) {
            Vec::new()
        } else {
            batch.iter().map(|e| e.types.clone()).collect()
        };
        let padded = tokens.iter().map(Vec::len).max().unwrap_or(0) * tokens.len();
        let waited = Instant::now();
        let turn = gate().turn(priority);
        let started = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| self.encoder.run(&tokens, &types, &self.device)));
        drop(turn);
        let class = match priority {
            Priority::Interactive => "interactive",
            Priority::Background => "background",
        };
        metrics::histogram!("enclave_embed_batch_seconds", "model" => self.model.clone(), "priority" => class)
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!("enclave_embed_gate_wait_seconds", "model" => self.model.clone(), "priority" => class)
            .record(started.duration_since(waited).as_secs_f64());
        metrics::histogram!("enclave_embed_batch_tokens", "model" => self.model.clone()).record(padded as f64);
        metrics::counter!("enclave_embed_texts_total", "model" => self.model.clone()).increment(batch.len() as u64);
        metrics::gauge!("enclave_embed_queue_depth", "model" => self.model.clone())
            .set(self.waiting.load(Ordering::Acquire) as f64);
        let failure = match result {
            Ok(Ok(vectors)) if vectors.len() == batch.len() => {
                for (entry, vector) in batch.into_iter().zip(vectors) {
                    let _ = entry.reply.send(Ok(vector));
                }
                return;
            }
            Ok(Ok(vectors)) => format!("{} vectors for {} texts", vectors.len(), batch.len()),
            Ok(Err(error)) => error.to_string(),
            Err(_) => "the encoder panicked".to_owned(),
        };
        tracing::warn!(model = %self.model, error = %failure, texts = batch.len(), "embedding batch failed");
        for entry in batch {
            let _ = entry.reply.send(Err(EngineError::Failed(failure.clone())));
        }
    }
}
