//! The one error type of the HTTP layer: `{"error": "...", "code": "SNAKE_CASE"}` with a status,
//! and the mapping of every room's errors onto it.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use enclave_protocol::{ErrorBody, ErrorCode};

use crate::auth::AuthError;
use crate::chat::ChatError;
use crate::documents::DocumentError;
use crate::images::ImageError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// For people.
    pub message: String,
    /// Seconds to wait before trying again, sent as `Retry-After` (limits, lockouts, overload).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same error, telling the client to wait `seconds` (at least 1) before trying again.
    pub fn with_retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after = Some(seconds.max(1));
        self
    }

    /// 422 with a field problem.
    pub fn validation(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::ValidationError, message)
    }

    /// 404 for something that does not exist or is not the caller's.
    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, format!("{what} not found"))
    }

    /// 500 without details (they go to the log, not the client).
    pub fn internal(context: &str, error: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(error = %error, "{context}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::InternalError,
            "internal error; see the server log",
        )
    }

    /// The body every error answer and every `error` stream event carries.
    pub fn body(code: ErrorCode, message: &str) -> ErrorBody {
        ErrorBody {
            error: message.to_owned(),
            code,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(ApiError::body(self.code, &self.message))).into_response();
        // For layers that act on some refusals (the audit of denied access).
        response.extensions_mut().insert(self.code);
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(seconds));
        }
        response
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        use ErrorCode as C;
        use StatusCode as S;
        let (status, code) = match &e {
            AuthError::InvalidCredentials => (S::UNAUTHORIZED, C::InvalidCredentials),
            AuthError::RegistrationClosed => (S::FORBIDDEN, C::RegistrationClosed),
            AuthError::EmailTaken => (S::CONFLICT, C::EmailTaken),
            AuthError::UsernameTaken => (S::CONFLICT, C::UsernameTaken),
            AuthError::Invalid(_) => (S::UNPROCESSABLE_ENTITY, C::ValidationError),
            AuthError::WeakPassword(_) => (S::UNPROCESSABLE_ENTITY, C::WeakPassword),
            AuthError::InvalidToken => (S::UNAUTHORIZED, C::InvalidToken),
            AuthError::TokenExpired => (S::UNAUTHORIZED, C::TokenExpired),
            AuthError::TokenReused { .. } => (S::UNAUTHORIZED, C::TokenReused),
            AuthError::AccountDisabled => (S::FORBIDDEN, C::AccountDisabled),
            AuthError::SessionNotFound => (S::NOT_FOUND, C::NotFound),
            AuthError::TotpRequired => (S::UNAUTHORIZED, C::TotpRequired),
            AuthError::Forbidden(_) => (S::FORBIDDEN, C::Forbidden),
            AuthError::UserNotFound | AuthError::LinkNotFound => (S::NOT_FOUND, C::NotFound),
            AuthError::InviteRequired => (S::FORBIDDEN, C::InviteRequired),
            AuthError::InvalidLink => (S::BAD_REQUEST, C::InvalidLink),
            AuthError::InvalidTotp => (S::UNAUTHORIZED, C::InvalidTotp),
            AuthError::TotpAlreadyEnabled => (S::CONFLICT, C::TotpAlreadyEnabled),
            AuthError::TotpNotSetUp => (S::CONFLICT, C::TotpNotSetUp),
            AuthError::AccountLocked { retry_after } => {
                return ApiError::new(S::TOO_MANY_REQUESTS, C::AccountLocked, e.to_string())
                    .with_retry_after(seconds_up(*retry_after))
            }
            AuthError::RateLimited { retry_after } => {
                return ApiError::new(S::TOO_MANY_REQUESTS, C::RateLimited, e.to_string())
                    .with_retry_after(seconds_up(*retry_after))
            }
            AuthError::Busy => {
                return ApiError::new(S::SERVICE_UNAVAILABLE, C::Overloaded, e.to_string()).with_retry_after(1)
            }
            AuthError::Store(inner) => return ApiError::internal("store failure", inner),
            AuthError::Hashing => return ApiError::internal("hashing failure", &e),
            AuthError::TotpSecret => return ApiError::internal("2FA setup failure", &e),
        };
        ApiError::new(status, code, e.to_string())
    }
}

/// Whole seconds, rounded up (a `Retry-After` of 0 would invite an immediate retry).
fn seconds_up(wait: std::time::Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

impl From<ChatError> for ApiError {
    fn from(e: ChatError) -> Self {
        use ErrorCode as C;
        use StatusCode as S;
        let (status, code) = match &e {
            ChatError::ConversationNotFound => (S::NOT_FOUND, C::NotFound),
            ChatError::MessageNotFound => (S::NOT_FOUND, C::MessageNotFound),
            ChatError::Invalid(_) => (S::UNPROCESSABLE_ENTITY, C::ValidationError),
            ChatError::Busy => (S::CONFLICT, C::GenerationInProgress),
            ChatError::NothingToRegenerate => (S::CONFLICT, C::NothingToRegenerate),
            ChatError::PromptTooLong { .. } => (S::UNPROCESSABLE_ENTITY, C::PromptTooLong),
            ChatError::UnknownModel(_) => (S::UNPROCESSABLE_ENTITY, C::ModelNotFound),
            ChatError::ShuttingDown => (S::SERVICE_UNAVAILABLE, C::ShuttingDown),
            ChatError::DocumentNotFound => (S::NOT_FOUND, C::NotFound),
            ChatError::DocumentsUnavailable(_) => (S::SERVICE_UNAVAILABLE, C::EmbeddingUnavailable),
            ChatError::CannotSee(_) => (S::BAD_REQUEST, C::ModelCannotSee),
            ChatError::Image(inner) => return inner.clone().into(),
            ChatError::Store(inner) => return ApiError::internal("store failure", inner),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<axum::extract::multipart::MultipartError> for ApiError {
    /// A multipart body that broke off or grew past its route's limit.
    fn from(error: axum::extract::multipart::MultipartError) -> Self {
        if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                "the upload is too large",
            );
        }
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            format!("malformed multipart body: {}", error.body_text()),
        )
    }
}

impl From<ImageError> for ApiError {
    fn from(e: ImageError) -> Self {
        use StatusCode as S;
        let status = match &e {
            ImageError::TooLarge { .. } => S::PAYLOAD_TOO_LARGE,
            ImageError::UnsupportedFormat(_) => S::UNSUPPORTED_MEDIA_TYPE,
            ImageError::DimensionsTooLarge { .. } | ImageError::Unreadable(_) | ImageError::TooMany { .. } => {
                S::UNPROCESSABLE_ENTITY
            }
            ImageError::NotFound => S::NOT_FOUND,
            ImageError::InUse => S::CONFLICT,
            ImageError::Storage(inner) => return ApiError::internal("image storage failure", inner),
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<DocumentError> for ApiError {
    fn from(e: DocumentError) -> Self {
        use ErrorCode as C;
        use StatusCode as S;
        let (status, code) = match &e {
            DocumentError::NotFound => (S::NOT_FOUND, C::NotFound),
            DocumentError::Invalid(_) => (S::UNPROCESSABLE_ENTITY, C::ValidationError),
            DocumentError::TooLarge { .. } => (S::PAYLOAD_TOO_LARGE, C::PayloadTooLarge),
            DocumentError::UnsupportedType => (S::UNSUPPORTED_MEDIA_TYPE, C::UnsupportedFileType),
            DocumentError::Empty => (S::UNPROCESSABLE_ENTITY, C::EmptyFile),
            DocumentError::Busy => (S::CONFLICT, C::DocumentBusy),
            DocumentError::EmbeddingUnavailable(_) => (S::SERVICE_UNAVAILABLE, C::EmbeddingUnavailable),
            DocumentError::RerankUnavailable(_) => (S::SERVICE_UNAVAILABLE, C::ModelUnavailable),
            DocumentError::Store(inner) => return ApiError::internal("store failure", inner),
            DocumentError::Vectors(inner) => return ApiError::internal("vector store failure", inner),
            DocumentError::Io(inner) => return ApiError::internal("file storage failure", inner),
        };
        ApiError::new(status, code, e.to_string())
    }
}
