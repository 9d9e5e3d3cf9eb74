//! The chat: the sidebar, the conversation's active branch, the answer streaming in, the
//! message box; new chats are created on their first message.
//!
//! [`state::ChatState`] holds the page's signals; [`turn`] runs a turn; the parts of the view
//! are components of their own: [`ChatHeader`], [`MessageLog`], [`welcome::Welcome`].

mod state;
mod turn;
mod welcome;

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::{use_navigate, use_params_map};

use crate::api::{self, Conversation, MessageRole, ModelCapability, ModelState, ModelStatus, UpdateConversation, Uuid};
use crate::components::citations::CitationViewer;
use crate::components::composer::Composer;
use crate::components::conversation_settings::{status_label, ConversationSettingsPanel};
use crate::components::document_scope::DocumentScopePicker;
use crate::components::images::{ImageViewer, MessageImages};
use crate::components::message::{copy_code_on_click, MessageActions, MessageView, StreamingAnswer};
use crate::components::sidebar::Sidebar;
use crate::errors::describe_turn_error;
use crate::icons::{Icon, Svg};
use crate::state::AppState;
use state::ChatState;
use turn::Turn;
use welcome::Welcome;

/// How often a loading model's status is asked again.
const MODEL_POLL: std::time::Duration = std::time::Duration::from_millis(1500);

/// The chat page.
#[component]
pub fn ChatPage() -> impl IntoView {
    let app = expect_context::<AppState>();
    let params = use_params_map();
    let navigate = use_navigate();
    let chat = ChatState::new(app);

    // Follow the route: a new chat, or another conversation.
    Effect::new(move |_| {
        let id = params.with(|p| p.get("id"));
        if id != chat.current.get_value() {
            chat.show(id);
        }
    });

    // Esc closes an enlarged image, else stops the answer.
    let handle = window_event_listener(leptos::ev::keydown, move |ev| {
        if ev.key() == "Escape" && chat.viewing_image.with_untracked(Option::is_some) {
            ev.prevent_default();
            chat.viewing_image.set(None);
        } else if ev.key() == "Escape" && chat.streaming.with_untracked(Option::is_some) {
            ev.prevent_default();
            chat.stop();
        }
    });
    on_cleanup(move || {
        handle.remove();
        if let Some(control) = chat.control.get_value() {
            control.abort();
        }
    });

    // The model this conversation uses, and whether it can answer.
    let model_status = Memo::new(move |_| {
        let id = chat
            .conversation
            .with(|c| c.as_ref().and_then(|c| c.model.clone()))
            .or_else(|| app.settings.with(|s| s.default_model.clone()))
            .unwrap_or_else(|| app.default_model.get());
        app.models.with(|models| models.iter().find(|m| m.id == id).cloned())
    });
    let model_ready =
        Signal::derive(move || model_status.with(|m| m.as_ref().is_none_or(|m| m.status == ModelState::Ready)));
    // While the model loads, ask again.
    Effect::new(move |_| {
        if model_status.with(|m| m.as_ref().is_some_and(|m| m.status.is_loading())) {
            set_timeout(move || app.reload_models(), MODEL_POLL);
        }
    });

    // With images attached to a model that cannot see: who will answer instead, or that none can.
    let sight_note = Memo::new(move |_| {
        if chat.attachments.list.with(Vec::is_empty) {
            return None;
        }
        let sees = model_status.with(|m| {
            m.as_ref()
                .is_some_and(|m| m.capabilities.contains(&ModelCapability::Vision))
        });
        if sees {
            return None;
        }
        Some(app.models.with(|models| {
            match models.iter().find(|m| m.default_vision) {
                Some(vision) => format!(
                    "This model cannot see images: {} ({}) will answer this message.",
                    vision.name, vision.provider
                ),
                None => "No model on this server can see images: an administrator can give one the vision capability."
                    .to_owned(),
            }
        }))
    });

    let run = {
        let navigate = navigate.clone();
        move |turn: Turn| chat.run_turn(turn, navigate.clone())
    };
    let actions = {
        let (regenerate, edit) = (run.clone(), run.clone());
        MessageActions {
            regenerate: Callback::new(move |()| regenerate(Turn::Regenerate)),
            edit: Callback::new(move |(id, text, images): (Uuid, String, Vec<Uuid>)| {
                edit(Turn::Edit(id, text, images))
            }),
            switch_to: Callback::new(move |sibling: Uuid| switch_branch(chat, sibling)),
            open_citation: Callback::new(move |citation| chat.viewing.set(Some(citation))),
            open_image: Callback::new(move |url| chat.viewing_image.set(Some(url))),
        }
    };
    let send = {
        let run = run.clone();
        Callback::new(move |text: String| run(Turn::Send(text, chat.attachments.take())))
    };
    let retry = Callback::new(move |()| {
        if let Some((_, turn)) = chat.turn_error.get_untracked() {
            run(turn);
        }
    });

    view! {
        <div class="layout">
            <Sidebar/>
            <main class="chat" aria-label="Chat">
                <ChatHeader chat=chat model_status=model_status/>
                <MessageLog chat=chat model_status=model_status actions=actions retry=retry/>
                <div class="composer-wrap">
                    <DocumentScopePicker scope=chat.scope on_change=Callback::new(move |scope| chat.save_scope(scope))/>
                    <Composer draft=chat.draft busy=chat.busy() disabled=Signal::derive(move || !model_ready.get())
                        attachments=chat.attachments on_send=send on_stop=Callback::new(move |()| chat.stop())/>
                    {move || sight_note.get().map(|note| view! { <p class="sight-note" role="status">{note}</p> })}
                </div>
            </main>
            {move || chat.viewing.get().map(|citation| view! {
                <CitationViewer citation=citation on_close=Callback::new(move |()| chat.viewing.set(None))/>
            })}
            {move || chat.viewing_image.get().map(|url| view! {
                <ImageViewer url=url on_close=Callback::new(move |()| chat.viewing_image.set(None))/>
            })}
        </div>
    }
}

/// Shows the branch through `sibling` (another version of a message).
fn switch_branch(chat: ChatState, sibling: Uuid) {
    let Some(id) = chat.current.get_value().and_then(|id| id.parse::<Uuid>().ok()) else {
        return;
    };
    spawn_local(async move {
        let body = api::to_json(&UpdateConversation {
            active_message_id: Some(sibling),
            ..UpdateConversation::default()
        });
        if api::request_empty("PATCH", &format!("/api/v1/conversations/{id}"), Some(&body))
            .await
            .is_ok()
        {
            let _ = chat.reload(id, false).await;
        }
    });
}

/// The head of the chat: the drawer button, the title, the model with its status, and the
/// conversation's settings (read once when the panel opens: a change of the conversation
/// meanwhile, a new title or an answer, must not reset what the user is editing).
#[component]
fn ChatHeader(chat: ChatState, model_status: Memo<Option<ModelStatus>>) -> impl IntoView {
    let app = expect_context::<AppState>();
    let show_settings = chat.show_settings;
    view! {
        <header class="chat-head">
            <button type="button" class="icon menu" aria-label="Open the conversation list"
                on:click=move |_| app.sidebar_open.update(|o| *o = !*o)><Svg icon=Icon::Menu/></button>
            <h1 class="chat-title">
                {move || chat.conversation.with(|c| c.as_ref().map(|c| c.title.clone())).unwrap_or_else(|| "New chat".into())}
            </h1>
            <span class="model-name" title="Model">
                {move || model_status.with(|m| m.as_ref().map(|m| format!("{}{}", m.name, status_label(m.status, m.progress)))).unwrap_or_default()}
            </span>
            <Show when=move || chat.conversation.with(Option::is_some)>
                <button type="button" class="icon" aria-label="Conversation settings" aria-expanded=move || show_settings.get().to_string()
                    on:click=move |_| show_settings.update(|s| *s = !*s)><Svg icon=Icon::Gear/></button>
            </Show>
        </header>
        <Show when=move || show_settings.get() && chat.conversation.with(Option::is_some)>
            {move || chat.conversation.get_untracked().map(|c| view! {
                <ConversationSettingsPanel conversation=c
                    on_saved=Callback::new(move |updated: Conversation| { chat.conversation.set(Some(updated)); show_settings.set(false); })
                    on_close=Callback::new(move |()| show_settings.set(false))/>
            })}
        </Show>
    }
}

/// The conversation itself: its messages, the user's words and the answer while a turn runs,
/// the turn's error with a retry, or the welcome of an empty chat. The view follows the newest
/// text unless the user scrolled up to read.
#[component]
fn MessageLog(
    chat: ChatState,
    model_status: Memo<Option<ModelStatus>>,
    actions: MessageActions,
    retry: Callback<()>,
) -> impl IntoView {
    let scroller = NodeRef::<leptos::html::Div>::new();
    Effect::new(move |_| {
        chat.streaming.track();
        chat.messages.track();
        chat.pending_user.track();
        chat.turn_error.track();
        if let Some(el) = scroller.get() {
            if chat.stick_to_bottom.get_value() {
                el.set_scroll_top(el.scroll_height());
                // Again once the new rows are laid out (and code and math are rendered).
                request_animation_frame(move || el.set_scroll_top(el.scroll_height()));
            }
        }
    });
    let on_scroll = move |_| {
        if let Some(el) = scroller.get_untracked() {
            chat.stick_to_bottom
                .set_value(el.scroll_height() - el.scroll_top() - el.client_height() < 80);
        }
    };
    let busy = chat.busy();
    view! {
        <div class="messages" node_ref=scroller role="log" aria-live="polite" aria-relevant="additions"
            on:click=copy_code_on_click on:scroll=on_scroll>
            <Show when=move || chat.missing.get()>
                <div class="empty" role="alert">
                    <h2>"This conversation does not exist"</h2>
                    <p>"It may have been deleted. "<a href="/c">"Start a new chat"</a></p>
                </div>
            </Show>
            <Show when=move || chat.loading.get()>
                <div class="empty" role="status"><div class="spinner" aria-hidden="true"></div></div>
            </Show>
            <Show when=move || !chat.loading.get() && !chat.missing.get() && chat.messages.with(Vec::is_empty) && chat.pending_user.with(Option::is_none)>
                <Welcome model=model_status draft=chat.draft/>
            </Show>
            <For each=move || {
                    let list = chat.messages.get();
                    let last_answer = list.iter().rposition(|m| m.role == MessageRole::Assistant);
                    list.into_iter().enumerate().map(move |(i, m)| (Some(i) == last_answer, m)).collect::<Vec<_>>()
                }
                key=|(last, m)| (m.id, m.status, m.content.len(), *last, m.sibling_ids.len())
                let:entry>
                <MessageView message=entry.1 is_last_answer=entry.0 busy=busy actions=actions/>
            </For>
            <Show when=move || chat.pending_user.with(Option::is_some)>
                <article class="message user" aria-label="You said">
                    {move || chat.pending_images.with(|ids| (!ids.is_empty()).then(|| view! {
                        <MessageImages ids=ids.clone() open=actions.open_image/>
                    }))}
                    <div class="bubble">{move || chat.pending_user.get().unwrap_or_default()}</div>
                </article>
            </Show>
            <Show when=move || chat.streaming.with(Option::is_some)>
                <StreamingAnswer text=Signal::derive(move || chat.streaming.get().unwrap_or_default())
                    citations=chat.citations.into() open_citation=actions.open_citation/>
            </Show>
            <Show when=move || chat.turn_error.with(Option::is_some)>
                <div class="inline-error turn-error" role="alert">
                    <span>{move || chat.turn_error.get().map(|(e, _)| describe_turn_error(&e))}</span>
                    <button type="button" class="ghost" on:click=move |_| retry.run(())>"Retry"</button>
                </div>
            </Show>
        </div>
    }
}
