//! Plain text and RTF: paragraphs split at blank lines.

use super::{Block, Budget, ExtractError, Extracted, Section};

/// Text of unknown encoding as a string: UTF-8 (a BOM dropped), UTF-16 with a BOM, else each
/// byte as Latin-1 (Windows-1252's printable range), so that nothing is lost to a decoding
/// error.
pub fn decode_text(bytes: &[u8]) -> String {
    if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        return String::from_utf8_lossy(rest).into_owned();
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        return text.to_owned();
    }
    let utf16 = |le: bool, rest: &[u8]| {
        let units: Vec<u16> = rest
            .chunks_exact(2)
            .map(|p| {
                if le {
                    u16::from_le_bytes([p[0], p[1]])
                } else {
                    u16::from_be_bytes([p[0], p[1]])
                }
            })
            .collect();
        String::from_utf16_lossy(&units)
    };
    if let Some(rest) = bytes.strip_prefix(b"\xFF\xFE") {
        return utf16(true, rest);
    }
    if let Some(rest) = bytes.strip_prefix(b"\xFE\xFF") {
        return utf16(false, rest);
    }
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// Paragraphs of `text`: runs of lines separated by blank lines, each trimmed.
pub(crate) fn paragraphs(text: &str) -> Vec<Block> {
    let normalized = text.replace("\r\n", "\n").replace('\r', "\n");
    normalized
        .split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| Block::Paragraph(p.to_owned()))
        .collect()
}

/// A plain text file: one section of paragraphs.
pub(super) fn extract(text: &str, budget: &mut Budget) -> Result<Extracted, ExtractError> {
    budget.text(text.len())?;
    Ok(Extracted {
        sections: vec![Section::of_blocks(None, paragraphs(text))],
    })
}

/// An RTF file: its text, as paragraphs.
pub(super) fn rtf(bytes: &[u8], budget: &mut Budget) -> Result<Extracted, ExtractError> {
    let source = decode_text(bytes);
    // The parser's error type is not Send; keep only its message.
    let document =
        rtf_parser::RtfDocument::try_from(source.as_str()).map_err(|e| ExtractError::Corrupt(format!("RTF: {e}")))?;
    let text = document.get_text();
    budget.text(text.len())?;
    Ok(Extracted {
        sections: vec![Section::of_blocks(None, paragraphs(&text))],
    })
}

#[cfg(test)]
mod tests {
    use super::super::{extract as extract_any, Limits};
    use super::*;
    use enclave_protocol::DocumentKind;

    #[test]
    fn encodings_are_decoded_without_loss() {
        assert_eq!(decode_text("\u{feff}héllo".as_bytes()), "héllo");
        assert_eq!(decode_text(b"\xFF\xFEh\x00i\x00"), "hi");
        assert_eq!(decode_text(b"caf\xE9"), "café");
    }

    #[test]
    fn paragraphs_split_at_blank_lines() {
        let blocks = paragraphs("one\nline\r\n\r\ntwo\n\n\n  \nthree");
        assert_eq!(
            blocks,
            vec![
                Block::Paragraph("one\nline".into()),
                Block::Paragraph("two".into()),
                Block::Paragraph("three".into())
            ]
        );
    }

    #[test]
    fn rtf_text_is_read() {
        let rtf = br"{\rtf1\ansi{\fonttbl\f0\fswiss Helvetica;}\f0\pard The annual report is due in March.\par Second paragraph.\par}";
        let extracted = extract_any(rtf, DocumentKind::Rtf, Limits::default()).unwrap();
        let text = extracted.sections[0].markdown();
        assert!(text.contains("The annual report is due in March."), "{text}");
    }
}
