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
