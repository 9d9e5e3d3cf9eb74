//! What administrators do to accounts: list and search them, create them, change roles,
//! disable and enable, unlock, remove 2FA, sign out, see and end sessions, and hand out
//! password reset links. Who may act on whom is `roles::may_manage` / `may_grant`; nobody
//! changes the role of, or disables, their own account (so the last super_admin cannot lock the
//! instance out by mistake). Every change takes effect at the target's next request: the role
//! and the disabled flag are read from the store on each, and ended sessions are refused.

use std::time::Duration;

use uuid::Uuid;

use super::roles::{may_grant, may_manage};
use super::{tokens, AuthError, AuthService, Caller, Registration};
use crate::store::{Grant, GrantRecord, LoginFailures, SessionInfo, UserRecord, UserRole};

/// The longest a reset link or invitation may last.
pub const LONGEST_LINK: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long a password reset link works.
pub const RESET_LINK_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// A change to an account.
#[derive(Debug, Clone, Default)]
pub struct AccountChange {
    /// A new role.
    pub role: Option<UserRole>,
    /// Disable or enable.
    pub disabled: Option<bool>,
}

impl AuthService {
    /// The account `id` if `actor` may manage it (another's that it may not is `Forbidden`; a
    /// missing one `UserNotFound`).
    fn managed_account(&self, actor: &Caller, id: Uuid) -> Result<UserRecord, AuthError> {
        let user = self.inner.store.get_user(id)?.ok_or(AuthError::UserNotFound)?;
        if !may_manage(actor.role, user.role) {
            return Err(AuthError::Forbidden(
                "an admin manages viewers and users; a super_admin everyone",
            ));
        }
        Ok(user)
    }

    /// One page of accounts (oldest first) whose email or username contains `search`.
    pub fn list_users(
        &self,
        search: Option<&str>,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<UserRecord>, AuthError> {
        Ok(self.inner.store.list_users(search, after, limit)?)
    }

    /// The account `id` (any an administrator may see).
    pub fn get_user(&self, id: Uuid) -> Result<UserRecord, AuthError> {
        self.inner.store.get_user(id)?.ok_or(AuthError::UserNotFound)
    }

    /// Creates an account with `role` (one the actor may grant).
    pub async fn admin_create_user(
        &self,
        actor: &Caller,
        registration: Registration,
        role: UserRole,
    ) -> Result<UserRecord, AuthError> {
        if !may_grant(actor.role, role) {
            return Err(AuthError::Forbidden(
                "an admin gives the viewer and user roles; a super_admin any",
            ));
        }
        let user = self.create_user(registration, role).await?;
        tracing::info!(actor = %actor.user_id, user_id = %user.id, role = ?role, "account created by an administrator");
        Ok(user)
    }

    /// Changes the role and / or the disabled flag of account `id`. Disabling ends its sessions
    /// at once.
    pub fn change_account(&self, actor: &Caller, id: Uuid, change: AccountChange) -> Result<UserRecord, AuthError> {
        let target = self.managed_account(actor, id)?;
        if id == actor.user_id {
            return Err(AuthError::Forbidden(
                "you cannot change the role of, or disable, your own account",
            ));
        }
        if let Some(role) = change.role {
            if !may_grant(actor.role, role) {
                return Err(AuthError::Forbidden(
                    "an admin gives the viewer and user roles; a super_admin any",
                ));
            }
        }
        let updated = self.inner.store.update_user(target.id, |u| {
            if let Some(role) = change.role {
                u.role = role;
            }
            if let Some(disabled) = change.disabled {
                u.disabled = disabled;
            }
            u.clone()
        })?;
        if change.disabled == Some(true) {
            self.end_all_sessions(id)?;
        }
        tracing::info!(actor = %actor.user_id, user_id = %id, role = ?change.role, disabled = ?change.disabled, "account changed by an administrator");
        Ok(updated)
    }

    /// Ends every session of account `id` (its tokens stop working at once).
    pub fn sign_out_everywhere(&self, actor: &Caller, id: Uuid) -> Result<(), AuthError> {
        self.managed_account(actor, id)?;
        self.end_all_sessions(id)?;
        tracing::info!(actor = %actor.user_id, user_id = %id, "account signed out by an administrator");
        Ok(())
    }

    fn end_all_sessions(&self, id: Uuid) -> Result<(), AuthError> {
        self.inner.store.revoke_all_refresh_tokens(id)?;
        self.inner.sessions.ended_all(id);
        Ok(())
    }

    /// Ends the lockout of account `id`.
    pub fn unlock_account(&self, actor: &Caller, id: Uuid) -> Result<(), AuthError> {
        self.managed_account(actor, id)?;
        self.inner
            .store
            .update_user(id, |u| u.login_failures = LoginFailures::default())?;
        tracing::info!(actor = %actor.user_id, user_id = %id, "account unlocked by an administrator");
        Ok(())
    }

    /// Removes the second factor of account `id`.
    pub fn remove_second_factor(&self, actor: &Caller, id: Uuid) -> Result<(), AuthError> {
        self.managed_account(actor, id)?;
        self.inner.store.update_user(id, |u| u.totp = None)?;
        tracing::info!(actor = %actor.user_id, user_id = %id, "2FA removed by an administrator");
        Ok(())
    }

    /// The live sessions of account `id`.
    pub fn account_sessions(&self, actor: &Caller, id: Uuid) -> Result<Vec<SessionInfo>, AuthError> {
        self.managed_account(actor, id)?;
        self.sessions(id)
    }

    /// Ends session `session_id` of account `id`.
    pub fn end_account_session(&self, actor: &Caller, id: Uuid, session_id: Uuid) -> Result<(), AuthError> {
        self.managed_account(actor, id)?;
        self.end_session(id, session_id)
    }

    /// A one-time link that sets a new password for account `id` (24 hours): the token and its
    /// record. Using it ends the account's sessions and its lockout.
    pub fn password_reset_link(&self, actor: &Caller, id: Uuid) -> Result<(String, GrantRecord), AuthError> {
        self.managed_account(actor, id)?;
        let (token, record) = self.new_link(actor, Grant::PasswordReset { user_id: id }, RESET_LINK_LIFETIME)?;
        tracing::info!(actor = %actor.user_id, user_id = %id, "password reset link issued");
        Ok((token, record))
    }

    /// Stores a new link granting `grant` for `lifetime`; the token (shown once) and its record.
    pub(super) fn new_link(
        &self,
        actor: &Caller,
        grant: Grant,
        lifetime: Duration,
    ) -> Result<(String, GrantRecord), AuthError> {
        let (token, hash) = tokens::new_secret_token();
        let now = crate::store::now_ms();
        let expires_at = now + lifetime.min(LONGEST_LINK).as_millis() as i64;
        let record = self
            .inner
            .store
            .insert_grant(&hash, grant, actor.user_id, now, expires_at)?;
        Ok((token, record))
    }

    /// Sets a new password through a reset link (no sign-in needed): ends every session and the
    /// lockout of the account. A bad link counts against the address's failure budget.
    pub async fn reset_password(
        &self,
        token: &str,
        new_password: String,
        address: Option<std::net::IpAddr>,
    ) -> Result<Uuid, AuthError> {
        self.check_address(address)?;
        super::validate::password(&new_password)?;
        let hash = tokens::hash_secret_token(token);
        let now = crate::store::now_ms();
        let used = self
            .inner
            .store
            .use_grant(&hash, now, |grant| matches!(grant, Grant::PasswordReset { .. }))?;
        let Some(GrantRecord {
            grant: Grant::PasswordReset { user_id },
            ..
        }) = used
        else {
            self.inner.address_failures.charge(address);
            return Err(AuthError::InvalidLink);
        };
        let password_hash = match super::passwords::hash(new_password).await {
            Ok(hash) => hash,
            Err(e) => {
                // The link stays usable: nothing changed.
                self.inner.store.unuse_grant(&hash)?;
                return Err(e);
            }
        };
        self.inner.store.update_user(user_id, |u| {
            u.password_hash = password_hash;
            u.login_failures = LoginFailures::default();
        })?;
        self.end_all_sessions(user_id)?;
        tracing::info!(%user_id, "password set through a reset link; sessions ended");
        Ok(user_id)
    }
}
