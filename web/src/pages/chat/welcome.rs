//! The empty state of a new chat: a greeting, where the model runs, the model's state when it
//! cannot answer yet, and a few starters.

use leptos::prelude::*;

use crate::api::{ModelState, ModelStatus};
use crate::state::AppState;

/// Starters for an empty chat.
const SUGGESTIONS: [&str; 3] = [
    "Explain how a hash table works, with a small example in Python.",
    "Write a short, friendly email asking a colleague to review my report.",
    "Give me three ideas for a team lunch on a budget.",
];

/// The empty state of a new chat.
#[component]
pub(super) fn Welcome(model: Memo<Option<ModelStatus>>, draft: RwSignal<String>) -> impl IntoView {
    let state = expect_context::<AppState>();
    view! {
        <div class="empty welcome">
            <div class="logo big" aria-hidden="true">"◆"</div>
            <h2>{move || match state.user.get() {
                Some(u) => format!("How can I help, {}?", u.username),
                None => "How can I help?".into(),
            }}</h2>
            {move || model.get().map(|m| match m.status {
                ModelState::Ready if m.provider == "local" => view! {
                    <p class="muted">{format!("{} runs on this server: nothing you write leaves it.", m.name)}</p>
                }.into_any(),
                ModelState::Ready => view! { <p class="muted">{format!("{} answers through {}.", m.name, m.provider)}</p> }.into_any(),
                ModelState::Loading | ModelState::Downloading | ModelState::Pending => {
                    let percent = m.progress.map(|p| (p * 100.0).round()).unwrap_or(0.0);
                    view! {
                        <div class="model-loading" role="status">
                            <p>{format!("{} is {}…", m.name, if m.status == ModelState::Downloading { "downloading" } else { "loading" })}</p>
                            <progress max="100" value=percent.to_string() aria-label="Model loading progress"></progress>
                        </div>
                    }.into_any()
                }
                _ => view! { <p class="form-error">{format!("{} cannot answer: {}", m.name, m.error.clone().unwrap_or_else(|| m.status.as_str().to_owned()))}</p> }.into_any(),
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
