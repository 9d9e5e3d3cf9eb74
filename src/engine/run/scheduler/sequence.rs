//! One request inside the scheduler: its tokens, how far its KV cache is computed, its blocks,
//! its sampler and the text it has sent.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc::UnboundedSender;

use super::prefix::{block_key, PrefixCache, ROOT};
use super::vision::SequenceVision;
use crate::engine::error::EngineError;
use crate::engine::load::tokenizer::TextTokenizer;
use crate::engine::run::detokenize::IncrementalDecoder;
use crate::engine::run::kv::{BlockTable, KvCache};
use crate::engine::run::request::{GenerateEvent, StopReason};
use crate::engine::run::sampling::Sampler;
use crate::engine::run::stop::{StopCheck, StopMatcher};

/// A generation the scheduler owns, waiting or running.
#[derive(Debug)]
pub(crate) struct Sequence {
    /// Arrival order (unique, increasing).
    pub(crate) id: u64,
    /// Whose request it is, for fair admission (opaque).
    pub(crate) fairness_key: Arc<str>,
    /// When it was last admitted to run (a tick); 0 while it never ran.
    pub(crate) admission: u64,
    /// The prompt, then every generated token.
    pub(crate) tokens: Vec<u32>,
    /// Tokens of the prompt.
    pub(crate) prompt_len: usize,
    /// Leading tokens whose keys and values are in the cache.
    pub(crate) computed: usize,
    /// The blocks holding them (empty while waiting).
    pub(crate) table: BlockTable,
    /// Chained keys of the full blocks already given to the prefix cache (or taken from it).
    pub(crate) block_keys: Vec<u64>,
    /// The most tokens to generate.
    pub(crate) max_tokens: usize,
    /// Whether end-of-sequence tokens are ignored (generation runs to `max_tokens`).
    pub(crate) ignore_eos: bool,
    /// Picks each next token.
    pub(crate) sampler: Sampler,
    /// Turns generated tokens into text.
    decoder: IncrementalDecoder,
    /// Holds back text that may start a stop string.
    stops: StopMatcher,
    /// Where the events go; closed when the client is gone.
    events: UnboundedSender<GenerateEvent>,
    /// When the request arrived.
    pub(crate) queued_at: Instant,
    /// When the last token was sampled (for inter-token latency).
    pub(crate) last_token_at: Option<Instant>,
    /// Times it was preempted.
    pub(crate) preemptions: u32,
    /// Its images, positions and cache keys (a prompt with images).
    pub(crate) vision: Option<SequenceVision>,
}

/// What a newly sampled token did to its sequence.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Generation goes on.
    Continue,
    /// The sequence is done.
    Finished(StopReason),
}

impl Sequence {
    /// A new waiting sequence.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: u64,
        fairness_key: Arc<str>,
        prompt: Vec<u32>,
        max_tokens: usize,
        ignore_eos: bool,
        sampler: Sampler,
        stops: &[String],
        events: UnboundedSender<GenerateEvent>,
        queued_at: Instant,
        table: BlockTable,
        vision: Option<SequenceVision>,
    ) -> Self {
        Self {
            id,
            fairness_key,
            admission: 0,
            prompt_len: prompt.len(),
            tokens: prompt,
            computed: 0,
            table,
            block_keys: Vec::new(),
            max_tokens,
            ignore_eos,
            sampler,
            decoder: IncrementalDecoder::new(),
            stops: StopMatcher::new(stops),
            events,
            queued_at,
            last_token_at: None,
            preemptions: 0,
            vision,
        }
    }

    /// Tokens `range` as the prefix cache keys them: the tokens, except that image tokens
    /// stand for their image ([`SequenceVision::cache_tokens`]).
    pub(crate) fn cache_tokens(&self, range: std::ops::Range<usize>) -> std::borrow::Cow<'_, [u32]> {
        match &self.vision {
            None => std::borrow::Cow::Borrowed(&self.tokens[range]),
            Some(vision) => range
                .map(|i| vision.cache_tokens.get(i).copied().unwrap_or(self.tokens[i]))
                .collect(),
        }
    }

    /// Tokens generated so far.
    pub(crate) fn generated(&self) -> usize {
        self.tokens.len() - self.prompt_len
    }

    /// Tokens still to run through the model before the next sample (the prompt's rest on
    /// prefill or after a preemption, 1 on a decode step).
    pub(crate) fn pending(&self) -> usize {
        self.tokens.len() - self.computed
    }

    /// Whether the client stopped listening.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.events.is_closed()
    }

    /// Gives the prefix cache every block that became full since the last call (only
    /// computed tokens count).
    pub(crate) fn register_full_blocks(&mut self, prefix: &mut PrefixCache, kv: &mut KvCache) {
        let block_size = self.table.block_size();
        let full = self.computed / block_size;
        while self.block_keys.len() < full {
            let index = self.block_keys.len();
            let parent = self.block_keys.last().copied().unwrap_or(ROOT);
            let tokens = self.cache_tokens(index * block_size..(index + 1) * block_size);
            let key = block_key(parent, &tokens);
            prefix.insert(key, parent, &tokens, self.table.blocks()[index], kv);
            self.block_keys.push(key);
        }
    }

    /// Records the sampled `token` and streams the text it completes. `eos` ends the
    /// sequence; so do a stop string, `max_tokens` and the `context_length`.
    pub(crate) fn accept(
        &mut self,
        token: u32,
        eos: &[u32],
        tokenizer: &TextTokenizer,
        context_length: usize,
    ) -> Result<Progress, EngineError> {
        self.tokens.push(token);
        if !self.ignore_eos && eos.contains(&token) {
            return Ok(Progress::Finished(StopReason::EndOfSequence));
        }
        if let Some(piece) = self.decoder.push(tokenizer, token)? {
            let (text, stopped) = match self.stops.push(&piece) {
                StopCheck::Continue(text) => (text, false),
                StopCheck::Stop(text) => (text, true),
            };
            if !text.is_empty() && !self.send(GenerateEvent::Text(text)) {
                return Ok(Progress::Finished(StopReason::Cancelled));
            }
            if stopped {
                return Ok(Progress::Finished(StopReason::StopString));
            }
        }
        if self.generated() >= self.max_tokens || self.tokens.len() >= context_length {
            return Ok(Progress::Finished(StopReason::Length));
        }
        Ok(Progress::Continue)
    }

    /// Sends the last events of a sequence that ended for `reason`.
    pub(crate) fn finish(&mut self, reason: StopReason) {
        if reason == StopReason::Cancelled {
            return;
        }
        if matches!(reason, StopReason::EndOfSequence | StopReason::Length) {
            let rest = self.stops.finish();
            if !rest.is_empty() {
                self.send(GenerateEvent::Text(rest));
            }
        }
        self.send(GenerateEvent::Finished {
            reason,
            prompt_tokens: self.prompt_len,
            completion_tokens: self.generated(),
        });
    }

    /// Sends a failure; nothing follows.
    pub(crate) fn fail(&self, message: String) {
        self.send(GenerateEvent::Failed(message));
    }

    /// Sends `event`; false when the client is gone.
    fn send(&self, event: GenerateEvent) -> bool {
        self.events.send(event).is_ok()
    }
}
