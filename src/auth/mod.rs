//! Accounts and sessions: registration, login, access tokens (JWT), rotating refresh tokens.

mod passwords;
pub mod roles;
mod sessions;
mod tokens;
mod validate;

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use crate::store::{NewUser, RefreshOutcome, SessionClient, SessionInfo, Store, StoreError, UserRecord, UserRole};
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
    TokenReused,
    /// The account is disabled.
    #[error("this account is disabled")]
    AccountDisabled,
    /// No such live session of the caller.
    #[error("no such session")]
    SessionNotFound,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Hashing failed (should not happen).
    #[error("password hashing failed")]
    Hashing,
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
    allow_registration: bool,
    /// Which sessions are live, kept in step with the store.
    sessions: sessions::SessionCache,
}

impl AuthService {
    /// A service signing tokens with the store's secret.
    pub fn new(
        store: Store,
        access_ttl: Duration,
        refresh_ttl: Duration,
        session_lifetime: Duration,
        allow_registration: bool,
    ) -> Result<AuthService, AuthError> {
        let keys = tokens::Keys::new(&store.jwt_secret()?);
        Ok(AuthService {
            inner: Arc::new(Inner {
                store,
                keys,
                access_ttl,
                refresh_ttl,
                session_lifetime,
                allow_registration,
                sessions: sessions::SessionCache::default(),
            }),
        })
    }

    /// Creates an account through the public endpoint (subject to `allow_registration`).
    pub async fn register(&self, registration: Registration) -> Result<UserRecord, AuthError> {
        if !self.inner.allow_registration && self.inner.store.user_count()? > 0 {
            return Err(AuthError::RegistrationClosed);
        }
        self.create_user(registration, UserRole::User).await
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

    /// Checks a login (email or username) and starts a new session for `client`.
    pub async fn login(
        &self,
        login: &str,
        password: String,
        client: SessionClient,
    ) -> Result<(UserRecord, TokenPair), AuthError> {
        let login = login.trim();
        let user = if login.contains('@') {
            self.inner.store.find_user_by_email(login)?
        } else {
            self.inner.store.find_user_by_username(login)?
        };
        let Some(user) = user else {
            // Spend the same time as a real check so that timing does not reveal accounts.
            passwords::verify_dummy(password).await;
            return Err(AuthError::InvalidCredentials);
        };
        if !passwords::verify(password, user.password_hash.clone()).await {
            tracing::info!(user_id = %user.id, "login failed: wrong password");
            return Err(AuthError::InvalidCredentials);
        }
        if user.disabled {
            return Err(AuthError::AccountDisabled);
        }
        let pair = self.start_session(&user, client)?;
        tracing::info!(user_id = %user.id, "login");
        Ok((user, pair))
    }

    fn start_session(&self, user: &UserRecord, client: SessionClient) -> Result<TokenPair, AuthError> {
        let (refresh, hash) = tokens::new_refresh_token();
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
        let old = tokens::hash_refresh_token(refresh_token);
        let (new, new_hash) = tokens::new_refresh_token();
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
                Err(AuthError::TokenReused)
            }
            RefreshOutcome::Revoked => Err(AuthError::TokenExpired),
            RefreshOutcome::Unknown => Err(AuthError::InvalidToken),
        }
    }

    /// Ends the session the refresh token belongs to.
    pub fn logout(&self, refresh_token: &str) -> Result<(), AuthError> {
        match self
            .inner
            .store
            .revoke_refresh_family(&tokens::hash_refresh_token(refresh_token))?
        {
            Some((user_id, session_id)) => {
                self.inner.sessions.ended(session_id, user_id);
                tracing::info!(%user_id, "logout");
                Ok(())
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

    /// Changes a password after checking the current one, and ends every session of the user.
    pub async fn change_password(&self, user_id: Uuid, current: String, new: String) -> Result<(), AuthError> {
        let user = self.inner.store.get_user(user_id)?.ok_or(AuthError::InvalidToken)?;
        if !passwords::verify(current, user.password_hash.clone()).await {
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

    /// Checks an access token and returns its caller: the signature and lifetime, then that
    /// its session is live (an ended session's tokens are refused at once, not at expiry; a
    /// session past its absolute lifetime has ended),
    /// then the account as the store has it now (a disabled account is refused; the role is
    /// the current one, not the token's).
    pub fn authenticate(&self, access_token: &str) -> Result<Caller, AuthError> {
        let claims = self.inner.keys.verify_access(access_token)?;
        let user_id = Uuid::parse_str(&claims.sub).map_err(|_| AuthError::InvalidToken)?;
        let session_id = Uuid::parse_str(&claims.sid).map_err(|_| AuthError::InvalidToken)?;
        let lifetime = self.inner.session_lifetime.as_millis() as i64;
        if !self
            .inner
            .sessions
            .is_live(&self.inner.store, session_id, user_id, lifetime)?
        {
            return Err(AuthError::InvalidToken);
        }
        let user = self.inner.store.get_user(user_id)?.ok_or(AuthError::InvalidToken)?;
        if user.disabled {
            return Err(AuthError::AccountDisabled);
        }
        Ok(Caller {
            user_id,
            role: user.role,
            session_id,
        })
    }

    /// The account of a caller.
    pub fn user(&self, user_id: Uuid) -> Result<UserRecord, AuthError> {
        self.inner.store.get_user(user_id)?.ok_or(AuthError::InvalidToken)
    }
}
