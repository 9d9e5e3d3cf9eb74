//! Schema versions and forward migrations, run at open inside one write transaction each.

use redb::{Database, ReadTransaction, ReadableTable, WriteTransaction};

use super::schema::*;
use super::{decode, StoreError, StoreResult};

const VERSION_KEY: &str = "schema_version";

/// Migration `i` takes the schema from version `i` to `i + 1`.
type Migration = fn(&WriteTransaction) -> StoreResult<()>;
const MIGRATIONS: [Migration; SCHEMA_VERSION as usize] = [
    create_tables,
    index_usernames,
    create_document_tables,
    create_grant_table,
    create_audit_tables,
    create_image_tables,
];

/// Runs every migration the file has not seen yet.
pub fn migrate(db: &Database) -> StoreResult<()> {
    migrate_to(db, SCHEMA_VERSION)
}

/// Runs migrations up to `target` (tests build old schemas with it).
pub(super) fn migrate_to(db: &Database, target: u64) -> StoreResult<()> {
    loop {
        let txn = db.begin_write()?;
        let version = current_version(&txn)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if version >= target {
            return Ok(());
        }
        MIGRATIONS[version as usize](&txn)?;
        txn.open_table(META)?
            .insert(VERSION_KEY, (version + 1).to_le_bytes().as_slice())?;
        txn.commit()?;
        tracing::info!(from = version, to = version + 1, "migrated database schema");
    }
}

fn current_version(txn: &WriteTransaction) -> StoreResult<u64> {
    let meta = txn.open_table(META)?;
    let value = meta.get(VERSION_KEY)?;
    Ok(value.map(|v| parse_version(v.value())).unwrap_or(0))
}

/// The schema version recorded in the file (0 for a new file).
pub fn read_version(txn: &ReadTransaction) -> StoreResult<u64> {
    let meta = match txn.open_table(META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let value = meta.get(VERSION_KEY)?;
    Ok(value.map(|v| parse_version(v.value())).unwrap_or(0))
}

fn parse_version(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = bytes.len().min(8);
    buf[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(buf)
}

/// Version 0 -> 1: the first tables.
fn create_tables(txn: &WriteTransaction) -> StoreResult<()> {
    txn.open_table(META)?;
    txn.open_table(USERS)?;
    txn.open_table(USERS_BY_EMAIL)?;
    txn.open_table(REFRESH_TOKENS)?;
    txn.open_table(TOKEN_FAMILIES)?;
    txn.open_table(FAMILIES_BY_USER)?;
    txn.open_table(CONVERSATIONS)?;
    txn.open_table(CONVERSATIONS_BY_OWNER)?;
    txn.open_table(MESSAGES)?;
    txn.open_table(MESSAGES_BY_CONVERSATION)?;
    txn.open_table(USER_SETTINGS)?;
    Ok(())
}

/// Version 1 -> 2: log in by username, so usernames get an index of their own.
fn index_usernames(txn: &WriteTransaction) -> StoreResult<()> {
    #[derive(serde::Deserialize)]
    struct UserV1 {
        id: uuid::Uuid,
        username: String,
    }
    let users = txn.open_table(USERS)?;
    let mut by_name = txn.open_table(USERS_BY_USERNAME)?;
    for entry in users.iter()? {
        let (_, value) = entry?;
        let user: UserV1 = decode(value.value())?;
        by_name.insert(user.username.to_lowercase().as_str(), user.id.as_u128())?;
    }
    Ok(())
}

/// Version 2 -> 3: documents, their sections and the ingestion queue.
fn create_document_tables(txn: &WriteTransaction) -> StoreResult<()> {
    txn.open_table(DOCUMENTS)?;
    txn.open_table(DOCUMENTS_BY_OWNER)?;
    txn.open_table(DOCUMENTS_BY_HASH)?;
    txn.open_table(DOCUMENT_SECTIONS)?;
    txn.open_table(INGEST_QUEUE)?;
    Ok(())
}

/// Version 3 -> 4: invitations and password reset links.
fn create_grant_table(txn: &WriteTransaction) -> StoreResult<()> {
    txn.open_table(GRANTS)?;
    Ok(())
}

/// Version 4 -> 5: the audit log and its pseudonym keys.
fn create_audit_tables(txn: &WriteTransaction) -> StoreResult<()> {
    txn.open_table(AUDIT_LOG)?;
    txn.open_table(AUDIT_KEYS)?;
    txn.open_table(AUDIT_PSEUDONYMS)?;
    Ok(())
}

/// Version 5 -> 6: images attached to messages.
fn create_image_tables(txn: &WriteTransaction) -> StoreResult<()> {
    txn.open_table(IMAGES)?;
    txn.open_table(IMAGES_BY_OWNER)?;
    txn.open_table(IMAGES_BY_CONVERSATION)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{encode, new_id, Store};

    #[test]
    fn version_one_database_gains_username_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("enclave.redb");
        let id = new_id();
        {
            let db = Database::create(&path).unwrap();
            migrate_to(&db, 1).unwrap();
            let txn = db.begin_write().unwrap();
            {
                // A user record as version 1 wrote it.
                let record = serde_json::json!({
                    "id": id, "email": "old@example.com", "username": "OldTimer",
                    "password_hash": "x", "role": "user", "created_at": 1, "disabled": false
                });
                txn.open_table(USERS)
                    .unwrap()
                    .insert(id.as_u128(), encode(&record).unwrap().as_slice())
                    .unwrap();
                txn.open_table(USERS_BY_EMAIL)
                    .unwrap()
                    .insert("old@example.com", id.as_u128())
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let user = store
            .find_user_by_username("oldtimer")
            .unwrap()
            .expect("indexed by migration");
        assert_eq!(user.id, id);
        assert_eq!(user.email, "old@example.com");
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("enclave.redb");
        {
            let db = Database::create(&path).unwrap();
            migrate(&db).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(VERSION_KEY, 99u64.to_le_bytes().as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        match Store::open(&path) {
            Err(StoreError::SchemaTooNew { found: 99, .. }) => {}
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("a newer schema must be refused"),
        }
    }
}
