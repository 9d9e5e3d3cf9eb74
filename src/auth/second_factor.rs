//! Turning two-factor authentication on and off for an account: a new secret, its
//! confirmation with a first code (which brings the recovery codes), and removal by its owner
//! (password and code) or by an administrator. The codes themselves are checked in
//! [`super::two_factor`].

use std::net::IpAddr;

use uuid::Uuid;

use super::{passwords, two_factor, AuthError, AuthService, SecondFactor, TotpSetupInfo};
use crate::store::TotpRecord;

impl AuthService {
    /// Starts setting up 2FA for `user_id`: a new secret, not in force until
    /// [`AuthService::totp_enable`] confirms a code from it (setting up again replaces it).
    pub fn totp_setup(&self, user_id: Uuid) -> Result<TotpSetupInfo, AuthError> {
        let secret = two_factor::new_secret();
        let user = self.inner.store.get_user(user_id)?.ok_or(AuthError::InvalidToken)?;
        let uri = two_factor::otpauth_uri(&secret, &user.email).ok_or(AuthError::TotpSecret)?;
        let qr_svg = two_factor::qr_svg(&uri).ok_or(AuthError::TotpSecret)?;
        let pending = TotpRecord {
            secret: secret.clone(),
            enabled: false,
            recovery_codes: Vec::new(),
            last_step: 0,
        };
        self.inner.store.update_user(user_id, |u| match &u.totp {
            Some(t) if t.enabled => Err(AuthError::TotpAlreadyEnabled),
            _ => {
                u.totp = Some(pending);
                Ok(())
            }
        })??;
        tracing::info!(%user_id, "2FA setup started");
        Ok(TotpSetupInfo { secret, uri, qr_svg })
    }

    /// Turns 2FA on once `code` from the new secret matches; returns the recovery codes (shown
    /// this once). A wrong code counts against the address's failure budget.
    pub fn totp_enable(&self, user_id: Uuid, code: &str, address: Option<IpAddr>) -> Result<Vec<String>, AuthError> {
        self.check_address(address)?;
        let now_secs = (crate::store::now_ms() / 1000).max(0) as u64;
        let (codes, hashes) = two_factor::new_recovery_codes();
        let outcome = self.inner.store.update_user(user_id, |u| {
            let email = u.email.clone();
            match u.totp.as_mut() {
                None => Err(AuthError::TotpNotSetUp),
                Some(t) if t.enabled => Err(AuthError::TotpAlreadyEnabled),
                Some(t) => match two_factor::matching_step(t, &email, code, now_secs) {
                    Some(step) => {
                        t.last_step = step;
                        t.enabled = true;
                        t.recovery_codes = hashes;
                        Ok(())
                    }
                    None => Err(AuthError::InvalidTotp),
                },
            }
        })?;
        if matches!(outcome, Err(AuthError::InvalidTotp)) {
            self.inner.address_failures.charge(address);
        }
        outcome?;
        tracing::info!(%user_id, "2FA enabled");
        Ok(codes)
    }

    /// Turns 2FA off, given the password and a current code or a recovery code (failures count
    /// against the address's budget).
    pub async fn totp_disable(
        &self,
        user_id: Uuid,
        password: String,
        factor: SecondFactor,
        address: Option<IpAddr>,
    ) -> Result<(), AuthError> {
        self.check_address(address)?;
        let user = self.inner.store.get_user(user_id)?.ok_or(AuthError::InvalidToken)?;
        if !user.totp.as_ref().is_some_and(|t| t.enabled) {
            return Err(AuthError::TotpNotSetUp);
        }
        if !passwords::verify(password, user.password_hash.clone()).await? {
            self.inner.address_failures.charge(address);
            return Err(AuthError::InvalidCredentials);
        }
        if let Err(e) = self.check_second_factor(&user, &factor, crate::store::now_ms()) {
            if matches!(e, AuthError::InvalidTotp) {
                self.inner.address_failures.charge(address);
            }
            return Err(e);
        }
        self.inner.store.update_user(user_id, |u| u.totp = None)?;
        tracing::info!(%user_id, "2FA disabled");
        Ok(())
    }

    /// Removes the second factor of the account `login` (an administrator's reset, for a user
    /// who lost their app and codes). Returns whether an account has that name.
    pub fn reset_totp(&self, login: &str) -> Result<bool, AuthError> {
        match self.inner.store.find_user_by_login(login.trim())? {
            Some(user) => {
                self.inner.store.update_user(user.id, |u| u.totp = None)?;
                tracing::info!(user_id = %user.id, "2FA reset by an administrator");
                Ok(true)
            }
            None => Ok(false),
        }
    }
}
