//! Refusals for lack of a permission (403 `FORBIDDEN`: the role's permission table, or who may
//! manage whom) go into the audit log as `access.denied`, whichever route refused. One layer
//! over every route notes the request's client and token, looks at the answer, and only for
//! such a refusal finds out who asked (a refusal is rare; an answered request pays a header
//! copy). Repeats by the same caller on the same route are recorded once a minute.

use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use enclave_protocol::{AuditAction, ErrorCode};

use super::extract::{bearer_token, ClientInfo};
use super::AppState;
use crate::audit::AuditEvent;

/// The layer's function (`axum::middleware::from_fn_with_state`).
pub async fn record_denials(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let route = format!("{} {}", parts.method, parts.uri.path());
    let token = bearer_token(&parts.headers).ok().map(str::to_owned);
    let client = match ClientInfo::from_request_parts(&mut parts, &state).await {
        Ok(ClientInfo(client)) => client,
        Err(_) => Default::default(),
    };
    let response = next.run(Request::from_parts(parts, body)).await;
    if response.extensions().get::<ErrorCode>() == Some(&ErrorCode::Forbidden) {
        let actor = token.and_then(|t| state.auth.authenticate(&t).ok()).map(|c| c.user_id);
        let mut event = AuditEvent::new(AuditAction::AccessDenied)
            .on(route.clone())
            .from_client(&client)
            .failed(ErrorCode::Forbidden);
        if let Some(actor) = actor {
            event = event.by(actor);
        }
        let key = format!("denied:{}:{route}", event.client_key());
        state.audit.record_unless_repeated(key, event);
    }
    response
}
