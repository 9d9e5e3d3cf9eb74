//! The one error type of the HTTP layer: `{"error": "...", "code": "SNAKE_CASE"}` with a status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::auth::AuthError;
use crate::chat::ChatError;
use crate::store::StoreError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// For people.
    pub message: String,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 422 with a field problem.
    pub fn validation(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR", message)
    }

    /// 404 for something that does not exist or is not the caller's.
    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", format!("{what} not found"))
    }

    /// 500 without details (they go to the log, not the client).
    pub fn internal(context: &str, error: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(error = %error, "{context}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "internal error; see the server log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = super::messages::ErrorData {
            error: &self.message,
            code: self.code,
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::not_found("resource"),
            other => ApiError::internal("store failure", &other),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        use StatusCode as S;
        let (status, code) = match &e {
            AuthError::InvalidCredentials => (S::UNAUTHORIZED, "INVALID_CREDENTIALS"),
            AuthError::RegistrationClosed => (S::FORBIDDEN, "REGISTRATION_CLOSED"),
            AuthError::EmailTaken => (S::CONFLICT, "EMAIL_TAKEN"),
            AuthError::UsernameTaken => (S::CONFLICT, "USERNAME_TAKEN"),
            AuthError::Invalid(_) => (S::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR"),
            AuthError::WeakPassword(_) => (S::UNPROCESSABLE_ENTITY, "WEAK_PASSWORD"),
            AuthError::InvalidToken => (S::UNAUTHORIZED, "INVALID_TOKEN"),
            AuthError::TokenExpired => (S::UNAUTHORIZED, "TOKEN_EXPIRED"),
            AuthError::TokenReused => (S::UNAUTHORIZED, "TOKEN_REUSED"),
            AuthError::AccountDisabled => (S::FORBIDDEN, "ACCOUNT_DISABLED"),
            AuthError::Store(inner) => return ApiError::internal("store failure", inner),
            AuthError::Hashing => return ApiError::internal("hashing failure", &e),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<ChatError> for ApiError {
    fn from(e: ChatError) -> Self {
        use StatusCode as S;
        let (status, code) = match &e {
            ChatError::ConversationNotFound => (S::NOT_FOUND, "NOT_FOUND"),
            ChatError::MessageNotFound => (S::NOT_FOUND, "MESSAGE_NOT_FOUND"),
            ChatError::Invalid(_) => (S::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR"),
            ChatError::Busy => (S::CONFLICT, "GENERATION_IN_PROGRESS"),
            ChatError::NothingToRegenerate => (S::CONFLICT, "NOTHING_TO_REGENERATE"),
            ChatError::PromptTooLong { .. } => (S::UNPROCESSABLE_ENTITY, "PROMPT_TOO_LONG"),
            ChatError::UnknownModel(_) => (S::UNPROCESSABLE_ENTITY, "MODEL_NOT_FOUND"),
            ChatError::ShuttingDown => (S::SERVICE_UNAVAILABLE, "SHUTTING_DOWN"),
            ChatError::Store(inner) => return ApiError::internal("store failure", inner),
        };
        ApiError::new(status, code, e.to_string())
    }
}
