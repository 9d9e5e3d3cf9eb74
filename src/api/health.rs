//! `/health` (the process answers) and `/ready` (stores open, default model loaded).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;

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
        None => super::ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "metrics are not enabled").into_response(),
    }
}

/// `GET /ready`: 200 when the database answers and the default model can serve, else 503.
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let store_ok = state.store.ping().is_ok();
    let registry = state.chat.registry();
    let model_ok = registry.default_ready();
    let status = if store_ok && model_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let model = registry.status(registry.default_model()).ok();
    (
        status,
        Json(serde_json::json!({
            "ready": store_ok && model_ok,
            "store": if store_ok { "ok" } else { "unavailable" },
            "default_model": model,
        })),
    )
}
