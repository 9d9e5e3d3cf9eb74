//! Pictures that may hold text: images uploaded as documents (PNG, JPEG, WebP, GIF, TIFF) and
//! the images of scanned PDF pages (JPEG, JBIG2, CCITT G4, raw gray or RGB pixels), decoded to
//! 8-bit gray within limits for OCR.

use std::io::Cursor;

use image::{GrayImage, ImageReader, Luma};
use pdf_extract::{Dictionary, Document, Object, Stream};

use super::ExtractError;

/// The largest picture decoded, in pixels (a 600 dpi A3 scan is 70 million).
pub(crate) const MAX_PIXELS: u64 = 120_000_000;

fn too_large(width: u64, height: u64) -> ExtractError {
    ExtractError::TooLarge(format!(
        "the picture is {width} x {height} pixels; at most {} megapixels are read",
        MAX_PIXELS / 1_000_000
    ))
}

fn check_size(width: u64, height: u64) -> Result<(), ExtractError> {
    if width * height > MAX_PIXELS {
        return Err(too_large(width, height));
    }
    Ok(())
}

/// Whether `bytes` start like a picture format this crate reads as a document.
pub(crate) fn is_picture(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x89PNG\r\n\x1a\n")
        || bytes.starts_with(&[0xFF, 0xD8, 0xFF])
        || (bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP")
        || bytes.starts_with(b"GIF87a")
        || bytes.starts_with(b"GIF89a")
        || bytes.starts_with(b"II*\0")
        || bytes.starts_with(b"MM\0*")
}

/// An uploaded picture as gray pixels, upright (its EXIF orientation applied).
pub(crate) fn decode_document(bytes: &[u8]) -> Result<GrayImage, ExtractError> {
    let corrupt = |e: image::ImageError| ExtractError::Corrupt(format!("image: {e}"));
    let reader = || ImageReader::new(Cursor::new(bytes)).with_guessed_format();
    let (width, height) = reader()
        .map_err(|e| ExtractError::Corrupt(e.to_string()))?
        .into_dimensions()
        .map_err(corrupt)?;
    check_size(u64::from(width), u64::from(height))?;
    let mut reader = reader().map_err(|e| ExtractError::Corrupt(e.to_string()))?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 4);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(corrupt)?;
    let orientation =
        image::ImageDecoder::orientation(&mut decoder).unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut picture = image::DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    picture.apply_orientation(orientation);
    Ok(picture.to_luma8())
}

/// The largest image drawn on page `page_id`, decoded to gray, with its resolution on the
/// page; `None` when the page has none or only ones in formats not read.
pub(crate) fn page_scan(
    document: &Document,
    page_id: (u32, u16),
) -> Result<Option<(GrayImage, Option<u32>)>, ExtractError> {
    let Ok(images) = document.get_page_images(page_id) else {
        return Ok(None);
    };
    let Some(largest) = images
        .iter()
        .max_by_key(|image| (image.width.max(0) as u64) * (image.height.max(0) as u64))
    else {
        return Ok(None);
    };
    let Ok(stream) = document.get_object(largest.id).and_then(Object::as_stream) else {
        return Ok(None);
    };
    let picture = match decode_stream(document, stream)? {
        Some(picture) => picture,
        None => return Ok(None),
    };
    let dpi = page_size(document, page_id).map(|(w, h)| {
        let inches = w.max(h) / 72.0;
        (f64::from(picture.width().max(picture.height())) / inches).round() as u32
    });
    Ok(Some((picture, dpi)))
}

/// The page's MediaBox width and height in points.
fn page_size(document: &Document, page_id: (u32, u16)) -> Option<(f64, f64)> {
    let page = document.get_dictionary(page_id).ok()?;
    let media = page.get(b"MediaBox").ok()?.as_array().ok()?;
    let number = |o: &Object| {
        o.as_float()
            .map(f64::from)
            .or_else(|_| o.as_i64().map(|i| i as f64))
            .ok()
    };
    let values: Vec<f64> = media.iter().filter_map(number).collect();
    (values.len() == 4).then(|| ((values[2] - values[0]).abs(), (values[3] - values[1]).abs()))
}

fn integer(dict: &Dictionary, key: &[u8]) -> Option<i64> {
    dict.get(key).ok().and_then(|o| o.as_i64().ok())
}

fn boolean(dict: &Dictionary, key: &[u8]) -> Option<bool> {
    dict.get(key).ok().and_then(|o| o.as_bool().ok())
}

/// The filters of a stream, in the order they were applied to decode.
fn filters(stream: &Stream) -> Vec<Vec<u8>> {
    match stream.dict.get(b"Filter") {
        Ok(Object::Name(name)) => vec![name.clone()],
        Ok(Object::Array(list)) => list
            .iter()
            .filter_map(|o| o.as_name().ok().map(<[u8]>::to_vec))
            .collect(),
        _ => Vec::new(),
    }
}

/// The decode parameters of the image filter (the last one of a chain).
fn decode_parms<'a>(document: &'a Document, stream: &'a Stream) -> Option<&'a Dictionary> {
    let parms = stream.dict.get(b"DecodeParms").ok()?;
    let parms = match parms {
        Object::Array(list) => list.last()?,
        other => other,
    };
    match parms {
        Object::Reference(id) => document.get_dictionary(*id).ok(),
        other => other.as_dict().ok(),
    }
}

/// An image XObject's pixels in gray; `None` for a format not read here (JPEG 2000).
fn decode_stream(document: &Document, stream: &Stream) -> Result<Option<GrayImage>, ExtractError> {
    let width = integer(&stream.dict, b"Width").unwrap_or(0).max(0) as u64;
    let height = integer(&stream.dict, b"Height").unwrap_or(0).max(0) as u64;
    if width == 0 || height == 0 {
        return Ok(None);
    }
    check_size(width, height)?;
    let filters = filters(stream);
    let last = filters.last().map(Vec::as_slice);
    // Generic filters in front of an image codec ([/FlateDecode /DCTDecode]) are undone first.
    let encoded = if filters.len() > 1 {
        let mut generic = stream.clone();
        generic.dict.set(
            "Filter",
            Object::Array(filters[..filters.len() - 1].iter().cloned().map(Object::Name).collect()),
        );
        generic
            .decompressed_content()
            .map_err(|e| ExtractError::Corrupt(format!("PDF image: {e}")))?
    } else {
        stream.content.clone()
    };
    let gray = match last {
        Some(b"DCTDecode") => {
            let picture = image::load_from_memory_with_format(&encoded, image::ImageFormat::Jpeg)
                .map_err(|e| ExtractError::Corrupt(format!("PDF JPEG image: {e}")))?;
            picture.to_luma8()
        }
        #[cfg(feature = "ocr")]
        Some(b"JBIG2Decode") => jbig2(document, stream, &encoded)?,
        #[cfg(feature = "ocr")]
        Some(b"CCITTFaxDecode") => ccitt(document, stream, &encoded, width as u32)?,
        Some(b"FlateDecode" | b"LZWDecode" | b"ASCII85Decode") | None => {
            let raw = if last.is_some() {
                stream
                    .decompressed_content()
                    .map_err(|e| ExtractError::Corrupt(format!("PDF image: {e}")))?
            } else {
                stream.content.clone()
            };
            match raw_pixels(document, stream, &raw, width as u32, height as u32) {
                Some(gray) => gray,
                None => return Ok(None),
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(gray))
}

/// Uncompressed samples: 8-bit gray or RGB, or 1-bit gray.
fn raw_pixels(document: &Document, stream: &Stream, raw: &[u8], width: u32, height: u32) -> Option<GrayImage> {
    let bits = integer(&stream.dict, b"BitsPerComponent").unwrap_or(8);
    let space = match stream.dict.get(b"ColorSpace").ok()? {
        Object::Name(name) => name.clone(),
        Object::Reference(id) => document.get_object(*id).ok()?.as_name().ok()?.to_vec(),
        _ => return None,
    };
    let channels = match space.as_slice() {
        b"DeviceGray" | b"CalGray" => 1,
        b"DeviceRGB" | b"CalRGB" => 3,
        _ => return None,
    };
    let (w, h) = (width as usize, height as usize);
    match (bits, channels) {
        (8, _) => {
            let row = w * channels;
            if raw.len() < row * h {
                return None;
            }
            Some(GrayImage::from_fn(width, height, |x, y| {
                let at = y as usize * row + x as usize * channels;
                let value = if channels == 1 {
                    raw[at]
                } else {
                    ((u32::from(raw[at]) * 299 + u32::from(raw[at + 1]) * 587 + u32::from(raw[at + 2]) * 114) / 1000)
                        as u8
                };
                Luma([value])
            }))
        }
        (1, 1) => {
            let row = w.div_ceil(8);
            if raw.len() < row * h {
                return None;
            }
            Some(GrayImage::from_fn(width, height, |x, y| {
                let byte = raw[y as usize * row + x as usize / 8];
                let bit = (byte >> (7 - x % 8)) & 1;
                Luma([if bit == 1 { 255 } else { 0 }])
            }))
        }
        _ => None,
    }
}

/// A JBIG2 page (1 = black), with its global segments when the stream names them.
#[cfg(feature = "ocr")]
fn jbig2(document: &Document, stream: &Stream, encoded: &[u8]) -> Result<GrayImage, ExtractError> {
    let corrupt = |e: &dyn std::fmt::Debug| ExtractError::Corrupt(format!("PDF JBIG2 image: {e:?}"));
    let settings = hayro_jbig2::DecodeSettings::default();
    let globals_bytes = decode_parms(document, stream)
        .and_then(|p| p.get(b"JBIG2Globals").ok())
        .and_then(|o| o.as_reference().ok())
        .and_then(|id| document.get_object(id).ok())
        .and_then(|o| o.as_stream().ok())
        .map(|g| g.decompressed_content().unwrap_or_else(|_| g.content.clone()));
    let globals = match &globals_bytes {
        Some(bytes) => Some(hayro_jbig2::Globals::new(bytes, &settings).map_err(|e| corrupt(&e))?),
        None => None,
    };
    let page = hayro_jbig2::Page::new_embedded(encoded, globals.as_ref(), &settings).map_err(|e| corrupt(&e))?;
    check_size(u64::from(page.width()), u64::from(page.height()))?;
    struct Pixels(Vec<u8>);
    impl hayro_jbig2::Decoder for Pixels {
        fn push_pixel(&mut self, black: bool) {
            self.0.push(if black { 0 } else { 255 });
        }
        fn push_pixel_chunk(&mut self, black: bool, chunk_count: u32) {
            let value = if black { 0 } else { 255 };
            self.0.extend(std::iter::repeat_n(value, chunk_count as usize * 8));
        }
        fn next_line(&mut self) {}
    }
    let (width, height) = (page.width(), page.height());
    let mut pixels = Pixels(Vec::with_capacity(width as usize * height as usize));
    page.decode(&mut pixels).map_err(|e| corrupt(&e))?;
    pixels.0.resize(width as usize * height as usize, 255);
    GrayImage::from_raw(width, height, pixels.0)
        .ok_or_else(|| ExtractError::Corrupt("PDF JBIG2 image: wrong size".into()))
}

/// A CCITT fax image (Group 3 or 4) as its decode parameters describe it.
#[cfg(feature = "ocr")]
fn ccitt(document: &Document, stream: &Stream, encoded: &[u8], width: u32) -> Result<GrayImage, ExtractError> {
    let parms = decode_parms(document, stream);
    let int = |key: &[u8], default: i64| parms.and_then(|p| integer(p, key)).unwrap_or(default);
    let flag = |key: &[u8], default: bool| parms.and_then(|p| boolean(p, key)).unwrap_or(default);
    let k = int(b"K", 0);
    let columns = u32::try_from(int(b"Columns", i64::from(width))).unwrap_or(width).max(1);
    let rows = u32::try_from(int(b"Rows", 0)).unwrap_or(0);
    let black_is_1 = flag(b"BlackIs1", false);
    let settings = hayro_ccitt::DecodeSettings {
        columns,
        rows,
        end_of_block: flag(b"EndOfBlock", true),
        end_of_line: flag(b"EndOfLine", false),
        rows_are_byte_aligned: flag(b"EncodedByteAlign", false),
        encoding: match k {
            k if k < 0 => hayro_ccitt::EncodingMode::Group4,
            0 => hayro_ccitt::EncodingMode::Group3_1D,
            _ => hayro_ccitt::EncodingMode::Group3_2D,
        },
        strict: false,
    };
    struct Rows {
        columns: u32,
        pixels: Vec<u8>,
        /// The values of a row's runs that start "white" and those that follow a change.
        colours: (u8, u8),
        limit: usize,
    }
    impl hayro_ccitt::Decoder for Rows {
        fn push_row(&mut self, changes: &[u32]) {
            if self.pixels.len() >= self.limit {
                return;
            }
            let (first, second) = self.colours;
            let start = self.pixels.len();
            self.pixels.resize(start + self.columns as usize, first);
            for pair in changes.chunks(2) {
                let from = (pair[0] as usize).min(self.columns as usize);
                let to = pair
                    .get(1)
                    .map_or(self.columns as usize, |&e| (e as usize).min(self.columns as usize));
                self.pixels[start + from..start + to.max(from)].fill(second);
            }
        }
    }
    // The decoder's rows start with 0 bits; without BlackIs1 a 0 bit is black in PDF.
    let colours = if black_is_1 { (255, 0) } else { (0, 255) };
    let mut sink = Rows {
        columns,
        pixels: Vec::new(),
        colours,
        limit: MAX_PIXELS as usize,
    };
    let mut context = hayro_ccitt::DecoderContext::new(settings);
    hayro_ccitt::decode(encoded, &mut sink, &mut context)
        .map_err(|e| ExtractError::Corrupt(format!("PDF CCITT image: {e:?}")))?;
    let height = (sink.pixels.len() / columns as usize) as u32;
    sink.pixels.truncate(columns as usize * height as usize);
    GrayImage::from_raw(columns, height, sink.pixels)
        .ok_or_else(|| ExtractError::Corrupt("PDF CCITT image: no rows".into()))
}

#[cfg(all(test, feature = "ocr"))]
mod tests {
    use enclave_protocol::DocumentKind;

    use crate::{extract, extract_with, ExtractError, Options};

    /// A scanned test file of scripts/fetch-test-documents.sh.
    fn scan(name: &str) -> Vec<u8> {
        // Cargo's run-time variable first: a test binary reused from a build in another
        // checkout keeps that checkout's compile-time path.
        let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
        let path = std::path::Path::new(&manifest)
            .join("../../tests/documents/scans")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{} (run scripts/fetch-test-documents.sh): {e}", path.display()))
    }

    fn english() -> Options {
        Options {
            ocr_language: Some("eng".into()),
            ..Options::default()
        }
    }

    fn text_of(section: &crate::Section) -> String {
        section.markdown()
    }

    #[test]
    fn a_scanned_jpeg_page_is_read_by_ocr() {
        let pdf = scan("c03-29.pdf");
        // Without OCR the page has no text at all.
        assert_eq!(
            extract(&pdf, DocumentKind::Pdf, Default::default()),
            Err(ExtractError::NoText)
        );
        let extracted = extract_with(&pdf, DocumentKind::Pdf, &english()).unwrap();
        assert_eq!(extracted.sections.len(), 1);
        let page = &extracted.sections[0];
        assert_eq!((page.page, page.ocr, page.has_text), (Some(1), true, true));
        let text = text_of(page);
        for word in ["Watson", "widow", "Deacon", "spiritual", "praying"] {
            assert!(text.contains(word), "{word} missing from {text}");
        }
    }

    #[test]
    fn jbig2_and_ccitt_pages_are_read_by_ocr() {
        let extracted = extract_with(&scan("cardinal.pdf"), DocumentKind::Pdf, &english()).unwrap();
        let pages: Vec<Option<u32>> = extracted.sections.iter().map(|s| s.page).collect();
        assert_eq!(pages, [Some(1), Some(2), Some(3), Some(4)]);
        for section in &extracted.sections {
            assert!(section.ocr);
            let text = text_of(section);
            for word in ["LinnSequencer", "MIDI", "SMPTE", "Oxnard", "Tarzana"] {
                assert!(
                    text.contains(word),
                    "page {:?}: {word} missing from {text}",
                    section.page
                );
            }
        }
        let fax = extract_with(&scan("ccitt.pdf"), DocumentKind::Pdf, &english()).unwrap();
        assert!(text_of(&fax.sections[0]).contains("LinnSequencer"));
    }

    #[test]
    fn a_photo_uploaded_as_a_document_is_read_by_ocr() {
        // The scanned page itself, as a PNG file.
        let pdf = scan("cardinal.pdf");
        let document = pdf_extract::Document::load_mem(&pdf).unwrap();
        let first = *document.get_pages().values().next().unwrap();
        let (picture, _) = super::page_scan(&document, first).unwrap().unwrap();
        let mut png = Vec::new();
        picture
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        assert_eq!(crate::detect::detect(&png, "scan.png"), Some(DocumentKind::Image));
        let extracted = extract_with(&png, DocumentKind::Image, &english()).unwrap();
        assert_eq!(extracted.sections.len(), 1);
        assert!(extracted.sections[0].ocr);
        assert!(text_of(&extracted.sections[0]).contains("LinnSequencer"));
        // Without OCR an image has nothing to give.
        let error = extract(&png, DocumentKind::Image, Default::default()).unwrap_err();
        assert!(matches!(error, ExtractError::Ocr(_)), "{error:?}");
    }

    #[test]
    fn a_language_without_its_data_is_a_clear_error() {
        let options = Options {
            ocr_language: Some("xyz".into()),
            ..Options::default()
        };
        let error = extract_with(&scan("c03-29.pdf"), DocumentKind::Pdf, &options).unwrap_err();
        match error {
            ExtractError::Ocr(message) => assert!(message.contains("tesseract-ocr-xyz"), "{message}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_picture_over_the_pixel_limit_is_refused_before_decoding() {
        // A JPEG whose header claims 20000 x 20000 pixels (400 megapixels).
        let mut jpeg = Vec::new();
        image::DynamicImage::new_luma8(16, 16)
            .write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
            .unwrap();
        let sof = jpeg
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .expect("a baseline JPEG");
        jpeg[sof + 5..sof + 9].copy_from_slice(&[0x4E, 0x20, 0x4E, 0x20]);
        let error = extract_with(&jpeg, DocumentKind::Image, &english()).unwrap_err();
        assert!(matches!(error, ExtractError::TooLarge(_)), "{error:?}");
    }
}
