//! An image's format from its first bytes.

use super::ImageError;

/// The formats an image is accepted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// PNG.
    Png,
    /// JPEG.
    Jpeg,
    /// WebP (lossy or lossless).
    WebP,
    /// GIF (the first frame is used).
    Gif,
}

impl ImageKind {
    /// The `image` crate's name for the format.
    pub(crate) fn format(self) -> image::ImageFormat {
        match self {
            Self::Png => image::ImageFormat::Png,
            Self::Jpeg => image::ImageFormat::Jpeg,
            Self::WebP => image::ImageFormat::WebP,
            Self::Gif => image::ImageFormat::Gif,
        }
    }
}

/// The format of `bytes`, decided by their magic numbers; formats we refuse are named in the
/// error (HEIC/HEIF/AVIF, SVG, TIFF, BMP, ICO, PDF), anything else is "an unknown format".
pub fn detect(bytes: &[u8]) -> Result<ImageKind, ImageError> {
    let refuse = |name: &str| Err(ImageError::UnsupportedFormat(name.to_string()));
    match bytes {
        [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => Ok(ImageKind::Png),
        [0xFF, 0xD8, 0xFF, ..] => Ok(ImageKind::Jpeg),
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => Ok(ImageKind::WebP),
        [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => Ok(ImageKind::Gif),
        // ISO base media files: the brand after `ftyp` says which.
        [_, _, _, _, b'f', b't', b'y', b'p', brand @ ..] if brand.len() >= 4 => match &brand[..4] {
            b"avif" | b"avis" => refuse("AVIF"),
            _ => refuse("HEIC"),
        },
        [b'I', b'I', 0x2A, 0x00, ..] | [b'M', b'M', 0x00, 0x2A, ..] => refuse("TIFF"),
        [b'B', b'M', ..] => refuse("BMP"),
        [0x00, 0x00, 0x01, 0x00, ..] => refuse("ICO"),
        [b'%', b'P', b'D', b'F', ..] => refuse("PDF"),
        _ if looks_like_svg(bytes) => refuse("SVG"),
        _ => refuse("an unknown format"),
    }
}

/// Whether the text at the start of `bytes` (past a byte-order mark, whitespace, an XML
/// declaration or comments) opens an `<svg` element.
fn looks_like_svg(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(4096)];
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    text.trim_start_matches('\u{feff}').trim_start().starts_with('<') && text.contains("<svg")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_formats_are_told_by_their_bytes() {
        assert_eq!(detect(b"\x89PNG\r\n\x1a\n rest").unwrap(), ImageKind::Png);
        assert_eq!(detect(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0]).unwrap(), ImageKind::Jpeg);
        assert_eq!(detect(b"RIFF\x10\0\0\0WEBPVP8 ").unwrap(), ImageKind::WebP);
        assert_eq!(detect(b"GIF89a....").unwrap(), ImageKind::Gif);
        assert_eq!(detect(b"GIF87a....").unwrap(), ImageKind::Gif);
    }

    #[test]
    fn refused_formats_are_named() {
        let name = |bytes: &[u8]| match detect(bytes) {
            Err(ImageError::UnsupportedFormat(name)) => name,
            other => panic!("{other:?}"),
        };
        assert_eq!(name(b"\0\0\0\x18ftypheic\0\0\0\0"), "HEIC");
        assert_eq!(name(b"\0\0\0\x18ftypmif1\0\0\0\0"), "HEIC");
        assert_eq!(name(b"\0\0\0\x1cftypavif\0\0\0\0"), "AVIF");
        assert_eq!(
            name(b"<?xml version=\"1.0\"?>\n<!-- x -->\n<svg xmlns=\"http://www.w3.org/2000/svg\"/>"),
            "SVG"
        );
        assert_eq!(name(b"  <SVG width=\"1\"></SVG>"), "SVG");
        assert_eq!(name(b"II*\0\x08\0\0\0"), "TIFF");
        assert_eq!(name(b"BM\x3a\0\0\0"), "BMP");
        assert_eq!(name(b"%PDF-1.7"), "PDF");
        assert_eq!(name(b"hello"), "an unknown format");
        assert_eq!(name(b""), "an unknown format");
        // A PNG signature after other bytes (a polyglot's second half) is not a PNG.
        assert_eq!(name(b"hello\x89PNG\r\n\x1a\n"), "an unknown format");
    }
}
