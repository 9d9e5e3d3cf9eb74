//! Who may register: the registration policy (open, invite-only or closed; an administrator's
//! choice, else the configuration's) and invitation links. The very first account can always
//! register (it becomes the super_admin). An invitation also names the role the new account
//! gets; under an open policy one may still be used, for its role.

use std::net::IpAddr;
use std::time::Duration;

use uuid::Uuid;

use super::roles::may_grant;
use super::{tokens, AuthError, AuthService, Caller, Registration};
use crate::store::{Grant, GrantRecord, RegistrationPolicy, UserRecord, UserRole};

/// How long an invitation works unless asked otherwise.
pub const DEFAULT_INVITE_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

impl AuthService {
    /// The policy in force.
    pub fn registration_policy(&self) -> Result<RegistrationPolicy, AuthError> {
        Ok(self
            .inner
            .store
            .registration_policy()?
            .unwrap_or(self.inner.registration))
    }

    /// Sets the policy (it outlives restarts and overrides the configuration's).
    pub fn set_registration_policy(&self, actor: &Caller, policy: RegistrationPolicy) -> Result<(), AuthError> {
        self.inner.store.set_registration_policy(policy)?;
        tracing::info!(actor = %actor.user_id, ?policy, "registration policy changed");
        Ok(())
    }

    /// A new invitation for an account with `role` (one the actor may grant): its token (shown
    /// once) and record.
    pub fn invite(
        &self,
        actor: &Caller,
        role: UserRole,
        lifetime: Duration,
    ) -> Result<(String, GrantRecord), AuthError> {
        if !may_grant(actor.role, role) {
            return Err(AuthError::Forbidden(
                "an admin invites viewers and users; a super_admin any role",
            ));
        }
        let link = self.new_link(actor, Grant::Invite { role }, lifetime)?;
        tracing::info!(actor = %actor.user_id, ?role, "invitation issued");
        Ok(link)
    }

    /// The invitations not used yet and not expired.
    pub fn open_invites(&self) -> Result<Vec<GrantRecord>, AuthError> {
        Ok(self.inner.store.open_invites(crate::store::now_ms())?)
    }

    /// Revokes invitation `id`.
    pub fn revoke_invite(&self, actor: &Caller, id: Uuid) -> Result<(), AuthError> {
        let open = self.open_invites()?;
        if !open.iter().any(|invite| invite.id == id) || !self.inner.store.delete_grant(id)? {
            return Err(AuthError::LinkNotFound);
        }
        tracing::info!(actor = %actor.user_id, invite = %id, "invitation revoked");
        Ok(())
    }

    /// Creates an account through the public endpoint, as the policy allows (with `invite`, the
    /// invitation's role). A refused registration counts against the address's failure budget
    /// (taken emails would otherwise list the accounts).
    pub async fn register(
        &self,
        registration: Registration,
        invite: Option<&str>,
        address: Option<IpAddr>,
    ) -> Result<UserRecord, AuthError> {
        self.check_address(address)?;
        let result = self.register_as_allowed(registration, invite).await;
        if matches!(
            result,
            Err(AuthError::EmailTaken
                | AuthError::UsernameTaken
                | AuthError::Invalid(_)
                | AuthError::WeakPassword(_)
                | AuthError::RegistrationClosed
                | AuthError::InviteRequired
                | AuthError::InvalidLink)
        ) {
            self.inner.address_failures.charge(address);
        }
        result
    }

    async fn register_as_allowed(
        &self,
        registration: Registration,
        invite: Option<&str>,
    ) -> Result<UserRecord, AuthError> {
        if self.inner.store.user_count()? == 0 {
            return self.create_user(registration, UserRole::User).await;
        }
        let policy = self.registration_policy()?;
        let invite = match (policy, invite) {
            (RegistrationPolicy::Closed, _) => return Err(AuthError::RegistrationClosed),
            (RegistrationPolicy::InviteOnly, None) => return Err(AuthError::InviteRequired),
            (RegistrationPolicy::Open, None) => return self.create_user(registration, UserRole::User).await,
            (_, Some(token)) => token,
        };
        // Check the fields before spending the invitation.
        super::validate::email(&registration.email)?;
        super::validate::username(&registration.username)?;
        super::validate::password(&registration.password)?;
        let hash = tokens::hash_secret_token(invite);
        let used = self.inner.store.use_grant(&hash, crate::store::now_ms(), |grant| {
            matches!(grant, Grant::Invite { .. })
        })?;
        let Some(GrantRecord {
            grant: Grant::Invite { role },
            id,
            ..
        }) = used
        else {
            return Err(AuthError::InvalidLink);
        };
        match self.create_user(registration, role).await {
            Ok(user) => {
                tracing::info!(user_id = %user.id, invite = %id, "registered by invitation");
                Ok(user)
            }
            Err(e) => {
                // The invitation was not spent on anything: it works again.
                self.inner.store.unuse_grant(&hash)?;
                Err(e)
            }
        }
    }
}
