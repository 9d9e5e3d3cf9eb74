//! Per-user settings and server-wide secrets.

use rand::RngCore;
use redb::{ReadableDatabase, ReadableTable};
use uuid::Uuid;

use super::schema::*;
use super::{decode, encode, Store, StoreResult};

/// Preferences are stored as the API shows them (the type only ever gains defaulted fields,
/// so older records still read).
pub use enclave_protocol::UserSettings;

const JWT_SECRET_KEY: &str = "jwt_secret";

impl Store {
    /// A user's settings (defaults when never saved).
    pub fn get_user_settings(&self, user_id: Uuid) -> StoreResult<UserSettings> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(USER_SETTINGS)?;
        let value = table.get(user_id.as_u128())?;
        Ok(value.map(|v| decode(v.value())).transpose()?.unwrap_or_default())
    }

    /// Saves a user's settings.
    pub fn put_user_settings(&self, user_id: Uuid, settings: &UserSettings) -> StoreResult<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(USER_SETTINGS)?
            .insert(user_id.as_u128(), encode(settings)?.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// The secret that signs access tokens, created on first use and kept in the database so
    /// that tokens survive restarts.
    pub fn jwt_secret(&self) -> StoreResult<Vec<u8>> {
        {
            let txn = self.db.begin_read()?;
            let meta = txn.open_table(META)?;
            if let Some(v) = meta.get(JWT_SECRET_KEY)? {
                return Ok(v.value().to_vec());
            }
        }
        let txn = self.db.begin_write()?;
        let secret = {
            let mut meta = txn.open_table(META)?;
            // Another caller may have created it between the read and this write.
            let existing = meta.get(JWT_SECRET_KEY)?.map(|v| v.value().to_vec());
            match existing {
                Some(secret) => secret,
                None => {
                    let mut secret = vec![0u8; 64];
                    rand::rng().fill_bytes(&mut secret);
                    meta.insert(JWT_SECRET_KEY, secret.as_slice())?;
                    secret
                }
            }
        };
        txn.commit()?;
        Ok(secret)
    }
}
