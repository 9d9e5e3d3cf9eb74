//! Office documents (zip + XML): DOCX and ODT (headings from their styles and outline levels,
//! lists, tables as tables, footnotes after the text) and PPTX (one section per slide, the
//! title as a heading, tables as tables).

use std::collections::HashMap;

use super::archive;
use super::xml::{attribute, walk, Node};
use super::{Block, Budget, ExtractError, Extracted, Section, Table};

/// Builds blocks from paragraph and table events, whatever the XML dialect.
#[derive(Default)]
struct Builder {
    /// Finished blocks.
    blocks: Vec<Block>,
    /// The paragraph being read, if any.
    paragraph: Option<String>,
    /// Its heading level, if it is a heading.
    heading: Option<u8>,
    /// Whether it is a list item.
    list_item: bool,
    /// Open tables (a table inside a cell nests).
    tables: Vec<TableBuild>,
}

/// A table being read.
#[derive(Default)]
struct TableBuild {
    rows: Vec<Vec<String>>,
    row: Vec<String>,
    cell: String,
}

impl Builder {
    fn start_paragraph(&mut self) {
        self.paragraph = Some(String::new());
        self.heading = None;
        self.list_item = false;
    }

    fn text(&mut self, text: &str) {
        if let Some(paragraph) = &mut self.paragraph {
            paragraph.push_str(text);
        }
    }

    fn end_paragraph(&mut self) {
        let Some(text) = self.paragraph.take() else { return };
        let text = text.trim().to_owned();
        if text.is_empty() {
            return;
        }
        if let Some(table) = self.tables.last_mut() {
            if !table.cell.is_empty() {
                table.cell.push(' ');
            }
            table.cell.push_str(&text);
            return;
        }
        self.blocks.push(match (self.heading, self.list_item) {
            (Some(level), _) => Block::Heading { level, text },
            (None, true) => Block::Paragraph(format!("- {text}")),
            (None, false) => Block::Paragraph(text),
        });
    }

    fn start_table(&mut self) {
        self.end_paragraph();
        self.tables.push(TableBuild::default());
    }

    fn start_row(&mut self) {
        if let Some(table) = self.tables.last_mut() {
            table.row.clear();
        }
    }

    fn end_cell(&mut self, repeat: usize) {
        self.end_paragraph();
        if let Some(table) = self.tables.last_mut() {
            let cell = std::mem::take(&mut table.cell);
            for _ in 0..repeat.max(1) {
                table.row.push(cell.clone());
            }
        }
    }

    fn end_row(&mut self) {
        if let Some(table) = self.tables.last_mut() {
            let row = std::mem::take(&mut table.row);
            if row.iter().any(|c| !c.trim().is_empty()) {
                table.rows.push(row);
            }
        }
    }

    fn end_table(&mut self, budget: &mut Budget) -> Result<(), ExtractError> {
        let Some(mut table) = self.tables.pop() else {
            return Ok(());
        };
        budget.rows(table.rows.len())?;
        if let Some(outer) = self.tables.last_mut() {
            // A table inside a cell becomes text of that cell.
            let text: Vec<String> = table.rows.iter().map(|r| r.join(" ")).collect();
            if !outer.cell.is_empty() {
                outer.cell.push(' ');
            }
            outer.cell.push_str(&text.join("; "));
            return Ok(());
        }
        if table.rows.is_empty() {
            return Ok(());
        }
        let header = table.rows.remove(0);
        let width = table.rows.iter().map(Vec::len).chain([header.len()]).max().unwrap_or(0);
        let pad = |mut row: Vec<String>| {
            row.resize(width, String::new());
            row
        };
        self.blocks.push(Block::Table(Table {
            header: pad(header),
            rows: table.rows.into_iter().map(pad).collect(),
        }));
        Ok(())
    }

    fn finish(mut self, budget: &mut Budget) -> Result<Vec<Block>, ExtractError> {
        self.end_paragraph();
        while !self.tables.is_empty() {
            self.end_table(budget)?;
        }
        let bytes: usize = self.blocks.iter().map(block_len).sum();
        budget.text(bytes)?;
        Ok(self.blocks)
    }
}

fn block_len(block: &Block) -> usize {
    match block {
        Block::Heading { text, .. } | Block::Paragraph(text) => text.len(),
        Block::Table(t) => t.header.iter().chain(t.rows.iter().flatten()).map(String::len).sum(),
    }
}

/// The heading level a Word style name or id means (`Heading 2`, `heading2`, `Title`).
fn heading_level(style: &str) -> Option<u8> {
    let lower = style.to_lowercase().replace(' ', "");
    if lower == "title" {
        return Some(1);
    }
    let digits = lower.strip_prefix("heading")?;
    digits
        .parse::<u8>()
        .ok()
        .filter(|l| (1..=9).contains(l))
        .map(|l| l.min(6))
}

/// A DOCX file: the body, then its footnotes and endnotes.
pub(super) fn docx(bytes: &[u8], budget: &mut Budget) -> Result<Extracted, ExtractError> {
    let mut zip = archive::open(bytes)?;
    let document = archive::read_text(&mut zip, "word/document.xml", budget)?
        .ok_or_else(|| ExtractError::Corrupt("DOCX without word/document.xml".into()))?;
    // Style ids mean nothing by themselves ("Heading1" or a custom id): their names decide.
    let mut style_names: HashMap<String, String> = HashMap::new();
    if let Some(styles) = archive::read_text(&mut zip, "word/styles.xml", budget)? {
        let mut current: Option<String> = None;
        walk(&styles, |node| match node {
            Node::Start {
                name: "style",
                attributes,
            } => current = attribute(&attributes, "styleId").map(str::to_owned),
            Node::Start {
                name: "name",
                attributes,
            } => {
                if let (Some(id), Some(name)) = (&current, attribute(&attributes, "val")) {
                    style_names.insert(id.clone(), name.to_owned());
                }
            }
            _ => {}
        })?;
    }
    let mut builder = Builder::default();
    let mut in_text = false;
    let mut failure = None;
    walk(&document, |node| match node {
        Node::Start { name, attributes } => match name {
            "p" => builder.start_paragraph(),
            "pStyle" => {
                if let Some(id) = attribute(&attributes, "val") {
                    let name = style_names.get(id).map(String::as_str).unwrap_or(id);
                    builder.heading = builder.heading.or(heading_level(name));
                }
            }
            "outlineLvl" => {
                if let Some(level) = attribute(&attributes, "val").and_then(|v| v.parse::<u8>().ok()) {
                    if level < 9 {
                        builder.heading = Some((level + 1).min(6));
                    }
                }
            }
            "numPr" => builder.list_item = true,
            "t" => in_text = true,
            "tab" => builder.text("\t"),
            "br" | "cr" => builder.text("\n"),
            "footnoteReference" | "endnoteReference" => {
                if let Some(id) = attribute(&attributes, "id") {
                    builder.text(&format!("[^{id}]"));
                }
            }
            "tbl" => builder.start_table(),
            "tr" => builder.start_row(),
            _ => {}
        },
        Node::End { name } => match name {
            "t" => in_text = false,
            "p" => builder.end_paragraph(),
            "tc" => builder.end_cell(1),
            "tr" => builder.end_row(),
            "tbl" => {
                if let Err(error) = builder.end_table(budget) {
                    failure = Some(error);
                }
            }
            _ => {}
        },
        Node::Text(text) => {
            if in_text {
                builder.text(text);
            }
        }
    })?;
    if let Some(error) = failure {
        return Err(error);
    }
    let mut blocks = builder.finish(budget)?;
    for part in ["word/footnotes.xml", "word/endnotes.xml"] {
        if let Some(notes) = archive::read_text(&mut zip, part, budget)? {
            blocks.extend(notes_of(&notes)?);
        }
    }
    Ok(Extracted {
        sections: vec![Section::of_blocks(None, blocks)],
    })
}

/// The notes of a footnotes or endnotes part, as `[^id]: text` paragraphs (separators skipped).
fn notes_of(xml: &str) -> Result<Vec<Block>, ExtractError> {
    let mut notes = Vec::new();
    let mut current: Option<(String, String)> = None;
    let mut in_text = false;
    walk(xml, |node| match node {
        Node::Start {
            name: "footnote" | "endnote",
            attributes,
        } => {
            let separator = attribute(&attributes, "type").is_some_and(|t| t.contains("eparator"));
            current = (!separator).then(|| (attribute(&attributes, "id").unwrap_or("?").to_owned(), String::new()));
        }
        Node::Start { name: "t", .. } => in_text = true,
        Node::End { name: "t" } => in_text = false,
        Node::End { name: "p" } => {
            if let Some((_, text)) = &mut current {
                text.push(' ');
            }
        }
        Node::End {
            name: "footnote" | "endnote",
        } => {
            if let Some((id, text)) = current.take() {
                let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
                if !text.is_empty() {
                    notes.push(Block::Paragraph(format!("[^{id}]: {text}")));
                }
            }
        }
        Node::Text(text) if in_text => {
            if let Some((_, note)) = &mut current {
                note.push_str(text);
            }
        }
        _ => {}
    })?;
    Ok(notes)
}

/// An ODT file (`content.xml`): headings by outline level, notes after the text.
pub(super) fn odt(bytes: &[u8], budget: &mut Budget) -> Result<Extracted, ExtractError> {
    let mut zip = archive::open(bytes)?;
    let content = archive::read_text(&mut zip, "content.xml", budget)?
        .ok_or_else(|| ExtractError::Corrupt("ODT without content.xml".into()))?;
    let mut builder = Builder::default();
    let mut notes: Vec<Block> = Vec::new();
    // Inside a note: its citation and body go to the notes, not the paragraph.
    let mut note_depth = 0usize;
    let mut note_citation = String::new();
    let mut note_text = String::new();
    let mut in_citation = false;
    let mut list_depth = 0usize;
    let mut repeat_stack: Vec<usize> = Vec::new();
    let mut failure = None;
    walk(&content, |node| match node {
        Node::Start { name, attributes } => match name {
            "note" => {
                note_depth += 1;
                note_citation.clear();
                note_text.clear();
            }
            "note-citation" => in_citation = true,
            // Inside a note only spaces count; the note's paragraphs are read as its text.
            _ if note_depth > 0 => note_text.push_str(if name == "s" { " " } else { "" }),
            "h" => {
                builder.start_paragraph();
                let level = attribute(&attributes, "outline-level")
                    .and_then(|l| l.parse::<u8>().ok())
                    .unwrap_or(1);
                builder.heading = Some(level.clamp(1, 6));
            }
            "p" => {
                builder.start_paragraph();
                builder.list_item = list_depth > 0;
            }
            "list" => list_depth += 1,
            "s" => {
                let count = attribute(&attributes, "c")
                    .and_then(|c| c.parse::<usize>().ok())
                    .unwrap_or(1);
                builder.text(&" ".repeat(count.min(100)));
            }
            "tab" => builder.text("\t"),
            "line-break" => builder.text("\n"),
            "table" => builder.start_table(),
            "table-row" => builder.start_row(),
            "table-cell" | "covered-table-cell" => repeat_stack.push(
                attribute(&attributes, "number-columns-repeated")
                    .and_then(|c| c.parse::<usize>().ok())
                    .unwrap_or(1)
                    .min(64),
            ),
            _ => {}
        },
        Node::End { name } => match name {
            "note-citation" => in_citation = false,
            "note" => {
                note_depth = note_depth.saturating_sub(1);
                builder.text(&format!("[^{}]", note_citation.trim()));
                let text = note_text.split_whitespace().collect::<Vec<_>>().join(" ");
                if !text.is_empty() {
                    notes.push(Block::Paragraph(format!("[^{}]: {text}", note_citation.trim())));
                }
            }
            _ if note_depth > 0 => note_text.push_str(if name == "p" { " " } else { "" }),
            "h" | "p" => builder.end_paragraph(),
            "list" => list_depth = list_depth.saturating_sub(1),
            "table-cell" | "covered-table-cell" => {
                let repeat = repeat_stack.pop().unwrap_or(1);
                builder.end_cell(repeat);
            }
            "table-row" => builder.end_row(),
            "table" => {
                if let Err(error) = builder.end_table(budget) {
                    failure = Some(error);
                }
            }
            _ => {}
        },
        Node::Text(text) => {
            if in_citation {
                note_citation.push_str(text);
            } else if note_depth > 0 {
                note_text.push_str(text);
            } else {
                builder.text(text);
            }
        }
    })?;
    if let Some(error) = failure {
        return Err(error);
    }
    let mut blocks = builder.finish(budget)?;
    blocks.extend(notes);
    Ok(Extracted {
        sections: vec![Section::of_blocks(None, blocks)],
    })
}

/// A PPTX file: one section per slide (its number as the page), the title as a heading.
pub(super) fn pptx(bytes: &[u8], budget: &mut Budget) -> Result<Extracted, ExtractError> {
    let mut zip = archive::open(bytes)?;
    let mut slides: Vec<(u32, String)> = archive::names(&zip)
        .into_iter()
        .filter_map(|name| {
            let number = name
                .strip_prefix("ppt/slides/slide")?
                .strip_suffix(".xml")?
                .parse::<u32>()
                .ok()?;
            Some((number, name))
        })
        .collect();
    if slides.is_empty() {
        return Err(ExtractError::Corrupt("PPTX without slides".into()));
    }
    if slides.len() > budget.limits.max_pages {
        return Err(ExtractError::TooLarge(format!(
            "the presentation has more than {} slides",
            budget.limits.max_pages
        )));
    }
    slides.sort();
    let mut sections = Vec::with_capacity(slides.len());
    for (position, (_, name)) in slides.into_iter().enumerate() {
        let xml = archive::read_text(&mut zip, &name, budget)?.unwrap_or_default();
        let mut builder = Builder::default();
        let mut in_text = false;
        let mut title_shape = false;
        let mut failure = None;
        walk(&xml, |node| match node {
            Node::Start { name, attributes } => match name {
                "sp" => title_shape = false,
                "ph" => {
                    title_shape = attribute(&attributes, "type").is_some_and(|t| t == "title" || t == "ctrTitle");
                }
                "p" => {
                    builder.start_paragraph();
                    if title_shape {
                        builder.heading = Some(1);
                    }
                }
                "t" => in_text = true,
                "br" => builder.text("\n"),
                "tbl" => builder.start_table(),
                "tr" => builder.start_row(),
                _ => {}
            },
            Node::End { name } => match name {
                "t" => in_text = false,
                "p" => builder.end_paragraph(),
                "tc" => builder.end_cell(1),
                "tr" => builder.end_row(),
                "tbl" => {
                    if let Err(error) = builder.end_table(budget) {
                        failure = Some(error);
                    }
                }
                _ => {}
            },
            Node::Text(text) => {
                if in_text {
                    builder.text(text);
                }
            }
        })?;
        if let Some(error) = failure {
            return Err(error);
        }
        sections.push(Section::of_blocks(Some(position as u32 + 1), builder.finish(budget)?));
    }
    Ok(Extracted { sections })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heading_styles_are_recognised_by_name_or_id() {
        assert_eq!(heading_level("Heading 2"), Some(2));
        assert_eq!(heading_level("heading1"), Some(1));
        assert_eq!(heading_level("Title"), Some(1));
        assert_eq!(heading_level("Normal"), None);
        assert_eq!(heading_level("Heading 9"), Some(6));
    }
}
