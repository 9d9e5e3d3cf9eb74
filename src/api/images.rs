//! `/api/v1/images`: upload (multipart, each part checked on its own), the stored PNG to its
//! owner, its description, delete (before it is sent). Extract, call the images service, map.

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use enclave_protocol::{AuditAction, ErrorCode, Image, ImageUploadPart, ImageUploadResponse};

use super::audit::audited;
use super::error::ApiError;
use super::extract::{Authenticated, ClientInfo, IdPath};
use super::{rfc3339, AppState};
use crate::audit::AuditEvent;
use crate::auth::roles::Permission;
use crate::images::ImageError;
use crate::store::ImageRecord;

/// An image record as the API shows it.
fn image_view(record: ImageRecord) -> Image {
    Image {
        id: record.id,
        width: record.width,
        height: record.height,
        size_bytes: record.size_bytes,
        media_type: "image/png".into(),
        conversation_id: record.conversation_id,
        created_at: rfc3339(record.created_at),
    }
}

/// `POST /images`: every part named `file` is checked, re-encoded and stored (or refused on
/// its own); 201 with one entry per part, in order. At most `max_images_per_message` parts.
pub async fn upload(
    State(state): State<AppState>,
    caller: Authenticated,
    ClientInfo(client): ClientInfo,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let user = caller.require(Permission::Chat)?;
    let mut multipart = super::multipart::required(multipart, "images")?;
    let limit = state.images.max_bytes();
    let most = state.images.max_per_message();
    let mut parts = Vec::new();
    while let Some(mut field) = multipart.next_field().await? {
        let name = field.name().unwrap_or_default().to_owned();
        let filename = crate::documents::display_name(field.file_name().unwrap_or("image"));
        let refuse = |code: ErrorCode, error: String| ImageUploadPart::Refused {
            filename: filename.clone(),
            error,
            code,
        };
        if name != "file" {
            parts.push(refuse(
                ErrorCode::ValidationError,
                format!("unexpected form field {name:?}; send images as \"file\""),
            ));
            super::multipart::drain(&mut field).await?;
            continue;
        }
        if parts.len() >= most {
            let error = ImageError::TooMany {
                count: parts.len() + 1,
                limit: most,
            };
            parts.push(refuse(error.code(), error.to_string()));
            super::multipart::drain(&mut field).await?;
            continue;
        }
        let bytes = match super::multipart::read_within(&mut field, limit).await? {
            Ok(bytes) => bytes,
            Err(size) => {
                let error = ImageError::TooLarge { size, limit };
                parts.push(refuse(error.code(), error.to_string()));
                continue;
            }
        };
        let size = bytes.len();
        let uploaded = state.images.upload(user.user_id, bytes).await;
        let event = AuditEvent::new(AuditAction::ImageUpload)
            .by(user.user_id)
            .from_client(&client)
            .with(serde_json::json!({ "size_bytes": size }));
        let event = match &uploaded {
            Ok(record) => event.on(format!("image/{}", record.id)),
            Err(_) => event,
        };
        match audited(&state, event, uploaded) {
            Ok(record) => parts.push(ImageUploadPart::Accepted {
                image: image_view(record),
            }),
            Err(error) => {
                if error.status.is_server_error() {
                    return Err(error);
                }
                parts.push(refuse(error.code, error.message));
            }
        }
    }
    if parts.is_empty() {
        return Err(ApiError::validation("send at least one image as a part named \"file\""));
    }
    Ok((StatusCode::CREATED, Json(ImageUploadResponse { images: parts })).into_response())
}

/// `GET /images/{id}`: the stored PNG, to its owner only, never cached by shared caches and
/// never run as anything but an image.
pub async fn file(
    State(state): State<AppState>,
    caller: Authenticated,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    let user = caller.require(Permission::ReadOwn)?;
    let (_, png) = state.images.get(user.user_id, id).await?;
    let mut response = png.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    Ok(response)
}

/// `GET /images/{id}/info`: its size and where it is attached.
pub async fn info(
    State(state): State<AppState>,
    caller: Authenticated,
    IdPath(id): IdPath,
) -> Result<impl IntoResponse, ApiError> {
    let user = caller.require(Permission::ReadOwn)?;
    Ok(Json(image_view(state.images.record(user.user_id, id)?)))
}

/// `DELETE /images/{id}`: an image not yet sent (a sent one goes with its conversation).
pub async fn delete(
    State(state): State<AppState>,
    caller: Authenticated,
    ClientInfo(client): ClientInfo,
    IdPath(id): IdPath,
) -> Result<impl IntoResponse, ApiError> {
    let user = caller.require(Permission::Chat)?;
    let event = AuditEvent::new(AuditAction::ImageDelete)
        .by(user.user_id)
        .on(format!("image/{id}"))
        .from_client(&client);
    audited(&state, event, state.images.delete(user.user_id, id).await)?;
    Ok(StatusCode::NO_CONTENT)
}
