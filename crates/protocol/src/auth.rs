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

impl UserRole {
    /// Every role, least to most powerful.
    pub const ALL: [UserRole; 4] = [UserRole::Viewer, UserRole::User, UserRole::Admin, UserRole::SuperAdmin];

    /// The name on the wire (`viewer`, `user`, `admin`, `super_admin`).
    pub fn as_str(self) -> &'static str {
        match self {
            UserRole::Viewer => "viewer",
            UserRole::User => "user",
            UserRole::Admin => "admin",
            UserRole::SuperAdmin => "super_admin",
        }
    }
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
    /// An invitation's token (needed when registration is by invitation; it also sets the
    /// role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite: Option<String>,
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
    /// The authenticator app's current code, for an account with 2FA (without it such a login
    /// answers `TOTP_REQUIRED`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp_code: Option<String>,
    /// Or one of the account's one-time recovery codes (used up by this login).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_code: Option<String>,
}

/// `POST /auth/2fa/setup`: a new authenticator secret, not in force until confirmed with
/// `POST /auth/2fa/verify`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TotpSetup {
    /// The shared secret, base32 (for typing into an app).
    pub secret: String,
    /// The `otpauth://totp/...` URI (what the QR code holds).
    pub otpauth_uri: String,
    /// The URI as a QR code, an SVG document.
    pub qr_svg: String,
}

/// `POST /auth/2fa/verify`: the app's code, proving it holds the secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TotpVerifyRequest {
    /// The current 6-digit code.
    pub code: String,
}

/// The answer to `POST /auth/2fa/verify`: 2FA is on; the recovery codes are shown this once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryCodes {
    /// Ten one-time codes, each good for one login without the app.
    pub recovery_codes: Vec<String>,
}

/// `POST /auth/2fa/disable`: the password and a current code (or a recovery code).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TotpDisableRequest {
    /// The account's password.
    pub password: String,
    /// The app's current code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Or a recovery code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_code: Option<String>,
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
    /// Whether logins need an authenticator code.
    #[serde(default)]
    pub totp_enabled: bool,
    /// The account's role requires 2FA and it is not set up: nothing but the account's own
    /// routes answer until it is.
    #[serde(default)]
    pub totp_setup_required: bool,
}
