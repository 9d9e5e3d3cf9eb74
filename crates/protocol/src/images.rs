//! `/api/v1/images`: images uploaded to be attached to messages, and how a message names them.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ErrorCode;

/// A stored image: always a PNG without metadata, upright, within the pixel budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    /// Its id (for `attachments` and `GET /images/{id}`).
    pub id: Uuid,
    /// Width in pixels, as stored.
    pub width: u32,
    /// Height in pixels, as stored.
    pub height: u32,
    /// Bytes of the stored PNG.
    pub size_bytes: u64,
    /// Always `image/png`: every upload is re-encoded.
    pub media_type: String,
    /// The conversation it is attached to, once a message carries it.
    pub conversation_id: Option<Uuid>,
    /// Upload time, RFC 3339.
    pub created_at: String,
}

/// One part of an image upload, in the order sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ImageUploadPart {
    /// Stored.
    Accepted {
        /// The image.
        #[serde(flatten)]
        image: Image,
    },
    /// Refused; the other parts are not affected.
    Refused {
        /// The name the part was sent under.
        filename: String,
        /// For people.
        error: String,
        /// For programs (`IMAGE_TOO_LARGE`, `UNSUPPORTED_IMAGE_FORMAT`...).
        code: ErrorCode,
    },
}

/// `POST /images`: 201 with one entry per part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageUploadResponse {
    /// The parts.
    pub images: Vec<ImageUploadPart>,
}

/// Something a message carries besides its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Attachment {
    /// An image uploaded with `POST /images`.
    Image {
        /// Its id.
        image_id: Uuid,
    },
}
