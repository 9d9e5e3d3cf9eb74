//! `/health` (the process answers), `/ready` (stores open, default model loaded), `/metrics`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use enclave_protocol::ErrorCode;

use super::AppState;

/// `GET /health`
pub async fn health() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `GET /metrics`: Prometheus text format, for the configured bearer secret
/// (`--metrics-token`, a scraper's) or an account allowed to read metrics.
pub async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> axum::response::Response {
    if let Err(error) = may_read_metrics(&state, &headers) {
        return error.into_response();
    }
    match &state.metrics {
        Some(handle) => (
            [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => {
            super::ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "metrics are not enabled").into_response()
        }
    }
}

fn may_read_metrics(state: &AppState, headers: &axum::http::HeaderMap) -> Result<(), super::ApiError> {
    let token = super::extract::bearer_token(headers)?;
    if let Some(secret) = &state.config.metrics_token {
        // Equal lengths compared in full, so the time taken does not reveal the secret.
        let same = secret.len() == token.len()
            && secret.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        if same {
            return Ok(());
        }
    }
    let caller = super::extract::Authenticated(state.auth.authenticate(token)?);
    caller.require(crate::auth::roles::Permission::ReadMetrics)?;
    Ok(())
}

/// `GET /ready`: 200 when the database answers and the default model can serve, else 503.
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let readiness = state.chat.readiness();
    let ready = readiness.store_ok && readiness.default_model_ready;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(serde_json::json!({
            "ready": ready,
            "store": if readiness.store_ok { "ok" } else { "unavailable" },
            "default_model": readiness.default_model,
            "default_embed_model": readiness.default_embed_model,
        })),
    )
}
