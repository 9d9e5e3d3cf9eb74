//! `/api/v1/models`: the catalogue with each model's status.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;

use super::error::ApiError;
use super::extract::Authenticated;
use super::AppState;

/// `GET /models`
pub async fn list(State(state): State<AppState>, _caller: Authenticated) -> impl IntoResponse {
    let registry = state.chat.registry();
    Json(serde_json::json!({ "models": registry.statuses(), "default": registry.default_model() }))
}

/// `GET /models/{id}/status`
pub async fn status(
    State(state): State<AppState>,
    _caller: Authenticated,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    state.chat.registry().status(&id).map(Json).map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "MODEL_NOT_FOUND",
            format!("unknown model {id:?}"),
        )
    })
}
