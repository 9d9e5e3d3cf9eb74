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
    let seconds = [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
    ];
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&seconds)
        .ok()?
        .install_recorder()
        .ok()
}
