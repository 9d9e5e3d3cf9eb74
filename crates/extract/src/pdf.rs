//! PDF: the text layer of each page (pdf-extract), one section per page numbered from 1. A
//! page without a text layer (a scan) is read by OCR from its largest image when OCR is on
//! (the section is marked as OCR'd); a page whose parser fails, or a scan without OCR or
//! where OCR found nothing, is kept as a page without text; the rest of the document is still
//! read.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::text::paragraphs;
use super::{Budget, ExtractError, Extracted, Section};

/// Reads every page of a PDF.
pub(super) fn extract(bytes: &[u8], budget: &mut Budget) -> Result<Extracted, ExtractError> {
    let mut document = catch_unwind(|| pdf_extract::Document::load_mem(bytes))
        .map_err(|_| ExtractError::Corrupt("the PDF structure is damaged".into()))?
        .map_err(|e| ExtractError::Corrupt(format!("PDF: {e}")))?;
    if document.is_encrypted() {
        // Many PDFs are "encrypted" with an empty user password (printing restrictions):
        // those open; a real password is refused.
        if document.decrypt("").is_err() {
            return Err(ExtractError::Encrypted);
        }
    }
    let pages = document.get_pages();
    if pages.len() > budget.limits.max_pages {
        return Err(ExtractError::TooLarge(format!(
            "the PDF has {} pages; at most {} are read",
            pages.len(),
            budget.limits.max_pages
        )));
    }
    if pages.is_empty() {
        return Err(ExtractError::Corrupt("the PDF has no pages".into()));
    }
    let mut sections = Vec::with_capacity(pages.len());
    for (position, number) in pages.keys().enumerate() {
        let mut text = String::new();
        let read = catch_unwind(AssertUnwindSafe(|| {
            let mut output = pdf_extract::PlainTextOutput::new(&mut text);
            pdf_extract::output_doc_page(&document, &mut output, *number)
        }));
        let text = match read {
            Ok(Ok(())) => text,
            Ok(Err(error)) => {
                tracing::debug!(page = number, %error, "PDF page unreadable");
                String::new()
            }
            Err(_) => {
                tracing::debug!(page = number, "PDF page parser panicked");
                String::new()
            }
        };
        budget.text(text.len())?;
        // Pages are numbered by position: the page tree's own numbers are the same for
        // well-formed files and meaningless for broken ones.
        let page = Some(position as u32 + 1);
        let mut section = Section::of_blocks(page, paragraphs(&clean(&text)));
        if !section.has_text {
            if let Some(ocr) = budget.ocr.as_mut() {
                let page_id = pages[number];
                if let Some((picture, dpi)) = super::picture::page_scan(&document, page_id)? {
                    let recognised = ocr.read(&picture, dpi)?;
                    budget.text(recognised.len())?;
                    section = Section::of_blocks(page, paragraphs(&clean(&recognised)));
                    section.ocr = true;
                }
            }
        }
        sections.push(section);
    }
    Ok(Extracted { sections })
}

/// Joins the lines of a paragraph as pdf-extract writes them: a line break inside a sentence
/// becomes a space, a hyphen at a line end joins the word halves.
pub(super) fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let line = line.trim_end();
        if line.trim().is_empty() {
            out.push_str("\n\n");
            continue;
        }
        if out.ends_with('-') && !out.ends_with(" -") {
            out.pop();
        } else if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(line.trim_start());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyphenated_line_ends_join_and_blank_lines_split() {
        assert_eq!(clean("infor-\nmation here\n\nnext"), "information here\n\nnext");
    }

    #[test]
    fn bytes_that_are_not_a_pdf_are_corrupt() {
        let error = extract(b"%PDF-1.4 truncated", &mut Budget::new(Default::default())).unwrap_err();
        assert!(matches!(error, ExtractError::Corrupt(_)), "{error:?}");
    }
}
