//! What a file is, from its bytes and structure: magic numbers for binary formats, the
//! archive's members for the zip-based ones (DOCX, PPTX, XLSX, ODT, ODS), and for text its
//! shape (HTML markup, mail headers, delimited rows, Markdown syntax). The name only breaks
//! the tie between Markdown and plain text; it never decides a binary format.

use std::io::{Cursor, Read};

use enclave_protocol::DocumentKind;

/// Bytes looked at to tell text from binary and text formats apart.
const SNIFF: usize = 16 * 1024;

/// The kind of `bytes` (`name` is the uploaded name), or `None` when Enclave cannot read it.
pub fn detect(bytes: &[u8], name: &str) -> Option<DocumentKind> {
    if bytes.is_empty() {
        return None;
    }
    let head = &bytes[..bytes.len().min(SNIFF)];
    if head.starts_with(b"%PDF-") || find(&head[..head.len().min(1024)], b"%PDF-").is_some() {
        return Some(DocumentKind::Pdf);
    }
    if head.starts_with(b"{\\rtf") {
        return Some(DocumentKind::Rtf);
    }
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return Some(zip_kind(bytes));
    }
    if crate::picture::is_picture(head) {
        // Photos and scans: read by OCR.
        return Some(DocumentKind::Image);
    }
    if head.starts_with(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) {
        // A compound file: Excel 97-2003 is read; legacy Word and PowerPoint are not.
        return (infer::get(bytes).map(|t| t.mime_type()) == Some("application/vnd.ms-excel"))
            .then_some(DocumentKind::Xls);
    }
    let utf16 = head.starts_with(b"\xFF\xFE") || head.starts_with(b"\xFE\xFF");
    if !utf16 && head.contains(&0) {
        return None;
    }
    if !utf16 && !looks_like_text(head) {
        return None;
    }
    let text = crate::decode_text(head);
    Some(text_kind(&text, name))
}

/// The position of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Whether bytes read as text: valid UTF-8 (a character cut at the end is fine), or mostly
/// printable single-byte text.
fn looks_like_text(head: &[u8]) -> bool {
    match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) if e.error_len().is_none() => true,
        Err(_) => {
            let control = head
                .iter()
                .filter(|&&b| b < 0x20 && !matches!(b, b'\n' | b'\r' | b'\t' | 0x0C))
                .count();
            control * 100 < head.len()
        }
    }
}

/// Which zip-based format an archive is, from its members.
fn zip_kind(bytes: &[u8]) -> DocumentKind {
    let Ok(mut zip) = zip::ZipArchive::new(Cursor::new(bytes)) else {
        // A damaged archive: extraction reports it.
        return DocumentKind::Zip;
    };
    let names: Vec<String> = zip
        .file_names()
        .filter_map(Result::ok)
        .map(|n| n.into_owned())
        .collect();
    let has = |name: &str| names.iter().any(|n| n == name);
    if has("word/document.xml") {
        return DocumentKind::Docx;
    }
    if has("ppt/presentation.xml") {
        return DocumentKind::Pptx;
    }
    if has("xl/workbook.xml") {
        return DocumentKind::Xlsx;
    }
    if has("mimetype") {
        let mut mimetype = String::new();
        if let Ok(member) = zip.by_name("mimetype") {
            let _ = member.take(100).read_to_string(&mut mimetype);
        }
        match mimetype.trim() {
            "application/vnd.oasis.opendocument.text" => return DocumentKind::Odt,
            "application/vnd.oasis.opendocument.spreadsheet" => return DocumentKind::Ods,
            _ => {}
        }
    }
    DocumentKind::Zip
}

/// Which text format `text` is.
fn text_kind(text: &str, name: &str) -> DocumentKind {
    let start = text.trim_start_matches('\u{feff}').trim_start();
    let lower: String = start.chars().take(512).collect::<String>().to_lowercase();
    if lower.starts_with("<!doctype html")
        || lower.starts_with("<html")
        || (lower.starts_with('<') && (lower.contains("<body") || lower.contains("<head") || lower.contains("<p>")))
    {
        return DocumentKind::Html;
    }
    if is_mail(start) {
        return DocumentKind::Eml;
    }
    if is_delimited(start) {
        return DocumentKind::Csv;
    }
    let lower_name = name.to_lowercase();
    if lower_name.ends_with(".md") || lower_name.ends_with(".markdown") || is_markdown(start) {
        return DocumentKind::Markdown;
    }
    DocumentKind::Text
}

/// Whether text starts with a mail header block (`Name: value` lines, one of them a header
/// mail always has, ending in a blank line).
fn is_mail(text: &str) -> bool {
    let mut known = 0;
    for line in text.lines().take(200) {
        if line.trim().is_empty() {
            return known >= 2;
        }
        if line.starts_with([' ', '\t']) {
            continue; // a folded header line
        }
        let Some((field, _)) = line.split_once(':') else {
            return false;
        };
        if field.is_empty() || !field.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return false;
        }
        if matches!(
            field.to_ascii_lowercase().as_str(),
            "from" | "to" | "subject" | "date" | "message-id" | "mime-version" | "received" | "return-path"
        ) {
            known += 1;
        }
    }
    false
}

/// Whether text is rows of delimited values: the same number (at least two) of fields on
/// every one of the first lines, quoting respected.
fn is_delimited(text: &str) -> bool {
    let sample: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).take(20).collect();
    if sample.len() < 2 {
        return false;
    }
    // The last sampled line may be cut by the sniff window.
    let sample = &sample[..sample.len() - usize::from(sample.len() > 2)];
    [b',', b';', b'\t'].into_iter().any(|delimiter| {
        let joined = sample.join("\n");
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(false)
            .flexible(true)
            .from_reader(joined.as_bytes());
        let widths: Vec<usize> = reader.records().filter_map(Result::ok).map(|r| r.len()).collect();
        widths.len() == sample.len() && widths[0] >= 2 && widths.iter().all(|&w| w == widths[0])
    })
}

/// Whether text uses Markdown syntax: ATX headings, fences, tables, or links.
fn is_markdown(text: &str) -> bool {
    let mut signals = 0;
    for line in text.lines().take(200) {
        let trimmed = line.trim_start();
        let hashes = trimmed.bytes().take_while(|&b| b == b'#').count();
        if (1..=6).contains(&hashes) && trimmed[hashes..].starts_with(' ') {
            signals += 2;
        }
        if trimmed.starts_with("```") || (trimmed.starts_with('|') && trimmed.ends_with('|')) {
            signals += 2;
        }
        if trimmed.contains("](") && trimmed.contains('[') {
            signals += 1;
        }
    }
    signals >= 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_formats_are_known_by_their_bytes_whatever_the_name() {
        assert_eq!(detect(b"%PDF-1.7\n...", "notes.txt"), Some(DocumentKind::Pdf));
        assert_eq!(detect(b"{\\rtf1\\ansi hello}", "a.pdf"), Some(DocumentKind::Rtf));
        assert_eq!(detect(b"\x7fELF\x02\x01\x01\0\0\0", "report.pdf"), None);
        assert_eq!(detect(b"", "empty.txt"), None);
    }

    #[test]
    fn text_formats_are_known_by_their_shape() {
        assert_eq!(
            detect(b"<!DOCTYPE html><html><body>x</body></html>", "a.txt"),
            Some(DocumentKind::Html)
        );
        assert_eq!(
            detect(
                b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nbody",
                "x"
            ),
            Some(DocumentKind::Eml)
        );
        assert_eq!(detect(b"name,age\nann,31\nbo,42\n", "x"), Some(DocumentKind::Csv));
        assert_eq!(
            detect(b"# Title\n\nSome text with [a link](http://x).", "x"),
            Some(DocumentKind::Markdown)
        );
        assert_eq!(
            detect(b"Just a note, nothing more.\nSecond line.", "x.md"),
            Some(DocumentKind::Markdown)
        );
        assert_eq!(
            detect(b"Just a note, nothing more.\nSecond line.", "x.txt"),
            Some(DocumentKind::Text)
        );
        assert_eq!(detect("caf\u{e9} cr\u{e8}me".as_bytes(), "x"), Some(DocumentKind::Text));
    }

    #[test]
    fn zip_based_formats_are_known_by_their_members() {
        let zip = |members: &[(&str, &str)]| {
            let mut out = Cursor::new(Vec::new());
            let mut writer = zip::ZipWriter::new(&mut out);
            for (name, content) in members {
                writer
                    .start_file(*name, zip::write::SimpleFileOptions::default())
                    .unwrap();
                std::io::Write::write_all(&mut writer, content.as_bytes()).unwrap();
            }
            writer.finish().unwrap();
            out.into_inner()
        };
        assert_eq!(
            detect(&zip(&[("word/document.xml", "<x/>")]), "a.zip"),
            Some(DocumentKind::Docx)
        );
        assert_eq!(
            detect(&zip(&[("xl/workbook.xml", "<x/>")]), "a"),
            Some(DocumentKind::Xlsx)
        );
        assert_eq!(
            detect(&zip(&[("mimetype", "application/vnd.oasis.opendocument.text")]), "a"),
            Some(DocumentKind::Odt)
        );
        assert_eq!(
            detect(&zip(&[("notes.txt", "hello")]), "a.docx"),
            Some(DocumentKind::Zip)
        );
    }
}
