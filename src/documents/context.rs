//! The sources of an answer from documents: when the chosen documents fit the prompt's budget
//! their whole text goes in (so that "summarize this file" or "how many rows" sees all of
//! it), otherwise the best chunks by hybrid search, as many as fit. Either way the citations
//! are the hybrid ranking's chunks, most relevant first, and the instructions tell the model to
//! answer from the sources and to say when they do not hold the answer.

use enclave_protocol::{Citation, SearchMode};
use uuid::Uuid;

use super::search::SearchQuery;
use super::{DocumentError, DocumentService};

/// Chunks cited at most.
const MAX_CITATIONS: usize = 8;
/// Characters of a citation's snippet.
const SNIPPET_CHARS: usize = 300;
/// Chunks looked at when the whole documents do not fit.
const MAX_CHUNKS: usize = 12;

/// Which documents an answer draws on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocumentScope {
    /// All of the user's documents.
    All,
    /// These (each must be the user's).
    Only(Vec<Uuid>),
}

/// What the prompt gets from the documents.
#[derive(Debug, Clone, Default)]
pub struct DocumentContext {
    /// Instructions and numbered sources, for the system message.
    pub prompt: String,
    /// The sources cited, most relevant first.
    pub citations: Vec<Citation>,
    /// Whether whole documents went in (rather than chunks).
    pub whole: bool,
}

/// The instructions before the sources.
const INSTRUCTIONS: &str = "Answer the user's question from the sources below. Cite the sources you use by their \
number, like [1]. If the sources do not contain the answer, say that the documents do not contain it; do not make \
one up.";

/// What the prompt says when nothing relevant was found.
const NOTHING_FOUND: &str = "The user asked you to answer from their documents, but nothing relevant to this \
question was found in them. Say so plainly, then help as well as you can without them.";

impl DocumentService {
    /// The sources for answering `question` from `scope`, within `budget` tokens as `count`
    /// counts them (the chat model's tokens).
    pub async fn context(
        &self,
        owner: Uuid,
        question: &str,
        scope: &DocumentScope,
        budget: usize,
        count: &(dyn Fn(&str) -> usize + Sync),
    ) -> Result<DocumentContext, DocumentError> {
        let ids = match scope {
            DocumentScope::All => None,
            DocumentScope::Only(ids) => Some(ids.as_slice()),
        };
        let documents = self.scope(owner, ids)?;
        let ranked = if documents.is_empty() {
            Vec::new()
        } else {
            self.search(
                owner,
                SearchQuery {
                    text: question.to_owned(),
                    document_ids: Some(documents.iter().map(|d| d.id).collect()),
                    limit: MAX_CHUNKS,
                    mode: SearchMode::Hybrid,
                    ..SearchQuery::default()
                },
            )
            .await?
            .hits
        };
        let citations: Vec<Citation> = ranked
            .iter()
            .take(MAX_CITATIONS)
            .map(|found| Citation {
                source: found.source.clone(),
                page: found.chunk.page,
                relevance: found.relevance,
                section: found.chunk.section,
                member: found.chunk.member.clone(),
                document_id: found.chunk.document_id,
                chunk_id: found.chunk.chunk_id,
                snippet: snippet(&found.chunk.text),
                ocr: self
                    .inner
                    .store
                    .get_section(owner, found.chunk.document_id, found.chunk.section)
                    .is_ok_and(|s| s.ocr),
            })
            .collect();

        // Whole documents when they fit.
        let instructions_cost = count(INSTRUCTIONS) + 16;
        if !documents.is_empty() {
            let mut sources = Vec::new();
            let mut used = instructions_cost;
            let mut fits = true;
            'documents: for document in &documents {
                let sections = self.inner.store.sections(document.id)?;
                for section in sections.iter().filter(|s| s.has_text) {
                    let label = label(&document.filename, section.member.as_deref(), section.page);
                    let entry = format!("[{}] {label}\n{}", sources.len() + 1, section.text);
                    used += count(&entry) + 2;
                    if used > budget {
                        fits = false;
                        break 'documents;
                    }
                    sources.push(entry);
                }
            }
            if fits && !sources.is_empty() {
                return Ok(DocumentContext {
                    prompt: format!("{INSTRUCTIONS}\n\nSources:\n\n{}", sources.join("\n\n")),
                    citations,
                    whole: true,
                });
            }
        }

        // The best chunks that fit.
        if ranked.is_empty() {
            return Ok(DocumentContext {
                prompt: NOTHING_FOUND.to_owned(),
                citations: Vec::new(),
                whole: false,
            });
        }
        let mut sources = Vec::new();
        let mut used = instructions_cost;
        let mut cited = Vec::new();
        for found in &ranked {
            let label = label(&found.source, found.chunk.member.as_deref(), found.chunk.page);
            let entry = format!("[{}] {label}\n{}", sources.len() + 1, found.chunk.text);
            let cost = count(&entry) + 2;
            if used + cost > budget {
                break;
            }
            used += cost;
            sources.push(entry);
            cited.push(found.chunk.chunk_id);
        }
        if sources.is_empty() {
            return Ok(DocumentContext {
                prompt: NOTHING_FOUND.to_owned(),
                citations: Vec::new(),
                whole: false,
            });
        }
        Ok(DocumentContext {
            prompt: format!("{INSTRUCTIONS}\n\nSources:\n\n{}", sources.join("\n\n")),
            citations: citations.into_iter().filter(|c| cited.contains(&c.chunk_id)).collect(),
            whole: false,
        })
    }
}

/// How a source is named in the prompt: file, member, page.
fn label(source: &str, member: Option<&str>, page: Option<u32>) -> String {
    let mut label = source.to_owned();
    if let Some(member) = member {
        label.push_str(" › ");
        label.push_str(member);
    }
    if let Some(page) = page {
        label.push_str(&format!(", page {page}"));
    }
    label
}

/// The start of a passage, cut at a word boundary.
fn snippet(text: &str) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= SNIPPET_CHARS {
        return flat;
    }
    let cut: String = flat.chars().take(SNIPPET_CHARS).collect();
    let end = cut.rfind(' ').unwrap_or(cut.len());
    format!("{}…", &cut[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_are_short_and_cut_between_words() {
        assert_eq!(snippet("a  b\nc"), "a b c");
        let long = "word ".repeat(200);
        let s = snippet(&long);
        assert!(s.chars().count() <= SNIPPET_CHARS + 1);
        assert!(s.ends_with("word…"));
    }

    #[test]
    fn labels_name_member_and_page() {
        assert_eq!(label("a.zip", Some("b.pdf"), Some(3)), "a.zip › b.pdf, page 3");
        assert_eq!(label("r.docx", None, None), "r.docx");
    }
}
