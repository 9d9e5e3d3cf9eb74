//! Images that users attach to messages: what is accepted, and the one form every accepted
//! image is turned into before it is stored or sent anywhere.
//!
//! An upload is judged by its bytes, never by its name or declared type ([`detect`]): PNG,
//! JPEG, WebP and GIF (its first frame) are accepted; HEIC, SVG and the other formats a phone
//! or a browser may produce are refused by name. An accepted image is decoded under limits
//! (bytes, width, height, memory: a 60000 × 60000 header is refused before any pixel is
//! allocated), turned upright by its EXIF orientation, scaled down to a pixel budget, and
//! re-encoded as PNG ([`normalize`]): the stored and forwarded image carries no metadata at all
//! (EXIF, GPS, ICC, comments and text chunks are gone because nothing but the pixels is
//! written back).

//!
//! The [`ImageService`] keeps them: stored by id under the data dir, shown to their owner
//! only, carried by at most one conversation (and deleted with it), never-sent uploads swept
//! after a day; and it hands the chat service the [`PromptImage`]s a model is sent.

pub mod detect;
pub mod normalize;
mod service;

use std::sync::Arc;

use base64::Engine;

pub use detect::{detect, ImageKind};
pub use normalize::{normalize, ImageLimits, NormalizedImage};
pub use service::{ImageService, ImageSettings};

use enclave_protocol::ErrorCode;

/// An image as a model receives it: the stored PNG and what a prompt needs to know of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptImage {
    /// The PNG's bytes (shared: a prompt is cloned for fallbacks).
    pub png: Arc<[u8]>,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// SHA-256 of the PNG, hex: the same picture has the same key.
    pub sha256: String,
}

impl PromptImage {
    /// An image from a normalized one.
    pub fn from_normalized(image: NormalizedImage) -> Self {
        use sha2::Digest;
        let sha256 = format!("{:x}", sha2::Sha256::digest(&image.png));
        Self {
            png: image.png.into(),
            width: image.width,
            height: image.height,
            sha256,
        }
    }

    /// Its media type (always PNG: every image is re-encoded).
    pub fn media_type(&self) -> &'static str {
        "image/png"
    }

    /// Its bytes in standard base64, as the providers' wire formats carry them.
    pub fn base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.png)
    }

    /// As a `data:` URL (OpenAI's `image_url`).
    pub fn data_url(&self) -> String {
        format!("data:{};base64,{}", self.media_type(), self.base64())
    }
}

/// Why an image was refused. Each has a stable code for the API's error body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// More bytes than the upload limit.
    #[error("the image is {size} bytes, more than the limit of {limit}")]
    TooLarge {
        /// The upload's size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A format we do not accept, named when we recognise it.
    #[error("{0} images are not accepted (PNG, JPEG, WebP or GIF)")]
    UnsupportedFormat(String),
    /// Wider, taller or larger in memory than the decode limits allow.
    #[error("the image is {width} x {height} pixels, more than the limits allow")]
    DimensionsTooLarge {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
    },
    /// Truncated or corrupt data.
    #[error("the image could not be read: {0}")]
    Unreadable(String),
    /// No such image, or another user's.
    #[error("image not found")]
    NotFound,
    /// A message carries it.
    #[error("the image is attached to a message; it is deleted with its conversation")]
    InUse,
    /// More images in one message than allowed.
    #[error("a message may carry at most {limit} images, this one has {count}")]
    TooMany {
        /// Images sent.
        count: usize,
        /// The configured maximum.
        limit: usize,
    },
    /// The disk or the records failed (details in the server log).
    #[error("image storage failed: {0}")]
    Storage(String),
}

impl ImageError {
    /// The stable code of this error in API responses.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::TooLarge { .. } => ErrorCode::ImageTooLarge,
            Self::UnsupportedFormat(_) => ErrorCode::UnsupportedImageFormat,
            Self::DimensionsTooLarge { .. } => ErrorCode::ImageDimensionsTooLarge,
            Self::Unreadable(_) => ErrorCode::ImageUnreadable,
            Self::NotFound => ErrorCode::ImageNotFound,
            Self::InUse => ErrorCode::ImageInUse,
            Self::TooMany { .. } => ErrorCode::TooManyImages,
            Self::Storage(_) => ErrorCode::InternalError,
        }
    }
}
