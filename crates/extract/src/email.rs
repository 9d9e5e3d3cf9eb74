//! Email messages (EML): the headers that matter (from, to, date, subject), the body as text
//! (an HTML-only body converted), then every attachment of a type Enclave reads, extracted in
//! turn and marked with its file name.

use mail_parser::{MessageParser, MimeHeaders};

use super::text::paragraphs;
use super::{extract_member, Block, Budget, ExtractError, Extracted, Section};
use crate::detect::detect;

/// Reads a message found at `depth`.
pub(super) fn extract(bytes: &[u8], budget: &mut Budget, depth: u32) -> Result<Extracted, ExtractError> {
    if depth > budget.limits.max_depth {
        return Err(ExtractError::TooLarge(format!(
            "attachments are nested more than {} deep",
            budget.limits.max_depth
        )));
    }
    let message = MessageParser::default()
        .parse(bytes)
        .ok_or_else(|| ExtractError::Corrupt("not an email message".into()))?;
    let mut blocks = Vec::new();
    let subject = message.subject().unwrap_or("(no subject)").to_owned();
    blocks.push(Block::Heading {
        level: 1,
        text: subject.clone(),
    });
    let addresses = |address: Option<&mail_parser::Address<'_>>| {
        address
            .map(|a| {
                a.iter()
                    .map(|addr| match (addr.name(), addr.address()) {
                        (Some(name), Some(mail)) => format!("{name} <{mail}>"),
                        (None, Some(mail)) => mail.to_owned(),
                        (Some(name), None) => name.to_owned(),
                        (None, None) => String::new(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    let mut header = vec![format!("From: {}", addresses(message.from()))];
    header.push(format!("To: {}", addresses(message.to())));
    if let Some(date) = message.date() {
        header.push(format!("Date: {}", date.to_rfc3339()));
    }
    header.push(format!("Subject: {subject}"));
    blocks.push(Block::Paragraph(header.join("\n")));
    for index in 0..message.text_body_count() {
        if let Some(body) = message.body_text(index) {
            budget.text(body.len())?;
            blocks.extend(paragraphs(&body));
        }
    }
    let mut extracted = Extracted {
        sections: vec![Section::of_blocks(None, blocks)],
    };
    let attachments: Vec<_> = message.attachments().collect();
    if attachments.len() > budget.limits.max_members {
        return Err(ExtractError::TooLarge(format!(
            "the message has more than {} attachments",
            budget.limits.max_members
        )));
    }
    for (position, attachment) in attachments.into_iter().enumerate() {
        let name = attachment
            .attachment_name()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("attachment {}", position + 1));
        let content = attachment.contents();
        budget.unpack(content.len() as u64)?;
        let Some(kind) = detect(content, &name) else {
            tracing::debug!(attachment = %name, "attachment of an unknown type skipped");
            continue;
        };
        extract_member(&mut extracted, &name, content, kind, budget, depth)?;
    }
    Ok(extracted)
}
