//! Text from pictures of text: Tesseract (the system library, through leptess) reading 8-bit
//! gray pixels that this crate decoded itself, so that Tesseract's own image codecs never see
//! the untrusted bytes. One engine per document, made on the first picture (loading the
//! language data takes 70-200 ms); page segmentation is Tesseract's automatic mode (its API's
//! default, one uniform block, loses headings and captions).

use image::GrayImage;

use super::ExtractError;

/// Resolution assumed when a picture does not say (a photo, an image without a DPI).
const FALLBACK_DPI: u32 = 300;

/// What OCR reads, for one document.
#[derive(Debug)]
pub(crate) struct Ocr {
    /// Tesseract language(s), `eng` or `eng+deu`.
    language: String,
    /// Made on first use.
    engine: Option<Engine>,
}

impl Ocr {
    /// OCR in `language` (nothing is loaded yet).
    pub fn new(language: &str) -> Self {
        Self {
            language: language.to_owned(),
            engine: None,
        }
    }

    /// The text of `picture` (`dpi` when the page says), as Tesseract lays it out: lines, and
    /// blank lines between blocks.
    pub fn read(&mut self, picture: &GrayImage, dpi: Option<u32>) -> Result<String, ExtractError> {
        if self.engine.is_none() {
            self.engine = Some(Engine::new(&self.language)?);
        }
        match self.engine.as_mut() {
            Some(engine) => engine.read(picture, dpi),
            None => Ok(String::new()),
        }
    }
}

#[cfg(feature = "ocr")]
struct Engine {
    api: leptess::tesseract::TessApi,
}

#[cfg(feature = "ocr")]
impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Engine")
    }
}

#[cfg(feature = "ocr")]
impl Engine {
    fn new(language: &str) -> Result<Self, ExtractError> {
        let mut api = leptess::tesseract::TessApi::new(None, language).map_err(|e| {
            ExtractError::Ocr(format!(
                "OCR in {language:?} is not available ({e}); install its Tesseract data (Debian: tesseract-ocr-{language})"
            ))
        })?;
        // Automatic page segmentation; its diagnostics ("Detected 7 diacritics") to nowhere.
        for (name, value) in [(c"tessedit_pageseg_mode", c"3"), (c"debug_file", c"/dev/null")] {
            api.raw
                .set_variable(name, value)
                .map_err(|e| ExtractError::Ocr(format!("Tesseract refused its settings: {e}")))?;
        }
        Ok(Self { api })
    }

    fn read(&mut self, picture: &GrayImage, dpi: Option<u32>) -> Result<String, ExtractError> {
        let (width, height) = picture.dimensions();
        if width < 3 || height < 3 {
            return Ok(String::new());
        }
        let width = i32::try_from(width).map_err(|_| ExtractError::TooLarge("the picture is too wide".into()))?;
        let height = i32::try_from(height).map_err(|_| ExtractError::TooLarge("the picture is too tall".into()))?;
        self.api
            .raw
            .set_image(picture.as_raw(), width, height, 1, width)
            .map_err(|e| ExtractError::Ocr(format!("Tesseract could not take the picture: {e}")))?;
        self.api
            .set_source_resolution(dpi.filter(|d| (70..=1200).contains(d)).unwrap_or(FALLBACK_DPI) as i32);
        let text = self
            .api
            .get_utf8_text()
            .map_err(|e| ExtractError::Ocr(format!("Tesseract failed: {e}")))?;
        Ok(text)
    }
}

/// This build has no OCR: every picture is refused with why.
#[cfg(not(feature = "ocr"))]
#[derive(Debug)]
struct Engine;

#[cfg(not(feature = "ocr"))]
impl Engine {
    fn new(_language: &str) -> Result<Self, ExtractError> {
        Err(ExtractError::Ocr(
            "this build has no OCR (built without the `ocr` feature)".into(),
        ))
    }

    fn read(&mut self, _picture: &GrayImage, _dpi: Option<u32>) -> Result<String, ExtractError> {
        Ok(String::new())
    }
}
