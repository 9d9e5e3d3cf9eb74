//! User accounts and their email / username indexes.

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::schema::*;
use super::{decode, encode, new_id, now_ms, Store, StoreError, StoreResult};

/// Roles are stored as the API shows them.
pub use enclave_protocol::UserRole;

/// A stored account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRecord {
    /// Time-ordered id.
    pub id: Uuid,
    /// Email, lower-cased.
    pub email: String,
    /// Display / login name as typed.
    pub username: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Permissions.
    pub role: UserRole,
    /// Creation time (ms since epoch).
    pub created_at: i64,
    /// A disabled account cannot log in.
    #[serde(default)]
    pub disabled: bool,
    /// Failed logins since the last good one: the account's lockout state.
    #[serde(default)]
    pub login_failures: LoginFailures,
    /// The authenticator (TOTP) second factor, once set up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp: Option<TotpRecord>,
}

/// An account's authenticator second factor (the rules are the auth service's). The secret is
/// stored like the account's other secrets (in this database; encrypted at rest once the data
/// protection work lands).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpRecord {
    /// The shared secret, base32.
    pub secret: String,
    /// Whether logins need a code (false while set up but not yet confirmed).
    pub enabled: bool,
    /// SHA-256 (hex) of each recovery code not used yet.
    #[serde(default)]
    pub recovery_codes: Vec<String>,
    /// The latest time step whose code was accepted: a code works once.
    #[serde(default)]
    pub last_step: u64,
}

/// An account's failed logins, as the lockout rules (in the auth service) last left them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginFailures {
    /// Failures since the last good login (or since they were forgotten).
    pub count: u32,
    /// When the latest failure happened (ms since the epoch).
    pub last_at: i64,
    /// Logins are refused until this time (ms since the epoch; 0 when never locked).
    pub locked_until: i64,
}

/// Fields for a new account.
pub struct NewUser {
    /// Email (lower-cased by the store).
    pub email: String,
    /// Username as typed.
    pub username: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Role to give unless this is the first account (which becomes super_admin).
    pub role: UserRole,
}

impl Store {
    /// Creates an account; the very first account becomes `super_admin` whatever was asked.
    pub fn create_user(&self, new: NewUser) -> StoreResult<UserRecord> {
        let txn = self.db.begin_write()?;
        let record = {
            let mut users = txn.open_table(USERS)?;
            let mut by_email = txn.open_table(USERS_BY_EMAIL)?;
            let mut by_name = txn.open_table(USERS_BY_USERNAME)?;
            let email = new.email.to_lowercase();
            let name_key = new.username.to_lowercase();
            if by_email.get(email.as_str())?.is_some() {
                return Err(StoreError::Conflict("email"));
            }
            if by_name.get(name_key.as_str())?.is_some() {
                return Err(StoreError::Conflict("username"));
            }
            let role = if users.len()? == 0 {
                UserRole::SuperAdmin
            } else {
                new.role
            };
            let record = UserRecord {
                id: new_id(),
                email: email.clone(),
                username: new.username,
                password_hash: new.password_hash,
                role,
                created_at: now_ms(),
                disabled: false,
                login_failures: LoginFailures::default(),
                totp: None,
            };
            users.insert(record.id.as_u128(), encode(&record)?.as_slice())?;
            by_email.insert(email.as_str(), record.id.as_u128())?;
            by_name.insert(name_key.as_str(), record.id.as_u128())?;
            record
        };
        txn.commit()?;
        Ok(record)
    }

    /// The user with this id.
    pub fn get_user(&self, id: Uuid) -> StoreResult<Option<UserRecord>> {
        let txn = self.db.begin_read()?;
        let users = txn.open_table(USERS)?;
        let value = users.get(id.as_u128())?;
        value.map(|v| decode(v.value())).transpose()
    }

    /// The user with this email (case-insensitive).
    pub fn find_user_by_email(&self, email: &str) -> StoreResult<Option<UserRecord>> {
        self.find_user_by_index(USERS_BY_EMAIL, &email.to_lowercase())
    }

    /// The user with this username (case-insensitive).
    pub fn find_user_by_username(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        self.find_user_by_index(USERS_BY_USERNAME, &username.to_lowercase())
    }

    fn find_user_by_index(
        &self,
        index: redb::TableDefinition<&str, u128>,
        key: &str,
    ) -> StoreResult<Option<UserRecord>> {
        let txn = self.db.begin_read()?;
        let id = match txn.open_table(index)?.get(key)? {
            Some(id) => id.value(),
            None => return Ok(None),
        };
        let users = txn.open_table(USERS)?;
        let value = users.get(id)?;
        value.map(|v| decode(v.value())).transpose()
    }

    /// Replaces a user's password hash.
    pub fn set_password_hash(&self, id: Uuid, password_hash: String) -> StoreResult<()> {
        self.update_user(id, |user| user.password_hash = password_hash)
    }

    /// Changes the account `id` with `change` in one transaction (read, change, write back);
    /// returns what `change` returns. `NotFound` when there is no such account. The email and
    /// username must not be changed here (their indexes are not updated).
    pub fn update_user<R>(&self, id: Uuid, change: impl FnOnce(&mut UserRecord) -> R) -> StoreResult<R> {
        let txn = self.db.begin_write()?;
        let result = {
            let mut users = txn.open_table(USERS)?;
            let mut user: UserRecord = match users.get(id.as_u128())? {
                Some(v) => decode(v.value())?,
                None => return Err(StoreError::NotFound),
            };
            let result = change(&mut user);
            users.insert(id.as_u128(), encode(&user)?.as_slice())?;
            result
        };
        txn.commit()?;
        Ok(result)
    }

    /// The account whose email (with an `@`) or username (without) is `login`, ignoring case.
    pub fn find_user_by_login(&self, login: &str) -> StoreResult<Option<UserRecord>> {
        if login.contains('@') {
            self.find_user_by_email(login)
        } else {
            self.find_user_by_username(login)
        }
    }

    /// Up to `limit` accounts after `after` (in id order: oldest first) whose email or
    /// username contains `search`, ignoring case.
    pub fn list_users(&self, search: Option<&str>, after: Option<Uuid>, limit: usize) -> StoreResult<Vec<UserRecord>> {
        let search = search.map(str::to_lowercase);
        let txn = self.db.begin_read()?;
        let users = txn.open_table(USERS)?;
        let start = after.map_or(0, |id| id.as_u128().saturating_add(1));
        let mut out = Vec::new();
        for entry in users.range(start..)? {
            let (_, value) = entry?;
            let user: UserRecord = decode(value.value())?;
            let matches = search
                .as_deref()
                .is_none_or(|s| user.email.contains(s) || user.username.to_lowercase().contains(s));
            if matches {
                out.push(user);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Number of accounts.
    pub fn user_count(&self) -> StoreResult<u64> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(USERS)?.len()?)
    }
}
