//! Logging setup. Logs go to stderr (stdout carries the "listening" line scripts read) and
//! carry ids, counts and timings; never secrets or message text.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; `filter` is an env-filter directive such as `info`.
pub fn init(filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    // A second call (tests) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Installs the Prometheus recorder that the `metrics` macros write to, and returns the handle
/// that renders the scrape text for `/metrics`. `None` if a recorder was already installed.
pub fn install_metrics() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    // From one fast decode step (a millisecond) to a long answer.
    let seconds = [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
    ];
    // Tokens or sequences in one engine step.
    let counts = [
        1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
    ];
    PrometheusBuilder::new()
        .set_buckets(&seconds)
        .ok()?
        .set_buckets_for_metric(Matcher::Full("enclave_engine_step_tokens".into()), &counts)
        .ok()?
        .set_buckets_for_metric(Matcher::Full("enclave_engine_step_sequences".into()), &counts)
        .ok()?
        .install_recorder()
        .ok()
}
