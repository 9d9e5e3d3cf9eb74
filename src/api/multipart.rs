//! Multipart uploads shared by documents and images: the body must be multipart, and each part
//! is read up to its limit (past it, drained and refused alone, so the other parts go on).

use axum::extract::multipart::{Field, MultipartRejection};
use axum::extract::Multipart;
use axum::http::StatusCode;
use enclave_protocol::ErrorCode;

use super::error::ApiError;

/// The multipart body, or `415` saying how to send `what` (`files`, `images`).
pub(super) fn required(multipart: Result<Multipart, MultipartRejection>, what: &str) -> Result<Multipart, ApiError> {
    multipart.map_err(|rejection| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            format!(
                "send the {what} as multipart/form-data parts named \"file\" ({})",
                rejection.body_text()
            ),
        )
    })
}

/// A part's bytes when they fit `limit`; else `Err` with its whole size (the rest is drained).
pub(super) async fn read_within(field: &mut Field<'_>, limit: usize) -> Result<Result<Vec<u8>, usize>, ApiError> {
    let mut bytes = Vec::new();
    let mut size = 0usize;
    while let Some(chunk) = field.chunk().await? {
        size += chunk.len();
        if size <= limit {
            bytes.extend_from_slice(&chunk);
        } else {
            bytes = Vec::new();
        }
    }
    Ok(if size <= limit { Ok(bytes) } else { Err(size) })
}

/// Drains a part that is refused without being read.
pub(super) async fn drain(field: &mut Field<'_>) -> Result<(), ApiError> {
    while field.chunk().await?.is_some() {}
    Ok(())
}
