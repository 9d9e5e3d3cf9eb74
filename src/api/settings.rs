//! `/api/v1/settings`: the caller's preferences.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::Json;
use enclave_protocol::UserSettings;

use super::error::ApiError;
use super::extract::{ApiJson, Authenticated};
use super::AppState;
use crate::auth::roles::Permission;

/// `GET /settings`
pub async fn get(State(state): State<AppState>, caller: Authenticated) -> Result<impl IntoResponse, ApiError> {
    let user = caller.require(Permission::OwnAccount)?;
    Ok(Json(state.chat.user_settings(user.user_id)?))
}

/// `PUT /settings`: replaces the settings after checking them.
pub async fn put(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiJson(settings): ApiJson<UserSettings>,
) -> Result<impl IntoResponse, ApiError> {
    let user = caller.require(Permission::OwnAccount)?;
    Ok(Json(state.chat.put_user_settings(user.user_id, settings)?))
}
