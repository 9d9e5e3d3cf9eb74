//! `/api/v1/models`: the catalogue with each model's status.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use enclave_protocol::{ErrorCode, ModelList};

use super::error::ApiError;
use super::extract::Authenticated;
use super::AppState;
use crate::auth::roles::Permission;

/// `GET /models`
pub async fn list(State(state): State<AppState>, caller: Authenticated) -> Result<impl IntoResponse, ApiError> {
    caller.require(Permission::ReadOwn)?;
    let registry = state.chat.registry();
    Ok(Json(ModelList {
        models: registry.statuses(),
        default: registry.default_model().to_owned(),
    }))
}

/// `GET /models/{id}/status`
pub async fn status(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Permission::ReadOwn)?;
    state.chat.registry().status(&id).map(Json).map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::ModelNotFound,
            format!("unknown model {id:?}"),
        )
    })
}
