//! Which documents a conversation answers from: none, all of the user's, or chosen ones. The
//! choice is the conversation's setting (saved as soon as it changes) and is also sent with
//! every message, so that a new chat's first message already uses it.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{self, ConversationSettings, Document, DocumentPage, DocumentStatus, Uuid};

/// The documents an answer draws on.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum DocumentScope {
    /// None: a plain chat.
    #[default]
    Off,
    /// All of the user's documents.
    All,
    /// These documents.
    Chosen(Vec<Uuid>),
}

impl DocumentScope {
    /// The scope a conversation's settings hold.
    pub fn of(settings: &ConversationSettings) -> Self {
        match (settings.use_documents, &settings.document_ids) {
            (Some(false), _) => Self::Off,
            // Chosen, even none yet (the server then finds nothing, and the answer says so).
            (_, Some(ids)) => Self::Chosen(ids.clone()),
            (Some(true), _) => Self::All,
            _ => Self::Off,
        }
    }

    /// `settings` with this scope (the message fields have the same two values).
    pub fn apply(&self, settings: &mut ConversationSettings) {
        let (use_documents, ids) = self.fields();
        settings.use_documents = use_documents;
        settings.document_ids = ids;
    }

    /// `use_documents` and `document_ids` for this scope.
    pub fn fields(&self) -> (Option<bool>, Option<Vec<Uuid>>) {
        match self {
            Self::Off => (Some(false), None),
            Self::All => (Some(true), None),
            Self::Chosen(ids) => (Some(true), Some(ids.clone())),
        }
    }

    /// The value of the picker's select.
    fn key(&self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::All => "all",
            Self::Chosen(_) => "chosen",
        }
    }
}

/// The picker: a select (none / all / chosen) and, for chosen, the user's searchable documents
/// as checkboxes. `on_change` gets every change.
#[component]
pub fn DocumentScopePicker(scope: RwSignal<DocumentScope>, on_change: Callback<DocumentScope>) -> impl IntoView {
    let documents = RwSignal::new(Vec::<Document>::new());
    let error = RwSignal::new(None::<String>);
    let choosing = Memo::new(move |_| matches!(scope.get(), DocumentScope::Chosen(_)));
    // The list is read when the user chooses documents (it changes as files are indexed).
    Effect::new(move |_| {
        if choosing.get() {
            spawn_local(async move {
                let path = "/api/v1/documents?limit=200&status=indexed";
                match api::request::<DocumentPage>("GET", path, None).await {
                    Ok(page) => documents.set(page.items),
                    Err(e) => error.set(Some(e.message)),
                }
            });
        }
    });
    let set = move |next: DocumentScope| {
        scope.set(next.clone());
        on_change.run(next);
    };
    let on_select = move |ev| {
        let next = match event_target_value(&ev).as_str() {
            "all" => DocumentScope::All,
            "chosen" => DocumentScope::Chosen(Vec::new()),
            _ => DocumentScope::Off,
        };
        set(next);
    };
    let toggle = move |id: Uuid, on: bool| {
        let mut ids = match scope.get_untracked() {
            DocumentScope::Chosen(ids) => ids,
            _ => Vec::new(),
        };
        ids.retain(|i| *i != id);
        if on {
            ids.push(id);
        }
        set(DocumentScope::Chosen(ids));
    };
    view! {
        <div class="scope" role="group" aria-label="Documents to answer from">
            <label for="document-scope">"Answer from"</label>
            <select id="document-scope" on:change=on_select prop:value=move || scope.with(|s| s.key())>
                <option value="off">"no documents"</option>
                <option value="all">"all my documents"</option>
                <option value="chosen">"chosen documents…"</option>
            </select>
            <Show when=move || choosing.get()>
                <fieldset class="scope-list">
                    <legend class="visually-hidden">"Documents"</legend>
                    <Show when=move || documents.with(Vec::is_empty)>
                        <p class="hint">
                            {move || error.get().unwrap_or_else(|| "No searchable documents yet: add some on the Documents page.".into())}
                        </p>
                    </Show>
                    <For each=move || documents.get() key=|d| d.id let:d>
                        {
                            let id = d.id;
                            let checked = move || scope.with(|s| matches!(s, DocumentScope::Chosen(ids) if ids.contains(&id)));
                            view! {
                                <label class="check">
                                    <input type="checkbox" value=id.to_string() prop:checked=checked
                                        disabled=d.status != DocumentStatus::Indexed
                                        on:change=move |ev| toggle(id, event_target_checked(&ev))/>
                                    {d.filename.clone()}
                                </label>
                            }
                        }
                    </For>
                </fieldset>
            </Show>
        </div>
    }
}
