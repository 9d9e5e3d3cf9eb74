//! Retention: entries older than the configured period are removed once an hour (and at
//! start); the removal itself is an entry, and the chain goes on from the newest removed one.

use std::time::Duration;

use enclave_protocol::AuditAction;

use super::{AuditEvent, AuditLog};

/// How often old entries are looked for.
const PERIOD: Duration = Duration::from_secs(3600);

/// Starts removing entries older than `keep` (none when `keep` is `None`: kept forever).
pub fn spawn(log: AuditLog, keep: Option<Duration>) {
    let Some(keep) = keep else { return };
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(PERIOD);
        loop {
            ticks.tick().await;
            log.flush().await;
            let cutoff = crate::store::now_ms() - i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
            let store = log.inner.store.clone();
            match tokio::task::spawn_blocking(move || store.prune_audit(cutoff)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(removed)) => {
                    tracing::info!(removed, "removed audit entries past retention");
                    log.record(AuditEvent::new(AuditAction::AuditPrune).with(serde_json::json!({
                        "removed": removed,
                        "retention_days": keep.as_secs() / 86400,
                    })));
                }
                Ok(Err(e)) => tracing::error!(error = %e, "could not remove old audit entries"),
                Err(e) => tracing::error!(error = %e, "the audit retention task failed"),
            }
        }
    });
}
