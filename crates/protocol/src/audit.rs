//! The audit log as the administrators' API shows it (`/api/v1/admin/audit`): what happened,
//! who did it (by pseudonym, and by name while the account exists), from where, and the chain
//! of hashes that shows whether anything was edited.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What happened. The names are stable: filters and exports rely on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AuditAction {
    /// A login with password (and code, when needed); `outcome` says how it went.
    #[serde(rename = "auth.login")]
    Login,
    /// A session ended by its refresh token.
    #[serde(rename = "auth.logout")]
    Logout,
    /// A used refresh token came back: its whole session was revoked.
    #[serde(rename = "auth.refresh_reuse")]
    RefreshReuse,
    /// An account registered.
    #[serde(rename = "auth.register")]
    Register,
    /// An account changed its password (every session ends).
    #[serde(rename = "auth.password_change")]
    PasswordChange,
    /// A password set through an administrator's reset link.
    #[serde(rename = "auth.password_reset")]
    PasswordReset,
    /// Two-factor authentication turned on.
    #[serde(rename = "auth.2fa_enable")]
    TotpEnable,
    /// Two-factor authentication turned off by its owner.
    #[serde(rename = "auth.2fa_disable")]
    TotpDisable,
    /// A user ended one of their own sessions.
    #[serde(rename = "auth.session_end")]
    SessionEnd,
    /// A request refused for lack of a permission (logged at most once a minute per caller
    /// and route).
    #[serde(rename = "access.denied")]
    AccessDenied,
    /// A request refused by a rate limit (logged at most once a minute per limit and client).
    #[serde(rename = "limit.refused")]
    RateLimited,
    /// A document uploaded.
    #[serde(rename = "document.upload")]
    DocumentUpload,
    /// A document deleted.
    #[serde(rename = "document.delete")]
    DocumentDelete,
    /// An image uploaded (to attach to a message).
    #[serde(rename = "image.upload")]
    ImageUpload,
    /// An image deleted before it was sent.
    #[serde(rename = "image.delete")]
    ImageDelete,
    /// A conversation deleted with its messages.
    #[serde(rename = "chat.conversation_delete")]
    ConversationDelete,
    /// A chat answer generated: model and token counts, never the text.
    #[serde(rename = "chat.answer")]
    ChatAnswer,
    /// An administrator created an account.
    #[serde(rename = "admin.user_create")]
    UserCreate,
    /// An administrator changed an account's role.
    #[serde(rename = "admin.role_change")]
    RoleChange,
    /// An administrator disabled an account.
    #[serde(rename = "admin.user_disable")]
    UserDisable,
    /// An administrator enabled an account again.
    #[serde(rename = "admin.user_enable")]
    UserEnable,
    /// An administrator ended every session of an account.
    #[serde(rename = "admin.sign_out")]
    SignOut,
    /// An administrator (or `enclave user unlock`) ended an account's lockout.
    #[serde(rename = "admin.unlock")]
    Unlock,
    /// An administrator (or `enclave user reset-2fa`) removed an account's second factor.
    #[serde(rename = "admin.2fa_reset")]
    TotpReset,
    /// An administrator ended one session of an account.
    #[serde(rename = "admin.session_end")]
    AdminSessionEnd,
    /// An administrator issued a password reset link.
    #[serde(rename = "admin.password_reset_link")]
    PasswordResetLink,
    /// An administrator changed the registration policy.
    #[serde(rename = "admin.registration_policy")]
    RegistrationPolicy,
    /// An administrator changed the server-wide account rules (2FA required for roles).
    #[serde(rename = "admin.security_settings")]
    SecuritySettings,
    /// An administrator issued an invitation.
    #[serde(rename = "admin.invite_create")]
    InviteCreate,
    /// An administrator revoked an invitation.
    #[serde(rename = "admin.invite_revoke")]
    InviteRevoke,
    /// An administrator read another user's documents.
    #[serde(rename = "admin.documents_read")]
    DocumentsRead,
    /// An administrator exported the audit log.
    #[serde(rename = "admin.audit_export")]
    AuditExport,
    /// Entries older than the retention period were removed (the chain goes on from the last).
    #[serde(rename = "audit.prune")]
    AuditPrune,
}

impl AuditAction {
    /// Every action, in the order of this enum (for filters in clients).
    pub const ALL: [AuditAction; 33] = [
        AuditAction::Login,
        AuditAction::Logout,
        AuditAction::RefreshReuse,
        AuditAction::Register,
        AuditAction::PasswordChange,
        AuditAction::PasswordReset,
        AuditAction::TotpEnable,
        AuditAction::TotpDisable,
        AuditAction::SessionEnd,
        AuditAction::AccessDenied,
        AuditAction::RateLimited,
        AuditAction::DocumentUpload,
        AuditAction::DocumentDelete,
        AuditAction::ImageUpload,
        AuditAction::ImageDelete,
        AuditAction::ConversationDelete,
        AuditAction::ChatAnswer,
        AuditAction::UserCreate,
        AuditAction::RoleChange,
        AuditAction::UserDisable,
        AuditAction::UserEnable,
        AuditAction::SignOut,
        AuditAction::Unlock,
        AuditAction::TotpReset,
        AuditAction::AdminSessionEnd,
        AuditAction::PasswordResetLink,
        AuditAction::RegistrationPolicy,
        AuditAction::SecuritySettings,
        AuditAction::InviteCreate,
        AuditAction::InviteRevoke,
        AuditAction::DocumentsRead,
        AuditAction::AuditExport,
        AuditAction::AuditPrune,
    ];

    /// The stable name (`auth.login`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Login => "auth.login",
            AuditAction::Logout => "auth.logout",
            AuditAction::RefreshReuse => "auth.refresh_reuse",
            AuditAction::Register => "auth.register",
            AuditAction::PasswordChange => "auth.password_change",
            AuditAction::PasswordReset => "auth.password_reset",
            AuditAction::TotpEnable => "auth.2fa_enable",
            AuditAction::TotpDisable => "auth.2fa_disable",
            AuditAction::SessionEnd => "auth.session_end",
            AuditAction::AccessDenied => "access.denied",
            AuditAction::RateLimited => "limit.refused",
            AuditAction::DocumentUpload => "document.upload",
            AuditAction::DocumentDelete => "document.delete",
            AuditAction::ImageUpload => "image.upload",
            AuditAction::ImageDelete => "image.delete",
            AuditAction::ConversationDelete => "chat.conversation_delete",
            AuditAction::ChatAnswer => "chat.answer",
            AuditAction::UserCreate => "admin.user_create",
            AuditAction::RoleChange => "admin.role_change",
            AuditAction::UserDisable => "admin.user_disable",
            AuditAction::UserEnable => "admin.user_enable",
            AuditAction::SignOut => "admin.sign_out",
            AuditAction::Unlock => "admin.unlock",
            AuditAction::TotpReset => "admin.2fa_reset",
            AuditAction::AdminSessionEnd => "admin.session_end",
            AuditAction::PasswordResetLink => "admin.password_reset_link",
            AuditAction::RegistrationPolicy => "admin.registration_policy",
            AuditAction::SecuritySettings => "admin.security_settings",
            AuditAction::InviteCreate => "admin.invite_create",
            AuditAction::InviteRevoke => "admin.invite_revoke",
            AuditAction::DocumentsRead => "admin.documents_read",
            AuditAction::AuditExport => "admin.audit_export",
            AuditAction::AuditPrune => "audit.prune",
        }
    }
}

impl std::str::FromStr for AuditAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        AuditAction::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("unknown audit action {s:?}"))
    }
}

/// An account named in an entry, while it exists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditUser {
    /// The account's id.
    pub id: Uuid,
    /// Its username now.
    pub username: String,
}

/// One entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log, from 1, without gaps (until retention removes the oldest).
    pub seq: u64,
    /// When (RFC 3339).
    pub at: String,
    /// What happened (`auth.login`, ...).
    pub action: String,
    /// `ok`, or the error code the request was answered with.
    pub outcome: String,
    /// Who acted: a pseudonym, stable per account, that only the server can link to it.
    pub actor: Option<String>,
    /// The account behind `actor`, while it exists and its audit key has not been erased.
    pub actor_user: Option<AuditUser>,
    /// Whom the action was about (an administrator's target), as a pseudonym.
    pub subject: Option<String>,
    /// The account behind `subject`, like `actor_user`.
    pub subject_user: Option<AuditUser>,
    /// What it was about (`document/<id>`, `session/<id>`, ...).
    pub resource: Option<String>,
    /// The client's address.
    pub ip: Option<String>,
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
    /// More about it (model and token counts, new role, ...); never message text or secrets.
    pub details: serde_json::Value,
    /// The hash of the entry before (hex SHA-256).
    pub prev_hash: String,
    /// This entry's hash: SHA-256 of `prev_hash` and the entry as stored.
    pub hash: String,
}

/// `GET /admin/audit`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditPage {
    /// Entries, newest first.
    pub entries: Vec<AuditEntry>,
    /// Pass as `before` for the next (older) page; absent on the last.
    pub next_before: Option<u64>,
}

/// `GET /admin/audit/verify`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditVerification {
    /// Whether every entry matches its hash and links to the one before.
    pub intact: bool,
    /// How many entries were checked.
    pub checked: u64,
    /// The first entry that does not hold, if one does not.
    pub broken_at: Option<u64>,
    /// What is wrong with it.
    pub problem: Option<String>,
}
