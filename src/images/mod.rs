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

pub mod detect;
pub mod normalize;

pub use detect::{detect, ImageKind};
pub use normalize::{normalize, ImageLimits, NormalizedImage};

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
}

impl ImageError {
    /// The stable code of this error in API responses.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "IMAGE_TOO_LARGE",
            Self::UnsupportedFormat(_) => "UNSUPPORTED_IMAGE_FORMAT",
            Self::DimensionsTooLarge { .. } => "IMAGE_DIMENSIONS_TOO_LARGE",
            Self::Unreadable(_) => "IMAGE_UNREADABLE",
        }
    }
}
