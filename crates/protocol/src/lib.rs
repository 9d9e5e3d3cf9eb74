//! Enclave's wire types, shared by the server (`src/api/`) and the web UI (`web/`): request and
//! response bodies of `/api/v1`, the payloads of the answer stream's SSE events, and the error
//! codes as one enum. A change here changes both sides at once; the JSON they produce is the
//! API that other clients rely on, so fields are only ever added (with defaults), never
//! renamed.
//!
//! Plain data only: no validation (that is the server's services' job) and nothing that needs
//! a platform, so that it builds for wasm32 as well as for the host.

mod admin;
mod audit;
mod auth;
mod conversations;
mod documents;
mod error;
mod images;
mod models;
mod stream;

pub use admin::{
    AdminSessionList, AdminUser, AdminUserCreate, AdminUserPage, AdminUserUpdate, GrantLink, InviteList, InviteRequest,
    PasswordResetRequest, RegistrationPolicy, RegistrationSettings, SecuritySettings,
};
pub use audit::{AuditAction, AuditEntry, AuditPage, AuditUser, AuditVerification};
pub use auth::{
    LoginRequest, PasswordChangeRequest, RecoveryCodes, RefreshRequest, RegisterRequest, Session, SessionList, Tokens,
    TotpDisableRequest, TotpSetup, TotpVerifyRequest, User, UserRole,
};
pub use conversations::{
    Conversation, ConversationDetail, ConversationPage, ConversationSettings, CreateConversation, ListQuery, Message,
    MessageRole, MessageStatus, SendMessage, UpdateConversation, UserSettings,
};
pub use documents::{
    Citation, Document, DocumentKind, DocumentListQuery, DocumentPage, DocumentPageText, DocumentProgress,
    DocumentStatus, SearchHit, SearchMode, SearchRequest, SearchResponse, UploadResponse, UploadedPart,
};
pub use error::{ErrorBody, ErrorCode};
pub use images::{Attachment, Image, ImageUploadPart, ImageUploadResponse};
pub use models::{ModelCapability, ModelList, ModelRole, ModelState, ModelStatus};
pub use stream::{DoneEvent, FinishReason, TokenEvent, Usage};
/// Ids on the wire are UUIDs (time-ordered v7 ones from the server).
pub use uuid::Uuid;
