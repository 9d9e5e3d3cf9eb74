//! A small walker over XML (the parts of DOCX, PPTX, ODT files): start and end tags with their
//! local names and attributes, and text with character and entity references resolved.

use quick_xml::events::Event;
use quick_xml::Reader;

use super::ExtractError;

/// One step of the walk.
pub(super) enum Node<'a> {
    /// An opening tag (or an empty one, which is followed by its `End`).
    Start {
        /// Local name (`p` for `w:p`).
        name: &'a str,
        /// Attributes by local name, values unescaped.
        attributes: Vec<(String, String)>,
    },
    /// A closing tag.
    End {
        /// Local name.
        name: &'a str,
    },
    /// Text.
    Text(&'a str),
}

/// Calls `visit` for every node of `xml`, in order.
pub(super) fn walk(xml: &str, mut visit: impl FnMut(Node<'_>)) -> Result<(), ExtractError> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().trim_text(false);
    loop {
        let event = reader
            .read_event()
            .map_err(|e| ExtractError::Corrupt(format!("XML: {e}")))?;
        let empty = matches!(event, Event::Empty(_));
        match event {
            Event::Start(tag) | Event::Empty(tag) => {
                let local = tag.local_name();
                let name: String = local.as_ref().to_owned();
                let attributes = tag
                    .attributes()
                    .filter_map(Result::ok)
                    .map(|a| {
                        let key: String = a.key.local_name().as_ref().to_owned();
                        let value = a
                            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                            .map(|v| v.into_owned())
                            .unwrap_or_default();
                        (key, value)
                    })
                    .collect();
                visit(Node::Start {
                    name: &name,
                    attributes,
                });
                if empty {
                    visit(Node::End { name: &name });
                }
            }
            Event::End(tag) => {
                let local = tag.local_name();
                let name: String = local.as_ref().to_owned();
                visit(Node::End { name: &name });
            }
            Event::Text(text) => visit(Node::Text(&text.xml10_content())),
            Event::CData(data) => visit(Node::Text(&data.into_inner())),
            Event::GeneralRef(reference) => {
                let resolved = if reference.is_char_ref() {
                    reference.resolve_char_ref().ok().flatten().map(String::from)
                } else {
                    let name = reference.xml10_content();
                    quick_xml::escape::resolve_predefined_entity(&name).map(str::to_owned)
                };
                if let Some(text) = resolved {
                    visit(Node::Text(&text));
                }
            }
            Event::Eof => return Ok(()),
            _ => {}
        }
    }
}

/// The value of attribute `name` (local name).
pub(super) fn attribute<'a>(attributes: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attributes.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_resolved_and_empty_tags_close() {
        let mut seen = Vec::new();
        walk(
            r#"<w:p a:x="1 &amp; 2"><w:t>Tom &amp; Jerry&#x2019;s</w:t><w:br/></w:p>"#,
            |node| {
                seen.push(match node {
                    Node::Start { name, attributes } => format!("<{name} {attributes:?}>"),
                    Node::End { name } => format!("</{name}>"),
                    Node::Text(text) => text.to_owned(),
                })
            },
        )
        .unwrap();
        assert_eq!(
            seen.concat(),
            r#"<p [("x", "1 & 2")]><t []>Tom & Jerry’s</t><br []></br></p>"#
        );
    }
}
