//! The state of the chat page, shared by its parts: the conversation shown, its active branch,
//! the turn in progress (the user's words before the server stores them, the answer as it
//! streams, its error), and how the view follows the newest text.

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::turn::Turn;
use crate::api::{
    self, ApiError, Citation, Conversation, ConversationDetail, Message, StreamControl, UpdateConversation, Uuid,
};
use crate::components::attachments::Attachments;
use crate::components::document_scope::DocumentScope;
use crate::state::AppState;

/// Every signal of the chat page; cheap to copy into closures.
#[derive(Clone, Copy)]
pub(super) struct ChatState {
    /// The conversation shown (`None` for a new chat not yet created).
    pub conversation: RwSignal<Option<Conversation>>,
    /// Its active branch, root first.
    pub messages: RwSignal<Vec<Message>>,
    /// Whether the conversation is being loaded.
    pub loading: RwSignal<bool>,
    /// Whether the conversation of the address does not exist.
    pub missing: RwSignal<bool>,
    /// While a turn runs: the user's words, shown before the server stores them.
    pub pending_user: RwSignal<Option<String>>,
    /// While a turn runs: the images sent with them.
    pub pending_images: RwSignal<Vec<Uuid>>,
    /// The images attached to the message being written.
    pub attachments: Attachments,
    /// The image shown enlarged (its blob URL).
    pub viewing_image: RwSignal<Option<String>>,
    /// While a turn runs: the answer so far.
    pub streaming: RwSignal<Option<String>>,
    /// While a turn runs: the sources of the answer, as they arrive.
    pub citations: RwSignal<Vec<Citation>>,
    /// The documents answers draw on (the conversation's setting).
    pub scope: RwSignal<DocumentScope>,
    /// The citation open in the viewer.
    pub viewing: RwSignal<Option<Citation>>,
    /// The last turn's failure and the turn to retry.
    pub turn_error: RwSignal<Option<(ApiError, Turn)>>,
    /// Aborts the running stream.
    pub control: StoredValue<Option<StreamControl>>,
    /// Set when the user stops the answer: the turn then waits for the server to store it.
    pub stop_requested: StoredValue<bool>,
    /// Whether the view follows the newest text (false once the user scrolls up).
    pub stick_to_bottom: StoredValue<bool>,
    /// The message being typed.
    pub draft: RwSignal<String>,
    /// Whether the conversation's settings panel is open.
    pub show_settings: RwSignal<bool>,
    /// The conversation shown, so that the address change after creating one does not reload
    /// it (the route's text, which may not be a valid id).
    pub current: StoredValue<Option<String>>,
    /// The app's shared state (the conversation list).
    pub app: AppState,
}

impl ChatState {
    /// A page showing nothing yet.
    pub fn new(app: AppState) -> Self {
        Self {
            app,
            conversation: RwSignal::new(None),
            messages: RwSignal::new(Vec::new()),
            loading: RwSignal::new(false),
            missing: RwSignal::new(false),
            pending_user: RwSignal::new(None),
            pending_images: RwSignal::new(Vec::new()),
            attachments: Attachments::new(),
            viewing_image: RwSignal::new(None),
            streaming: RwSignal::new(None),
            citations: RwSignal::new(Vec::new()),
            scope: RwSignal::new(DocumentScope::Off),
            viewing: RwSignal::new(None),
            turn_error: RwSignal::new(None),
            control: StoredValue::new(None),
            stop_requested: StoredValue::new(false),
            stick_to_bottom: StoredValue::new(true),
            draft: RwSignal::new(String::new()),
            show_settings: RwSignal::new(false),
            current: StoredValue::new(None),
        }
    }

    /// Whether an answer is streaming.
    pub fn busy(self) -> Signal<bool> {
        let streaming = self.streaming;
        Signal::derive(move || streaming.with(Option::is_some))
    }

    /// Whether `id` is still the conversation shown (the user may have moved on meanwhile).
    pub fn shows(self, id: &str) -> bool {
        self.current.get_value().as_deref() == Some(id)
    }

    /// Shows the conversation of the address `id` (or a new chat), dropping what was shown.
    pub fn show(self, id: Option<String>) {
        if let Some(control) = self.control.get_value() {
            control.abort();
        }
        self.current.set_value(id.clone());
        self.stick_to_bottom.set_value(true);
        self.turn_error.set(None);
        self.show_settings.set(false);
        self.streaming.set(None);
        self.citations.set(Vec::new());
        self.viewing.set(None);
        self.viewing_image.set(None);
        self.scope.set(DocumentScope::Off);
        self.pending_user.set(None);
        self.pending_images.set(Vec::new());
        self.messages.set(Vec::new());
        self.conversation.set(None);
        self.missing.set(false);
        match id {
            Some(id) => self.load(id),
            None => self.loading.set(false),
        }
    }

    /// Loads the conversation `id` from the server.
    fn load(self, id: String) {
        self.loading.set(true);
        spawn_local(async move {
            let result = match id.parse::<Uuid>() {
                Ok(uuid) => fetch(uuid).await,
                // Not an id: no such conversation.
                Err(_) => Err(ApiError {
                    status: 404,
                    code: api::ErrorCode::NotFound,
                    message: String::new(),
                }),
            };
            if !self.shows(&id) {
                return;
            }
            match result {
                Ok(detail) => self.apply(detail),
                Err(e) if e.status == 404 => self.missing.set(true),
                Err(e) => self.turn_error.set(Some((e, Turn::Regenerate))),
            }
            self.loading.set(false);
        });
    }

    /// Reads the conversation `id` again and shows what the server holds; with
    /// `update_list`, the sidebar's entry follows.
    pub async fn reload(self, id: Uuid, update_list: bool) -> Result<(), ApiError> {
        let detail = fetch(id).await?;
        if update_list {
            self.app.upsert_conversation(detail.conversation.clone());
        }
        if self.shows(&id.to_string()) {
            self.apply(detail);
        }
        Ok(())
    }

    /// Shows `detail`.
    fn apply(self, detail: ConversationDetail) {
        self.scope.set(DocumentScope::of(&detail.conversation.settings));
        self.conversation.set(Some(detail.conversation));
        self.messages.set(detail.messages);
    }

    /// Saves `scope` as the conversation's setting (a new chat saves it when it is created).
    pub fn save_scope(self, scope: DocumentScope) {
        let Some(conversation) = self.conversation.get_untracked() else {
            return;
        };
        let mut settings = conversation.settings.clone();
        scope.apply(&mut settings);
        let body = api::to_json(&UpdateConversation {
            settings: Some(settings),
            ..UpdateConversation::default()
        });
        spawn_local(async move {
            let path = format!("/api/v1/conversations/{}", conversation.id);
            match api::request::<Conversation>("PATCH", &path, Some(&body)).await {
                Ok(updated) if self.shows(&updated.id.to_string()) => self.conversation.set(Some(updated)),
                Ok(_) => {}
                Err(e) => self.turn_error.set(Some((e, Turn::Regenerate))),
            }
        });
    }

    /// Stops the running answer (the server keeps what was written).
    pub fn stop(self) {
        if let Some(control) = self.control.get_value() {
            self.stop_requested.set_value(true);
            control.abort();
        }
    }

    /// Ends a turn that failed before the answer started: the draft and its images come back,
    /// the error shows with a retry.
    pub fn finish_failed(self, error: ApiError, turn: Turn) {
        if let Turn::Send(text, images) = &turn {
            if self.draft.with_untracked(|d| d.trim().is_empty()) {
                self.draft.set(text.clone());
            }
            if self.attachments.list.with_untracked(Vec::is_empty) {
                self.attachments.restore(images);
            }
        }
        self.pending_user.set(None);
        self.pending_images.set(Vec::new());
        self.streaming.set(None);
        self.citations.set(Vec::new());
        self.turn_error.set(Some((error, turn)));
    }
}

/// The conversation `id` and its active branch.
pub(super) async fn fetch(id: Uuid) -> Result<ConversationDetail, ApiError> {
    api::request("GET", &format!("/api/v1/conversations/{id}"), None).await
}
