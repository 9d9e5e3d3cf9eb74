//! One-time links an administrator hands out: invitations (register under an invite-only
//! policy, with a role) and password reset links. Stored by the SHA-256 of their token (the
//! token itself is shown once and never stored); each works once, until it expires. Also the
//! server-wide account rules kept in the meta table: the registration policy and the roles that
//! must have 2FA.

use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::schema::*;
use super::{decode, encode, new_id, Store, StoreResult};

pub use enclave_protocol::RegistrationPolicy;

const REGISTRATION_POLICY_KEY: &str = "registration_policy";
const REQUIRED_2FA_KEY: &str = "require_2fa_for";

/// What a link grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Grant {
    /// Registering one account with this role.
    Invite {
        /// The new account's role.
        role: enclave_protocol::UserRole,
    },
    /// Setting a new password for this account.
    PasswordReset {
        /// The account.
        user_id: Uuid,
    },
}

/// A stored link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRecord {
    /// Its id (for listing and revoking; not the token).
    pub id: Uuid,
    /// What it grants.
    pub grant: Grant,
    /// The administrator who made it.
    pub created_by: Uuid,
    /// When (ms).
    pub created_at: i64,
    /// Until when it works (ms).
    pub expires_at: i64,
    /// When it was used (ms), if it was.
    pub used_at: Option<i64>,
}

/// SHA-256 of a link's token.
pub type GrantTokenHash = [u8; 32];

impl Store {
    /// Stores a new link; returns its record.
    pub fn insert_grant(
        &self,
        hash: &GrantTokenHash,
        grant: Grant,
        created_by: Uuid,
        created_at: i64,
        expires_at: i64,
    ) -> StoreResult<GrantRecord> {
        let record = GrantRecord {
            id: new_id(),
            grant,
            created_by,
            created_at,
            expires_at,
            used_at: None,
        };
        let txn = self.db.begin_write()?;
        txn.open_table(GRANTS)?
            .insert(hash.as_slice(), encode(&record)?.as_slice())?;
        txn.commit()?;
        Ok(record)
    }

    /// Uses the link `hash` at `now` if it exists, is unused and unexpired and `accept` takes
    /// its grant (checked inside the same transaction); returns it. A link that does not qualify
    /// is left as it was.
    pub fn use_grant(
        &self,
        hash: &GrantTokenHash,
        now: i64,
        accept: impl FnOnce(&Grant) -> bool,
    ) -> StoreResult<Option<GrantRecord>> {
        let txn = self.db.begin_write()?;
        let used = {
            let mut table = txn.open_table(GRANTS)?;
            let record: Option<GrantRecord> = table.get(hash.as_slice())?.map(|v| decode(v.value())).transpose()?;
            match record {
                Some(mut record) if record.used_at.is_none() && record.expires_at > now && accept(&record.grant) => {
                    record.used_at = Some(now);
                    table.insert(hash.as_slice(), encode(&record)?.as_slice())?;
                    Some(record)
                }
                _ => None,
            }
        };
        txn.commit()?;
        Ok(used)
    }

    /// Makes a used link usable again (its use failed afterwards, e.g. the email was taken).
    pub fn unuse_grant(&self, hash: &GrantTokenHash) -> StoreResult<()> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(GRANTS)?;
            let record: Option<GrantRecord> = table.get(hash.as_slice())?.map(|v| decode(v.value())).transpose()?;
            if let Some(mut record) = record {
                record.used_at = None;
                table.insert(hash.as_slice(), encode(&record)?.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// The invitations not yet used nor expired at `now`, oldest first.
    pub fn open_invites(&self, now: i64) -> StoreResult<Vec<GrantRecord>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(GRANTS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (_, value) = entry?;
            let record: GrantRecord = decode(value.value())?;
            if matches!(record.grant, Grant::Invite { .. }) && record.used_at.is_none() && record.expires_at > now {
                out.push(record);
            }
        }
        out.sort_by_key(|r| r.id);
        Ok(out)
    }

    /// Deletes the link `id` (revoking it, or dropping a spent one); false when there is none.
    pub fn delete_grant(&self, id: Uuid) -> StoreResult<bool> {
        let txn = self.db.begin_write()?;
        let found = {
            let mut table = txn.open_table(GRANTS)?;
            let mut key = None;
            for entry in table.iter()? {
                let (k, value) = entry?;
                let record: GrantRecord = decode(value.value())?;
                if record.id == id {
                    key = Some(k.value().to_vec());
                    break;
                }
            }
            match key {
                Some(key) => {
                    table.remove(key.as_slice())?;
                    true
                }
                None => false,
            }
        };
        txn.commit()?;
        Ok(found)
    }

    /// The registration policy an administrator set, if one did.
    pub fn registration_policy(&self) -> StoreResult<Option<RegistrationPolicy>> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        let value = meta.get(REGISTRATION_POLICY_KEY)?;
        value.map(|v| decode(v.value())).transpose()
    }

    /// The roles whose accounts must have 2FA (none unless an administrator chose some).
    pub fn roles_requiring_2fa(&self) -> StoreResult<Vec<enclave_protocol::UserRole>> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        let value = meta.get(REQUIRED_2FA_KEY)?;
        Ok(value.map(|v| decode(v.value())).transpose()?.unwrap_or_default())
    }

    /// Sets the roles whose accounts must have 2FA.
    pub fn set_roles_requiring_2fa(&self, roles: &[enclave_protocol::UserRole]) -> StoreResult<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(META)?
            .insert(REQUIRED_2FA_KEY, encode(&roles)?.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// Sets the registration policy.
    pub fn set_registration_policy(&self, policy: RegistrationPolicy) -> StoreResult<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(META)?
            .insert(REGISTRATION_POLICY_KEY, encode(&policy)?.as_slice())?;
        txn.commit()?;
        Ok(())
    }
}
