//! Accounts and sessions: registration, login, access tokens (JWT), rotating refresh tokens,
//! and the limits that stop brute force and abuse ([`limits`]).

pub mod admin;
pub mod limits;
mod login;
mod passwords;
pub mod registration;
pub mod roles;
mod second_factor;
mod sessions;
mod tokens;
pub mod two_factor;
mod validate;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use crate::store::{
    NewUser, RefreshOutcome, RegistrationPolicy, SessionClient, SessionInfo, Store, StoreError, UserRecord, UserRole,
};
use limits::address_failures::AddressFailures;
use limits::lockout::UnknownNames;
use limits::user_requests::UserRequests;
use limits::{count_refusal, LimitSettings, Refusal};
pub use tokens::AccessClaims;

/// What can go wrong in the auth service; the API maps each to a status and code.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Wrong email / username or password.
    #[error("wrong email or password")]
    InvalidCredentials,
    /// Registration is switched off.
    #[error("registration is closed on this server; ask an administrator for an account")]
    RegistrationClosed,
    /// The email belongs to another account.
    #[error("an account with this email already exists")]
    EmailTaken,
    /// The username belongs to another account.
    #[error("this username is taken")]
    UsernameTaken,
    /// A field failed validation.
    #[error("{0}")]
    Invalid(String),
    /// The password is too weak.
    #[error("{0}")]
    WeakPassword(String),
    /// The token is malformed, forged or revoked.
    #[error("the token is invalid")]
    InvalidToken,
    /// The token's lifetime is over.
    #[error("the token has expired")]
    TokenExpired,
    /// A rotated refresh token was used again: every session of that login was ended.
    #[error("this refresh token was already used; the session has been revoked, log in again")]
    TokenReused {
        /// The account whose session was revoked.
        user_id: Uuid,
    },
    /// The account is disabled.
    #[error("this account is disabled")]
    AccountDisabled,
    /// No such live session of the caller.
    #[error("no such session")]
    SessionNotFound,
    /// Too many failed logins on this account (or name): refused without checking.
    #[error("too many failed logins; this account is locked for a while")]
    AccountLocked {
        /// Until the lock ends.
        retry_after: Duration,
    },
    /// The caller spent a budget (requests per user, failures per address).
    #[error("too many requests; slow down")]
    RateLimited {
        /// Until the next attempt is allowed.
        retry_after: Duration,
    },
    /// The password was right, and the account needs its second factor.
    #[error("this account has two-factor authentication: send the authenticator code")]
    TotpRequired,
    /// The authenticator or recovery code is wrong, expired or used.
    #[error("the code is wrong, expired or already used")]
    InvalidTotp,
    /// 2FA is already on.
    #[error("two-factor authentication is already on; disable it first to set up a new authenticator")]
    TotpAlreadyEnabled,
    /// 2FA is not set up (or not on, for disabling).
    #[error("two-factor authentication is not set up")]
    TotpNotSetUp,
    /// The caller's role may not do this to that account.
    #[error("{0}")]
    Forbidden(&'static str),
    /// No such account.
    #[error("no such account")]
    UserNotFound,
    /// Registration is by invitation and none was sent.
    #[error("registration on this server is by invitation; ask an administrator for an invitation link")]
    InviteRequired,
    /// The invitation or reset link is unknown, expired or used.
    #[error("this link is unknown, expired or already used; ask an administrator for a new one")]
    InvalidLink,
    /// No such open invitation.
    #[error("no such invitation")]
    LinkNotFound,
    /// Password hashing is saturated (a flood of logins); try again shortly.
    #[error("the server is busy checking passwords; try again shortly")]
    Busy,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Hashing failed (should not happen).
    #[error("password hashing failed")]
    Hashing,
    /// The authenticator URI or QR code could not be made (should not happen).
    #[error("cannot make the authenticator secret's QR code")]
    TotpSecret,
}

/// Access and refresh tokens handed to a client.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenPair {
    /// Short-lived JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Long-lived opaque token for `/auth/refresh`; rotated on each use.
    pub refresh_token: String,
    /// Always `bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// User id.
    pub user_id: Uuid,
    /// The user's role now (read from the store, not from the token).
    pub role: UserRole,
    /// The session the request's token belongs to.
    pub session_id: Uuid,
    /// The role requires 2FA and the account has none yet: only its own account's routes
    /// answer (see `roles`).
    pub totp_setup_pending: bool,
}

/// What a login brings besides the password.
#[derive(Debug, Clone, Default)]
pub enum SecondFactor {
    /// Nothing (enough for an account without 2FA).
    #[default]
    Missing,
    /// The authenticator app's current code.
    TotpCode(String),
    /// One of the account's recovery codes.
    RecoveryCode(String),
}

/// A new authenticator secret, for the user to add to their app.
#[derive(Debug, Clone)]
pub struct TotpSetupInfo {
    /// The secret, base32.
    pub secret: String,
    /// The `otpauth://` URI.
    pub uri: String,
    /// The URI as an SVG QR code.
    pub qr_svg: String,
}

/// Registration request fields.
pub struct Registration {
    /// Email.
    pub email: String,
    /// Username.
    pub username: String,
    /// Password in clear (hashed here, never stored or logged).
    pub password: String,
}

/// How the auth service runs (from the configuration).
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Lifetime of access tokens.
    pub access_ttl: Duration,
    /// Lifetime of refresh tokens.
    pub refresh_ttl: Duration,
    /// The longest a session lives from its login.
    pub session_lifetime: Duration,
    /// Who may register unless an administrator chose otherwise (the first account always can).
    pub registration: RegistrationPolicy,
    /// Request and failure budgets.
    pub limits: LimitSettings,
}

/// The auth service.
#[derive(Clone)]
pub struct AuthService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    keys: tokens::Keys,
    access_ttl: Duration,
    refresh_ttl: Duration,
    /// The longest a session lives from its login.
    session_lifetime: Duration,
    /// The configured registration policy (an administrator's choice in the store wins).
    registration: RegistrationPolicy,
    /// Which sessions are live, kept in step with the store.
    sessions: sessions::SessionCache,
    /// Lockout state of login names that belong to no account.
    unknown_names: UnknownNames,
    /// Failed attempts per client address.
    address_failures: AddressFailures,
    /// Chat and `/v1` requests per user.
    user_requests: UserRequests,
    /// Roles whose accounts must have 2FA (kept in step with the store; read on every request).
    roles_requiring_2fa: std::sync::RwLock<Vec<UserRole>>,
}

impl AuthService {
    /// A service signing tokens with the store's secret.
    pub fn new(store: Store, settings: AuthSettings) -> Result<AuthService, AuthError> {
        let keys = tokens::Keys::new(&store.jwt_secret()?);
        let roles_requiring_2fa = std::sync::RwLock::new(store.roles_requiring_2fa()?);
        let limits = settings.limits;
        Ok(AuthService {
            inner: Arc::new(Inner {
                store,
                keys,
                access_ttl: settings.access_ttl,
                refresh_ttl: settings.refresh_ttl,
                session_lifetime: settings.session_lifetime,
                registration: settings.registration,
                sessions: sessions::SessionCache::default(),
                unknown_names: UnknownNames::default(),
                address_failures: AddressFailures::new(limits.failures_per_minute),
                user_requests: UserRequests::new(limits.requests_per_minute, limits.request_burst),
                roles_requiring_2fa,
            }),
        })
    }

    /// Refuses `address` while its failure budget is spent.
    fn check_address(&self, address: Option<IpAddr>) -> Result<(), AuthError> {
        self.inner.address_failures.check(address).map_err(|retry_after| {
            count_refusal(Refusal::AddressFailures);
            AuthError::RateLimited { retry_after }
        })
    }

    /// Takes one request of `user_id`'s chat and `/v1` budget, or refuses it.
    pub fn charge_request(&self, user_id: Uuid) -> Result<(), AuthError> {
        self.inner.user_requests.check(user_id).map_err(|retry_after| {
            count_refusal(Refusal::UserRequests);
            AuthError::RateLimited { retry_after }
        })
    }

    /// Creates an account with a role (CLI and admins); the first account is always super_admin.
    pub async fn create_user(&self, registration: Registration, role: UserRole) -> Result<UserRecord, AuthError> {
        let email = validate::email(&registration.email)?;
        let username = validate::username(&registration.username)?;
        validate::password(&registration.password)?;
        let password_hash = passwords::hash(registration.password).await?;
        let user = self
            .inner
            .store
            .create_user(NewUser {
                email,
                username,
                password_hash,
                role,
            })
            .map_err(|e| match e {
                StoreError::Conflict("email") => AuthError::EmailTaken,
                StoreError::Conflict(_) => AuthError::UsernameTaken,
                other => AuthError::Store(other),
            })?;
        tracing::info!(user_id = %user.id, role = ?user.role, "account created");
        Ok(user)
    }

    fn start_session(&self, user: &UserRecord, client: SessionClient) -> Result<TokenPair, AuthError> {
        let (refresh, hash) = tokens::new_secret_token();
        let expires_at =
            crate::store::now_ms() + self.inner.refresh_ttl.min(self.inner.session_lifetime).as_millis() as i64;
        let session_id = self
            .inner
            .store
            .insert_refresh_token(user.id, &hash, expires_at, client)?;
        self.inner.sessions.started(session_id, user.id);
        self.token_pair(user, session_id, refresh)
    }

    fn token_pair(&self, user: &UserRecord, session_id: Uuid, refresh_token: String) -> Result<TokenPair, AuthError> {
        Ok(TokenPair {
            access_token: self
                .inner
                .keys
                .issue_access(user.id, user.role, session_id, self.inner.access_ttl)?,
            refresh_token,
            token_type: "bearer",
            expires_in: self.inner.access_ttl.as_secs(),
        })
    }

    /// Exchanges a refresh token for a new pair; reuse of a rotated token revokes its family.
    pub fn refresh(&self, refresh_token: &str) -> Result<TokenPair, AuthError> {
        let old = tokens::hash_secret_token(refresh_token);
        let (new, new_hash) = tokens::new_secret_token();
        let expires_at = crate::store::now_ms() + self.inner.refresh_ttl.as_millis() as i64;
        let lifetime = self.inner.session_lifetime.as_millis() as i64;
        match self
            .inner
            .store
            .rotate_refresh_token(&old, &new_hash, expires_at, lifetime)?
        {
            RefreshOutcome::Rotated { user_id, session_id } => {
                let user = self.inner.store.get_user(user_id)?.ok_or(AuthError::InvalidToken)?;
                if user.disabled {
                    return Err(AuthError::AccountDisabled);
                }
                self.token_pair(&user, session_id, new)
            }
            RefreshOutcome::ReuseDetected { user_id, session_id } => {
                self.inner.sessions.ended(session_id, user_id);
                tracing::warn!(%user_id, "refresh token reuse detected; token family revoked");
                Err(AuthError::TokenReused { user_id })
            }
            RefreshOutcome::Revoked => Err(AuthError::TokenExpired),
            RefreshOutcome::Unknown => Err(AuthError::InvalidToken),
        }
    }

    /// Ends the session the refresh token belongs to; returns its account.
    pub fn logout(&self, refresh_token: &str) -> Result<Uuid, AuthError> {
        match self
            .inner
            .store
            .revoke_refresh_family(&tokens::hash_secret_token(refresh_token))?
        {
            Some((user_id, session_id)) => {
                self.inner.sessions.ended(session_id, user_id);
                tracing::info!(%user_id, "logout");
                Ok(user_id)
            }
            None => Err(AuthError::InvalidToken),
        }
    }

    /// The live sessions of `user_id`, oldest first (those past their lifetime are over).
    pub fn sessions(&self, user_id: Uuid) -> Result<Vec<SessionInfo>, AuthError> {
        let oldest = crate::store::now_ms() - self.inner.session_lifetime.as_millis() as i64;
        Ok(self.inner.store.live_sessions(user_id, oldest)?)
    }

    /// Ends session `session_id` of `user_id` (signing out a device): its refresh token and
    /// access tokens stop working at once.
    pub fn end_session(&self, user_id: Uuid, session_id: Uuid) -> Result<(), AuthError> {
        if !self.inner.store.revoke_session(user_id, session_id)? {
            return Err(AuthError::SessionNotFound);
        }
        self.inner.sessions.ended(session_id, user_id);
        tracing::info!(%user_id, %session_id, "session ended by its user");
        Ok(())
    }

    /// Changes a password after checking the current one (a wrong one counts against the
    /// address's failure budget), and ends every session of the user.
    pub async fn change_password(
        &self,
        user_id: Uuid,
        current: String,
        new: String,
        address: Option<IpAddr>,
    ) -> Result<(), AuthError> {
        self.check_address(address)?;
        let user = self.inner.store.get_user(user_id)?.ok_or(AuthError::InvalidToken)?;
        if !passwords::verify(current, user.password_hash.clone()).await? {
            self.inner.address_failures.charge(address);
            return Err(AuthError::InvalidCredentials);
        }
        validate::password(&new)?;
        let hash = passwords::hash(new).await?;
        self.inner.store.set_password_hash(user_id, hash)?;
        self.inner.store.revoke_all_refresh_tokens(user_id)?;
        self.inner.sessions.ended_all(user_id);
        tracing::info!(%user_id, "password changed; sessions revoked");
        Ok(())
    }

    /// Checks an access token and returns its caller: the signature and lifetime, then the
    /// account as the store has it now (a disabled account is refused; the role is the current
    /// one, not the token's), then that its session is live (an ended session's tokens are
    /// refused at once, not at expiry; a session past its absolute lifetime has ended).
    pub fn authenticate(&self, access_token: &str) -> Result<Caller, AuthError> {
        let claims = self.inner.keys.verify_access(access_token)?;
        let user_id = Uuid::parse_str(&claims.sub).map_err(|_| AuthError::InvalidToken)?;
        let session_id = Uuid::parse_str(&claims.sid).map_err(|_| AuthError::InvalidToken)?;
        // The account first: disabling it also ends its sessions, and its open pages should
        // learn why they were signed out (ACCOUNT_DISABLED, not just INVALID_TOKEN).
        let user = self.inner.store.get_user(user_id)?.ok_or(AuthError::InvalidToken)?;
        if user.disabled {
            return Err(AuthError::AccountDisabled);
        }
        let lifetime = self.inner.session_lifetime.as_millis() as i64;
        if !self
            .inner
            .sessions
            .is_live(&self.inner.store, session_id, user_id, lifetime)?
        {
            return Err(AuthError::InvalidToken);
        }
        Ok(Caller {
            user_id,
            role: user.role,
            session_id,
            totp_setup_pending: self.needs_totp_setup(&user),
        })
    }

    /// Whether `user`'s role requires 2FA and it has none.
    pub fn needs_totp_setup(&self, user: &UserRecord) -> bool {
        let required = self.inner.roles_requiring_2fa.read().unwrap_or_else(|e| e.into_inner());
        required.contains(&user.role) && !user.totp.as_ref().is_some_and(|t| t.enabled)
    }

    /// The roles whose accounts must have 2FA.
    pub fn roles_requiring_2fa(&self) -> Vec<UserRole> {
        self.inner
            .roles_requiring_2fa
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sets the roles whose accounts must have 2FA (in force at their next request).
    pub fn require_2fa_for(&self, actor: &Caller, roles: Vec<UserRole>) -> Result<(), AuthError> {
        self.inner.store.set_roles_requiring_2fa(&roles)?;
        tracing::info!(actor = %actor.user_id, ?roles, "roles requiring 2FA changed");
        *self
            .inner
            .roles_requiring_2fa
            .write()
            .unwrap_or_else(|e| e.into_inner()) = roles;
        Ok(())
    }

    /// The id of the account with the email or username `login`, if one has it.
    pub fn account_id(&self, login: &str) -> Result<Option<Uuid>, AuthError> {
        Ok(self.inner.store.find_user_by_login(login.trim())?.map(|u| u.id))
    }

    /// The account of a caller.
    pub fn user(&self, user_id: Uuid) -> Result<UserRecord, AuthError> {
        self.inner.store.get_user(user_id)?.ok_or(AuthError::InvalidToken)
    }
}
