//! The message box: Enter sends, Shift+Enter starts a new line; a stop button while the answer
//! streams. The draft is kept until the server has taken it.

use leptos::prelude::*;

use crate::icons::{Icon, Svg};

/// The message box.
#[component]
pub fn Composer(
    /// The text being written (owned by the chat page, so that a failed send keeps it).
    draft: RwSignal<String>,
    /// Whether an answer is streaming.
    busy: Signal<bool>,
    /// Whether the model can answer at all (it may be loading).
    disabled: Signal<bool>,
    /// Sends the draft.
    on_send: Callback<String>,
    /// Stops the answer.
    on_stop: Callback<()>,
) -> impl IntoView {
    let textarea = NodeRef::<leptos::html::Textarea>::new();
    let send = move || {
        let text = draft.get_untracked();
        if text.trim().is_empty() || busy.get_untracked() || disabled.get_untracked() {
            return;
        }
        on_send.run(text);
    };
    // Grows with its content, up to a limit (CSS max-height).
    Effect::new(move |_| {
        draft.track();
        if let Some(el) = textarea.get() {
            let style = wasm_bindgen::JsCast::unchecked_ref::<web_sys::HtmlElement>(&el).style();
            let _ = style.set_property("height", "auto");
            let _ = style.set_property("height", &format!("{}px", el.scroll_height()));
        }
    });
    view! {
        <form class="composer" on:submit=move |ev| { ev.prevent_default(); send(); }>
            <label class="visually-hidden" for="composer-input">"Message"</label>
            <textarea id="composer-input" node_ref=textarea rows="1" placeholder="Message Enclave…"
                prop:value=move || draft.get()
                on:input=move |ev| draft.set(event_target_value(&ev))
                on:keydown=move |ev: leptos::ev::KeyboardEvent| {
                    if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
                        ev.prevent_default();
                        send();
                    }
                }></textarea>
            <Show
                when=move || busy.get()
                fallback=move || view! {
                    <button type="submit" class="send" aria-label="Send message" title="Send (Enter)"
                        disabled=move || draft.with(|d| d.trim().is_empty()) || disabled.get()><Svg icon=Icon::Send/></button>
                }
            >
                <button type="button" class="stop" aria-label="Stop generating" title="Stop (Esc)"
                    on:click=move |_| on_stop.run(())><Svg icon=Icon::Stop/></button>
            </Show>
        </form>
        <p class="composer-hint">"Enter to send · Shift+Enter for a new line · Esc stops the answer"</p>
    }
}
