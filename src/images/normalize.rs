//! Decoding an accepted image under limits and writing it back as a plain, upright PNG.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageReader};

use super::{detect, ImageError, ImageKind};

/// What an image may be. The defaults: 20 MB uploaded, 16,384 pixels a side and 512 MiB
/// decoded at most, scaled down to about 1.6 megapixels (Qwen-VL's default budget is
/// 1,003,520 pixels after its own resizing; the model resizes again to its patch grid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// Bytes of an upload.
    pub max_bytes: usize,
    /// Pixels of either side, as declared in the header.
    pub max_side: u32,
    /// Bytes the decoded pixels may take.
    pub max_decoded_bytes: u64,
    /// Pixels (width × height) kept: larger images are scaled down to fit, aspect kept.
    pub max_pixels: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        Self {
            max_bytes: 20 * 1024 * 1024,
            max_side: 16_384,
            max_decoded_bytes: 512 * 1024 * 1024,
            max_pixels: 1_605_632,
        }
    }
}

/// An accepted image in its stored form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedImage {
    /// The PNG (pixels only: no metadata chunk).
    pub png: Vec<u8>,
    /// Width after orientation and scaling.
    pub width: u32,
    /// Height after orientation and scaling.
    pub height: u32,
    /// The uploaded format.
    pub source: ImageKind,
}

/// Checks, decodes, turns upright (EXIF orientation), scales to `limits.max_pixels` and
/// re-encodes `bytes` as PNG.
pub fn normalize(bytes: &[u8], limits: &ImageLimits) -> Result<NormalizedImage, ImageError> {
    if bytes.len() > limits.max_bytes {
        return Err(ImageError::TooLarge {
            size: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    let kind = detect(bytes)?;
    let reader = || ImageReader::with_format(Cursor::new(bytes), kind.format());
    // The header alone, before any pixel is allocated.
    let (width, height) = reader().into_dimensions().map_err(unreadable)?;
    // Four bytes a pixel: what an RGBA decode takes (16-bit formats are refused by the
    // decoder's own allocation limit below).
    if width > limits.max_side
        || height > limits.max_side
        || u64::from(width) * u64::from(height) * 4 > limits.max_decoded_bytes
    {
        return Err(ImageError::DimensionsTooLarge { width, height });
    }
    let mut reader = reader();
    let mut decode_limits = image::Limits::default();
    decode_limits.max_image_width = Some(limits.max_side);
    decode_limits.max_image_height = Some(limits.max_side);
    decode_limits.max_alloc = Some(limits.max_decoded_bytes);
    reader.limits(decode_limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| limit_or_unreadable(e, width, height))?;
    let orientation = decoder.orientation().map_err(unreadable)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| limit_or_unreadable(e, width, height))?;
    image.apply_orientation(orientation);
    let image = fit_to_budget(image, limits.max_pixels);
    let mut png = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(unreadable)?;
    Ok(NormalizedImage {
        width: image.width(),
        height: image.height(),
        png,
        source: kind,
    })
}

/// `image` scaled down (aspect kept, at least one pixel a side) to at most `max_pixels`.
fn fit_to_budget(image: DynamicImage, max_pixels: u64) -> DynamicImage {
    let (width, height) = (u64::from(image.width()), u64::from(image.height()));
    if width * height <= max_pixels.max(1) {
        return image;
    }
    let scale = (max_pixels as f64 / (width * height) as f64).sqrt();
    let side = |pixels: u64| ((pixels as f64 * scale).floor() as u32).max(1);
    image.resize_exact(side(width), side(height), image::imageops::FilterType::Lanczos3)
}

/// A decoding error as the caller sees it.
fn unreadable(error: image::ImageError) -> ImageError {
    ImageError::Unreadable(error.to_string())
}

/// A limit hit while decoding as [`ImageError::DimensionsTooLarge`], anything else as
/// unreadable.
fn limit_or_unreadable(error: image::ImageError, width: u32, height: u32) -> ImageError {
    match error {
        image::ImageError::Limits(_) => ImageError::DimensionsTooLarge { width, height },
        other => unreadable(other),
    }
}

#[cfg(test)]
mod tests {
    use image::{Rgba, RgbaImage};

    use super::*;

    /// A `width × height` image whose pixels say where they are.
    fn picture(width: u32, height: u32) -> RgbaImage {
        RgbaImage::from_fn(width, height, |x, y| Rgba([(x * 40) as u8, (y * 40) as u8, 200, 255]))
    }

    fn encoded(image: &RgbaImage, format: image::ImageFormat) -> Vec<u8> {
        let mut bytes = Vec::new();
        let image = if format == image::ImageFormat::Jpeg {
            DynamicImage::ImageRgb8(DynamicImage::ImageRgba8(image.clone()).to_rgb8())
        } else {
            DynamicImage::ImageRgba8(image.clone())
        };
        image.write_to(&mut Cursor::new(&mut bytes), format).unwrap();
        bytes
    }

    fn decoded(png: &[u8]) -> RgbaImage {
        image::load_from_memory_with_format(png, image::ImageFormat::Png)
            .unwrap()
            .to_rgba8()
    }

    #[test]
    fn every_accepted_format_comes_out_as_the_same_pixels_in_png() {
        let original = picture(5, 3);
        for format in [
            image::ImageFormat::Png,
            image::ImageFormat::WebP,
            image::ImageFormat::Gif,
        ] {
            let out = normalize(&encoded(&original, format), &ImageLimits::default()).unwrap();
            assert_eq!((out.width, out.height), (5, 3), "{format:?}");
            assert!(out.png.starts_with(b"\x89PNG"), "{format:?}");
            if format != image::ImageFormat::Gif {
                // Lossless formats: the very pixels (GIF quantises colours).
                assert_eq!(decoded(&out.png), original, "{format:?}");
            }
        }
        let jpeg = normalize(&encoded(&original, image::ImageFormat::Jpeg), &ImageLimits::default()).unwrap();
        assert_eq!((jpeg.width, jpeg.height, jpeg.source), (5, 3, ImageKind::Jpeg));
    }

    #[test]
    fn a_one_pixel_image_is_accepted() {
        let out = normalize(
            &encoded(&picture(1, 1), image::ImageFormat::Png),
            &ImageLimits::default(),
        )
        .unwrap();
        assert_eq!((out.width, out.height), (1, 1));
    }

    /// `jpeg` with an EXIF segment (APP1) saying `orientation`, right after the start marker.
    fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
        let mut exif = b"Exif\0\0MM\0\x2a\0\0\0\x08".to_vec();
        // One IFD entry: tag 0x0112 (orientation), type SHORT, count 1, the value; no next IFD.
        exif.extend_from_slice(&[0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1]);
        exif.extend_from_slice(&orientation.to_be_bytes());
        exif.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        let mut out = jpeg[..2].to_vec();
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&exif);
        out.extend_from_slice(&jpeg[2..]);
        out
    }

    #[test]
    fn exif_orientation_is_applied_and_no_metadata_survives() {
        // A 4 × 2 photo taken with the camera turned (orientation 6: rotate 90° clockwise).
        let jpeg = with_exif_orientation(&encoded(&picture(4, 2), image::ImageFormat::Jpeg), 6);
        let out = normalize(&jpeg, &ImageLimits::default()).unwrap();
        assert_eq!((out.width, out.height), (2, 4));
        assert!(!out.png.windows(4).any(|w| w == b"Exif" || w == b"eXIf"));

        // A PNG with a text chunk (where a phone app may put a location): gone.
        let mut png = Vec::new();
        let mut encoder = png::Encoder::new(&mut png, 2, 2);
        encoder.set_color(png::ColorType::Rgba);
        encoder
            .add_text_chunk("Location".into(), "48.8584 N, 2.2945 E".into())
            .unwrap();
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(&[128; 16]).unwrap();
        writer.finish().unwrap();
        assert!(png.windows(8).any(|w| w == b"Location"));
        let out = normalize(&png, &ImageLimits::default()).unwrap();
        assert!(!out.png.windows(8).any(|w| w == b"Location"));
        assert!(!out.png.windows(4).any(|w| w == b"tEXt"));
    }

    #[test]
    fn large_images_are_scaled_to_the_pixel_budget_keeping_their_aspect() {
        let png = encoded(&picture(400, 200), image::ImageFormat::Png);
        let limits = ImageLimits {
            max_pixels: 20_000,
            ..ImageLimits::default()
        };
        let out = normalize(&png, &limits).unwrap();
        assert_eq!((out.width, out.height), (200, 100));
    }

    #[test]
    fn bad_images_get_their_error() {
        let limits = ImageLimits::default();
        let png = encoded(&picture(8, 8), image::ImageFormat::Png);
        // Truncated.
        let error = normalize(&png[..png.len() / 2], &limits).unwrap_err();
        assert_eq!(error.code().as_str(), "IMAGE_UNREADABLE", "{error}");
        // Over the byte limit.
        let small = ImageLimits {
            max_bytes: 10,
            ..limits
        };
        assert_eq!(normalize(&png, &small).unwrap_err().code().as_str(), "IMAGE_TOO_LARGE");
        // A JPEG whose header claims 60000 × 60000: refused before decoding.
        let mut bomb = encoded(&picture(16, 16), image::ImageFormat::Jpeg);
        let sof = bomb
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .expect("a baseline JPEG");
        bomb[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
        assert_eq!(
            normalize(&bomb, &limits).unwrap_err(),
            ImageError::DimensionsTooLarge {
                width: 60_000,
                height: 60_000
            }
        );
        // SVG and HEIC by name.
        let svg = normalize(b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>", &limits).unwrap_err();
        assert_eq!(svg, ImageError::UnsupportedFormat("SVG".into()));
        assert_eq!(svg.code().as_str(), "UNSUPPORTED_IMAGE_FORMAT");
        let heic = normalize(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic", &limits).unwrap_err();
        assert_eq!(heic, ImageError::UnsupportedFormat("HEIC".into()));
    }
}
