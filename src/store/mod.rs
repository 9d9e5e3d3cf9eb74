//! Records in redb: users, refresh tokens, conversations, messages, settings, documents and
//! their ingestion queue, images attached to messages, the audit log ([`audit`]); document chunks with their vectors in LanceDB ([`chunks`]).
//!
//! This is the only module that knows redb's tables and LanceDB. Values are JSON-encoded records; keys are
//! time-ordered UUIDv7 ids stored as `u128`, so ranges come back oldest first. Every write is
//! one redb transaction, committed before the call returns (redb is crash-safe; there is no
//! write-behind cache to lose).

mod audit;
pub mod chunks;
mod conversations;
mod documents;
mod grants;
mod images;
mod messages;
mod migrations;
mod schema;
mod settings;
mod tokens;
mod users;

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase};
use uuid::Uuid;

pub use audit::{AuditCheck, AuditFilter, AuditItem, AuditRecord, NewAuditEntry};
pub use chunks::{ChunkFilter, ChunkHit, ChunkIndex, ChunkRow};
pub use conversations::{ConversationPage, ConversationRecord, ConversationSettings, ListCursor};
pub use documents::{
    Created, DocumentCursor, DocumentFilter, DocumentListing, DocumentRecord, NewDocument, SectionRecord,
};
pub use grants::{Grant, GrantRecord, GrantTokenHash, RegistrationPolicy};
pub use images::{ImageDeletion, ImageRecord};
pub use messages::{MessageRecord, MessageRole, MessageStatus};
pub use settings::UserSettings;
pub use tokens::{RefreshOutcome, RefreshTokenHash, SessionClient, SessionInfo, SessionStatus};
pub use users::{LoginFailures, NewUser, TotpRecord, UserRecord, UserRole};

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb failed (I/O, corruption, transaction).
    #[error("database error: {0}")]
    Database(#[from] redb::Error),
    /// A record could not be encoded or decoded.
    #[error("record encoding error: {0}")]
    Encoding(#[from] serde_json::Error),
    /// A unique field (email, username) is already taken.
    #[error("{0} is already taken")]
    Conflict(&'static str),
    /// The record does not exist (or belongs to someone else).
    #[error("not found")]
    NotFound,
    /// The database was written by a newer Enclave than this one.
    #[error(
        "the database schema is version {found}, newer than this build understands ({supported}); upgrade Enclave"
    )]
    SchemaTooNew {
        /// Version in the file.
        found: u64,
        /// Newest version this build knows.
        supported: u64,
    },
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Database(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Result alias for store calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// Handle to the database; cheap to clone, safe to share between threads.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
}

impl Store {
    /// Opens (or creates) the database file and brings its schema up to date.
    pub fn open(path: &Path) -> StoreResult<Store> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Database(redb::StorageError::Io(e).into()))?;
        }
        let db = Database::create(path)?;
        migrations::migrate(&db)?;
        Ok(Store { db: Arc::new(db) })
    }

    /// The schema version stored in the file.
    pub fn schema_version(&self) -> StoreResult<u64> {
        let txn = self.db.begin_read()?;
        migrations::read_version(&txn)
    }

    /// Checks that the database answers a read (for `/ready`).
    pub fn ping(&self) -> StoreResult<()> {
        self.schema_version().map(|_| ())
    }
}

/// A new time-ordered id.
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn encode<T: serde::Serialize>(value: &T) -> StoreResult<Vec<u8>> {
    Ok(serde_json::to_vec(value)?)
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> StoreResult<T> {
    Ok(serde_json::from_slice(bytes)?)
}
