//! Reading a document's text: one module per format, all producing the same [`Extracted`]
//! shape (sections in reading order, each a page where the format has pages, made of headings,
//! paragraphs and tables), within [`Limits`] that defuse archive bombs and giant files.
//!
//! Pictures of text (images uploaded as documents, PDF pages without a text layer) are read
//! by OCR when [`Options::ocr_language`] says so and the `ocr` feature is built ([`ocr`],
//! decoders in [`picture`]); their sections are marked [`Section::ocr`].
//!
//! Parsers are not trusted: the server's ingestion worker runs [`extract`] in a child process
//! with a time and memory limit (`enclave::documents::extract::isolate`), so that a parser's
//! panic, endless loop or runaway allocation costs one document, never the server. This crate
//! holds the parsers alone (no server, no LanceDB) so that they build in seconds for the fuzz
//! targets in `fuzz/`.

mod archive;
pub mod detect;
mod email;
mod html;
mod markdown;
mod ocr;
mod office;
mod pdf;
mod picture;
mod sheet;
mod text;
mod xml;

use enclave_protocol::DocumentKind;
use serde::{Deserialize, Serialize};

pub use text::decode_text;

/// A document's text, in reading order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Extracted {
    /// Pages, sheets, slides, archive members...
    pub sections: Vec<Section>,
}

/// One section: a page (numbered from 1) where the format has pages, else a part of the
/// document (a sheet, a member of an archive, the whole text).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Section {
    /// The page number, for formats with pages (PDF pages, slides).
    pub page: Option<u32>,
    /// The archive member or attachment it comes from.
    pub member: Option<String>,
    /// Its content.
    pub blocks: Vec<Block>,
    /// False for a PDF page without a text layer (a scan) whose OCR found nothing (or that
    /// was not OCR'd).
    pub has_text: bool,
    /// Its text was recognised from a picture (OCR), not read from the file.
    #[serde(default)]
    pub ocr: bool,
}

/// A piece of content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Block {
    /// A heading of this level (1 is the outermost).
    Heading {
        /// 1 to 6.
        level: u8,
        /// Its text.
        text: String,
    },
    /// A paragraph (or a list item, a line of a text file).
    Paragraph(String),
    /// A table; its first row is the header.
    Table(Table),
}

/// A table: a header row and data rows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// Column names.
    pub header: Vec<String>,
    /// Data rows.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// A row as a Markdown table line (pipes and newlines in cells escaped).
    pub fn markdown_row(cells: &[String]) -> String {
        let cells: Vec<String> = cells
            .iter()
            .map(|c| c.replace('|', "\\|").replace(['\n', '\r'], " ").trim().to_owned())
            .collect();
        format!("| {} |", cells.join(" | "))
    }

    /// The header and its separator line.
    pub fn markdown_header(&self) -> String {
        let width = self.header.len().max(1);
        format!("{}\n|{}", Self::markdown_row(&self.header), " --- |".repeat(width))
    }

    /// The whole table as Markdown.
    pub fn markdown(&self) -> String {
        let mut out = self.markdown_header();
        for row in &self.rows {
            out.push('\n');
            out.push_str(&Self::markdown_row(row));
        }
        out
    }
}

impl Section {
    /// A section of plain paragraphs.
    pub fn of_blocks(page: Option<u32>, blocks: Vec<Block>) -> Self {
        let has_text = blocks.iter().any(Block::has_text);
        Self {
            page,
            member: None,
            blocks,
            has_text,
            ocr: false,
        }
    }

    /// The section as Markdown (headings with `#`, tables as Markdown tables).
    pub fn markdown(&self) -> String {
        let mut parts = Vec::with_capacity(self.blocks.len());
        for block in &self.blocks {
            parts.push(match block {
                Block::Heading { level, text } => format!("{} {}", "#".repeat(usize::from((*level).clamp(1, 6))), text),
                Block::Paragraph(text) => text.clone(),
                Block::Table(table) => table.markdown(),
            });
        }
        parts.join("\n\n")
    }
}

impl Block {
    /// Whether it holds any text.
    pub fn has_text(&self) -> bool {
        match self {
            Block::Heading { text, .. } | Block::Paragraph(text) => !text.trim().is_empty(),
            Block::Table(table) => table
                .header
                .iter()
                .chain(table.rows.iter().flatten())
                .any(|c| !c.trim().is_empty()),
        }
    }
}

/// Bounds on what one document may unpack to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Total bytes all archive members, parts and attachments may decompress to.
    pub max_unpacked_bytes: u64,
    /// Members of one archive (and attachments of one message).
    pub max_members: usize,
    /// Archives within archives (a zip in a zip is depth 2).
    pub max_depth: u32,
    /// Pages of one PDF.
    pub max_pages: usize,
    /// Rows of all spreadsheets and CSV files together.
    pub max_rows: usize,
    /// Bytes of extracted text.
    pub max_text_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_unpacked_bytes: 512 << 20,
            max_members: 2_000,
            max_depth: 3,
            max_pages: 5_000,
            max_rows: 200_000,
            max_text_bytes: 64 << 20,
        }
    }
}

/// Why a document's text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ExtractError {
    /// The file is damaged or not what its bytes claimed.
    #[error("the file could not be read: {0}")]
    Corrupt(String),
    /// Past one of the [`Limits`].
    #[error("{0}")]
    TooLarge(String),
    /// Encrypted with a password.
    #[error("the file is encrypted")]
    Encrypted,
    /// Read, but there is no text in it.
    #[error("no text found")]
    NoText,
    /// The parser ran out of time or memory, or crashed.
    #[error("{0}")]
    Crashed(String),
    /// OCR was needed and could not run (its language data missing, a build without it).
    #[error("{0}")]
    Ocr(String),
}

/// How to read a document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    /// Bounds on what it may unpack to.
    pub limits: Limits,
    /// Tesseract language(s) to OCR pictures of text in (`eng`, `eng+deu`); `None`: no OCR.
    pub ocr_language: Option<String>,
}

/// What has been unpacked so far, against the limits; and the OCR engine of the document,
/// when pictures are read.
pub(crate) struct Budget {
    /// The limits.
    pub limits: Limits,
    /// OCR, when on (made on the first picture).
    pub ocr: Option<ocr::Ocr>,
    /// Bytes decompressed so far.
    unpacked: u64,
    /// Rows read so far.
    rows: usize,
    /// Bytes of text so far.
    text: usize,
}

impl Budget {
    /// A fresh budget.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            ocr: None,
            unpacked: 0,
            rows: 0,
            text: 0,
        }
    }

    /// Counts `bytes` more decompressed bytes.
    pub fn unpack(&mut self, bytes: u64) -> Result<(), ExtractError> {
        self.unpacked = self.unpacked.saturating_add(bytes);
        if self.unpacked > self.limits.max_unpacked_bytes {
            return Err(ExtractError::TooLarge(format!(
                "the document unpacks to more than {} MiB",
                self.limits.max_unpacked_bytes >> 20
            )));
        }
        Ok(())
    }

    /// Counts `rows` more table rows.
    pub fn rows(&mut self, rows: usize) -> Result<(), ExtractError> {
        self.rows += rows;
        if self.rows > self.limits.max_rows {
            return Err(ExtractError::TooLarge(format!(
                "the document has more than {} table rows",
                self.limits.max_rows
            )));
        }
        Ok(())
    }

    /// Counts `bytes` more bytes of text.
    pub fn text(&mut self, bytes: usize) -> Result<(), ExtractError> {
        self.text += bytes;
        if self.text > self.limits.max_text_bytes {
            return Err(ExtractError::TooLarge(format!(
                "the document has more than {} MiB of text",
                self.limits.max_text_bytes >> 20
            )));
        }
        Ok(())
    }
}

/// Reads the text of `bytes`, a document of `kind`. Sections without text are kept (a scanned
/// page is recorded as such); a document with no text at all is [`ExtractError::NoText`].
pub fn extract(bytes: &[u8], kind: DocumentKind, limits: Limits) -> Result<Extracted, ExtractError> {
    extract_with(
        bytes,
        kind,
        &Options {
            limits,
            ocr_language: None,
        },
    )
}

/// [`extract`] as `options` say: with OCR of pictures of text when a language is given.
pub fn extract_with(bytes: &[u8], kind: DocumentKind, options: &Options) -> Result<Extracted, ExtractError> {
    let mut budget = Budget::new(options.limits);
    budget.ocr = options
        .ocr_language
        .as_deref()
        .filter(|l| !l.trim().is_empty())
        .map(ocr::Ocr::new);
    let extracted = extract_within(bytes, kind, &mut budget, 1)?;
    if !extracted.sections.iter().any(|s| s.has_text) {
        return Err(ExtractError::NoText);
    }
    Ok(extracted)
}

/// The blocks of Markdown text (tables stay tables, headings headings), within the default
/// limits; empty when it cannot be read. Re-chunking stored text goes through this.
pub fn markdown_blocks(text: &str) -> Vec<Block> {
    let mut budget = Budget::new(Limits::default());
    extract_within(text.as_bytes(), DocumentKind::Markdown, &mut budget, 1)
        .map(|e| e.sections.into_iter().flat_map(|s| s.blocks).collect())
        .unwrap_or_default()
}

/// [`extract`] for a document found at `depth` (1 for the upload itself), within `budget`.
pub(crate) fn extract_within(
    bytes: &[u8],
    kind: DocumentKind,
    budget: &mut Budget,
    depth: u32,
) -> Result<Extracted, ExtractError> {
    let extracted = match kind {
        DocumentKind::Pdf => pdf::extract(bytes, budget)?,
        DocumentKind::Docx => office::docx(bytes, budget)?,
        DocumentKind::Odt => office::odt(bytes, budget)?,
        DocumentKind::Pptx => office::pptx(bytes, budget)?,
        DocumentKind::Xlsx | DocumentKind::Xls | DocumentKind::Ods => sheet::workbook(bytes, budget)?,
        DocumentKind::Csv => sheet::csv(bytes, budget)?,
        DocumentKind::Html => html::extract(&decode_text(bytes), budget)?,
        DocumentKind::Markdown => markdown::extract(&decode_text(bytes), budget)?,
        DocumentKind::Text => text::extract(&decode_text(bytes), budget)?,
        DocumentKind::Rtf => text::rtf(bytes, budget)?,
        DocumentKind::Eml => email::extract(bytes, budget, depth)?,
        DocumentKind::Zip => archive::extract(bytes, budget, depth)?,
        DocumentKind::Image => picture_document(bytes, budget)?,
    };
    Ok(extracted)
}

/// A photo or scan uploaded as a document: one section of the text OCR finds in it.
fn picture_document(bytes: &[u8], budget: &mut Budget) -> Result<Extracted, ExtractError> {
    let Some(ocr) = budget.ocr.as_mut() else {
        return Err(ExtractError::Ocr(
            "images are read by OCR, which is switched off on this server".into(),
        ));
    };
    let picture = picture::decode_document(bytes)?;
    let text = ocr.read(&picture, None)?;
    budget.text(text.len())?;
    let mut section = Section::of_blocks(None, text::paragraphs(&pdf::clean(&text)));
    section.ocr = true;
    Ok(Extracted {
        sections: vec![section],
    })
}

/// Reads `content`, a member of an archive or an attachment named `name`, at `depth`, and adds
/// its sections to `extracted` under that name (nested names joined by `/`). A limit hit is the
/// whole upload's failure; a damaged member costs only itself.
pub(crate) fn extract_member(
    extracted: &mut Extracted,
    name: &str,
    content: &[u8],
    kind: DocumentKind,
    budget: &mut Budget,
    depth: u32,
) -> Result<(), ExtractError> {
    match extract_within(content, kind, budget, depth + 1) {
        Ok(inner) => {
            for mut section in inner.sections {
                section.member = Some(match section.member {
                    Some(inner_name) => format!("{name}/{inner_name}"),
                    None => name.to_owned(),
                });
                extracted.sections.push(section);
            }
            Ok(())
        }
        Err(error @ ExtractError::TooLarge(_)) => Err(error),
        Err(error) => {
            tracing::debug!(member = %name, %error, "member unreadable");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_render_as_markdown_with_escaped_cells() {
        let table = Table {
            header: vec!["Name".into(), "Note".into()],
            rows: vec![vec!["a|b".into(), "line\nbreak".into()]],
        };
        assert_eq!(
            table.markdown(),
            "| Name | Note |\n| --- | --- |\n| a\\|b | line break |"
        );
    }

    #[test]
    fn a_document_with_only_blank_text_has_no_text() {
        let error = extract(b"   \n\n  ", DocumentKind::Text, Limits::default()).unwrap_err();
        assert_eq!(error, ExtractError::NoText);
    }
}
