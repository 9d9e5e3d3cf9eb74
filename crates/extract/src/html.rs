//! HTML: headings, paragraphs, list items and tables in document order; scripts, styles and
//! other non-content elements dropped; the title as the first heading when the body has none.

use scraper::{ElementRef, Html, Node};

use super::{Block, Budget, ExtractError, Extracted, Section, Table};

/// Elements whose content is never text of the document.
const SKIPPED: [&str; 12] = [
    "script", "style", "noscript", "template", "head", "svg", "math", "iframe", "object", "canvas", "button", "select",
];
/// Elements that end a paragraph.
const BLOCKS: [&str; 17] = [
    "p",
    "div",
    "section",
    "article",
    "main",
    "header",
    "footer",
    "nav",
    "aside",
    "blockquote",
    "pre",
    "figure",
    "figcaption",
    "address",
    "dl",
    "dt",
    "dd",
];

/// Reads an HTML document.
pub(super) fn extract(html: &str, budget: &mut Budget) -> Result<Extracted, ExtractError> {
    budget.text(html.len())?;
    let document = Html::parse_document(html);
    let mut walker = Walker::default();
    walker.element(document.root_element(), budget)?;
    walker.flush();
    if !walker.blocks.iter().any(|b| matches!(b, Block::Heading { .. })) {
        let title = scraper::Selector::parse("title")
            .ok()
            .and_then(|s| document.select(&s).next().map(|t| t.text().collect::<String>()))
            .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|t| !t.is_empty());
        if let Some(text) = title {
            walker.blocks.insert(0, Block::Heading { level: 1, text });
        }
    }
    Ok(Extracted {
        sections: vec![Section::of_blocks(None, walker.blocks)],
    })
}

/// The walk's state.
#[derive(Default)]
struct Walker {
    /// Finished blocks.
    blocks: Vec<Block>,
    /// Inline text of the paragraph being read.
    text: String,
    /// Whether that paragraph is a list item.
    list_item: bool,
}

impl Walker {
    /// Ends the paragraph being read.
    fn flush(&mut self) {
        let text = self.text.split_whitespace().collect::<Vec<_>>().join(" ");
        self.text.clear();
        if !text.is_empty() {
            self.blocks.push(Block::Paragraph(if self.list_item {
                format!("- {text}")
            } else {
                text
            }));
        }
        self.list_item = false;
    }

    fn element(&mut self, element: ElementRef<'_>, budget: &mut Budget) -> Result<(), ExtractError> {
        let name = element.value().name();
        if SKIPPED.contains(&name) {
            return Ok(());
        }
        match name {
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                self.flush();
                let text = inline_text(element);
                if !text.is_empty() {
                    let level = name[1..].parse::<u8>().unwrap_or(1);
                    self.blocks.push(Block::Heading { level, text });
                }
                return Ok(());
            }
            "table" => {
                self.flush();
                if let Some(table) = table_of(element, budget)? {
                    self.blocks.push(Block::Table(table));
                }
                return Ok(());
            }
            "li" => {
                self.flush();
                self.list_item = true;
            }
            "br" => self.text.push('\n'),
            _ if BLOCKS.contains(&name) => self.flush(),
            _ => {}
        }
        for child in element.children() {
            match child.value() {
                Node::Text(text) => self.text.push_str(text),
                Node::Element(_) => {
                    if let Some(child) = ElementRef::wrap(child) {
                        self.element(child, budget)?;
                    }
                }
                _ => {}
            }
        }
        if name == "li" || BLOCKS.contains(&name) {
            self.flush();
        }
        Ok(())
    }
}

/// The visible text of an element, whitespace collapsed (skipped elements left out).
fn inline_text(element: ElementRef<'_>) -> String {
    let mut out = String::new();
    collect_text(element, &mut out);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn collect_text(element: ElementRef<'_>, out: &mut String) {
    for child in element.children() {
        match child.value() {
            Node::Text(text) => out.push_str(text),
            Node::Element(e) if !SKIPPED.contains(&e.name()) => {
                if let Some(child) = ElementRef::wrap(child) {
                    out.push(' ');
                    collect_text(child, out);
                }
            }
            _ => {}
        }
    }
}

/// A table: its rows (from `thead`, `tbody`, `tfoot` or directly), the first as the header.
fn table_of(table: ElementRef<'_>, budget: &mut Budget) -> Result<Option<Table>, ExtractError> {
    let mut rows: Vec<Vec<String>> = Vec::new();
    collect_rows(table, &mut rows);
    budget.rows(rows.len())?;
    if rows.is_empty() {
        return Ok(None);
    }
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    for row in &mut rows {
        row.resize(width, String::new());
    }
    let header = rows.remove(0);
    Ok(Some(Table { header, rows }))
}

/// The rows under `element`, in document order (a nested table's rows stay with it).
fn collect_rows(element: ElementRef<'_>, rows: &mut Vec<Vec<String>>) {
    for child in element.children().filter_map(ElementRef::wrap) {
        match child.value().name() {
            "tr" => {
                let cells: Vec<String> = child
                    .children()
                    .filter_map(ElementRef::wrap)
                    .filter(|c| matches!(c.value().name(), "td" | "th"))
                    .map(inline_text)
                    .collect();
                if cells.iter().any(|c| !c.is_empty()) {
                    rows.push(cells);
                }
            }
            "thead" | "tbody" | "tfoot" => collect_rows(child, rows),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Limits;
    use super::*;

    #[test]
    fn structure_is_kept_and_scripts_are_dropped() {
        let html = r#"<html><head><title>T</title><style>p{}</style></head><body>
            <h1>Report</h1><p>First <b>bold</b> words.</p><script>alert(1)</script>
            <ul><li>one</li><li>two</li></ul>
            <table><thead><tr><th>Name</th><th>Age</th></tr></thead>
                   <tbody><tr><td>Ann</td><td>31</td></tr><tr><td>Bo</td><td>42</td></tr></tbody></table>
            </body></html>"#;
        let extracted = extract(html, &mut Budget::new(Limits::default())).unwrap();
        let blocks = &extracted.sections[0].blocks;
        assert_eq!(
            blocks[0],
            Block::Heading {
                level: 1,
                text: "Report".into()
            }
        );
        assert_eq!(blocks[1], Block::Paragraph("First bold words.".into()));
        assert_eq!(blocks[2], Block::Paragraph("- one".into()));
        assert_eq!(blocks[3], Block::Paragraph("- two".into()));
        let Block::Table(table) = &blocks[4] else {
            panic!("{blocks:?}")
        };
        assert_eq!(table.header, ["Name", "Age"]);
        assert_eq!(table.rows, [["Ann", "31"], ["Bo", "42"]]);
        assert!(!extracted.sections[0].markdown().contains("alert"));
    }
}
