//! Table definitions: the one place that names redb tables.

use redb::TableDefinition;

/// Newest schema version this build writes.
pub const SCHEMA_VERSION: u64 = 6;

/// Server-wide values: schema version, signing secret.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Users by id.
pub const USERS: TableDefinition<u128, &[u8]> = TableDefinition::new("users");
/// Lower-cased email -> user id.
pub const USERS_BY_EMAIL: TableDefinition<&str, u128> = TableDefinition::new("users_by_email");
/// Lower-cased username -> user id (added in schema version 2).
pub const USERS_BY_USERNAME: TableDefinition<&str, u128> = TableDefinition::new("users_by_username");
/// SHA-256 of a refresh token -> its record.
pub const REFRESH_TOKENS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("refresh_tokens");
/// Refresh-token family id -> family record (owner, revoked flag).
pub const TOKEN_FAMILIES: TableDefinition<u128, &[u8]> = TableDefinition::new("token_families");
/// (user id, family id) -> (): every family of a user, to revoke them all.
pub const FAMILIES_BY_USER: TableDefinition<(u128, u128), ()> = TableDefinition::new("families_by_user");
/// Conversations by id.
pub const CONVERSATIONS: TableDefinition<u128, &[u8]> = TableDefinition::new("conversations");
/// (owner, 0 if pinned else 1, u64::MAX - updated_at, conversation id) -> (): the sidebar order.
pub const CONVERSATIONS_BY_OWNER: TableDefinition<(u128, u8, u64, u128), ()> =
    TableDefinition::new("conversations_by_owner");
/// Messages by id.
pub const MESSAGES: TableDefinition<u128, &[u8]> = TableDefinition::new("messages");
/// (conversation id, message id) -> (): a conversation's messages, oldest first.
pub const MESSAGES_BY_CONVERSATION: TableDefinition<(u128, u128), ()> =
    TableDefinition::new("messages_by_conversation");
/// User id -> that user's settings.
pub const USER_SETTINGS: TableDefinition<u128, &[u8]> = TableDefinition::new("user_settings");
/// Documents by id (added in schema version 3, like every table below).
pub const DOCUMENTS: TableDefinition<u128, &[u8]> = TableDefinition::new("documents");
/// (owner, document id) -> (): an owner's documents, oldest first.
pub const DOCUMENTS_BY_OWNER: TableDefinition<(u128, u128), ()> = TableDefinition::new("documents_by_owner");
/// (owner, SHA-256 hex) -> document id: identical uploads find the first one.
pub const DOCUMENTS_BY_HASH: TableDefinition<(u128, &[u8]), u128> = TableDefinition::new("documents_by_hash");
/// (document id, section index from 1) -> the section's text.
pub const DOCUMENT_SECTIONS: TableDefinition<(u128, u32), &[u8]> = TableDefinition::new("document_sections");
/// Job id (time-ordered) -> document id: the ingestion backlog.
pub const INGEST_QUEUE: TableDefinition<u128, u128> = TableDefinition::new("ingest_queue");
/// SHA-256 of a one-time link's token -> its record: invitations and password reset links
/// (added in schema version 4).
pub const GRANTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("grants");
/// Entry number -> its hash and JSON body: the audit log (added in schema version 5, like the
/// tables below).
pub const AUDIT_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("audit_log");
/// User id -> the random key of that account's audit pseudonym.
pub const AUDIT_KEYS: TableDefinition<u128, &[u8]> = TableDefinition::new("audit_keys");
/// Audit pseudonym -> user id, while the account's key exists.
pub const AUDIT_PSEUDONYMS: TableDefinition<&str, u128> = TableDefinition::new("audit_pseudonyms");
/// Images by id (added in schema version 6, like the tables below).
pub const IMAGES: TableDefinition<u128, &[u8]> = TableDefinition::new("images");
/// (owner, image id) -> (): an owner's images.
pub const IMAGES_BY_OWNER: TableDefinition<(u128, u128), ()> = TableDefinition::new("images_by_owner");
/// (conversation id, image id) -> (): the images a conversation's messages carry.
pub const IMAGES_BY_CONVERSATION: TableDefinition<(u128, u128), ()> = TableDefinition::new("images_by_conversation");
