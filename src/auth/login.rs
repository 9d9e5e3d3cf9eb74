//! Logging in: the checks in their order (the address's failure budget, the name's lockout,
//! the password, the account's state, the second factor), what a failure counts, and an
//! administrator's unlock.

use std::net::IpAddr;

use super::limits::{count_refusal, lockout, Refusal};
use super::{passwords, two_factor, AuthError, AuthService, SecondFactor, TokenPair};
use crate::store::{LoginFailures, SessionClient, UserRecord};

impl AuthService {
    /// Checks a login (email or username) and starts a new session for `client`.
    ///
    /// In order: the address's failure budget, the name's lockout (a locked name is refused
    /// without checking the password, so guesses during a lock learn nothing), the password
    /// (a name of no account spends the same time and counts failures the same way). A failure
    /// fills the address's budget and the name's count; a success clears the count. An account
    /// with 2FA then needs its code (a wrong one counts like a wrong password; none at all is
    /// `TotpRequired`, which counts nothing).
    pub async fn login(
        &self,
        login: &str,
        password: String,
        second_factor: SecondFactor,
        client: SessionClient,
    ) -> Result<(UserRecord, TokenPair), AuthError> {
        self.check_address(client.ip)?;
        let login = login.trim();
        let user = self.inner.store.find_user_by_login(login)?;
        let now = crate::store::now_ms();
        let locked = match &user {
            Some(user) => lockout::locked_for(&user.login_failures, now),
            None => self.inner.unknown_names.locked_for(login, now),
        };
        if let Some(retry_after) = locked {
            count_refusal(Refusal::Lockout);
            return Err(AuthError::AccountLocked { retry_after });
        }
        let Some(user) = user else {
            passwords::verify_dummy(password).await?;
            self.inner.address_failures.charge(client.ip);
            self.inner.unknown_names.failed(login, now);
            return Err(AuthError::InvalidCredentials);
        };
        if !passwords::verify(password, user.password_hash.clone()).await? {
            self.login_failed(&user, client.ip, now, "wrong password")?;
            return Err(AuthError::InvalidCredentials);
        }
        if user.disabled {
            return Err(AuthError::AccountDisabled);
        }
        match self.check_second_factor(&user, &second_factor, now) {
            Err(AuthError::InvalidTotp) => {
                self.login_failed(&user, client.ip, now, "wrong second factor")?;
                return Err(AuthError::InvalidTotp);
            }
            other => other?,
        }
        if user.login_failures != LoginFailures::default() {
            self.inner
                .store
                .update_user(user.id, |u| u.login_failures = LoginFailures::default())?;
        }
        let pair = self.start_session(&user, client)?;
        tracing::info!(user_id = %user.id, "login");
        Ok((user, pair))
    }

    /// Counts a failed login of `user` (its lockout count and the address's budget).
    fn login_failed(&self, user: &UserRecord, address: Option<IpAddr>, now: i64, why: &str) -> Result<(), AuthError> {
        self.inner.address_failures.charge(address);
        let failures = self.inner.store.update_user(user.id, |u| {
            u.login_failures = lockout::after_failure(u.login_failures, now);
            u.login_failures
        })?;
        if failures.count == lockout::LOCK_AFTER {
            tracing::warn!(user_id = %user.id, "account locked after failed logins");
        } else {
            tracing::info!(user_id = %user.id, "login failed: {why}");
        }
        Ok(())
    }

    /// Checks the second factor of `user` (whose password was right): nothing to check without
    /// 2FA on; otherwise the code must match (and is used up), else `TotpRequired` /
    /// `InvalidTotp`.
    pub(super) fn check_second_factor(
        &self,
        user: &UserRecord,
        factor: &SecondFactor,
        now_ms: i64,
    ) -> Result<(), AuthError> {
        if !user.totp.as_ref().is_some_and(|t| t.enabled) {
            return Ok(());
        }
        if matches!(factor, SecondFactor::Missing) {
            return Err(AuthError::TotpRequired);
        }
        let now_secs = (now_ms / 1000).max(0) as u64;
        let accepted = self.inner.store.update_user(user.id, |u| {
            let email = u.email.clone();
            let Some(totp) = u.totp.as_mut().filter(|t| t.enabled) else {
                return false;
            };
            match factor {
                SecondFactor::TotpCode(code) => match two_factor::matching_step(totp, &email, code, now_secs) {
                    Some(step) => {
                        totp.last_step = step;
                        true
                    }
                    None => false,
                },
                SecondFactor::RecoveryCode(code) => two_factor::use_recovery_code(totp, code),
                SecondFactor::Missing => false,
            }
        })?;
        if accepted {
            Ok(())
        } else {
            Err(AuthError::InvalidTotp)
        }
    }

    /// Ends the lockout of the account (or unknown name) `login`: an administrator's unlock.
    /// Returns whether an account has that name.
    pub fn unlock(&self, login: &str) -> Result<bool, AuthError> {
        let login = login.trim();
        self.inner.unknown_names.forget(login);
        match self.inner.store.find_user_by_login(login)? {
            Some(user) => {
                self.inner
                    .store
                    .update_user(user.id, |u| u.login_failures = LoginFailures::default())?;
                tracing::info!(user_id = %user.id, "account unlocked");
                Ok(true)
            }
            None => Ok(false),
        }
    }
}
