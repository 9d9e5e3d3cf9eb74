//! `/api/v1/documents`: uploaded files, their ingestion, search over them, and the citations
//! answers carry.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ErrorCode;

/// What a file is, decided from its bytes (never from its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DocumentKind {
    /// PDF.
    Pdf,
    /// Word (OOXML).
    Docx,
    /// OpenDocument text.
    Odt,
    /// PowerPoint (OOXML).
    Pptx,
    /// Excel (OOXML).
    Xlsx,
    /// Excel 97-2003.
    Xls,
    /// OpenDocument spreadsheet.
    Ods,
    /// Comma-separated values.
    Csv,
    /// HTML.
    Html,
    /// Markdown.
    Markdown,
    /// Plain text.
    Text,
    /// Rich Text Format.
    Rtf,
    /// An email message (RFC 822 / MIME).
    Eml,
    /// A ZIP archive (its members are extracted).
    Zip,
    /// A photo or scan (PNG, JPEG, WebP, GIF, TIFF): its text is read by OCR.
    Image,
}

impl DocumentKind {
    /// Every kind, for tests and filters.
    pub const ALL: [DocumentKind; 15] = [
        DocumentKind::Pdf,
        DocumentKind::Docx,
        DocumentKind::Odt,
        DocumentKind::Pptx,
        DocumentKind::Xlsx,
        DocumentKind::Xls,
        DocumentKind::Ods,
        DocumentKind::Csv,
        DocumentKind::Html,
        DocumentKind::Markdown,
        DocumentKind::Text,
        DocumentKind::Rtf,
        DocumentKind::Eml,
        DocumentKind::Zip,
        DocumentKind::Image,
    ];

    /// The kind as the API spells it (`pdf`, `docx`...).
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentKind::Pdf => "pdf",
            DocumentKind::Docx => "docx",
            DocumentKind::Odt => "odt",
            DocumentKind::Pptx => "pptx",
            DocumentKind::Xlsx => "xlsx",
            DocumentKind::Xls => "xls",
            DocumentKind::Ods => "ods",
            DocumentKind::Csv => "csv",
            DocumentKind::Html => "html",
            DocumentKind::Markdown => "markdown",
            DocumentKind::Text => "text",
            DocumentKind::Rtf => "rtf",
            DocumentKind::Eml => "eml",
            DocumentKind::Zip => "zip",
            DocumentKind::Image => "image",
        }
    }

    /// The media type the original is served with.
    pub fn media_type(self) -> &'static str {
        match self {
            DocumentKind::Pdf => "application/pdf",
            DocumentKind::Docx => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            DocumentKind::Odt => "application/vnd.oasis.opendocument.text",
            DocumentKind::Pptx => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            DocumentKind::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            DocumentKind::Xls => "application/vnd.ms-excel",
            DocumentKind::Ods => "application/vnd.oasis.opendocument.spreadsheet",
            DocumentKind::Csv => "text/csv; charset=utf-8",
            DocumentKind::Html => "text/plain; charset=utf-8",
            DocumentKind::Markdown => "text/markdown; charset=utf-8",
            DocumentKind::Text => "text/plain; charset=utf-8",
            DocumentKind::Rtf => "application/rtf",
            DocumentKind::Eml => "message/rfc822",
            DocumentKind::Zip => "application/zip",
            // The original is served as a download, never shown in the page.
            DocumentKind::Image => "application/octet-stream",
        }
    }
}

/// Where a document is on its way to being searchable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DocumentStatus {
    /// Waiting for the ingestion worker.
    Queued,
    /// Its text is being read.
    Extracting,
    /// Its chunks are being embedded.
    Embedding,
    /// Searchable.
    Indexed,
    /// Ingestion failed; `error` says why. `retry` queues it again.
    Failed,
}

impl DocumentStatus {
    /// Every status, in the order ingestion goes through them.
    pub const ALL: [DocumentStatus; 5] = [
        DocumentStatus::Queued,
        DocumentStatus::Extracting,
        DocumentStatus::Embedding,
        DocumentStatus::Indexed,
        DocumentStatus::Failed,
    ];

    /// The status as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentStatus::Queued => "queued",
            DocumentStatus::Extracting => "extracting",
            DocumentStatus::Embedding => "embedding",
            DocumentStatus::Indexed => "indexed",
            DocumentStatus::Failed => "failed",
        }
    }

    /// Whether ingestion is still under way.
    pub fn in_progress(self) -> bool {
        matches!(
            self,
            DocumentStatus::Queued | DocumentStatus::Extracting | DocumentStatus::Embedding
        )
    }
}

/// How far ingestion has come.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DocumentProgress {
    /// Pages (or sections) read so far.
    pub pages_done: u32,
    /// Pages (or sections) in the file, once known.
    pub pages_total: u32,
    /// Chunks embedded so far.
    pub chunks_done: u32,
    /// Chunks to embed, once known.
    pub chunks_total: u32,
    /// 0 to 1 over the whole ingestion (extraction counts for a tenth).
    pub fraction: f32,
}

/// A document as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// Its id.
    pub id: Uuid,
    /// The name it was uploaded under (display text only: files are stored by id).
    pub filename: String,
    /// What it is, from its bytes.
    pub kind: DocumentKind,
    /// Size of the original, in bytes.
    pub size_bytes: u64,
    /// Where ingestion stands.
    pub status: DocumentStatus,
    /// Why it failed.
    pub error: Option<String>,
    /// How far ingestion has come.
    pub progress: DocumentProgress,
    /// Pages, for formats that have them.
    pub pages: Option<u32>,
    /// Pages that have no text layer (scans: read once OCR arrives).
    #[serde(default)]
    pub pages_without_text: Vec<u32>,
    /// Searchable chunks.
    pub chunks: u32,
    /// The embedding model its vectors come from.
    pub embedding_model: Option<String>,
    /// Upload time, RFC 3339.
    pub created_at: String,
    /// Last change, RFC 3339.
    pub updated_at: String,
}

/// One part of an upload: the stored document, or why that part was refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum UploadedPart {
    /// Stored and queued for ingestion (or found: the same bytes were uploaded before).
    Accepted {
        /// The document.
        #[serde(flatten)]
        document: Document,
        /// True when these exact bytes were there already: the existing document is returned.
        duplicate: bool,
    },
    /// Refused at once; the other parts are not affected.
    Refused {
        /// The name the part was sent under.
        filename: String,
        /// For people.
        error: String,
        /// For programs (`PAYLOAD_TOO_LARGE`, `UNSUPPORTED_FILE_TYPE`, `EMPTY_FILE`).
        code: ErrorCode,
    },
}

/// `POST /documents/upload`: 202 with one entry per part, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadResponse {
    /// The parts.
    pub documents: Vec<UploadedPart>,
}

/// `GET /documents`: one page of the list, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentPage {
    /// The documents.
    pub items: Vec<Document>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

/// The query of `GET /documents`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DocumentListQuery {
    /// Documents per page, 1 to 200 (50 when absent).
    pub limit: Option<usize>,
    /// Where the previous page ended.
    pub cursor: Option<String>,
    /// Only names containing this (case-insensitive).
    pub q: Option<String>,
    /// Only this kind.
    pub kind: Option<DocumentKind>,
    /// Only this status.
    pub status: Option<DocumentStatus>,
}

/// `POST /documents/search`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// What to look for.
    pub query: String,
    /// Only these documents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document_ids: Option<Vec<Uuid>>,
    /// Only these kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinds: Option<Vec<DocumentKind>>,
    /// Only documents uploaded at or after this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded_after: Option<String>,
    /// Only documents uploaded before this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded_before: Option<String>,
    /// Hits to return, 1 to 50 (10 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// `hybrid` (default), `vector` or `text`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<SearchMode>,
    /// Rerank the hits with the server's cross-encoder (a `rerank` model): absent, hybrid
    /// search reranks when the server has one; `false` never; `true` always (422 when the
    /// server has none, 503 when it cannot serve).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerank: Option<bool>,
}

/// How a search ranks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// Vector and BM25 fused by reciprocal rank.
    #[default]
    Hybrid,
    /// Vector similarity only.
    Vector,
    /// BM25 only.
    Text,
}

/// One passage found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// The chunk.
    pub chunk_id: Uuid,
    /// Its document.
    pub document_id: Uuid,
    /// The document's name.
    pub source: String,
    /// The section it comes from (1-based; `GET /documents/{id}/sections/{section}`).
    pub section: u32,
    /// First page of the chunk (1-based), for formats with pages.
    pub page: Option<u32>,
    /// Last page, when the chunk spans several.
    pub page_end: Option<u32>,
    /// Headings above the chunk, outermost first.
    pub heading_path: Vec<String>,
    /// The chunk's text.
    pub text: String,
    /// 0 to 1, most relevant highest (comparable within one answer).
    pub relevance: f32,
}

/// `POST /documents/search`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResponse {
    /// Most relevant first.
    pub hits: Vec<SearchHit>,
    /// The rerank model that ordered the hits (their relevance is then its score); null when
    /// they are in the retrieval's own order.
    #[serde(default)]
    pub reranked_by: Option<String>,
}

/// `event: citation`: a source the answer draws on, most relevant first; also stored on the
/// message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Citation {
    /// The document's name.
    pub source: String,
    /// The page (1-based), for formats with pages.
    pub page: Option<u32>,
    /// 0 to 1.
    pub relevance: f32,
    /// The section it comes from (1-based; `GET /documents/{id}/sections/{section}`).
    #[serde(default)]
    pub section: u32,
    /// The archive member or attachment it comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// The document.
    pub document_id: Uuid,
    /// The chunk.
    pub chunk_id: Uuid,
    /// The passage, shortened.
    pub snippet: String,
    /// The passage was recognised from a scan or photo (OCR): its words may be misread.
    #[serde(default)]
    pub ocr: bool,
}

/// `GET /documents/{id}/pages/{n}`: one page's (or section's) text, for the citation viewer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentPageText {
    /// The document.
    pub document_id: Uuid,
    /// Position of the section (1-based).
    pub index: u32,
    /// The page number, for formats with pages.
    pub page: Option<u32>,
    /// The archive member or attachment it comes from.
    pub member: Option<String>,
    /// Its text (tables as Markdown).
    pub text: String,
    /// False for a page without a text layer.
    pub has_text: bool,
    /// The text was recognised from a scan or photo (OCR).
    #[serde(default)]
    pub ocr: bool,
}
