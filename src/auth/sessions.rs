//! Whether a session still lives, checked on every request: an access token names its session
//! (the refresh-token family of its login), and is refused once that session is ended (logout,
//! a password change, reuse of a rotated refresh token), not only when it expires.
//!
//! The store is the truth; this cache keeps each session's state in memory so that the check
//! costs a hash lookup, not a database read. It stays in step with the store because every
//! change to a session goes through [`crate::auth::AuthService`], which updates both (one
//! process owns the database). A session not cached yet is read once from the store; an ending
//! that lands between that read and its caching is noticed by the ending count
//! ([`SessionCache::endings`]) and the read is done again, so a stale "live" is never kept.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use uuid::Uuid;

use crate::store::{SessionStatus, Store, StoreResult};

/// Past this many cached sessions, ended ones are dropped from the cache (they are read again
/// from the store if a token ever names them; the answer stays "ended").
const CACHE_TRIM_AT: usize = 100_000;

/// The sessions seen since the server started.
#[derive(Default)]
pub struct SessionCache {
    sessions: RwLock<HashMap<Uuid, SessionStatus>>,
    /// Endings recorded so far (bumped after the store and the map have the ending).
    endings: AtomicU64,
}

impl SessionCache {
    /// Whether session `id` exists, belongs to `user_id`, has not been ended and started less
    /// than `lifetime_ms` ago.
    pub fn is_live(&self, store: &Store, id: Uuid, user_id: Uuid, lifetime_ms: i64) -> StoreResult<bool> {
        let cached = self
            .sessions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .copied();
        let status = match cached {
            Some(status) => status,
            None => loop {
                let endings = self.endings.load(Ordering::Acquire);
                let Some(status) = store.session_status(id)? else {
                    return Ok(false);
                };
                let mut sessions = self.sessions.write().unwrap_or_else(|p| p.into_inner());
                if self.endings.load(Ordering::Acquire) != endings {
                    // Something ended meanwhile: the read may predate it; read again.
                    drop(sessions);
                    continue;
                }
                // An entry written meanwhile (a start or an ending) is newer than the read.
                break *sessions.entry(id).or_insert(status);
            },
        };
        let young = status.started_at.saturating_add(lifetime_ms) > crate::store::now_ms();
        Ok(status.user_id == user_id && !status.revoked && young)
    }

    /// Records a session just started.
    pub fn started(&self, id: Uuid, user_id: Uuid) {
        self.remember(
            id,
            SessionStatus {
                user_id,
                revoked: false,
                started_at: crate::store::now_ms(),
            },
        );
    }

    /// Records that session `id` has ended (after the store has).
    pub fn ended(&self, id: Uuid, user_id: Uuid) {
        self.remember(
            id,
            SessionStatus {
                user_id,
                revoked: true,
                started_at: 0,
            },
        );
        self.endings.fetch_add(1, Ordering::AcqRel);
    }

    /// Records that every session of `user_id` has ended (after the store has). Sessions not cached are read from the
    /// store when next seen, where they are already ended.
    pub fn ended_all(&self, user_id: Uuid) {
        let mut sessions = self.sessions.write().unwrap_or_else(|p| p.into_inner());
        for status in sessions.values_mut().filter(|s| s.user_id == user_id) {
            status.revoked = true;
        }
        drop(sessions);
        self.endings.fetch_add(1, Ordering::AcqRel);
    }

    fn remember(&self, id: Uuid, status: SessionStatus) {
        let mut sessions = self.sessions.write().unwrap_or_else(|p| p.into_inner());
        if sessions.len() >= CACHE_TRIM_AT {
            sessions.retain(|_, s| !s.revoked);
        }
        sessions.insert(id, status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::new_id;

    const DAY: i64 = 24 * 3600 * 1000;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("enclave.redb")).unwrap();
        (dir, store)
    }

    #[test]
    fn a_session_lives_until_it_is_ended_and_only_for_its_user() {
        let (_dir, store) = store();
        let (ann, bob) = (new_id(), new_id());
        let cache = SessionCache::default();
        let first = store
            .insert_refresh_token(ann, &[1; 32], i64::MAX, Default::default())
            .unwrap();
        let second = store
            .insert_refresh_token(ann, &[2; 32], i64::MAX, Default::default())
            .unwrap();
        // Read from the store the first time (a session started before this process).
        assert!(cache.is_live(&store, first, ann, DAY).unwrap());
        assert!(
            !cache.is_live(&store, first, bob, DAY).unwrap(),
            "another user's session"
        );
        assert!(
            !cache.is_live(&store, new_id(), ann, DAY).unwrap(),
            "an unknown session"
        );
        // Logout of one session leaves the other.
        let (owner, ended) = store.revoke_refresh_family(&[1; 32]).unwrap().unwrap();
        assert_eq!((owner, ended), (ann, first));
        cache.ended(ended, owner);
        assert!(!cache.is_live(&store, first, ann, DAY).unwrap());
        assert!(cache.is_live(&store, second, ann, DAY).unwrap());
        // Ending all of a user's sessions ends the cached ones and, through the store, the rest.
        let third = store
            .insert_refresh_token(ann, &[3; 32], i64::MAX, Default::default())
            .unwrap();
        store.revoke_all_refresh_tokens(ann).unwrap();
        cache.ended_all(ann);
        assert!(!cache.is_live(&store, second, ann, DAY).unwrap());
        assert!(
            !cache.is_live(&store, third, ann, DAY).unwrap(),
            "never cached, ended in the store"
        );
    }

    #[test]
    fn a_fresh_cache_agrees_with_the_store_after_a_restart() {
        let (_dir, store) = store();
        let ann = new_id();
        let live = store
            .insert_refresh_token(ann, &[4; 32], i64::MAX, Default::default())
            .unwrap();
        let ended = store
            .insert_refresh_token(ann, &[5; 32], i64::MAX, Default::default())
            .unwrap();
        store.revoke_refresh_family(&[5; 32]).unwrap();
        let cache = SessionCache::default();
        assert!(cache.is_live(&store, live, ann, DAY).unwrap());
        assert!(!cache.is_live(&store, ended, ann, DAY).unwrap());
        // Past its absolute lifetime a session has ended, however it was used.
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(!cache.is_live(&store, live, ann, 1).unwrap());
    }
}
