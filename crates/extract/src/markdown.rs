//! Markdown: headings, paragraphs, list items, code blocks and tables (pulldown-cmark).

use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};

use super::{Block, Budget, ExtractError, Extracted, Section, Table};

/// Reads a Markdown document.
pub(super) fn extract(source: &str, budget: &mut Budget) -> Result<Extracted, ExtractError> {
    budget.text(source.len())?;
    let mut blocks = Vec::new();
    let mut text = String::new();
    let mut heading: Option<u8> = None;
    let mut list_depth = 0usize;
    let mut table: Option<Table> = None;
    let mut row: Vec<String> = Vec::new();
    let mut cell = String::new();
    let mut in_cell = false;
    let flush = |text: &mut String, blocks: &mut Vec<Block>, heading: Option<u8>, list: bool| {
        let content = text.trim().to_owned();
        text.clear();
        if content.is_empty() {
            return;
        }
        blocks.push(match heading {
            Some(level) => Block::Heading { level, text: content },
            None if list => Block::Paragraph(format!("- {content}")),
            None => Block::Paragraph(content),
        });
    };
    for event in Parser::new_ext(source, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH) {
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                flush(&mut text, &mut blocks, None, list_depth > 0);
                heading = Some(match level {
                    HeadingLevel::H1 => 1,
                    HeadingLevel::H2 => 2,
                    HeadingLevel::H3 => 3,
                    HeadingLevel::H4 => 4,
                    HeadingLevel::H5 => 5,
                    HeadingLevel::H6 => 6,
                });
            }
            Event::End(TagEnd::Heading(_)) => {
                flush(&mut text, &mut blocks, heading, false);
                heading = None;
            }
            Event::Start(Tag::List(_)) => {
                flush(&mut text, &mut blocks, None, list_depth > 0);
                list_depth += 1;
            }
            Event::End(TagEnd::List(_)) => list_depth = list_depth.saturating_sub(1),
            Event::End(TagEnd::Paragraph | TagEnd::Item | TagEnd::CodeBlock | TagEnd::BlockQuote(_)) => {
                flush(&mut text, &mut blocks, None, list_depth > 0)
            }
            Event::Start(Tag::Table(_)) => {
                flush(&mut text, &mut blocks, None, false);
                table = Some(Table::default());
            }
            Event::End(TagEnd::TableHead) => {
                if let Some(t) = &mut table {
                    t.header = std::mem::take(&mut row);
                }
            }
            Event::End(TagEnd::TableRow) => {
                if let Some(t) = &mut table {
                    t.rows.push(std::mem::take(&mut row));
                }
            }
            Event::Start(Tag::TableCell) => {
                in_cell = true;
                cell.clear();
            }
            Event::End(TagEnd::TableCell) => {
                in_cell = false;
                row.push(cell.trim().to_owned());
            }
            Event::End(TagEnd::Table) => {
                if let Some(t) = table.take() {
                    budget.rows(t.rows.len())?;
                    blocks.push(Block::Table(t));
                }
            }
            Event::Text(t) | Event::Code(t) => {
                if in_cell {
                    cell.push_str(&t);
                } else {
                    text.push_str(&t);
                }
            }
            Event::SoftBreak | Event::HardBreak => {
                if in_cell {
                    cell.push(' ');
                } else {
                    text.push('\n');
                }
            }
            _ => {}
        }
    }
    flush(&mut text, &mut blocks, None, false);
    Ok(Extracted {
        sections: vec![Section::of_blocks(None, blocks)],
    })
}

#[cfg(test)]
mod tests {
    use super::super::Limits;
    use super::*;

    #[test]
    fn headings_lists_and_tables_are_structure() {
        let md = "# Guide\n\nIntro text.\n\n## Setup\n\n- install\n- run\n\n| a | b |\n|---|---|\n| 1 | 2 |\n";
        let extracted = extract(md, &mut Budget::new(Limits::default())).unwrap();
        let blocks = &extracted.sections[0].blocks;
        assert_eq!(
            blocks[0],
            Block::Heading {
                level: 1,
                text: "Guide".into()
            }
        );
        assert_eq!(blocks[1], Block::Paragraph("Intro text.".into()));
        assert_eq!(
            blocks[2],
            Block::Heading {
                level: 2,
                text: "Setup".into()
            }
        );
        assert_eq!(blocks[3], Block::Paragraph("- install".into()));
        assert_eq!(blocks[4], Block::Paragraph("- run".into()));
        assert_eq!(
            blocks[5],
            Block::Table(Table {
                header: vec!["a".into(), "b".into()],
                rows: vec![vec!["1".into(), "2".into()]]
            })
        );
    }
}
