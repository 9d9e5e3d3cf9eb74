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

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> axum::response::Response {
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
