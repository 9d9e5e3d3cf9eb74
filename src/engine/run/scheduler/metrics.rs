//! The scheduler's Prometheus metrics, recorded where it decides (labelled by model).

use std::time::{Duration, Instant};

/// How often the tokens-per-second gauge is refreshed.
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// Metric recording for one model's scheduler.
#[derive(Debug)]
pub(crate) struct SchedulerMetrics {
    /// The `model` label.
    model: String,
    /// Start of the current tokens-per-second window.
    window_start: Instant,
    /// Tokens generated in the current window.
    window_generated: u64,
    /// Prompt tokens looked up in the prefix cache since start.
    prefix_queried: u64,
    /// Of those, tokens found.
    prefix_hits: u64,
}

impl SchedulerMetrics {
    /// Metrics for `model`; describes them once.
    pub(crate) fn new(model: &str) -> Self {
        describe();
        Self {
            model: model.to_owned(),
            window_start: Instant::now(),
            window_generated: 0,
            prefix_queried: 0,
            prefix_hits: 0,
        }
    }

    /// Waiting and running sequences, and KV blocks in use.
    pub(crate) fn occupancy(&self, waiting: usize, running: usize, blocks_used: usize, blocks_total: usize) {
        let m = self.model.clone();
        metrics::gauge!("enclave_engine_waiting_requests", "model" => m.clone()).set(waiting as f64);
        metrics::gauge!("enclave_engine_running_sequences", "model" => m.clone()).set(running as f64);
        metrics::gauge!("enclave_engine_kv_blocks_used", "model" => m.clone()).set(blocks_used as f64);
        metrics::gauge!("enclave_engine_kv_blocks_total", "model" => m).set(blocks_total as f64);
    }

    /// One forward step: its duration, tokens and sequences.
    pub(crate) fn step(&self, duration: Duration, tokens: usize, sequences: usize) {
        let m = self.model.clone();
        metrics::histogram!("enclave_engine_step_seconds", "model" => m.clone()).record(duration.as_secs_f64());
        metrics::histogram!("enclave_engine_step_tokens", "model" => m.clone()).record(tokens as f64);
        metrics::histogram!("enclave_engine_step_sequences", "model" => m).record(sequences as f64);
    }

    /// One call of the vision encoder: its images and its duration.
    pub(crate) fn images_encoded(&self, images: usize, duration: Duration) {
        let m = self.model.clone();
        metrics::counter!("enclave_engine_images_encoded_total", "model" => m.clone()).increment(images as u64);
        metrics::histogram!("enclave_engine_vision_encode_seconds", "model" => m).record(duration.as_secs_f64());
    }

    /// Prompt tokens run through the model (cache hits excluded).
    pub(crate) fn prompt_tokens(&self, tokens: usize) {
        metrics::counter!("enclave_engine_prompt_tokens_total", "model" => self.model.clone()).increment(tokens as u64);
    }

    /// Tokens sampled in one step; refreshes the tokens-per-second gauge once a window.
    pub(crate) fn generated(&mut self, tokens: usize) {
        metrics::counter!("enclave_engine_generated_tokens_total", "model" => self.model.clone())
            .increment(tokens as u64);
        self.window_generated += tokens as u64;
        let elapsed = self.window_start.elapsed();
        if elapsed >= RATE_WINDOW {
            let rate = self.window_generated as f64 / elapsed.as_secs_f64();
            metrics::gauge!("enclave_engine_generated_tokens_per_second", "model" => self.model.clone()).set(rate);
            self.window_start = Instant::now();
            self.window_generated = 0;
        }
    }

    /// A lookup of `queried` prompt tokens in the prefix cache that found `hit` of them.
    pub(crate) fn prefix_lookup(&mut self, queried: usize, hit: usize) {
        let m = self.model.clone();
        self.prefix_queried += queried as u64;
        self.prefix_hits += hit as u64;
        metrics::counter!("enclave_engine_prefix_cache_queried_tokens_total", "model" => m.clone())
            .increment(queried as u64);
        metrics::counter!("enclave_engine_prefix_cache_hit_tokens_total", "model" => m.clone()).increment(hit as u64);
        if self.prefix_queried > 0 {
            let ratio = self.prefix_hits as f64 / self.prefix_queried as f64;
            metrics::gauge!("enclave_engine_prefix_cache_hit_ratio", "model" => m).set(ratio);
        }
    }

    /// Time from arrival to the first sampled token.
    pub(crate) fn time_to_first_token(&self, duration: Duration) {
        metrics::histogram!("enclave_engine_time_to_first_token_seconds", "model" => self.model.clone())
            .record(duration.as_secs_f64());
    }

    /// Time between two sampled tokens of a sequence.
    pub(crate) fn inter_token_latency(&self, duration: Duration) {
        metrics::histogram!("enclave_engine_inter_token_latency_seconds", "model" => self.model.clone())
            .record(duration.as_secs_f64());
    }

    /// A running sequence gave its blocks back to be recomputed later.
    pub(crate) fn preempted(&self) {
        metrics::counter!("enclave_engine_preemptions_total", "model" => self.model.clone()).increment(1);
    }

    /// A request ended: `finished`, `cancelled`, `failed` or `refused`.
    pub(crate) fn ended(&self, outcome: &'static str) {
        metrics::counter!("enclave_engine_requests_total", "model" => self.model.clone(), "outcome" => outcome)
            .increment(1);
    }
}

/// Help texts for `/metrics`.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!(
        "enclave_engine_waiting_requests",
        "Requests waiting to start (queue depth)"
    );
    describe_gauge!("enclave_engine_running_sequences", "Sequences in the running batch");
    describe_gauge!(
        "enclave_engine_kv_blocks_used",
        "KV cache blocks held by sequences or the prefix cache"
    );
    describe_gauge!("enclave_engine_kv_blocks_total", "KV cache blocks in the pool");
    describe_histogram!(
        "enclave_engine_step_seconds",
        Unit::Seconds,
        "Duration of one batched forward step"
    );
    describe_histogram!("enclave_engine_step_tokens", "Tokens (prefill and decode) in one step");
    describe_counter!(
        "enclave_engine_images_encoded_total",
        "Images run through the vision encoder"
    );
    describe_histogram!(
        "enclave_engine_vision_encode_seconds",
        Unit::Seconds,
        "Duration of one vision encoder call (all the images a step reaches)"
    );
    describe_histogram!("enclave_engine_step_sequences", "Sequences in one step");
    describe_counter!(
        "enclave_engine_prompt_tokens_total",
        "Prompt tokens run through the model"
    );
    describe_counter!("enclave_engine_generated_tokens_total", "Tokens sampled");
    describe_gauge!(
        "enclave_engine_generated_tokens_per_second",
        "Tokens sampled per second, last second"
    );
    describe_counter!(
        "enclave_engine_prefix_cache_queried_tokens_total",
        "Prompt tokens looked up in the prefix cache"
    );
    describe_counter!(
        "enclave_engine_prefix_cache_hit_tokens_total",
        "Prompt tokens served from the prefix cache"
    );
    describe_gauge!(
        "enclave_engine_prefix_cache_hit_ratio",
        "Prefix cache hits over lookups since start"
    );
    describe_histogram!(
        "enclave_engine_time_to_first_token_seconds",
        Unit::Seconds,
        "Arrival to first sampled token"
    );
    describe_histogram!(
        "enclave_engine_inter_token_latency_seconds",
        Unit::Seconds,
        "Time between two tokens of one sequence"
    );
    describe_counter!(
        "enclave_engine_preemptions_total",
        "Sequences preempted for lack of KV blocks"
    );
    describe_counter!("enclave_engine_requests_total", "Requests ended, by outcome");
}
