//! The writer thread: the one owner of appending to the audit log.
//!
//! It blocks for the next command, then takes every command already queued behind it (up to a
//! batch), appends the events among them in one transaction and only then answers the flushes
//! among them, so a flush returns once everything recorded before it is stored. A failed
//! append (disk full) is retried every second with the same batch: nothing is dropped and the
//! order holds. The thread ends when the last handle is dropped and the queue is empty.

use std::time::Duration;

use tokio::sync::mpsc;

use super::Command;
use crate::store::Store;

/// Most events appended in one transaction.
const MAX_BATCH: usize = 1024;

pub(super) fn run(store: Store, mut rx: mpsc::UnboundedReceiver<Command>) {
    while let Some(first) = rx.blocking_recv() {
        let mut entries = Vec::new();
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(command) = next {
            match command {
                Command::Record(entry) => entries.push(*entry),
                Command::Flush(done) => flushes.push(done),
            }
            next = if entries.len() < MAX_BATCH {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        append(&store, &entries);
        for done in flushes {
            let _ = done.send(());
        }
    }
}

fn append(store: &Store, entries: &[crate::store::NewAuditEntry]) {
    if entries.is_empty() {
        return;
    }
    loop {
        match store.append_audit(entries) {
            Ok(_) => {
                metrics::histogram!("enclave_audit_batch_entries").record(entries.len() as f64);
                return;
            }
            Err(e) => {
                metrics::counter!("enclave_audit_write_failures_total").increment(1);
                tracing::error!(error = %e, entries = entries.len(), "could not store audit entries; retrying in 1 s");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}
