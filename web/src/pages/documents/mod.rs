//! The documents page: adding files ([`upload`]), and the user's documents with their
//! ingestion followed live (a progress bar per file through every stage, pages and chunks
//! counted), their errors, retry, delete with confirmation, and a filter by name, type and
//! status.

mod upload;

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{self, Document, DocumentKind, DocumentPage, DocumentStatus};
use crate::components::sidebar::Sidebar;
use crate::icons::{Icon, Svg};
use crate::state::AppState;
use upload::{human_size, DropZone, Uploads};

/// How often the list is read again while files are on their way.
const POLL: std::time::Duration = std::time::Duration::from_millis(1000);

/// Documents per page of the list.
const PAGE: usize = 200;

/// The filter of the list.
#[derive(Clone, Copy)]
struct Filter {
    name: RwSignal<String>,
    kind: RwSignal<String>,
    status: RwSignal<String>,
}

impl Filter {
    /// The list's query string for a page after `cursor`.
    fn query(self, cursor: Option<&str>) -> String {
        let mut query = format!("/api/v1/documents?limit={PAGE}");
        for (key, value) in [
            ("q", self.name.get_untracked()),
            ("kind", self.kind.get_untracked()),
            ("status", self.status.get_untracked()),
        ] {
            if !value.trim().is_empty() {
                query.push_str(&format!("&{key}={}", api::encode(value.trim())));
            }
        }
        if let Some(cursor) = cursor {
            query.push_str(&format!("&cursor={}", api::encode(cursor)));
        }
        query
    }
}

/// The list: the documents loaded, the next page's cursor, the last error.
#[derive(Clone, Copy)]
struct Listing {
    documents: RwSignal<Vec<Document>>,
    next_cursor: RwSignal<Option<String>>,
    loaded: RwSignal<bool>,
    error: RwSignal<Option<String>>,
    filter: Filter,
}

impl Listing {
    /// Reads the first page again; documents of later pages already shown are kept.
    fn reload(self) {
        let query = self.filter.query(None);
        spawn_local(async move {
            match api::request::<DocumentPage>("GET", &query, None).await {
                Ok(page) => {
                    self.documents.update(|shown| {
                        let oldest_new = page.items.last().map(|d| d.created_at.clone());
                        let later: Vec<Document> = match (&oldest_new, page.next_cursor.is_some()) {
                            (Some(oldest), true) => shown
                                .iter()
                                .filter(|d| d.created_at < *oldest && !page.items.iter().any(|n| n.id == d.id))
                                .cloned()
                                .collect(),
                            _ => Vec::new(),
                        };
                        *shown = page.items.into_iter().chain(later).collect();
                    });
                    if self.next_cursor.with_untracked(Option::is_none) || !self.loaded.get_untracked() {
                        self.next_cursor.set(page.next_cursor);
                    }
                    self.error.set(None);
                }
                Err(e) => self.error.set(Some(e.message)),
            }
            self.loaded.set(true);
        });
    }

    /// Appends the next page.
    fn load_more(self) {
        let Some(cursor) = self.next_cursor.get_untracked() else {
            return;
        };
        let query = self.filter.query(Some(&cursor));
        spawn_local(async move {
            match api::request::<DocumentPage>("GET", &query, None).await {
                Ok(page) => {
                    self.documents.update(|shown| {
                        for document in page.items {
                            if !shown.iter().any(|d| d.id == document.id) {
                                shown.push(document);
                            }
                        }
                    });
                    self.next_cursor.set(page.next_cursor);
                }
                Err(e) => self.error.set(Some(e.message)),
            }
        });
    }

    /// Whether any document shown is still being ingested.
    fn in_progress(self) -> bool {
        self.documents
            .with_untracked(|list| list.iter().any(|d| d.status.in_progress()))
    }
}

/// The documents page.
#[component]
pub fn DocumentsPage() -> impl IntoView {
    let app = expect_context::<AppState>();
    let filter = Filter {
        name: RwSignal::new(String::new()),
        kind: RwSignal::new(String::new()),
        status: RwSignal::new(String::new()),
    };
    let listing = Listing {
        documents: RwSignal::new(Vec::new()),
        next_cursor: RwSignal::new(None),
        loaded: RwSignal::new(false),
        error: RwSignal::new(None),
        filter,
    };
    let uploads = Uploads::new(Callback::new(move |()| listing.reload()));
    // A change of the filter reads the list again.
    Effect::new(move |_| {
        filter.name.track();
        filter.kind.track();
        filter.status.track();
        listing.next_cursor.set(None);
        listing.loaded.set(false);
        listing.reload();
    });
    // Follow ingestion while anything is on its way.
    if let Ok(poll) = set_interval_with_handle(
        move || {
            if listing.in_progress() || uploads.busy() {
                listing.reload();
            }
        },
        POLL,
    ) {
        on_cleanup(move || poll.clear());
    }
    view! {
        <div class="layout">
            <Sidebar/>
            <main class="documents-page" aria-label="Documents">
                <header class="chat-head">
                    <button type="button" class="icon menu" aria-label="Open the conversation list"
                        on:click=move |_| app.sidebar_open.update(|o| *o = !*o)><Svg icon=Icon::Menu/></button>
                    <h1 class="chat-title">"Documents"</h1>
                </header>
                <div class="documents-body">
                    <DropZone uploads=uploads/>
                    <FilterBar filter=filter/>
                    <Show when=move || listing.error.get().is_some()>
                        <p class="form-error" role="alert">{move || listing.error.get()}</p>
                    </Show>
                    <Show when=move || listing.loaded.get() && listing.documents.with(Vec::is_empty)>
                        <p class="empty-list">
                            {move || if filter.name.with(|n| n.is_empty()) && filter.kind.with(String::is_empty) && filter.status.with(String::is_empty) {
                                "No documents yet. Add files above, then ask about them in a chat."
                            } else {
                                "No document matches the filter."
                            }}
                        </p>
                    </Show>
                    <ul class="document-list" aria-label="Your documents"
                        data-count=move || listing.documents.with(Vec::len).to_string()>
                        <For each=move || listing.documents.get()
                            key=|d| (d.id, d.status, d.progress.pages_done, d.progress.chunks_done, d.progress.chunks_total, d.updated_at.clone())
                            let:document>
                            <DocumentRow document=document listing=listing/>
                        </For>
                    </ul>
                    <Show when=move || listing.next_cursor.with(Option::is_some)>
                        <button type="button" class="ghost" on:click=move |_| listing.load_more()>"Load more"</button>
                    </Show>
                </div>
            </main>
        </div>
    }
}

/// The filter: name, type, status.
#[component]
fn FilterBar(filter: Filter) -> impl IntoView {
    view! {
        <div class="filter-bar" role="search">
            <label class="visually-hidden" for="document-filter">"Filter documents by name"</label>
            <input id="document-filter" class="filter" type="search" placeholder="Filter by name"
                prop:value=move || filter.name.get() on:input=move |ev| filter.name.set(event_target_value(&ev))/>
            <label class="visually-hidden" for="kind-filter">"Type"</label>
            <select id="kind-filter" on:change=move |ev| filter.kind.set(event_target_value(&ev))>
                <option value="">"All types"</option>
                {DocumentKind::ALL.map(|k| view! { <option value=k.as_str()>{k.as_str().to_uppercase()}</option> }).to_vec()}
            </select>
            <label class="visually-hidden" for="status-filter">"Status"</label>
            <select id="status-filter" on:change=move |ev| filter.status.set(event_target_value(&ev))>
                <option value="">"Any status"</option>
                {DocumentStatus::ALL.map(|s| view! { <option value=s.as_str()>{s.as_str()}</option> }).to_vec()}
            </select>
        </div>
    }
}

/// What the progress bar says about where ingestion stands.
fn stage_text(document: &Document) -> String {
    let p = &document.progress;
    match document.status {
        DocumentStatus::Queued => "Queued".into(),
        DocumentStatus::Extracting if p.pages_total > 0 => {
            format!("Reading: page {} of {}", p.pages_done, p.pages_total)
        }
        DocumentStatus::Extracting => "Reading".into(),
        DocumentStatus::Embedding if p.chunks_total > 0 => {
            format!("Indexing: {} of {} passages", p.chunks_done, p.chunks_total)
        }
        DocumentStatus::Embedding => "Indexing".into(),
        DocumentStatus::Indexed => "Ready".into(),
        DocumentStatus::Failed => "Failed".into(),
    }
}

/// What a document is: type, size, pages, passages.
fn details(document: &Document) -> String {
    let mut parts = vec![document.kind.as_str().to_uppercase(), human_size(document.size_bytes)];
    if let Some(pages) = document.pages {
        parts.push(format!("{pages} page{}", if pages == 1 { "" } else { "s" }));
    }
    if !document.pages_without_text.is_empty() {
        parts.push(format!("{} without text", document.pages_without_text.len()));
    }
    if document.status == DocumentStatus::Indexed {
        parts.push(format!("{} passages", document.chunks));
    }
    parts.join(" · ")
}

/// One document: its name and details, its stage and progress, its error; retry and delete.
#[component]
fn DocumentRow(document: Document, listing: Listing) -> impl IntoView {
    let id = document.id;
    let confirming = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let failed = document.status == DocumentStatus::Failed;
    let in_progress = document.status.in_progress();
    let fraction = document.progress.fraction;
    let name = document.filename.clone();
    let retry = move |_| {
        spawn_local(async move {
            match api::request::<Document>("POST", &format!("/api/v1/documents/{id}/retry"), None).await {
                Ok(_) => listing.reload(),
                Err(e) => error.set(Some(e.message)),
            }
        })
    };
    let delete = move |_| {
        spawn_local(async move {
            match api::request_empty("DELETE", &format!("/api/v1/documents/{id}"), None).await {
                Ok(()) => listing.documents.update(|list| list.retain(|d| d.id != id)),
                Err(e) => error.set(Some(e.message)),
            }
        })
    };
    view! {
        <li class="document" class:failed=failed data-id=id.to_string() data-status=document.status.as_str()>
            <div class="document-main">
                <span class="name" title=name.clone()>{name.clone()}</span>
                <span class="meta">{details(&document)}</span>
            </div>
            <div class="document-stage">
                <span class="status">{stage_text(&document)}</span>
                {in_progress.then(|| view! {
                    <progress max="1" value=fraction.to_string() aria-label=format!("Ingestion of {name}")></progress>
                })}
            </div>
            {document.error.clone().map(|e| view! { <p class="form-error document-error" role="alert">{e}</p> })}
            <Show when=move || error.get().is_some()>
                <p class="form-error" role="alert">{move || error.get()}</p>
            </Show>
            <div class="document-actions">
                {failed.then(|| view! { <button type="button" class="ghost retry" on:click=retry>"Retry"</button> })}
                <Show when=move || confirming.get()
                    fallback=move || view! {
                        <button type="button" class="icon" aria-label="Delete document" title="Delete"
                            on:click=move |_| confirming.set(true)><Svg icon=Icon::Trash/></button>
                    }>
                    <span class="confirm-inline" role="alertdialog" aria-label="Confirm deletion">
                        "Delete this document and its index?"
                        <button type="button" class="danger-button" on:click=delete>"Delete"</button>
                        <button type="button" class="ghost" on:click=move |_| confirming.set(false)>"Cancel"</button>
                    </span>
                </Show>
            </div>
        </li>
    }
}
