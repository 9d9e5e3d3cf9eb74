//! One turn of the chat: send, edit and resend, or regenerate. Creates the conversation on a
//! new chat's first message, streams the answer into the page, waits for a stopped answer to be
//! stored, then shows what the server kept (and, after a first exchange, the title the model
//! writes a moment later).

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::NavigateOptions;

use super::state::ChatState;
use crate::api::{
    self, AnswerEvent, ApiError, Attachment, Conversation, CreateConversation, MessageRole, SendMessage, StreamControl,
    Uuid,
};
use crate::interop;

/// What a turn does.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Turn {
    /// Send a new message after the last one: its text and images.
    Send(String, Vec<Uuid>),
    /// Send a new version of an earlier user message: its id, the new text, its images.
    Edit(Uuid, String, Vec<Uuid>),
    /// A new answer to the last message.
    Regenerate,
}

/// The attachments of a message carrying `images`.
fn attach(images: &[Uuid]) -> Vec<Attachment> {
    images.iter().map(|&image_id| Attachment::Image { image_id }).collect()
}

/// How long after a first answer the model's title is read back.
const TITLE_DELAY: std::time::Duration = std::time::Duration::from_millis(2500);

impl ChatState {
    /// Runs `turn` unless one is already running; `navigate` moves a new chat to its address.
    pub fn run_turn(self, turn: Turn, navigate: impl Fn(&str, NavigateOptions) + Clone + 'static) {
        if self.streaming.with_untracked(Option::is_some) {
            return;
        }
        let Ok(control) = StreamControl::new() else {
            return;
        };
        self.turn_error.set(None);
        self.stick_to_bottom.set_value(true);
        self.stop_requested.set_value(false);
        self.control.set_value(Some(control.clone()));
        self.show_turn_start(&turn);
        spawn_local(async move {
            let id = match self.current.get_value().and_then(|id| id.parse::<Uuid>().ok()) {
                Some(id) => id,
                None => match self.create_conversation(navigate).await {
                    Ok(id) => id,
                    Err(e) => return self.finish_failed(e, turn),
                },
            };
            let first_exchange = self.messages.with_untracked(Vec::is_empty);
            let result = self.stream_answer(id, &turn, &control).await;
            if self.stop_requested.get_value() {
                // The server stops when the connection closes; this waits until it has stored
                // what was written, so that the reload below shows it.
                let _ = api::request_empty("POST", &format!("/api/v1/conversations/{id}/stop"), None).await;
                self.stop_requested.set_value(false);
            }
            if !self.shows(&id.to_string()) {
                // The user moved on to another conversation meanwhile.
                return;
            }
            match result {
                // Stored (complete, stopped or failed): show what the server kept.
                Ok(()) => {
                    if let Err(e) = self.reload(id, true).await {
                        self.turn_error.set(Some((e, Turn::Regenerate)));
                    }
                    self.streaming.set(None);
                    self.citations.set(Vec::new());
                    self.pending_user.set(None);
                    self.pending_images.set(Vec::new());
                    if first_exchange {
                        set_timeout(
                            move || spawn_local(async move { self.read_title(id).await }),
                            TITLE_DELAY,
                        );
                    }
                }
                Err(e) => self.finish_failed(e, turn),
            }
            self.control.set_value(None);
        });
    }

    /// Shows the turn at once: the user's words, the branch an edit replaces, the answer a
    /// regenerate replaces, and an empty answer that the stream fills.
    fn show_turn_start(self, turn: &Turn) {
        match turn {
            Turn::Send(text, images) => {
                self.pending_user.set(Some(text.clone()));
                self.pending_images.set(images.clone());
                self.draft.set(String::new());
            }
            Turn::Edit(edited, text, images) => {
                self.messages.update(|list| {
                    if let Some(at) = list.iter().position(|m| m.id == *edited) {
                        list.truncate(at);
                    }
                });
                self.pending_user.set(Some(text.clone()));
                self.pending_images.set(images.clone());
            }
            Turn::Regenerate => self.messages.update(|list| {
                if list.last().is_some_and(|m| m.role == MessageRole::Assistant) {
                    list.pop();
                }
            }),
        }
        self.citations.set(Vec::new());
        self.streaming.set(Some(String::new()));
    }

    /// Creates the conversation of a new chat and moves the page to its address.
    async fn create_conversation(self, navigate: impl Fn(&str, NavigateOptions) + 'static) -> Result<Uuid, ApiError> {
        let mut create = CreateConversation::default();
        self.scope.get_untracked().apply(&mut create.settings);
        let body = api::to_json(&create);
        let created: Conversation = api::request("POST", "/api/v1/conversations", Some(&body)).await?;
        self.current.set_value(Some(created.id.to_string()));
        self.conversation.set(Some(created.clone()));
        self.app.upsert_conversation(created.clone());
        navigate(
            &format!("/c/{}", created.id),
            NavigateOptions {
                replace: true,
                ..Default::default()
            },
        );
        Ok(created.id)
    }

    /// Streams the answer of `turn` in conversation `id` into the page.
    async fn stream_answer(self, id: Uuid, turn: &Turn, control: &StreamControl) -> Result<(), ApiError> {
        let (use_documents, document_ids) = self.scope.get_untracked().fields();
        let (path, body) = match turn {
            Turn::Send(text, images) => (
                format!("/api/v1/conversations/{id}/messages"),
                api::to_json(&SendMessage {
                    content: text.clone(),
                    attachments: attach(images),
                    use_documents,
                    document_ids,
                    ..SendMessage::default()
                }),
            ),
            Turn::Edit(edited, text, images) => (
                format!("/api/v1/conversations/{id}/messages"),
                api::to_json(&SendMessage {
                    content: text.clone(),
                    attachments: attach(images),
                    edit_message_id: Some(*edited),
                    use_documents,
                    document_ids,
                    ..SendMessage::default()
                }),
            ),
            Turn::Regenerate => (format!("/api/v1/conversations/{id}/regenerate"), serde_json::json!({})),
        };
        let mut first_token = true;
        api::stream(&path, &body, control, |event| match event {
            AnswerEvent::Citation(citation) => self.citations.update(|list| list.push(citation)),
            AnswerEvent::Token(text) => {
                if first_token {
                    // Read by the UI benchmark: from the event to the frame showing it.
                    first_token = false;
                    interop::mark("enclave-first-token-received");
                    request_animation_frame(|| interop::mark("enclave-first-token-shown"));
                }
                self.streaming.update(|s| {
                    if let Some(s) = s {
                        s.push_str(&text);
                    }
                })
            }
            AnswerEvent::Done(_) | AnswerEvent::Error(_) => {}
        })
        .await
    }

    /// Reads back the title the model wrote after the first exchange.
    async fn read_title(self, id: Uuid) {
        if let Ok(detail) = super::state::fetch(id).await {
            self.app.upsert_conversation(detail.conversation.clone());
            if self.shows(&id.to_string()) {
                self.conversation.set(Some(detail.conversation));
            }
        }
    }
}
