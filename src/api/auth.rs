//! `/api/v1/auth/*`: register, login, refresh, logout, password change, me.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{ApiJson, Authenticated};
use super::{rfc3339, AppState};
use crate::auth::Registration;
use crate::store::{UserRecord, UserRole};

/// A user as the API shows it (never the password hash).
#[derive(Serialize)]
pub struct UserView {
    id: Uuid,
    email: String,
    username: String,
    role: UserRole,
    created_at: String,
}

impl From<UserRecord> for UserView {
    fn from(u: UserRecord) -> Self {
        UserView {
            id: u.id,
            email: u.email,
            username: u.username,
            role: u.role,
            created_at: rfc3339(u.created_at),
        }
    }
}

#[derive(Deserialize)]
pub struct RegisterBody {
    email: String,
    username: String,
    password: String,
}

/// `POST /auth/register`
pub async fn register(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<impl IntoResponse, ApiError> {
    let user = state
        .auth
        .register(Registration {
            email: body.email,
            username: body.username,
            password: body.password,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(UserView::from(user))))
}

#[derive(Deserialize)]
pub struct LoginBody {
    email: Option<String>,
    username: Option<String>,
    password: String,
}

/// `POST /auth/login` with email or username.
pub async fn login(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<impl IntoResponse, ApiError> {
    let login = body
        .email
        .or(body.username)
        .filter(|l| !l.trim().is_empty())
        .ok_or_else(|| ApiError::validation("send \"email\" or \"username\" with the password"))?;
    let (_, tokens) = state.auth.login(&login, body.password).await?;
    Ok(Json(tokens))
}

#[derive(Deserialize)]
pub struct RefreshBody {
    refresh_token: String,
}

/// `POST /auth/refresh`: rotates the refresh token.
pub async fn refresh(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(state.auth.refresh(&body.refresh_token)?))
}

/// `POST /auth/logout`: ends the session of the refresh token.
pub async fn logout(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<impl IntoResponse, ApiError> {
    state.auth.logout(&body.refresh_token)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct PasswordBody {
    current_password: String,
    new_password: String,
}

/// `PUT /auth/password/change`: ends every session of the user.
pub async fn change_password(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiJson(body): ApiJson<PasswordBody>,
) -> Result<impl IntoResponse, ApiError> {
    state
        .auth
        .change_password(caller.0.user_id, body.current_password, body.new_password)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /auth/me`
pub async fn me(State(state): State<AppState>, caller: Authenticated) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(UserView::from(state.auth.user(caller.0.user_id)?)))
}
