//! The chat: the sidebar, the conversation's active branch, the answer streaming in, the
//! message box; new chats are created on their first message.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::{use_navigate, use_params_map};
use leptos_router::NavigateOptions;

use crate::api::{self, AnswerEvent, ApiError, Conversation, ConversationDetail, Message, StreamControl};
use crate::components::composer::Composer;
use crate::components::conversation_settings::{status_label, ConversationSettingsPanel};
use crate::components::message::{copy_code_on_click, MessageActions, MessageView, StreamingAnswer};
use crate::components::sidebar::Sidebar;
use crate::icons::{Icon, Svg};
use crate::interop;
use crate::state::AppState;

/// The sentence for an error code of the API or the stream.
pub fn describe_code(code: &str) -> String {
    match code {
        "RATE_LIMITED" => "The model is rate-limited right now. Wait a moment and retry.".into(),
        "OVERLOADED" => "The model is busy with other requests. Retry in a moment.".into(),
        "MODEL_UNAVAILABLE" | "UNAVAILABLE" => "The model is not available right now.".into(),
        "NETWORK" => "The connection to the server was lost.".into(),
        "PROMPT_TOO_LONG" => "This conversation is too long for the model's context window.".into(),
        "SHUTTING_DOWN" => "The server restarted while answering.".into(),
        "GENERATION_IN_PROGRESS" => "An answer is already being written in this conversation.".into(),
        "" => "The answer failed.".into(),
        other => format!("The answer failed ({other})."),
    }
}

/// What a turn does.
#[derive(Clone, Debug, PartialEq)]
enum Turn {
    /// Send a new message after the last one.
    Send(String),
    /// Send a new version of an earlier user message.
    Edit(String, String),
    /// A new answer to the last message.
    Regenerate,
}

/// The chat page.
#[component]
pub fn ChatPage() -> impl IntoView {
    let state = expect_context::<AppState>();
    let params = use_params_map();
    let navigate = use_navigate();
    let conversation = RwSignal::new(None::<Conversation>);
    let messages = RwSignal::new(Vec::<Message>::new());
    let loading = RwSignal::new(false);
    let missing = RwSignal::new(false);
    // While a turn runs: the user's words shown before the server stores them, and the answer.
    let pending_user = RwSignal::new(None::<String>);
    let streaming = RwSignal::new(None::<String>);
    let turn_error = RwSignal::new(None::<(ApiError, Turn)>);
    let control = StoredValue::new(None::<StreamControl>);
    // Set when the user stops the answer: the turn then waits for the server to store it.
    let stop_requested = StoredValue::new(false);
    // Whether the view follows the newest text (false once the user scrolls up).
    let stick_to_bottom = StoredValue::new(true);
    let draft = RwSignal::new(String::new());
    let show_settings = RwSignal::new(false);
    // The conversation shown, so that the URL change after creating one does not reload it.
    let current = StoredValue::new(None::<String>);
    let busy = Signal::derive(move || streaming.with(Option::is_some));
    let scroller = NodeRef::<leptos::html::Div>::new();

    let load = move |id: String| {
        loading.set(true);
        missing.set(false);
        spawn_local(async move {
            let result: Result<ConversationDetail, ApiError> =
                api::request("GET", &format!("/api/v1/conversations/{id}"), None).await;
            if current.get_value().as_deref() != Some(id.as_str()) {
                return;
            }
            match result {
                Ok(detail) => {
                    conversation.set(Some(detail.conversation));
                    messages.set(detail.messages);
                }
                Err(e) if e.status == 404 => missing.set(true),
                Err(e) => turn_error.set(Some((e, Turn::Regenerate))),
            }
            loading.set(false);
        });
    };

    let stop = move || {
        if let Some(control) = control.get_value() {
            stop_requested.set_value(true);
            control.abort();
        }
    };

    // Follow the route: a new chat, or another conversation.
    Effect::new(move |_| {
        let id = params.with(|p| p.get("id"));
        if id == current.get_value() {
            return;
        }
        if let Some(control) = control.get_value() {
            control.abort();
        }
        current.set_value(id.clone());
        stick_to_bottom.set_value(true);
        turn_error.set(None);
        show_settings.set(false);
        streaming.set(None);
        pending_user.set(None);
        messages.set(Vec::new());
        conversation.set(None);
        match id {
            Some(id) => load(id),
            None => {
                missing.set(false);
                loading.set(false);
            }
        }
    });

    // Keep the newest text in view, unless the user scrolled up to read.
    Effect::new(move |_| {
        streaming.track();
        messages.track();
        pending_user.track();
        turn_error.track();
        if let Some(el) = scroller.get() {
            if stick_to_bottom.get_value() {
                el.set_scroll_top(el.scroll_height());
                // Again once the new rows are laid out (and code and math are rendered).
                request_animation_frame(move || el.set_scroll_top(el.scroll_height()));
            }
        }
    });
    let on_scroll = move |_| {
        if let Some(el) = scroller.get_untracked() {
            stick_to_bottom.set_value(el.scroll_height() - el.scroll_top() - el.client_height() < 80);
        }
    };

    // Esc stops the answer.
    let handle = window_event_listener(leptos::ev::keydown, move |ev| {
        if ev.key() == "Escape" && streaming.with_untracked(Option::is_some) {
            ev.prevent_default();
            stop();
        }
    });
    on_cleanup(move || {
        handle.remove();
        if let Some(control) = control.get_value() {
            control.abort();
        }
    });

    let run_turn = {
        let navigate = navigate.clone();
        move |turn: Turn| {
            if streaming.with_untracked(Option::is_some) {
                return;
            }
            turn_error.set(None);
            stick_to_bottom.set_value(true);
            stop_requested.set_value(false);
            let navigate = navigate.clone();
            let Ok(stream_control) = StreamControl::new() else {
                return;
            };
            control.set_value(Some(stream_control.clone()));
            match &turn {
                Turn::Send(text) => {
                    pending_user.set(Some(text.clone()));
                    draft.set(String::new());
                }
                Turn::Edit(edited, text) => {
                    // The branch from the edited message on is replaced.
                    messages.update(|list| {
                        if let Some(at) = list.iter().position(|m| m.id == *edited) {
                            list.truncate(at);
                        }
                    });
                    pending_user.set(Some(text.clone()));
                }
                Turn::Regenerate => {
                    messages.update(|list| {
                        if list.last().is_some_and(|m| m.role == "assistant") {
                            list.pop();
                        }
                    });
                }
            }
            streaming.set(Some(String::new()));
            spawn_local(async move {
                // A new chat becomes a conversation on its first message.
                let id = match current.get_value() {
                    Some(id) => id,
                    None => {
                        let created: Result<Conversation, ApiError> =
                            api::request("POST", "/api/v1/conversations", Some(&serde_json::json!({}))).await;
                        match created {
                            Ok(c) => {
                                current.set_value(Some(c.id.clone()));
                                conversation.set(Some(c.clone()));
                                state.upsert_conversation(c.clone());
                                navigate(
                                    &format!("/c/{}", c.id),
                                    NavigateOptions {
                                        replace: true,
                                        ..Default::default()
                                    },
                                );
                                c.id
                            }
                            Err(e) => {
                                finish_failed(e, turn, draft, pending_user, streaming, turn_error);
                                return;
                            }
                        }
                    }
                };
                let (path, body) = match &turn {
                    Turn::Send(text) => (
                        format!("/api/v1/conversations/{id}/messages"),
                        serde_json::json!({ "content": text }),
                    ),
                    Turn::Edit(edited, text) => (
                        format!("/api/v1/conversations/{id}/messages"),
                        serde_json::json!({ "content": text, "edit_message_id": edited }),
                    ),
                    Turn::Regenerate => (format!("/api/v1/conversations/{id}/regenerate"), serde_json::json!({})),
                };
                let first_exchange = messages.with_untracked(Vec::is_empty);
                let mut first_token = true;
                let result = api::stream(&path, &body, &stream_control, |event| match event {
                    AnswerEvent::Token(text) => {
                        if first_token {
                            // Read by the UI benchmark: from the event to the frame showing it.
                            first_token = false;
                            interop::mark("enclave-first-token-received");
                            request_animation_frame(|| interop::mark("enclave-first-token-shown"));
                        }
                        streaming.update(|s| {
                            if let Some(s) = s {
                                s.push_str(&text);
                            }
                        })
                    }
                    AnswerEvent::Done { .. } | AnswerEvent::Error(_) => {}
                })
                .await;
                if stop_requested.get_value() {
                    // The server stops when the connection closes; this waits until it has
                    // stored what was written, so that the reload below shows it.
                    let _ = api::request_empty("POST", &format!("/api/v1/conversations/{id}/stop"), None).await;
                    stop_requested.set_value(false);
                }
                if current.get_value().as_deref() != Some(id.as_str()) {
                    // The user moved on to another conversation meanwhile.
                    return;
                }
                match result {
                    // Stored (complete, stopped or failed): show what the server kept.
                    Ok(()) => {
                        let detail: Result<ConversationDetail, ApiError> =
                            api::request("GET", &format!("/api/v1/conversations/{id}"), None).await;
                        match detail {
                            Ok(detail) => {
                                state.upsert_conversation(detail.conversation.clone());
                                conversation.set(Some(detail.conversation));
                                messages.set(detail.messages);
                            }
                            Err(e) => turn_error.set(Some((e, Turn::Regenerate))),
                        }
                        streaming.set(None);
                        pending_user.set(None);
                        if first_exchange {
                            // The title is written by the model a moment after the answer.
                            let id = id.clone();
                            set_timeout(
                                move || {
                                    spawn_local(async move {
                                        if let Ok(detail) = api::request::<ConversationDetail>(
                                            "GET",
                                            &format!("/api/v1/conversations/{id}"),
                                            None,
                                        )
                                        .await
                                        {
                                            state.upsert_conversation(detail.conversation.clone());
                                            if current.get_value().as_deref() == Some(id.as_str()) {
                                                conversation.set(Some(detail.conversation));
                                            }
                                        }
                                    });
                                },
                                std::time::Duration::from_millis(2500),
                            );
                        }
                    }
                    Err(e) => finish_failed(e, turn, draft, pending_user, streaming, turn_error),
                }
                control.set_value(None);
            });
        }
    };

    let actions = {
        let run_turn = run_turn.clone();
        let run_turn2 = run_turn.clone();
        MessageActions {
            regenerate: Callback::new(move |()| run_turn(Turn::Regenerate)),
            edit: Callback::new(move |(id, text): (String, String)| run_turn2(Turn::Edit(id, text))),
            switch_to: Callback::new(move |sibling: String| {
                let Some(id) = current.get_value() else { return };
                spawn_local(async move {
                    let body = serde_json::json!({ "active_message_id": sibling });
                    if api::request_empty("PATCH", &format!("/api/v1/conversations/{id}"), Some(&body))
                        .await
                        .is_ok()
                    {
                        if let Ok(detail) =
                            api::request::<ConversationDetail>("GET", &format!("/api/v1/conversations/{id}"), None)
                                .await
                        {
                            conversation.set(Some(detail.conversation));
                            messages.set(detail.messages);
                        }
                    }
                });
            }),
        }
    };

    // The model this conversation uses, and whether it can answer.
    let model_status = Memo::new(move |_| {
        let id = conversation
            .with(|c| c.as_ref().and_then(|c| c.model.clone()))
            .or_else(|| state.settings.with(|s| s.default_model.clone()))
            .unwrap_or_else(|| state.default_model.get());
        state.models.with(|models| models.iter().find(|m| m.id == id).cloned())
    });
    let model_ready = Signal::derive(move || model_status.with(|m| m.as_ref().is_none_or(|m| m.status == "ready")));
    // While the model loads, ask again every second and a half.
    Effect::new(move |_| {
        let loading = model_status.with(|m| {
            m.as_ref()
                .is_some_and(|m| matches!(m.status.as_str(), "loading" | "downloading" | "pending"))
        });
        if loading {
            set_timeout(move || state.reload_models(), std::time::Duration::from_millis(1500));
        }
    });

    let send = {
        let run_turn = run_turn.clone();
        Callback::new(move |text: String| run_turn(Turn::Send(text)))
    };
    let retry = {
        let run_turn = run_turn.clone();
        move |_| {
            if let Some((_, turn)) = turn_error.get_untracked() {
                run_turn(turn);
            }
        }
    };

    view! {
        <div class="layout">
            <Sidebar/>
            <main class="chat" aria-label="Chat">
                <header class="chat-head">
                    <button type="button" class="icon menu" aria-label="Open the conversation list"
                        on:click=move |_| state.sidebar_open.update(|o| *o = !*o)><Svg icon=Icon::Menu/></button>
                    <h1 class="chat-title">
                        {move || conversation.with(|c| c.as_ref().map(|c| c.title.clone())).unwrap_or_else(|| "New chat".into())}
                    </h1>
                    <span class="model-name" title="Model">
                        {move || model_status.with(|m| m.as_ref().map(|m| format!("{}{}", m.name, status_label(&m.status, m.progress)))).unwrap_or_default()}
                    </span>
                    <Show when=move || conversation.with(Option::is_some)>
                        <button type="button" class="icon" aria-label="Conversation settings" aria-expanded=move || show_settings.get().to_string()
                            on:click=move |_| show_settings.update(|s| *s = !*s)><Svg icon=Icon::Gear/></button>
                    </Show>
                </header>
                // Read once when the panel opens: a change of the conversation meanwhile (a new
                // title, an answer) must not reset what the user is editing.
                <Show when=move || show_settings.get() && conversation.with(Option::is_some)>
                    {move || conversation.get_untracked().map(|c| view! {
                        <ConversationSettingsPanel conversation=c
                            on_saved=Callback::new(move |updated: Conversation| { conversation.set(Some(updated)); show_settings.set(false); })
                            on_close=Callback::new(move |()| show_settings.set(false))/>
                    })}
                </Show>
                <div class="messages" node_ref=scroller role="log" aria-live="polite" aria-relevant="additions"
                    on:click=copy_code_on_click on:scroll=on_scroll>
                    <Show when=move || missing.get()>
                        <div class="empty" role="alert">
                            <h2>"This conversation does not exist"</h2>
                            <p>"It may have been deleted. "<a href="/c">"Start a new chat"</a></p>
                        </div>
                    </Show>
                    <Show when=move || loading.get()>
                        <div class="empty" role="status"><div class="spinner" aria-hidden="true"></div></div>
                    </Show>
                    <Show when=move || !loading.get() && !missing.get() && messages.with(Vec::is_empty) && pending_user.with(Option::is_none)>
                        <Welcome model=model_status draft=draft/>
                    </Show>
                    <For each=move || {
                            let list = messages.get();
                            let last_answer = list.iter().rposition(|m| m.role == "assistant");
                            list.into_iter().enumerate().map(move |(i, m)| (Some(i) == last_answer, m)).collect::<Vec<_>>()
                        }
                        key=|(last, m)| (m.id.clone(), m.status.clone(), m.content.len(), *last, m.sibling_ids.len())
                        let:entry>
                        <MessageView message=entry.1 is_last_answer=entry.0 busy=busy actions=actions/>
                    </For>
                    <Show when=move || pending_user.with(Option::is_some)>
                        <article class="message user" aria-label="You said">
                            <div class="bubble">{move || pending_user.get().unwrap_or_default()}</div>
                        </article>
                    </Show>
                    <Show when=move || streaming.with(Option::is_some)>
                        <StreamingAnswer text=Signal::derive(move || streaming.get().unwrap_or_default())/>
                    </Show>
                    <Show when=move || turn_error.with(Option::is_some)>
                        <div class="inline-error turn-error" role="alert">
                            <span>{move || turn_error.get().map(|(e, _)| if e.code == "NETWORK" { e.message } else { format!("{} {}", describe_code(&e.code), e.message) })}</span>
                            <button type="button" class="ghost" on:click=retry.clone()>"Retry"</button>
                        </div>
                    </Show>
                </div>
                <div class="composer-wrap">
                    <Composer draft=draft busy=busy disabled=Signal::derive(move || !model_ready.get())
                        on_send=send on_stop=Callback::new(move |()| stop())/>
                </div>
            </main>
        </div>
    }
}

/// Ends a turn that failed before the answer started: the draft comes back, the error shows
/// with a retry.
fn finish_failed(
    error: ApiError,
    turn: Turn,
    draft: RwSignal<String>,
    pending_user: RwSignal<Option<String>>,
    streaming: RwSignal<Option<String>>,
    turn_error: RwSignal<Option<(ApiError, Turn)>>,
) {
    if let Turn::Send(text) = &turn {
        if draft.with_untracked(|d| d.trim().is_empty()) {
            draft.set(text.clone());
        }
    }
    pending_user.set(None);
    streaming.set(None);
    turn_error.set(Some((error, turn)));
}

/// Starters for an empty chat.
const SUGGESTIONS: [&str; 3] = [
    "Explain how a hash table works, with a small example in Python.",
    "Write a short, friendly email asking a colleague to review my report.",
    "Give me three ideas for a team lunch on a budget.",
];

/// The empty state of a new chat: a greeting, where the model runs, the model's state when it
/// cannot answer yet, and a few starters.
#[component]
fn Welcome(model: Memo<Option<crate::api::ModelStatus>>, draft: RwSignal<String>) -> impl IntoView {
    let state = expect_context::<AppState>();
    view! {
        <div class="empty welcome">
            <div class="logo big" aria-hidden="true">"◆"</div>
            <h2>{move || match state.user.get() {
                Some(u) => format!("How can I help, {}?", u.username),
                None => "How can I help?".into(),
            }}</h2>
            {move || model.get().map(|m| match m.status.as_str() {
                "ready" if m.provider == "local" => view! {
                    <p class="muted">{format!("{} runs on this server: nothing you write leaves it.", m.name)}</p>
                }.into_any(),
                "ready" => view! { <p class="muted">{format!("{} answers through {}.", m.name, m.provider)}</p> }.into_any(),
                "loading" | "downloading" | "pending" => {
                    let percent = m.progress.map(|p| (p * 100.0).round()).unwrap_or(0.0);
                    view! {
                        <div class="model-loading" role="status">
                            <p>{format!("{} is {}…", m.name, if m.status == "downloading" { "downloading" } else { "loading" })}</p>
                            <progress max="100" value=percent.to_string() aria-label="Model loading progress"></progress>
                        </div>
                    }.into_any()
                }
                _ => view! { <p class="form-error">{format!("{} cannot answer: {}", m.name, m.error.clone().unwrap_or_else(|| m.status.clone()))}</p> }.into_any(),
            })}
            <div class="suggestions">
                {SUGGESTIONS.into_iter().map(|text| view! {
                    <button type="button" class="suggestion" on:click=move |_| {
                        draft.set(text.to_owned());
                        if let Some(input) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.get_element_by_id("composer-input")) {
                            let _ = wasm_bindgen::JsCast::unchecked_into::<web_sys::HtmlElement>(input).focus();
                        }
                    }>{text}</button>
                }).collect_view()}
            </div>
        </div>
    }
}
