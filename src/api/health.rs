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
