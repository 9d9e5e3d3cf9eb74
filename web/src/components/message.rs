//! One message of the conversation: Markdown for answers, plain text for the user's words;
//! copy, edit and resend, regenerate, arrows between sibling versions, usage on hover, and the
//! error of a failed answer with a retry.

use leptos::prelude::*;
use wasm_bindgen::JsCast;

use crate::api::{Attachment, Citation, Message, MessageRole, MessageStatus, Uuid};
use crate::components::citations::CitationChips;
use crate::components::images::MessageImages;
use crate::errors::describe_code;
use crate::icons::{Icon, Svg};
use crate::{interop, markdown};

/// What a message's buttons ask the chat page to do.
#[derive(Clone, Copy)]
pub struct MessageActions {
    /// Regenerate the last answer.
    pub regenerate: Callback<()>,
    /// Resend an edited user message: (message id, new text, its images).
    pub edit: Callback<(Uuid, String, Vec<Uuid>)>,
    /// Show another version: the sibling's id.
    pub switch_to: Callback<Uuid>,
    /// Open a source of an answer in the viewer.
    pub open_citation: Callback<Citation>,
    /// Show an image enlarged (its blob URL).
    pub open_image: Callback<String>,
}

/// Copies the code of a code block whose copy button was clicked (event delegation: the
/// buttons are inside rendered HTML).
pub fn copy_code_on_click(ev: leptos::ev::MouseEvent) {
    let Some(target) = ev.target().and_then(|t| t.dyn_into::<web_sys::Element>().ok()) else {
        return;
    };
    if !target.class_list().contains("copy") {
        return;
    }
    let code = target
        .closest(".code")
        .ok()
        .flatten()
        .and_then(|block| block.query_selector("code").ok().flatten())
        .and_then(|code| code.text_content());
    if let Some(code) = code {
        interop::copy(&code);
        target.set_text_content(Some("Copied"));
        let button = target.clone();
        set_timeout(
            move || button.set_text_content(Some("Copy")),
            std::time::Duration::from_millis(1500),
        );
    }
}

/// The hover text with the token counts of an answer.
fn usage_title(message: &Message) -> String {
    match (&message.usage, &message.model) {
        (Some(u), Some(model)) => format!(
            "{} prompt + {} answer tokens · {model}",
            u.prompt_tokens, u.completion_tokens
        ),
        (Some(u), None) => format!("{} prompt + {} answer tokens", u.prompt_tokens, u.completion_tokens),
        (None, Some(model)) => model.clone(),
        (None, None) => String::new(),
    }
}

/// A stored message.
#[component]
pub fn MessageView(
    message: Message,
    /// Whether it is the last answer (it can be regenerated).
    is_last_answer: bool,
    /// Whether an answer is being generated (actions wait).
    busy: Signal<bool>,
    actions: MessageActions,
) -> impl IntoView {
    let is_user = message.role == MessageRole::User;
    let editing = RwSignal::new(false);
    let draft = RwSignal::new(message.content.clone());
    let body_ref = NodeRef::<leptos::html::Div>::new();
    let html = if is_user {
        String::new()
    } else {
        markdown::render(&message.content)
    };
    Effect::new(move |_| {
        if let Some(body) = body_ref.get() {
            interop::enhance(&body);
        }
    });
    let position = message.sibling_ids.iter().position(|id| *id == message.id).unwrap_or(0);
    let siblings = message.sibling_ids.clone();
    let count = siblings.len();
    let previous = siblings.get(position.wrapping_sub(1)).copied();
    let next = siblings.get(position + 1).copied();
    let content = message.content.clone();
    let id = message.id;
    let title = usage_title(&message);
    let failed = message.status == MessageStatus::Error;
    let stopped = message.status == MessageStatus::Stopped;
    let error_code = message.error_code.unwrap_or(crate::api::ErrorCode::Unknown);
    let images: Vec<Uuid> = message
        .attachments
        .iter()
        .map(|a| match a {
            Attachment::Image { image_id } => *image_id,
        })
        .collect();
    // Stored, so that the button's handler stays `Copy` for the view.
    let edited_images = StoredValue::new(images.clone());
    let save = move |_| {
        let text = draft.get_untracked();
        let images = edited_images.get_value();
        if !text.trim().is_empty() || !images.is_empty() {
            editing.set(false);
            actions.edit.run((id, text, images));
        }
    };
    view! {
        <article class="message" class:user=is_user class:assistant=!is_user
            aria-label=if is_user { "You said" } else { "Answer" }>
            {(!images.is_empty()).then(|| view! { <MessageImages ids=images.clone() open=actions.open_image/> })}
            <Show
                when=move || editing.get()
                fallback={
                    let content = content.clone();
                    let html = html.clone();
                    let title = title.clone();
                    move || if is_user {
                        view! { <div class="bubble" title=title.clone()>{content.clone()}</div> }.into_any()
                    } else {
                        view! { <div class="markdown" node_ref=body_ref title=title.clone() inner_html=html.clone()></div> }.into_any()
                    }
                }
            >
                <div class="edit">
                    <label class="visually-hidden" for="edit-message">"Edit your message"</label>
                    <textarea id="edit-message" rows="3" prop:value=move || draft.get()
                        on:input=move |ev| draft.set(event_target_value(&ev))></textarea>
                    <div class="edit-actions">
                        <button type="button" class="ghost" on:click=move |_| editing.set(false)>"Cancel"</button>
                        <button type="button" class="primary" on:click=save>"Save & submit"</button>
                    </div>
                </div>
            </Show>
            {(!is_user).then(|| view! {
                <CitationChips citations=Signal::stored(message.citations.clone()) open=actions.open_citation/>
            })}
            {(stopped && !is_user).then(|| view! { <p class="status-note">"Stopped"</p> })}
            {(failed && !is_user).then(|| view! {
                <div class="inline-error" role="alert">
                    <span>{describe_code(error_code)}</span>
                    <button type="button" class="ghost" disabled=move || busy.get()
                        on:click=move |_| actions.regenerate.run(())>"Retry"</button>
                </div>
            })}
            <div class="message-tools">
                {(count > 1).then(|| view! {
                    <span class="versions">
                        <button type="button" class="icon" aria-label="Previous version"
                            disabled=move || previous.is_none() || busy.get()
                            on:click=move |_| if let Some(p) = previous { actions.switch_to.run(p) }><Svg icon=Icon::Left/></button>
                        <span aria-label="Version">{format!("{}/{}", position + 1, count)}</span>
                        <button type="button" class="icon" aria-label="Next version"
                            disabled=move || next.is_none() || busy.get()
                            on:click=move |_| if let Some(n) = next { actions.switch_to.run(n) }><Svg icon=Icon::Right/></button>
                    </span>
                })}
                <button type="button" class="icon" title="Copy" aria-label="Copy message"
                    on:click={let content = message.content.clone(); move |_| interop::copy(&content)}><Svg icon=Icon::Copy/></button>
                {is_user.then(|| view! {
                    <button type="button" class="icon" title="Edit and resend" aria-label="Edit and resend"
                        disabled=move || busy.get() on:click=move |_| editing.set(true)><Svg icon=Icon::Edit/></button>
                })}
                {(is_last_answer && !is_user).then(|| view! {
                    <button type="button" class="icon" title="Regenerate" aria-label="Regenerate answer"
                        disabled=move || busy.get() on:click=move |_| actions.regenerate.run(())><Svg icon=Icon::Refresh/></button>
                })}
            </div>
        </article>
    }
}

/// The answer being streamed: its sources, then its text so far, re-rendered as Markdown as
/// tokens arrive.
#[component]
pub fn StreamingAnswer(
    text: Signal<String>,
    citations: Signal<Vec<Citation>>,
    open_citation: Callback<Citation>,
) -> impl IntoView {
    view! {
        <article class="message assistant streaming" aria-label="Answer" aria-busy="true">
            <Show when=move || !text.with(String::is_empty)
                fallback=|| view! { <div class="typing" role="status" aria-label="Thinking"><span></span><span></span><span></span></div> }>
                <div class="markdown" inner_html=move || markdown::render(&text.get())></div>
            </Show>
            <CitationChips citations=citations open=open_citation/>
        </article>
    }
}
