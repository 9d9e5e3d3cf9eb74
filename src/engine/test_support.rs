//! Helpers shared by the engine's tests.

use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedReceiver;

use super::{read_to_end, EngineStats, GenerateEvent, LocalEngine};

/// Reads a stream to its end: the text and the final event.
pub(crate) fn collect(events: UnboundedReceiver<GenerateEvent>) -> (String, GenerateEvent) {
    let (text, end) = read_to_end(events);
    (text, end.expect("the stream ended without a final event"))
}

/// Waits (a minute at most) until `check` holds on the engine's stats.
pub(crate) fn wait_for_stats(engine: &LocalEngine, check: impl Fn(&EngineStats) -> bool) -> EngineStats {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats = engine.stats();
        if check(&stats) {
            return stats;
        }
        assert!(Instant::now() < deadline, "stats never matched: {stats:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}
