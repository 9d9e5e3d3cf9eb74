//! `/api/v1/admin/audit`: the audit log for administrators (filters, pages, export as JSON
//! Lines, the chain check), and [`audited`], which the routes use to record what they did.

use axum::body::Body;
use axum::extract::State;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::Json;
use enclave_protocol::{AuditAction, AuditEntry, AuditPage, AuditUser, AuditVerification, ErrorCode};
use serde::Deserialize;
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{ApiQuery, Authenticated, ClientInfo};
use super::{rfc3339, AppState};
use crate::audit::{AuditEvent, NamedAccount, ResolvedEntry};
use crate::auth::roles::Permission;
use crate::store::AuditFilter;

/// Records `event` with the outcome of `result` (`ok`, or the error code the request is
/// answered with) and hands the result on. Refusals by a limit or a lockout are recorded at
/// most once a minute per action and client, so a flood of them is not a flood of entries.
pub(super) fn audited<T, E: Into<ApiError>>(
    state: &AppState,
    event: AuditEvent,
    result: Result<T, E>,
) -> Result<T, ApiError> {
    let result = result.map_err(Into::into);
    record_outcome(state, event, &result);
    result
}

/// Records `event` with the outcome of `result`, as [`audited`] does (for a request that
/// records several entries about one result).
pub(super) fn record_outcome<T>(state: &AppState, event: AuditEvent, result: &Result<T, ApiError>) {
    match result {
        Ok(_) => state.audit.record(event),
        Err(e) if matches!(e.code, ErrorCode::RateLimited | ErrorCode::AccountLocked) => {
            let key = format!("{}:{}:{}", event.action().as_str(), e.code.as_str(), event.client_key());
            state.audit.record_unless_repeated(key, event.failed(e.code));
        }
        Err(e) => state.audit.record(event.failed(e.code)),
    }
}

/// The most entries on one page.
const PAGE_MAX: usize = 500;
/// Entries read at a time while exporting.
const EXPORT_SLICE: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Entries by or about this account.
    user: Option<Uuid>,
    /// Entries of this action (`auth.login`, ...).
    action: Option<String>,
    /// Entries with this outcome (`ok` or an error code).
    outcome: Option<String>,
    /// Entries at or after this time (RFC 3339).
    since: Option<String>,
    /// Entries before this time (RFC 3339).
    until: Option<String>,
    /// The `next_before` of the previous page.
    before: Option<u64>,
    limit: Option<usize>,
    /// `json` (pages, the default) or `jsonl` (every matching entry, oldest first, as a file).
    format: Option<String>,
}

fn time_ms(field: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let time = humantime::parse_rfc3339_weak(value)
        .map_err(|_| ApiError::validation(format!("{field} must be a time like 2026-11-30T12:00:00Z")))?;
    let ms = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| ApiError::validation(format!("{field} is before 1970")))?
        .as_millis();
    Ok(Some(i64::try_from(ms).unwrap_or(i64::MAX)))
}

fn filter_of(query: &AuditQuery) -> Result<AuditFilter, ApiError> {
    if let Some(action) = &query.action {
        action.parse::<AuditAction>().map_err(ApiError::validation)?;
    }
    Ok(AuditFilter {
        user: query.user,
        action: query.action.clone(),
        outcome: query.outcome.clone().filter(|o| !o.is_empty()),
        since: time_ms("since", query.since.as_deref())?,
        until: time_ms("until", query.until.as_deref())?,
    })
}

fn account_view(account: Option<NamedAccount>) -> Option<AuditUser> {
    account.map(|a| AuditUser {
        id: a.id,
        username: a.username,
    })
}

fn entry_view(entry: ResolvedEntry) -> AuditEntry {
    let record = entry.item.record;
    AuditEntry {
        seq: record.seq,
        at: rfc3339(record.at),
        action: record.action,
        outcome: record.outcome,
        actor: record.actor,
        actor_user: account_view(entry.actor),
        subject: record.subject,
        subject_user: account_view(entry.subject),
        resource: record.resource,
        ip: record.ip,
        user_agent: record.user_agent,
        details: record.details,
        prev_hash: record.prev_hash,
        hash: entry.item.hash,
    }
}

/// `GET /admin/audit?user=&action=&outcome=&since=&until=&before=&limit=&format=`: a page of
/// entries, newest first; with `format=jsonl` every matching entry, oldest first, one JSON
/// object a line, as a download (the export is itself recorded).
pub async fn list(
    State(state): State<AppState>,
    caller: Authenticated,
    ClientInfo(client): ClientInfo,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Response, ApiError> {
    let actor = caller.require(Permission::ReadAudit)?;
    let filter = filter_of(&query)?;
    match query.format.as_deref() {
        None | Some("json") => {}
        Some("jsonl") => {
            let event = AuditEvent::new(AuditAction::AuditExport)
                .by(actor.user_id)
                .from_client(&client)
                .with(serde_json::json!({ "filter": {
                    "user": query.user, "action": query.action, "outcome": query.outcome,
                    "since": query.since, "until": query.until,
                }}));
            audited(&state, event, Ok::<_, ApiError>(()))?;
            return Ok(export(state, filter));
        }
        Some(other) => {
            return Err(ApiError::validation(format!(
                "format must be json or jsonl, not {other:?}"
            )))
        }
    }
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > PAGE_MAX {
        return Err(ApiError::validation(format!("limit must be 1 to {PAGE_MAX}")));
    }
    let (entries, next_before) = state
        .audit
        .page(&filter, query.before, limit)
        .await
        .map_err(|e| ApiError::internal("audit log read failure", &e))?;
    Ok(Json(AuditPage {
        entries: entries.into_iter().map(entry_view).collect(),
        next_before,
    })
    .into_response())
}

/// Streams every entry matching `filter`, oldest first, as JSON Lines.
fn export(state: AppState, filter: AuditFilter) -> Response {
    let lines = futures::stream::unfold(Some(0u64), move |after| {
        let (state, filter) = (state.clone(), filter.clone());
        async move {
            let after = after?;
            match state.audit.slice(&filter, after, EXPORT_SLICE).await {
                Ok(entries) if entries.is_empty() => None,
                Ok(entries) => {
                    let last = entries.last().map(|e| e.item.record.seq);
                    let mut chunk = Vec::new();
                    for entry in entries {
                        // An entry is plain JSON values: serialising it cannot fail.
                        let _ = serde_json::to_writer(&mut chunk, &entry_view(entry));
                        chunk.push(b'\n');
                    }
                    Some((Ok::<_, std::io::Error>(chunk), last))
                }
                Err(e) => {
                    // The status line is gone already; ending the body early tells the client.
                    tracing::error!(error = %e, "audit export failed");
                    Some((Err(std::io::Error::other("audit log read failure")), None))
                }
            }
        }
    });
    (
        [
            (CONTENT_TYPE, "application/x-ndjson"),
            (CONTENT_DISPOSITION, "attachment; filename=\"enclave-audit.jsonl\""),
        ],
        Body::from_stream(lines),
    )
        .into_response()
}

/// `GET /admin/audit/verify`: checks the whole chain of hashes.
pub async fn verify(State(state): State<AppState>, caller: Authenticated) -> Result<impl IntoResponse, ApiError> {
    caller.require(Permission::ReadAudit)?;
    let check = state
        .audit
        .verify()
        .await
        .map_err(|e| ApiError::internal("audit log read failure", &e))?;
    let (broken_at, problem) = match check.broken {
        Some((seq, problem)) => (Some(seq), Some(problem)),
        None => (None, None),
    };
    Ok(Json(AuditVerification {
        intact: broken_at.is_none(),
        checked: check.checked,
        broken_at,
        problem,
    }))
}
