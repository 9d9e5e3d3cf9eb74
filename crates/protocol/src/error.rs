//! The error shape of every failed call and every `error` stream event:
//! `{"error": "...", "code": "SNAKE_CASE"}`, with the codes as one enum.

use serde::{Deserialize, Serialize};

/// A stable, machine-readable error code. Clients branch on these, never on the message.
///
/// Serialized in SCREAMING_SNAKE_CASE (`RATE_LIMITED`). A code this build does not know (a
/// newer server) reads as [`ErrorCode::Unknown`] instead of failing the whole body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    // --- Requests the server could not take as sent.
    /// A field is missing, of the wrong type or out of range (422).
    ValidationError,
    /// The body is not JSON (400).
    MalformedJson,
    /// The body is not sent as `application/json` (415).
    UnsupportedMediaType,
    /// The body is over the size limit (413).
    PayloadTooLarge,
    /// Anything else wrong with the request's form (400).
    BadRequest,
    /// No such route, or a resource that does not exist or is not the caller's (404).
    NotFound,
    /// The route does not take this method (405).
    MethodNotAllowed,
    /// This server does not do that yet (501).
    NotSupportedYet,
    /// The server failed; the details are in its log (500).
    InternalError,

    // --- Accounts and sessions.
    /// No `Authorization: Bearer` header (401).
    Unauthenticated,
    /// No session to refresh: no refresh token was sent (401).
    NotSignedIn,
    /// The token is malformed, forged or revoked (401).
    InvalidToken,
    /// The token's lifetime is over (401).
    TokenExpired,
    /// A rotated refresh token was used again: the whole session was revoked (401).
    TokenReused,
    /// Wrong login or password (401).
    InvalidCredentials,
    /// The caller's role does not allow this (403).
    Forbidden,
    /// Registration is switched off (403).
    RegistrationClosed,
    /// The account is disabled (403).
    AccountDisabled,
    /// Too many failed logins on this account: it is locked for a while, see `Retry-After` (429).
    AccountLocked,
    /// The password was right; the account has 2FA: send `totp_code` or `recovery_code` (401).
    TotpRequired,
    /// The authenticator or recovery code is wrong, expired or already used (401).
    InvalidTotp,
    /// 2FA is already on for this account (disable it first) (409).
    TotpAlreadyEnabled,
    /// 2FA has not been set up (`POST /auth/2fa/setup` first) or is not on (409).
    TotpNotSetUp,
    /// The account's role requires 2FA and it has none yet: only its own account's routes
    /// (2FA setup first) answer until it is set up (403).
    TotpSetupRequired,
    /// Registration is by invitation: send an invitation's token as `invite` (403).
    InviteRequired,
    /// The invitation or reset link is unknown, expired or already used (400).
    InvalidLink,
    /// The email belongs to another account (409).
    EmailTaken,
    /// The username belongs to another account (409).
    UsernameTaken,
    /// The password is too weak (422).
    WeakPassword,

    // --- Conversations and answers.
    /// The message is not in this conversation (404).
    MessageNotFound,
    /// An answer is already being written in this conversation (409).
    GenerationInProgress,
    /// There is no answer to regenerate (409).
    NothingToRegenerate,
    /// The prompt cannot fit the model's context window (422).
    PromptTooLong,
    /// The server is shutting down (503, or the last event of a stream).
    ShuttingDown,
    /// The answer could not be stored.
    StorageError,

    // --- Documents.
    /// The file is not of a type Enclave reads (decided from its bytes) (415).
    UnsupportedFileType,
    /// The file is empty (422).
    EmptyFile,
    /// The document is being ingested; retry after it ends (409).
    DocumentBusy,
    /// No embedding model can serve (none configured, or it failed to load) (503).
    EmbeddingUnavailable,

    // --- Images.
    /// The image is over the size limit (413).
    ImageTooLarge,
    /// Not an image format Enclave accepts (PNG, JPEG, WebP, GIF), decided from its bytes; the
    /// message names the format when it is a known one (HEIC, SVG...) (415).
    UnsupportedImageFormat,
    /// The image's width, height or decoded size is over the decode limits (422).
    ImageDimensionsTooLarge,
    /// The image is truncated or corrupt (422).
    ImageUnreadable,
    /// No such image, or not the caller's (404).
    ImageNotFound,
    /// The image is attached to a message; delete its conversation instead (409).
    ImageInUse,
    /// More images in one message than the configured maximum (422).
    TooManyImages,
    /// An image given by a URL other than a `data:` URL: the server never fetches one (422).
    ImageUrlNotAllowed,
    /// The message has images and neither its model nor a configured vision model can see
    /// (400, before any streaming).
    ModelCannotSee,

    // --- Models and providers.
    /// No model with that id (422 or 404).
    ModelNotFound,
    /// The model exists but cannot answer now: loading, failed, no API key (503).
    ModelUnavailable,
    /// Too many requests: a provider asked us to slow down, or this server's limit on the
    /// caller (requests per user, failed logins per address) is spent; see `Retry-After` (429).
    RateLimited,
    /// The local model's queue is full; retry shortly (503).
    Overloaded,
    /// The provider refused the request as malformed.
    ProviderRejected,
    /// The provider refused our credentials.
    ProviderUnauthorized,
    /// The provider cannot do what was asked.
    Unsupported,
    /// The provider failed in a way we could not classify.
    ProviderError,

    // --- Client side only: never sent by the server.
    /// The server could not be reached (the web UI's own code).
    Network,
    /// The server's answer could not be read (the web UI's own code).
    BadResponse,
    /// A code this build does not know.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// Every code, for tests and documentation.
    pub const ALL: [ErrorCode; 59] = [
        ErrorCode::ValidationError,
        ErrorCode::MalformedJson,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::PayloadTooLarge,
        ErrorCode::BadRequest,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::NotSupportedYet,
        ErrorCode::InternalError,
        ErrorCode::Unauthenticated,
        ErrorCode::NotSignedIn,
        ErrorCode::InvalidToken,
        ErrorCode::TokenExpired,
        ErrorCode::TokenReused,
        ErrorCode::InvalidCredentials,
        ErrorCode::Forbidden,
        ErrorCode::RegistrationClosed,
        ErrorCode::AccountDisabled,
        ErrorCode::AccountLocked,
        ErrorCode::TotpRequired,
        ErrorCode::InvalidTotp,
        ErrorCode::TotpAlreadyEnabled,
        ErrorCode::TotpNotSetUp,
        ErrorCode::TotpSetupRequired,
        ErrorCode::InviteRequired,
        ErrorCode::InvalidLink,
        ErrorCode::EmailTaken,
        ErrorCode::UsernameTaken,
        ErrorCode::WeakPassword,
        ErrorCode::MessageNotFound,
        ErrorCode::GenerationInProgress,
        ErrorCode::NothingToRegenerate,
        ErrorCode::PromptTooLong,
        ErrorCode::ShuttingDown,
        ErrorCode::StorageError,
        ErrorCode::UnsupportedFileType,
        ErrorCode::EmptyFile,
        ErrorCode::DocumentBusy,
        ErrorCode::EmbeddingUnavailable,
        ErrorCode::ImageTooLarge,
        ErrorCode::UnsupportedImageFormat,
        ErrorCode::ImageDimensionsTooLarge,
        ErrorCode::ImageUnreadable,
        ErrorCode::ImageNotFound,
        ErrorCode::ImageInUse,
        ErrorCode::TooManyImages,
        ErrorCode::ImageUrlNotAllowed,
        ErrorCode::ModelCannotSee,
        ErrorCode::ModelNotFound,
        ErrorCode::ModelUnavailable,
        ErrorCode::RateLimited,
        ErrorCode::Overloaded,
        ErrorCode::ProviderRejected,
        ErrorCode::ProviderUnauthorized,
        ErrorCode::Unsupported,
        ErrorCode::ProviderError,
        ErrorCode::Network,
        ErrorCode::BadResponse,
        ErrorCode::Unknown,
    ];

    /// The code as it appears on the wire (`RATE_LIMITED`).
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            ValidationError => "VALIDATION_ERROR",
            MalformedJson => "MALFORMED_JSON",
            UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            BadRequest => "BAD_REQUEST",
            NotFound => "NOT_FOUND",
            MethodNotAllowed => "METHOD_NOT_ALLOWED",
            NotSupportedYet => "NOT_SUPPORTED_YET",
            InternalError => "INTERNAL_ERROR",
            Unauthenticated => "UNAUTHENTICATED",
            NotSignedIn => "NOT_SIGNED_IN",
            InvalidToken => "INVALID_TOKEN",
            TokenExpired => "TOKEN_EXPIRED",
            TokenReused => "TOKEN_REUSED",
            InvalidCredentials => "INVALID_CREDENTIALS",
            Forbidden => "FORBIDDEN",
            RegistrationClosed => "REGISTRATION_CLOSED",
            AccountDisabled => "ACCOUNT_DISABLED",
            AccountLocked => "ACCOUNT_LOCKED",
            TotpRequired => "TOTP_REQUIRED",
            InvalidTotp => "INVALID_TOTP",
            TotpAlreadyEnabled => "TOTP_ALREADY_ENABLED",
            TotpNotSetUp => "TOTP_NOT_SET_UP",
            TotpSetupRequired => "TOTP_SETUP_REQUIRED",
            InviteRequired => "INVITE_REQUIRED",
            InvalidLink => "INVALID_LINK",
            EmailTaken => "EMAIL_TAKEN",
            UsernameTaken => "USERNAME_TAKEN",
            WeakPassword => "WEAK_PASSWORD",
            MessageNotFound => "MESSAGE_NOT_FOUND",
            GenerationInProgress => "GENERATION_IN_PROGRESS",
            NothingToRegenerate => "NOTHING_TO_REGENERATE",
            PromptTooLong => "PROMPT_TOO_LONG",
            ShuttingDown => "SHUTTING_DOWN",
            StorageError => "STORAGE_ERROR",
            UnsupportedFileType => "UNSUPPORTED_FILE_TYPE",
            EmptyFile => "EMPTY_FILE",
            DocumentBusy => "DOCUMENT_BUSY",
            EmbeddingUnavailable => "EMBEDDING_UNAVAILABLE",
            ImageTooLarge => "IMAGE_TOO_LARGE",
            UnsupportedImageFormat => "UNSUPPORTED_IMAGE_FORMAT",
            ImageDimensionsTooLarge => "IMAGE_DIMENSIONS_TOO_LARGE",
            ImageUnreadable => "IMAGE_UNREADABLE",
            ImageNotFound => "IMAGE_NOT_FOUND",
            ImageInUse => "IMAGE_IN_USE",
            TooManyImages => "TOO_MANY_IMAGES",
            ImageUrlNotAllowed => "IMAGE_URL_NOT_ALLOWED",
            ModelCannotSee => "MODEL_CANNOT_SEE",
            ModelNotFound => "MODEL_NOT_FOUND",
            ModelUnavailable => "MODEL_UNAVAILABLE",
            RateLimited => "RATE_LIMITED",
            Overloaded => "OVERLOADED",
            ProviderRejected => "PROVIDER_REJECTED",
            ProviderUnauthorized => "PROVIDER_UNAUTHORIZED",
            Unsupported => "UNSUPPORTED",
            ProviderError => "PROVIDER_ERROR",
            Network => "NETWORK",
            BadResponse => "BAD_RESPONSE",
            Unknown => "UNKNOWN",
        }
    }

    /// Whether the access token should be renewed and the call tried again (an expired or
    /// revoked access token), as opposed to a refusal of the request itself.
    pub fn is_token_problem(self) -> bool {
        matches!(
            self,
            ErrorCode::TokenExpired | ErrorCode::InvalidToken | ErrorCode::Unauthenticated
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every error answer and the data of every `error` stream event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// For people.
    pub error: String,
    /// For programs.
    pub code: ErrorCode,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_their_wire_names() {
        for code in ErrorCode::ALL {
            assert_eq!(serde_json::to_string(&code).unwrap(), format!("\"{}\"", code.as_str()));
            let back: ErrorCode = serde_json::from_str(&format!("\"{}\"", code.as_str())).unwrap();
            assert_eq!(back, code);
        }
    }

    #[test]
    fn an_unknown_code_reads_as_unknown_and_the_body_still_parses() {
        let body: ErrorBody = serde_json::from_str(r#"{"error": "new", "code": "SOMETHING_NEW"}"#).unwrap();
        assert_eq!(body.code, ErrorCode::Unknown);
        assert_eq!(body.error, "new");
    }
}
