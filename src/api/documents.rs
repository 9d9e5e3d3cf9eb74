//! `/api/v1/documents`: upload (multipart, answered at once), list, get, status, the original
//! file, a section's text, delete, retry, and search. Extract, call the documents service, map
//! its records to the wire types.

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use enclave_protocol::{
    AuditAction, Document, DocumentListQuery, DocumentPage, DocumentPageText, ErrorCode, SearchHit, SearchRequest,
    SearchResponse, UploadResponse, UploadedPart,
};
use uuid::Uuid;

use super::audit::audited;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, Authenticated, ClientInfo, IdPath};
use super::{rfc3339, AppState};
use crate::audit::AuditEvent;
use crate::auth::roles::Permission;
use crate::documents::{DocumentError, SearchQuery};
use crate::store::{DocumentFilter, DocumentRecord};

/// Search hits returned at most.
const MAX_SEARCH_HITS: usize = 50;

/// A document record as the API shows it.
pub fn document_view(d: DocumentRecord) -> Document {
    Document {
        id: d.id,
        filename: d.filename,
        kind: d.kind,
        size_bytes: d.size_bytes,
        status: d.status,
        error: d.error,
        progress: d.progress,
        pages: d.pages,
        pages_without_text: d.pages_without_text,
        chunks: d.chunks,
        embedding_model: d.embedding_model,
        created_at: rfc3339(d.created_at),
        updated_at: rfc3339(d.updated_at),
    }
}

/// `POST /documents/upload`: every part named `file` is stored and queued (or refused on its
/// own); 202 at once, before any extraction.
pub async fn upload(
    State(state): State<AppState>,
    caller: Authenticated,
    ClientInfo(client): ClientInfo,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let user = caller.require(Permission::ManageOwnDocuments)?;
    let mut multipart = super::multipart::required(multipart, "files")?;
    let limit = state.documents.max_upload_bytes();
    let mut parts = Vec::new();
    while let Some(mut field) = multipart.next_field().await? {
        let name = field.name().unwrap_or_default().to_owned();
        let filename = field.file_name().unwrap_or("document").to_owned();
        if name != "file" {
            parts.push(refused(
                &filename,
                ErrorCode::ValidationError,
                format!("unexpected form field {name:?}; send files as \"file\""),
            ));
            super::multipart::drain(&mut field).await?;
            continue;
        }
        let Ok(bytes) = super::multipart::read_within(&mut field, usize::try_from(limit).unwrap_or(usize::MAX)).await?
        else {
            let error = ApiError::from(DocumentError::TooLarge { limit });
            parts.push(refused(&filename, error.code, error.message));
            continue;
        };
        let size = bytes.len();
        let uploaded = state.documents.upload(user.user_id, &filename, bytes).await;
        let event = AuditEvent::new(AuditAction::DocumentUpload)
            .by(user.user_id)
            .from_client(&client);
        let event = match &uploaded {
            Ok(accepted) => event
                .on(format!("document/{}", accepted.record.id))
                .with(serde_json::json!({
                    "kind": accepted.record.kind, "size_bytes": size, "duplicate": accepted.duplicate,
                })),
            Err(_) => event.with(serde_json::json!({ "size_bytes": size })),
        };
        match audited(&state, event, uploaded) {
            Ok(accepted) => parts.push(UploadedPart::Accepted {
                document: document_view(accepted.record),
                duplicate: accepted.duplicate,
            }),
            Err(error) => {
                if error.status.is_server_error() {
                    return Err(error);
                }
                parts.push(refused(&filename, error.code, error.message));
            }
        }
    }
    if parts.is_empty() {
        return Err(ApiError::validation("send at least one file as a part named \"file\""));
    }
    Ok((StatusCode::ACCEPTED, Json(UploadResponse { documents: parts })).into_response())
}

fn refused(filename: &str, code: ErrorCode, error: String) -> UploadedPart {
    UploadedPart::Refused {
        filename: crate::documents::display_name(filename),
        error,
        code,
    }
}

/// `GET /documents?limit=&cursor=&q=&kind=&status=`: newest first.
pub async fn list(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiQuery(query): ApiQuery<DocumentListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let user = caller.require(Permission::ReadOwn)?;
    Ok(Json(document_page(&state, user.user_id, query)?))
}

/// One page of `owner`'s documents as `query` asks.
pub(super) fn document_page(state: &AppState, owner: Uuid, query: DocumentListQuery) -> Result<DocumentPage, ApiError> {
    let filter = DocumentFilter {
        name: query.q,
        kind: query.kind,
        status: query.status,
    };
    let page = state
        .documents
        .list(owner, query.limit, query.cursor.as_deref(), filter)?;
    Ok(DocumentPage {
        items: page.items.into_iter().map(document_view).collect(),
        next_cursor: page.next.map(|c| c.encode()),
    })
}

/// `GET /documents/{id}` (also `/documents/{id}/status`).
pub async fn get(
    State(state): State<AppState>,
    caller: Authenticated,
    IdPath(id): IdPath,
) -> Result<impl IntoResponse, ApiError> {
    let user = caller.require(Permission::ReadOwn)?;
    Ok(Json(document_view(state.documents.get(user.user_id, id)?)))
}

/// `GET /documents/{id}/file`: the original, to its owner only, as a download that the
/// browser never renders in the page (HTML comes as plain text, and sandboxed).
pub async fn file(
    State(state): State<AppState>,
    caller: Authenticated,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    let user = caller.require(Permission::ReadOwn)?;
    let (record, bytes) = state.documents.original(user.user_id, id).await?;
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(record.kind.media_type()));
    let ascii: String = record
        .filename
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._- ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{ascii}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    Ok(response)
}

/// `GET /documents/{id}/sections/{index}`: the text of one section (a page, a sheet...), for
/// the citation viewer.
pub async fn section(
    State(state): State<AppState>,
    caller: Authenticated,
    Path((id, index)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let user = caller.require(Permission::ReadOwn)?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found("document"))?;
    let index: u32 = index.parse().map_err(|_| ApiError::not_found("section"))?;
    let section = state.documents.section(user.user_id, id, index)?;
    Ok(Json(DocumentPageText {
        document_id: id,
        index,
        page: section.page,
        member: section.member,
        text: section.text,
        has_text: section.has_text,
        ocr: section.ocr,
    }))
}

/// `DELETE /documents/{id}`: the file, the record, the chunks and vectors all go.
pub async fn delete(
    State(state): State<AppState>,
    caller: Authenticated,
    ClientInfo(client): ClientInfo,
    IdPath(id): IdPath,
) -> Result<impl IntoResponse, ApiError> {
    let user = caller.require(Permission::ManageOwnDocuments)?;
    let event = AuditEvent::new(AuditAction::DocumentDelete)
        .by(user.user_id)
        .on(format!("document/{id}"))
        .from_client(&client);
    audited(&state, event, state.documents.delete(user.user_id, id).await)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /documents/{id}/retry`: queue a failed (or indexed) document again.
pub async fn retry(
    State(state): State<AppState>,
    caller: Authenticated,
    IdPath(id): IdPath,
) -> Result<impl IntoResponse, ApiError> {
    let user = caller.require(Permission::ManageOwnDocuments)?;
    let record = state.documents.retry(user.user_id, id)?;
    Ok((StatusCode::ACCEPTED, Json(document_view(record))))
}

/// `POST /documents/search`: hybrid search over the caller's documents.
pub async fn search(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiJson(body): ApiJson<SearchRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let user = caller.require(Permission::ReadOwn)?;
    let limit = body.limit.unwrap_or(10);
    if !(1..=MAX_SEARCH_HITS).contains(&limit) {
        return Err(ApiError::validation(format!(
            "limit must be between 1 and {MAX_SEARCH_HITS}"
        )));
    }
    let time = |field: &str, value: Option<String>| -> Result<Option<i64>, ApiError> {
        value
            .map(|v| {
                humantime::parse_rfc3339_weak(&v)
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_millis() as i64)
                    .ok_or_else(|| ApiError::validation(format!("{field} must be an RFC 3339 time")))
            })
            .transpose()
    };
    let query = SearchQuery {
        text: body.query,
        document_ids: body.document_ids,
        kinds: body.kinds,
        uploaded_after: time("uploaded_after", body.uploaded_after)?,
        uploaded_before: time("uploaded_before", body.uploaded_before)?,
        limit,
        mode: body.mode.unwrap_or_default(),
        rerank: body.rerank,
    };
    let found = state.documents.search(user.user_id, query).await?;
    Ok(Json(SearchResponse {
        reranked_by: found.reranked_by,
        hits: found
            .hits
            .into_iter()
            .map(|f| SearchHit {
                chunk_id: f.chunk.chunk_id,
                document_id: f.chunk.document_id,
                source: f.source,
                section: f.chunk.section,
                page: f.chunk.page,
                page_end: f.chunk.page_end.filter(|end| Some(*end) != f.chunk.page),
                heading_path: f.chunk.heading_path,
                text: f.chunk.text,
                relevance: f.relevance,
            })
            .collect(),
    }))
}
