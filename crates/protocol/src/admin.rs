//! The administrators' API (`/api/v1/admin/...`): accounts, invitations, the registration
//! policy, password reset links.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::{Session, User, UserRole};

/// Who may register (`GET`/`PUT /admin/registration`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationPolicy {
    /// Anyone.
    Open,
    /// Only with an invitation link.
    InviteOnly,
    /// Nobody (administrators create accounts).
    Closed,
}

impl std::str::FromStr for RegistrationPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "open" => Ok(RegistrationPolicy::Open),
            "invite_only" | "invite-only" => Ok(RegistrationPolicy::InviteOnly),
            "closed" => Ok(RegistrationPolicy::Closed),
            other => Err(format!(
                "unknown registration policy {other:?} (open, invite_only, closed)"
            )),
        }
    }
}

/// `GET`/`PUT /admin/security`: server-wide account rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySettings {
    /// Roles whose accounts must have 2FA: until an account sets it up, only its own account's
    /// routes answer (`TOTP_SETUP_REQUIRED`).
    pub require_2fa_for: Vec<UserRole>,
}

/// `GET`/`PUT /admin/registration`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistrationSettings {
    /// Who may register.
    pub policy: RegistrationPolicy,
}

/// An account as administrators see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminUser {
    /// What the account itself sees.
    #[serde(flatten)]
    pub user: User,
    /// A disabled account cannot log in or use its sessions.
    pub disabled: bool,
    /// Until when failed logins keep it locked (RFC 3339), if they do.
    pub locked_until: Option<String>,
    /// Failed logins since the last good one.
    pub failed_logins: u32,
}

/// `GET /admin/users`: one page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminUserPage {
    /// Accounts, oldest first.
    pub users: Vec<AdminUser>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// `POST /admin/users`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminUserCreate {
    /// Email.
    pub email: String,
    /// Username.
    pub username: String,
    /// Initial password (the user should change it).
    pub password: String,
    /// Role [default: user].
    #[serde(default = "default_role")]
    pub role: UserRole,
}

fn default_role() -> UserRole {
    UserRole::User
}

/// `PATCH /admin/users/{id}`: what to change (absent fields stay).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminUserUpdate {
    /// A new role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<UserRole>,
    /// Disable (signs the account out everywhere at once) or enable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
}

/// `GET /admin/users/{id}/sessions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminSessionList {
    /// The account's live sessions, oldest first (`current` is always false here).
    pub sessions: Vec<Session>,
}

/// `POST /admin/invites`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InviteRequest {
    /// The role the invited account gets [default: user].
    #[serde(default = "default_role")]
    pub role: UserRole,
    /// Hours the link works [default: 168, a week; at most 720].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_hours: Option<u32>,
}

/// An invitation or a password reset link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrantLink {
    /// Its id (to revoke it).
    pub id: Uuid,
    /// The role an invitation gives (absent for a reset link).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<UserRole>,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// Until when it works (RFC 3339).
    pub expires_at: String,
    /// The secret token: only in the answer that creates the link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The web UI's path that uses it (`/register?invite=...`, `/reset-password?token=...`):
    /// only in the answer that creates the link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// `GET /admin/invites`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InviteList {
    /// Open invitations, oldest first.
    pub invites: Vec<GrantLink>,
}

/// `POST /auth/password/reset`: a reset link's token and the new password.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PasswordResetRequest {
    /// The token of the link.
    pub token: String,
    /// The new password.
    pub new_password: String,
}
