//! Chunking: a document's sections cut into passages that fit the embedding model's window,
//! measured in that model's tokens. Text is split on the largest structure that fits
//! (headings, paragraphs, sentences, words: text-splitter's Markdown splitter), never inside a
//! word, with about an eighth of overlap; tables are packed whole rows at a time with their
//! header repeated in every chunk. Each chunk keeps its page, its member and the headings
//! above it.

use text_splitter::{ChunkConfig, MarkdownSplitter};
use tokenizers::Tokenizer;

use super::extract::{Block, Extracted, Table};

/// One passage to embed.
#[derive(Debug, Clone, PartialEq)]
pub struct Passage {
    /// Its section (1-based), for the viewer.
    pub section: u32,
    /// Its page, for formats with pages.
    pub page: Option<u32>,
    /// The archive member or attachment it comes from.
    pub member: Option<String>,
    /// The headings above it, outermost first.
    pub heading_path: Vec<String>,
    /// Its text.
    pub text: String,
}

/// How passages are sized.
#[derive(Debug, Clone, Copy)]
pub struct ChunkSize {
    /// The most tokens of one passage.
    pub capacity: usize,
    /// Tokens shared by neighbouring passages of running text.
    pub overlap: usize,
}

impl ChunkSize {
    /// `capacity` tokens a passage, overlap `overlap` or an eighth of the capacity.
    pub fn new(capacity: usize, overlap: Option<usize>) -> Self {
        let capacity = capacity.max(8);
        let overlap = overlap.unwrap_or(capacity / 8).min(capacity / 2);
        Self { capacity, overlap }
    }
}

/// Cuts `extracted` into passages of at most `size.capacity` tokens of `tokenizer`.
pub fn passages(extracted: &Extracted, tokenizer: &Tokenizer, size: ChunkSize) -> Vec<Passage> {
    let count = |text: &str| tokenizer.encode_fast(text, false).map_or(text.len(), |e| e.len());
    let config = ChunkConfig::new(size.capacity)
        .with_sizer(tokenizer)
        .with_overlap(size.overlap)
        .unwrap_or_else(|_| ChunkConfig::new(size.capacity).with_sizer(tokenizer));
    let splitter = MarkdownSplitter::new(config);
    let mut out = Vec::new();
    // Headings stay in force across sections (a DOCX is one section, a PDF has none).
    let mut headings: Vec<(u8, String)> = Vec::new();
    for (index, section) in extracted.sections.iter().enumerate() {
        let emit = |out: &mut Vec<Passage>, heading_path: Vec<String>, text: String| {
            if !text.trim().is_empty() {
                out.push(Passage {
                    section: index as u32 + 1,
                    page: section.page,
                    member: section.member.clone(),
                    heading_path,
                    text,
                });
            }
        };
        // Runs of text blocks go through the splitter together; tables alone.
        let mut run: Vec<&Block> = Vec::new();
        let flush = |run: &mut Vec<&Block>, headings: &mut Vec<(u8, String)>, out: &mut Vec<Passage>| {
            if run.is_empty() {
                return;
            }
            let (text, marks) = render_run(run);
            run.clear();
            let mut mark = 0;
            for (offset, chunk) in splitter.chunk_indices(&text) {
                while mark < marks.len() && marks[mark].0 <= offset {
                    let (_, level, heading) = &marks[mark];
                    set_heading(headings, *level, heading);
                    mark += 1;
                }
                let path = headings.iter().map(|(_, h)| h.clone()).collect();
                if !is_only_headings(chunk) {
                    emit(out, path, chunk.to_owned());
                }
            }
            for (_, level, heading) in &marks[mark..] {
                set_heading(headings, *level, heading);
            }
        };
        for block in &section.blocks {
            match block {
                Block::Table(table) => {
                    flush(&mut run, &mut headings, &mut out);
                    let path: Vec<String> = headings.iter().map(|(_, h)| h.clone()).collect();
                    for text in table_chunks(table, size.capacity, &count) {
                        emit(&mut out, path.clone(), text);
                    }
                }
                other => run.push(other),
            }
        }
        flush(&mut run, &mut headings, &mut out);
    }
    out
}

/// A run of headings and paragraphs as Markdown, with where each heading starts.
fn render_run(run: &[&Block]) -> (String, Vec<(usize, u8, String)>) {
    let mut text = String::new();
    let mut marks = Vec::new();
    for block in run {
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        match block {
            Block::Heading { level, text: heading } => {
                marks.push((text.len(), *level, heading.clone()));
                text.push_str(&"#".repeat(usize::from((*level).clamp(1, 6))));
                text.push(' ');
                text.push_str(heading);
            }
            Block::Paragraph(paragraph) => text.push_str(paragraph),
            Block::Table(table) => text.push_str(&table.markdown()),
        }
    }
    (text, marks)
}

/// Puts `heading` at `level` in the path (dropping deeper ones).
fn set_heading(headings: &mut Vec<(u8, String)>, level: u8, heading: &str) {
    headings.retain(|(l, _)| *l < level);
    headings.push((level, heading.to_owned()));
}

/// Whether a chunk is nothing but heading lines (a title without its text adds noise).
fn is_only_headings(chunk: &str) -> bool {
    chunk
        .lines()
        .filter(|l| !l.trim().is_empty())
        .all(|l| l.trim_start().starts_with('#'))
}

/// A table in chunks of whole rows, each starting with the header. A row too long for a chunk
/// by itself goes alone (cut at word boundaries only then, as a last resort).
fn table_chunks(table: &Table, capacity: usize, count: &dyn Fn(&str) -> usize) -> Vec<String> {
    let header = table.markdown_header();
    let header_tokens = count(&header);
    let mut chunks = Vec::new();
    let mut current = header.clone();
    let mut current_tokens = header_tokens;
    let mut rows_in_current = 0;
    for row in &table.rows {
        let line = Table::markdown_row(row);
        let tokens = count(&line) + 1;
        if rows_in_current > 0 && current_tokens + tokens > capacity {
            chunks.push(std::mem::replace(&mut current, header.clone()));
            current_tokens = header_tokens;
            rows_in_current = 0;
        }
        if header_tokens + tokens > capacity {
            // The row alone is too long even with its header: its words, cut to fit.
            if rows_in_current > 0 {
                chunks.push(std::mem::replace(&mut current, header.clone()));
                current_tokens = header_tokens;
                rows_in_current = 0;
            }
            let mut piece = String::new();
            for word in line.split_whitespace() {
                if !piece.is_empty() && count(&piece) + count(word) + 1 > capacity {
                    chunks.push(std::mem::take(&mut piece));
                }
                if !piece.is_empty() {
                    piece.push(' ');
                }
                piece.push_str(word);
            }
            if !piece.is_empty() {
                chunks.push(piece);
            }
            continue;
        }
        current.push('\n');
        current.push_str(&line);
        current_tokens += tokens;
        rows_in_current += 1;
    }
    if rows_in_current > 0 || table.rows.is_empty() {
        chunks.push(current);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::super::extract::Section;
    use super::*;

    /// A tokenizer whose tokens are words (enough to check the packing rules).
    fn words() -> Tokenizer {
        use tokenizers::models::wordlevel::WordLevel;
        use tokenizers::pre_tokenizers::whitespace::Whitespace;
        let vocab: std::collections::HashMap<String, u32> = [("[UNK]".to_owned(), 0)].into_iter().collect();
        let model = WordLevel::builder()
            .vocab(vocab.into_iter().collect())
            .unk_token("[UNK]".into())
            .build()
            .unwrap();
        let mut tokenizer = Tokenizer::new(model);
        tokenizer.with_pre_tokenizer(Some(Whitespace {}));
        tokenizer
    }

    fn section(blocks: Vec<Block>) -> Extracted {
        Extracted {
            sections: vec![Section::of_blocks(Some(3), blocks)],
        }
    }

    #[test]
    fn passages_fit_the_window_and_keep_their_heading_path() {
        let long: Vec<String> = (0..60)
            .map(|i| format!("Sentence number {i} says something."))
            .collect();
        let extracted = section(vec![
            Block::Heading {
                level: 1,
                text: "Guide".into(),
            },
            Block::Heading {
                level: 2,
                text: "Install".into(),
            },
            Block::Paragraph(long.join(" ")),
            Block::Heading {
                level: 2,
                text: "Use".into(),
            },
            Block::Paragraph("Run it.".into()),
        ]);
        let tokenizer = words();
        let size = ChunkSize::new(40, None);
        let passages = passages(&extracted, &tokenizer, size);
        assert!(passages.len() > 3);
        for p in &passages {
            let tokens = tokenizer.encode(p.text.as_str(), false).unwrap().len();
            assert!(tokens <= 40, "{tokens}: {}", p.text);
            assert_eq!(p.page, Some(3));
            // Never cut inside a word.
            assert!(p.text.split_whitespace().all(|w| !w.is_empty()));
        }
        assert_eq!(passages[1].heading_path, ["Guide", "Install"]);
        let last = passages.last().unwrap();
        assert!(last.text.contains("Run it."));
        assert_eq!(last.heading_path, ["Guide", "Use"]);
    }

    #[test]
    fn tables_split_between_rows_with_the_header_repeated() {
        let table = Table {
            header: vec!["City".into(), "Country".into()],
            rows: (0..30)
                .map(|i| vec![format!("City{i}"), format!("Country{i}")])
                .collect(),
        };
        let extracted = section(vec![Block::Table(table)]);
        let passages = passages(&extracted, &words(), ChunkSize::new(40, None));
        assert!(passages.len() > 1);
        let mut seen = 0;
        for p in &passages {
            let lines: Vec<&str> = p.text.lines().collect();
            assert_eq!(lines[0], "| City | Country |");
            assert_eq!(lines[1], "| --- | --- |");
            for line in &lines[2..] {
                assert!(line.starts_with("| City") && line.ends_with(" |"), "{line}");
                seen += 1;
            }
        }
        assert_eq!(seen, 30);
    }
}
