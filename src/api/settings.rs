//! `/api/v1/settings`: the caller's preferences.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::Json;

use super::error::ApiError;
use super::extract::{ApiJson, Authenticated};
use super::AppState;
use crate::store::UserSettings;

/// `GET /settings`
pub async fn get(State(state): State<AppState>, caller: Authenticated) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(state.store.get_user_settings(caller.0.user_id)?))
}

/// `PUT /settings`: replaces the settings after checking them.
pub async fn put(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiJson(settings): ApiJson<UserSettings>,
) -> Result<impl IntoResponse, ApiError> {
    if let Some(theme) = &settings.theme {
        if !matches!(theme.as_str(), "dark" | "light" | "system") {
            return Err(ApiError::validation("theme must be dark, light or system"));
        }
    }
    if let Some(model) = &settings.default_model {
        if !state.chat.registry().is_chat_model(model) {
            return Err(ApiError::validation(format!("unknown chat model {model:?}")));
        }
    }
    if settings
        .default_system_prompt
        .as_ref()
        .is_some_and(|p| p.chars().count() > super::conversations::MAX_SYSTEM_PROMPT_CHARS)
    {
        return Err(ApiError::validation("default_system_prompt is too long"));
    }
    state.store.put_user_settings(caller.0.user_id, &settings)?;
    Ok(Json(settings))
}
