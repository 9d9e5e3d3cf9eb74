//! The message box: Enter sends, Shift+Enter starts a new line; a stop button while the answer
//! streams. Images are attached with the picker button, pasted, or dropped on the box. The
//! draft is kept until the server has taken it.

use leptos::prelude::*;
use wasm_bindgen::JsCast;

use super::attachments::{AttachmentStrip, Attachments};
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
    /// The images attached to the draft.
    attachments: Attachments,
    /// Sends the draft.
    on_send: Callback<String>,
    /// Stops the answer.
    on_stop: Callback<()>,
) -> impl IntoView {
    let textarea = NodeRef::<leptos::html::Textarea>::new();
    let uploading = attachments.uploading();
    let has_images = attachments.any_ready();
    // Text or a ready image, and no image still on its way.
    let sendable = move || (!draft.with(|d| d.trim().is_empty()) || has_images.get()) && !uploading.get();
    let send = move || {
        if !sendable() || busy.get_untracked() || disabled.get_untracked() {
            return;
        }
        on_send.run(draft.get_untracked());
    };
    let on_paste = move |ev: leptos::ev::ClipboardEvent| {
        if let Some(files) = ev.clipboard_data().and_then(|d| d.files()) {
            if attachments.add_files(&files) {
                // An image pasted: not also its name as text.
                ev.prevent_default();
            }
        }
    };
    let over = RwSignal::new(false);
    let on_drop = move |ev: leptos::ev::DragEvent| {
        ev.prevent_default();
        over.set(false);
        if let Some(files) = ev.data_transfer().and_then(|d| d.files()) {
            attachments.add_files(&files);
        }
    };
    let on_pick = move |ev: leptos::ev::Event| {
        let Some(input) = ev.target().and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok()) else {
            return;
        };
        if let Some(files) = input.files() {
            attachments.add_files(&files);
        }
        // The same image can be picked again.
        input.set_value("");
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
        <form class="composer" class:over=move || over.get() on:submit=move |ev| { ev.prevent_default(); send(); }
            on:dragover=move |ev: leptos::ev::DragEvent| { ev.prevent_default(); over.set(true); }
            on:dragleave=move |_| over.set(false)
            on:drop=on_drop>
            <AttachmentStrip attachments=attachments/>
            <label class="icon attach" for="image-picker" title="Attach images" aria-label="Attach images"><Svg icon=Icon::Image/></label>
            <input id="image-picker" class="visually-hidden" type="file" multiple
                accept="image/png,image/jpeg,image/webp,image/gif" on:change=on_pick/>
            <label class="visually-hidden" for="composer-input">"Message"</label>
            <textarea id="composer-input" node_ref=textarea rows="1" placeholder="Message Enclave…"
                prop:value=move || draft.get()
                on:paste=on_paste
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
                        disabled=move || !sendable() || disabled.get()><Svg icon=Icon::Send/></button>
                }
            >
                <button type="button" class="stop" aria-label="Stop generating" title="Stop (Esc)"
                    on:click=move |_| on_stop.run(())><Svg icon=Icon::Stop/></button>
            </Show>
        </form>
        <p class="composer-hint">"Enter to send · Shift+Enter for a new line · paste or drop images · Esc stops the answer"</p>
    }
}
