//! `/api/v1/auth/*`: accounts and sessions.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What an account may do, from least to most; checked in one place on the server
/// (`auth::roles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserRole {
    /// Reads conversations shared with them; cannot chat.
    Viewer,
    /// A regular user.
    User,
    /// Manages users and models.
    Admin,
    /// Owns the instance (the first account).
    SuperAdmin,
}

impl std::str::FromStr for UserRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "viewer" => Ok(UserRole::Viewer),
            "user" => Ok(UserRole::User),
            "admin" => Ok(UserRole::Admin),
            "super_admin" => Ok(UserRole::SuperAdmin),
            other => Err(format!("unknown role {other:?} (viewer, user, admin, super_admin)")),
        }
    }
}

/// `POST /auth/register`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// Email address (lower-cased by the server).
    pub email: String,
    /// Username.
    pub username: String,
    /// At least 12 characters.
    pub password: String,
}

/// `POST /auth/login`: `email` or `username` with the password.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginRequest {
    /// The account's email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Or its username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The password.
    pub password: String,
    /// Keep the refresh token in an HttpOnly cookie instead of the response body (the web UI:
    /// scripts never see it).
    #[serde(default)]
    pub cookie: bool,
}

/// `POST /auth/refresh` and `POST /auth/logout`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RefreshRequest {
    /// The refresh token; absent when the browser's cookie carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// `PUT /auth/password/change`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PasswordChangeRequest {
    /// The password in use.
    pub current_password: String,
    /// The new one (at least 12 characters).
    pub new_password: String,
}

/// What login and refresh return.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tokens {
    /// Short-lived JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Long-lived opaque token for `/auth/refresh`, rotated on each use; `null` when it went
    /// into the HttpOnly cookie.
    pub refresh_token: Option<String>,
    /// Always `bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

/// One of the caller's live sessions (`GET /auth/sessions`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// The session id (`DELETE /auth/sessions/{id}` ends it).
    pub id: Uuid,
    /// Login time, RFC 3339.
    pub created_at: String,
    /// The login or the last token refresh, RFC 3339.
    pub last_seen_at: String,
    /// The client's `User-Agent` at login.
    pub user_agent: Option<String>,
    /// The client's address at login.
    pub ip: Option<String>,
    /// Whether the request came with this session's token.
    pub current: bool,
}

/// `GET /auth/sessions`: oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionList {
    /// The sessions.
    pub sessions: Vec<Session>,
}

/// An account as the API shows it (never the password hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// Account id.
    pub id: Uuid,
    /// Email address.
    pub email: String,
    /// Username.
    pub username: String,
    /// What the account may do.
    pub role: UserRole,
    /// Creation time, RFC 3339.
    pub created_at: String,
}
