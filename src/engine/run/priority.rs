//! Who computes next when chat and background work (document embedding) share the same cores
//! or GPU: one gate for the whole process, taken around every chat forward step and every
//! embedding batch.
//!
//! Chat goes first: a background batch waits while a chat step runs or waits. Chat steps come
//! back to back while answers stream, so a background batch that has waited
//! [`STARVATION_LIMIT`] gets the next turn anyway: answers keep streaming (one short batch
//! slows one step) and ingestion keeps moving. Background work also keeps its batches small
//! while chat is active ([`ComputeGate::chat_active`]), so that a chat request arriving mid-batch
//! waits little, and hands the compute over between its parts ([`ComputeGate::pause_point`],
//! called between encoder layers) when chat is waiting: chat then waits for one layer of one
//! batch at most, not the whole batch. Interactive embeddings (a search query,
//! `/v1/embeddings`) count as chat.

use std::cell::Cell;
use std::sync::{Condvar, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a background batch waits behind chat before it takes a turn anyway.
pub const STARVATION_LIMIT: Duration = Duration::from_millis(150);
/// Chat counts as active for this long after its last step.
const ACTIVE_WINDOW: Duration = Duration::from_secs(1);

thread_local! {
    /// Whether this thread holds a background turn (only then may it pause).
    static HOLDS_BACKGROUND: Cell<bool> = const { Cell::new(false) };
}

/// The process-wide gate.
static GATE: LazyLock<ComputeGate> = LazyLock::new(ComputeGate::default);

/// The gate every model of this process shares.
pub fn gate() -> &'static ComputeGate {
    &GATE
}

/// Which side a turn belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// Someone is waiting for it: chat steps, query embeddings.
    Interactive,
    /// Nobody is waiting right now: document embeddings.
    Background,
}

/// The state behind the gate.
#[derive(Debug, Default)]
struct State {
    /// A turn is running.
    busy: bool,
    /// Interactive turns waiting.
    interactive_waiting: usize,
    /// When the longest-waiting background turn started waiting.
    background_since: Option<Instant>,
    /// Background turns waiting.
    background_waiting: usize,
    /// When the last interactive turn started.
    last_interactive: Option<Instant>,
}

impl State {
    /// Whether a background turn has waited past the limit.
    fn background_starved(&self, now: Instant) -> bool {
        self.background_since
            .is_some_and(|since| now.duration_since(since) >= STARVATION_LIMIT)
    }
}

/// Serializes compute between chat and background work, chat first.
#[derive(Debug, Default)]
pub struct ComputeGate {
    /// The turn state.
    state: Mutex<State>,
    /// Signalled when a turn ends.
    released: Condvar,
}

/// A turn at the compute; the next one may start when it is dropped.
#[must_use = "the turn ends when this is dropped"]
pub struct Turn<'a> {
    /// The gate to release.
    gate: &'a ComputeGate,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        HOLDS_BACKGROUND.with(|h| h.set(false));
        self.gate.lock().busy = false;
        self.gate.released.notify_all();
    }
}

impl ComputeGate {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a few counters: a panic elsewhere cannot leave them half-written in a
        // way that matters more than refusing to serve.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a turn of `priority`.
    pub fn turn(&self, priority: Priority) -> Turn<'_> {
        let mut state = self.lock();
        match priority {
            Priority::Interactive => {
                state.interactive_waiting += 1;
                while state.busy || state.background_starved(Instant::now()) {
                    state = self.wait(state, None);
                }
                state.interactive_waiting -= 1;
                state.last_interactive = Some(Instant::now());
            }
            Priority::Background => {
                state = self.wait_background(state);
                HOLDS_BACKGROUND.with(|h| h.set(true));
            }
        }
        state.busy = true;
        Turn { gate: self }
    }

    /// Waits until a background turn may start: nothing runs, and no chat waits (or this
    /// background work has waited past the starvation limit).
    fn wait_background<'a>(&self, mut state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        state.background_waiting += 1;
        if state.background_since.is_none() {
            state.background_since = Some(Instant::now());
        }
        loop {
            let now = Instant::now();
            let starved = state.background_starved(now);
            if !state.busy && (state.interactive_waiting == 0 || starved) {
                break;
            }
            // Wake at the starvation limit even if nothing is released before.
            let left = state
                .background_since
                .map(|since| STARVATION_LIMIT.saturating_sub(now.duration_since(since)))
                .filter(|d| !d.is_zero());
            state = self.wait(state, left);
        }
        state.background_waiting -= 1;
        state.background_since = (state.background_waiting > 0).then(Instant::now);
        state
    }

    /// Called by background work between the parts of its turn (encoder layers): when chat is
    /// waiting, the compute goes to it and this returns once the background turn is back
    /// (under the usual rules: after chat, or at the starvation limit). Does nothing on a
    /// thread without a background turn, or when no chat waits.
    pub fn pause_point(&self) {
        if !HOLDS_BACKGROUND.with(Cell::get) {
            return;
        }
        let mut state = self.lock();
        if state.interactive_waiting == 0 {
            return;
        }
        state.busy = false;
        self.released.notify_all();
        let mut state = self.wait_background(state);
        state.busy = true;
        metrics::counter!("enclave_embed_pauses_total").increment(1);
    }

    fn wait<'a>(&self, state: MutexGuard<'a, State>, timeout: Option<Duration>) -> MutexGuard<'a, State> {
        match timeout {
            Some(timeout) => {
                self.released
                    .wait_timeout(state, timeout)
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            }
            None => self.released.wait(state).unwrap_or_else(|p| p.into_inner()),
        }
    }

    /// Whether chat has computed recently (background work then keeps its batches small).
    pub fn chat_active(&self) -> bool {
        let state = self.lock();
        state.interactive_waiting > 0 || state.last_interactive.is_some_and(|t| t.elapsed() < ACTIVE_WINDOW)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    #[test]
    fn interactive_turns_go_before_a_waiting_background_turn() {
        let gate = Arc::new(ComputeGate::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = gate.turn(Priority::Interactive);
        let background = {
            let (gate, order) = (gate.clone(), order.clone());
            std::thread::spawn(move || {
                let _turn = gate.turn(Priority::Background);
                order.lock().unwrap().push("background");
            })
        };
        // Let the background turn queue up, then an interactive one behind it.
        std::thread::sleep(Duration::from_millis(20));
        let interactive = {
            let (gate, order) = (gate.clone(), order.clone());
            std::thread::spawn(move || {
                let _turn = gate.turn(Priority::Interactive);
                order.lock().unwrap().push("interactive");
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        drop(first);
        interactive.join().unwrap();
        background.join().unwrap();
        assert_eq!(*order.lock().unwrap(), ["interactive", "background"]);
    }

    #[test]
    fn back_to_back_chat_cannot_starve_background_work() {
        let gate = Arc::new(ComputeGate::default());
        let stop = Arc::new(AtomicUsize::new(0));
        // A chat loop that always has another step.
        let chat = {
            let (gate, stop) = (gate.clone(), stop.clone());
            std::thread::spawn(move || {
                while stop.load(Ordering::Acquire) == 0 {
                    let _turn = gate.turn(Priority::Interactive);
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        std::thread::sleep(Duration::from_millis(10));
        assert!(gate.chat_active());
        let started = Instant::now();
        drop(gate.turn(Priority::Background));
        let waited = started.elapsed();
        stop.store(1, Ordering::Release);
        chat.join().unwrap();
        // It got its turn while chat kept stepping (a liveness check: the bound is far above
        // the starvation limit, so load on the machine cannot fail it).
        assert!(waited < Duration::from_secs(30), "{waited:?}");
    }

    #[test]
    fn a_background_turn_hands_over_to_waiting_chat_at_its_pause_points() {
        let gate: &'static ComputeGate = Box::leak(Box::new(ComputeGate::default()));
        let order = Arc::new(Mutex::new(Vec::new()));
        let background = {
            let order = order.clone();
            std::thread::spawn(move || {
                let _turn = gate.turn(Priority::Background);
                order.lock().unwrap().push("layer 1");
                // Chat arrives during the first layer.
                std::thread::sleep(Duration::from_millis(40));
                gate.pause_point();
                order.lock().unwrap().push("layer 2");
            })
        };
        std::thread::sleep(Duration::from_millis(10));
        let chat = {
            let order = order.clone();
            std::thread::spawn(move || {
                let _turn = gate.turn(Priority::Interactive);
                order.lock().unwrap().push("chat step");
            })
        };
        chat.join().unwrap();
        background.join().unwrap();
        assert_eq!(*order.lock().unwrap(), ["layer 1", "chat step", "layer 2"]);
    }

    #[test]
    fn a_pause_point_without_waiting_chat_or_a_background_turn_does_nothing() {
        let gate = ComputeGate::default();
        // No turn on this thread: returns at once, the gate stays free.
        gate.pause_point();
        let turn = gate.turn(Priority::Background);
        gate.pause_point();
        assert!(gate.lock().busy, "the turn is still held");
        drop(turn);
        assert!(!gate.lock().busy);
    }
}
