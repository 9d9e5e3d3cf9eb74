//! The generations running right now, one per conversation at most, so that `stop` can reach
//! them and shutdown can wait for them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// One generation in flight.
struct Entry {
    /// Cancelled to ask the generation to stop.
    stop: CancellationToken,
    /// Cancelled when the generation has ended (its answer stored).
    done: CancellationToken,
}

/// Generations in flight, keyed by conversation.
#[derive(Clone, Default)]
pub struct ActiveGenerations {
    inner: Arc<Mutex<HashMap<Uuid, Entry>>>,
}

/// Removes its conversation's entry when the generation ends, however it ends, and tells
/// whoever waits for the end. Held until the answer is stored.
pub struct ActiveGuard {
    registry: ActiveGenerations,
    conversation_id: Uuid,
    done: CancellationToken,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.conversation_id);
        self.done.cancel();
        metrics::gauge!("enclave_chat_active_answers").decrement(1.0);
    }
}

impl ActiveGenerations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Entry>> {
        // A panic while holding this lock cannot leave the map half-updated.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a generation for a conversation; `None` if one is already running there.
    pub fn begin(&self, conversation_id: Uuid, token: CancellationToken) -> Option<ActiveGuard> {
        let mut map = self.lock();
        if map.contains_key(&conversation_id) {
            return None;
        }
        let done = CancellationToken::new();
        map.insert(
            conversation_id,
            Entry {
                stop: token,
                done: done.clone(),
            },
        );
        metrics::gauge!("enclave_chat_active_answers").increment(1.0);
        Some(ActiveGuard {
            registry: self.clone(),
            conversation_id,
            done,
        })
    }

    /// Asks the generation of a conversation to stop; returns a token cancelled once it has
    /// ended and its answer is stored, or `None` if none was running.
    pub fn stop(&self, conversation_id: Uuid) -> Option<CancellationToken> {
        let map = self.lock();
        let entry = map.get(&conversation_id)?;
        entry.stop.cancel();
        Some(entry.done.clone())
    }

    /// Number of generations running.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is running.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
