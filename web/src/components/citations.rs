//! The sources of an answer: numbered chips under it, and the viewer a chip opens, with the
//! cited page's text (the passage highlighted and scrolled to) beside the original file at that
//! page. The original is fetched with the user's token and shown from a blob URL: a PDF in a
//! frame at its page, any other kind as a download (never rendered in the page: an HTML
//! document must not run as the app).

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{self, ApiError, Citation, Document, DocumentKind, DocumentPageText};
use crate::highlight::locate;
use crate::icons::{Icon, Svg};

/// How a citation reads: file (and archive member), page.
pub fn citation_label(citation: &Citation) -> String {
    let mut label = citation.source.clone();
    if let Some(member) = &citation.member {
        label.push_str(" › ");
        label.push_str(member);
    }
    if let Some(page) = citation.page {
        label.push_str(&format!(", p. {page}"));
    }
    label
}

/// The numbered chips; a click opens the viewer through `open`.
#[component]
pub fn CitationChips(citations: Signal<Vec<Citation>>, open: Callback<Citation>) -> impl IntoView {
    let numbered = move || citations.get().into_iter().enumerate().collect::<Vec<_>>();
    view! {
        <Show when=move || !citations.with(Vec::is_empty)>
            <ol class="citations" aria-label="Sources">
                <For each=numbered
                    key=|(i, c)| (*i, c.chunk_id) let:entry>
                    {
                        let (i, citation) = entry;
                        let label = citation_label(&citation);
                        let ocr = if citation.ocr { " · OCR" } else { "" };
                        let title = format!("{label}{ocr} · relevance {:.0}%\n{}", citation.relevance * 100.0, citation.snippet);
                        view! {
                            <li>
                                <button type="button" class="citation-chip" title=title
                                    on:click=move |_| open.run(citation.clone())>
                                    <span class="n">{i + 1}</span>
                                    <span class="label">{label}</span>
                                </button>
                            </li>
                        }
                    }
                </For>
            </ol>
        </Show>
    }
}

/// The page's text in three parts: before the passage, the passage, after it (all in the
/// first when the passage is not found).
fn split_at_passage(text: &str, snippet: &str) -> (String, String, String) {
    match locate(text, snippet) {
        Some(range) => (
            text[..range.start].to_owned(),
            text[range.clone()].to_owned(),
            text[range.end..].to_owned(),
        ),
        None => (text.to_owned(), String::new(), String::new()),
    }
}

/// The original as the viewer shows it.
#[derive(Clone, Debug, PartialEq)]
enum Original {
    /// A PDF, from this blob URL, shown at the page.
    Pdf(String),
    /// Another kind: offered as a download from this blob URL.
    Download(String, String),
}

/// The viewer of one citation, as a modal dialog; Esc or the close button ends it.
#[component]
pub fn CitationViewer(citation: Citation, on_close: Callback<()>) -> impl IntoView {
    let section = RwSignal::new(None::<Result<DocumentPageText, ApiError>>);
    let original = RwSignal::new(None::<Result<Original, ApiError>>);
    let id = citation.document_id;
    let index = citation.section;
    spawn_local(async move {
        let path = format!("/api/v1/documents/{id}/sections/{index}");
        section.set(Some(api::request("GET", &path, None).await));
    });
    spawn_local(async move {
        let result = async {
            let document: Document = api::request("GET", &format!("/api/v1/documents/{id}"), None).await?;
            let url = api::original_url(id).await?;
            Ok(if document.kind == DocumentKind::Pdf {
                Original::Pdf(url)
            } else {
                Original::Download(url, document.filename)
            })
        }
        .await;
        original.set(Some(result));
    });
    on_cleanup(move || {
        if let Some(Ok(Original::Pdf(url) | Original::Download(url, _))) = original.get_untracked() {
            let _ = web_sys::Url::revoke_object_url(&url);
        }
    });
    let handle = window_event_listener(leptos::ev::keydown, move |ev| {
        if ev.key() == "Escape" {
            ev.prevent_default();
            ev.stop_propagation();
            on_close.run(());
        }
    });
    on_cleanup(move || handle.remove());
    let mark = NodeRef::<leptos::html::Mark>::new();
    Effect::new(move |_| {
        if let Some(mark) = mark.get() {
            mark.scroll_into_view();
        }
    });
    let close = NodeRef::<leptos::html::Button>::new();
    Effect::new(move |_| {
        if let Some(button) = close.get() {
            let _ = button.focus();
        }
    });
    let page = citation.page;
    let snippet = citation.snippet.clone();
    let label = citation_label(&citation);
    view! {
        <div class="modal-scrim" on:click=move |_| on_close.run(())></div>
        <section class="viewer" role="dialog" aria-modal="true" aria-labelledby="viewer-title">
            <header class="viewer-head">
                <h2 id="viewer-title">{label}</h2>
                <button type="button" class="icon" aria-label="Close the source" node_ref=close
                    on:click=move |_| on_close.run(())><Svg icon=Icon::Close/></button>
            </header>
            <div class="viewer-body">
                <div class="section-text" aria-label="The cited page's text">
                    {move || match section.get() {
                        None => view! { <div class="spinner" role="status" aria-label="Loading"></div> }.into_any(),
                        Some(Err(e)) => view! { <p class="form-error" role="alert">{e.message}</p> }.into_any(),
                        Some(Ok(text)) if !text.has_text => view! {
                            <p class="hint">"This page has no text layer (a scan): see the original."</p>
                        }.into_any(),
                        Some(Ok(text)) => {
                            let (before, passage, after) = split_at_passage(&text.text, &snippet);
                            let ocr = text.ocr.then(|| view! {
                                <p class="ocr-note">"Recognised from a scan (OCR): words may be misread; compare with the original."</p>
                            });
                            view! {
                                {ocr}
                                <pre>{before}<mark node_ref=mark class="cited">{passage}</mark>{after}</pre>
                            }.into_any()
                        }
                    }}
                </div>
                <div class="original">
                    {move || match original.get() {
                        None => view! { <div class="spinner" role="status" aria-label="Loading the original"></div> }.into_any(),
                        Some(Err(e)) => view! { <p class="form-error" role="alert">{e.message}</p> }.into_any(),
                        Some(Ok(Original::Pdf(url))) => {
                            let src = match page {
                                Some(page) => format!("{url}#page={page}"),
                                None => url,
                            };
                            view! { <iframe class="pdf" title="The original document" src=src></iframe> }.into_any()
                        }
                        Some(Ok(Original::Download(url, filename))) => view! {
                            <a class="download" href=url download=filename.clone()>{format!("Download the original ({filename})")}</a>
                        }.into_any(),
                    }}
                </div>
            </div>
        </section>
    }
}
