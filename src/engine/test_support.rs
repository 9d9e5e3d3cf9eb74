//! Helpers shared by the engine's tests.

use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedReceiver;

use super::{EngineStats, GenerateEvent, LocalEngine};

/// Reads a stream to its end: the text and the final event.
pub(crate) fn collect(mut events: UnboundedReceiver<GenerateEvent>) -> (String, GenerateEvent) {
    let mut text = String::new();
    while let Some(event) = events.blocking_recv() {
        match event {
            GenerateEvent::Text(piece) => text.push_str(&piece),
            last => return (text, last),
        }
    }
    panic!("the stream ended without a final event");
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
