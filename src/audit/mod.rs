//! The audit log: who did what, when and from where, for every security-relevant event (logins,
//! sessions, passwords and 2FA, administrators' actions, refusals by the limits, uploads and
//! deletions, chat answers with their model and token counts, never their text).
//!
//! The rooms that decide things record events ([`AuditLog::record`]); one writer thread owns
//! appending ([`writer`]): it takes events from a channel in the order they were recorded and
//! appends whatever has queued up in one transaction, so recording never waits for the disk
//! and a burst of events costs one commit. [`AuditLog::flush`] waits until everything recorded
//! before it is stored (reading the log, shutting down). The store keeps the entries chained
//! by hashes and names accounts by pseudonyms (`src/store/audit.rs`); [`retention`] removes
//! entries older than the configured period.

mod event;
pub mod retention;
mod writer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

pub use event::AuditEvent;

use crate::store::{AuditCheck, AuditFilter, AuditItem, Store, StoreError};

/// An account named by an entry, resolved while the account and its audit key exist.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedAccount {
    /// Its id.
    pub id: Uuid,
    /// Its username now.
    pub username: String,
}

/// An entry with the accounts behind its pseudonyms.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedEntry {
    /// The stored entry.
    pub item: AuditItem,
    /// Who acted.
    pub actor: Option<NamedAccount>,
    /// Whom it was about.
    pub subject: Option<NamedAccount>,
}

/// How long a repeated refusal of the same kind is kept out of the log.
const REPEAT_WINDOW_MS: i64 = 60_000;
/// Repeat keys remembered at most (older ones are forgotten first).
const MAX_REPEAT_KEYS: usize = 10_000;

enum Command {
    // Boxed: an entry is large beside a flush, and the queue holds many.
    Record(Box<crate::store::NewAuditEntry>),
    Flush(oneshot::Sender<()>),
}

/// Handle to the audit log; cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

struct Inner {
    tx: mpsc::UnboundedSender<Command>,
    store: Store,
    /// Last time (ms) an event with a repeat key was recorded.
    repeats: Mutex<HashMap<String, i64>>,
}

impl AuditLog {
    /// Starts the writer thread on `store`.
    pub fn start(store: Store) -> std::io::Result<AuditLog> {
        // Unbounded: an event is never dropped or waited for; the writer commits whatever has
        // queued in one transaction, so it keeps up with any rate the server can produce.
        let (tx, rx) = mpsc::unbounded_channel();
        let writer_store = store.clone();
        std::thread::Builder::new()
            .name("enclave-audit".into())
            .spawn(move || writer::run(writer_store, rx))?;
        Ok(AuditLog {
            inner: Arc::new(Inner {
                tx,
                store,
                repeats: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Records `event` now (it is stored shortly, in the order recorded).
    pub fn record(&self, event: AuditEvent) {
        metrics::counter!("enclave_audit_events_total", "action" => event.action.as_str()).increment(1);
        if self
            .inner
            .tx
            .send(Command::Record(Box::new(event.into_entry())))
            .is_err()
        {
            // Only after the writer thread died, which it does not while a handle lives.
            tracing::error!("the audit writer is gone: an audit event was not stored");
        }
    }

    /// Records `event` unless one with the same `repeat_key` was recorded in the last minute
    /// (refusals by the limits: a flood of them is one entry a minute, not a flood).
    pub fn record_unless_repeated(&self, repeat_key: String, event: AuditEvent) {
        let now = crate::store::now_ms();
        {
            let Ok(mut repeats) = self.inner.repeats.lock() else {
                return self.record(event);
            };
            if repeats
                .get(&repeat_key)
                .is_some_and(|last| now - last < REPEAT_WINDOW_MS)
            {
                return;
            }
            if repeats.len() >= MAX_REPEAT_KEYS {
                repeats.retain(|_, last| now - *last < REPEAT_WINDOW_MS);
            }
            if repeats.len() < MAX_REPEAT_KEYS {
                repeats.insert(repeat_key, now);
            }
        }
        self.record(event);
    }

    /// Waits until every event recorded before this call is stored.
    pub async fn flush(&self) {
        let (done, stored) = oneshot::channel();
        if self.inner.tx.send(Command::Flush(done)).is_ok() {
            let _ = stored.await;
        }
    }

    /// A page of entries, newest first, older than `before` (after storing what is queued).
    pub async fn page(
        &self,
        filter: &AuditFilter,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<ResolvedEntry>, Option<u64>), StoreError> {
        self.flush().await;
        let (items, next) = self.inner.store.audit_page(filter, before, limit)?;
        Ok((self.resolve(items)?, next))
    }

    /// Up to `limit` entries, oldest first, after entry `after` (an export reads such slices).
    pub async fn slice(
        &self,
        filter: &AuditFilter,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ResolvedEntry>, StoreError> {
        self.flush().await;
        let items = self.inner.store.audit_slice(filter, after, limit)?;
        self.resolve(items)
    }

    /// Checks the whole chain (after storing what is queued).
    pub async fn verify(&self) -> Result<AuditCheck, StoreError> {
        self.flush().await;
        self.inner.store.verify_audit()
    }

    fn resolve(&self, items: Vec<AuditItem>) -> Result<Vec<ResolvedEntry>, StoreError> {
        let store = &self.inner.store;
        let mut known: HashMap<String, Option<NamedAccount>> = HashMap::new();
        let mut name = |pseudonym: &Option<String>| -> Result<Option<NamedAccount>, StoreError> {
            let Some(pseudonym) = pseudonym else { return Ok(None) };
            if let Some(found) = known.get(pseudonym) {
                return Ok(found.clone());
            }
            let account = match store.audit_account(pseudonym)? {
                Some(id) => store.get_user(id)?.map(|u| NamedAccount {
                    id,
                    username: u.username,
                }),
                None => None,
            };
            known.insert(pseudonym.clone(), account.clone());
            Ok(account)
        };
        items
            .into_iter()
            .map(|item| {
                Ok(ResolvedEntry {
                    actor: name(&item.record.actor)?,
                    subject: name(&item.record.subject)?,
                    item,
                })
            })
            .collect()
    }
}
