//! The per-user request budget in front of the costly routes (chat messages, regeneration,
//! `/v1`): a layer that authenticates the request, takes one request of the caller's budget
//! (429 `RATE_LIMITED` with `Retry-After` when it is spent) and hands the caller on to the
//! handler's [`Authenticated`] extractor, so the token is checked once.

use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::extract::{Authenticated, ClientInfo};
use super::AppState;
use crate::audit::AuditEvent;

/// The layer's function (`axum::middleware::from_fn_with_state`).
pub async fn charge_user_request(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let caller = match Authenticated::from_request_parts(&mut parts, &state).await {
        Ok(Authenticated(caller)) => caller,
        Err(error) => return error.into_response(),
    };
    if let Err(error) = state.auth.charge_request(caller.user_id) {
        let error = super::ApiError::from(error);
        let client = match ClientInfo::from_request_parts(&mut parts, &state).await {
            Ok(ClientInfo(client)) => client,
            Err(_) => Default::default(),
        };
        let event = AuditEvent::new(enclave_protocol::AuditAction::RateLimited)
            .by(caller.user_id)
            .from_client(&client)
            .on(parts.uri.path().to_owned())
            .failed(error.code)
            .with(serde_json::json!({ "limit": "user_requests" }));
        state
            .audit
            .record_unless_repeated(format!("user_requests:{}", caller.user_id), event);
        return error.into_response();
    }
    parts.extensions.insert(caller);
    next.run(Request::from_parts(parts, body)).await
}
