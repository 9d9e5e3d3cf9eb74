//! The settings of one conversation: model (with each model's status), system prompt,
//! temperature and answer length.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{
    self, Conversation, ConversationSettings, ModelCapability, ModelState, ModelStatus, UpdateConversation,
};
use crate::icons::{Icon, Svg};
use crate::state::AppState;

/// How a model's status reads in the picker.
pub fn status_label(status: ModelState, progress: Option<f32>) -> String {
    let name = status.as_str();
    match (status, progress) {
        (ModelState::Ready, _) => String::new(),
        (ModelState::Downloading | ModelState::Loading, Some(p)) => format!(" ({name} {:.0}%)", p * 100.0),
        (ModelState::Downloading | ModelState::Loading, None) => format!(" ({name}…)"),
        _ => format!(" ({name})"),
    }
}

/// How a model's sight reads in the picker: said only for the models that see images.
pub fn sight_label(model: &ModelStatus) -> &'static str {
    if model.capabilities.contains(&ModelCapability::Vision) {
        " · sees images"
    } else {
        ""
    }
}

/// A choice of chat model, each shown with its status; "" is the server's default.
#[component]
pub fn ModelSelect(
    /// The element id (for its label).
    id: &'static str,
    /// The chosen model id.
    model: RwSignal<String>,
) -> impl IntoView {
    let state = expect_context::<AppState>();
    view! {
        <select id=id on:change=move |ev| model.set(event_target_value(&ev))>
            <option value="" selected=move || model.get().is_empty()>
                {move || format!("Server default ({})", state.default_model.get())}
            </option>
            <For each=move || state.chat_models() key=|m| (m.id.clone(), m.status) let:m>
                <option value=m.id.clone() selected={let id = m.id.clone(); move || model.get() == id}>
                    {format!("{}{}{}", m.name, sight_label(&m), status_label(m.status, m.progress))}
                </option>
            </For>
        </select>
    }
}

/// The panel; `on_saved` gets the updated conversation.
#[component]
pub fn ConversationSettingsPanel(
    conversation: Conversation,
    on_saved: Callback<Conversation>,
    on_close: Callback<()>,
) -> impl IntoView {
    let state = expect_context::<AppState>();
    let model = RwSignal::new(conversation.model.clone().unwrap_or_default());
    let system_prompt = RwSignal::new(conversation.system_prompt.clone().unwrap_or_default());
    let temperature = RwSignal::new(
        conversation
            .settings
            .temperature
            .map(|t| t.to_string())
            .unwrap_or_default(),
    );
    let max_tokens = RwSignal::new(
        conversation
            .settings
            .max_tokens
            .map(|t| t.to_string())
            .unwrap_or_default(),
    );
    let error = RwSignal::new(None::<String>);
    let saving = RwSignal::new(false);
    let id = conversation.id;
    let top_p = conversation.settings.top_p;
    // Settings this panel does not edit are kept as they are.
    let kept = conversation.settings.clone();
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let temperature = match temperature.get_untracked().trim() {
            "" => None,
            text => match text.parse::<f32>() {
                Ok(t) if (0.0..=2.0).contains(&t) => Some(t),
                _ => {
                    error.set(Some("Temperature is a number from 0 to 2.".into()));
                    return;
                }
            },
        };
        let max_tokens = match max_tokens.get_untracked().trim() {
            "" => None,
            text => match text.parse::<u32>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    error.set(Some("Maximum answer length is a whole number of tokens.".into()));
                    return;
                }
            },
        };
        let settings = ConversationSettings {
            temperature,
            top_p,
            max_tokens,
            ..kept.clone()
        };
        let chosen = model.get_untracked();
        let body = api::to_json(&UpdateConversation {
            system_prompt: Some(system_prompt.get_untracked()),
            settings: Some(settings),
            model: Some(chosen).filter(|m| !m.is_empty()),
            ..UpdateConversation::default()
        });
        error.set(None);
        saving.set(true);
        spawn_local(async move {
            match api::request::<Conversation>("PATCH", &format!("/api/v1/conversations/{id}"), Some(&body)).await {
                Ok(updated) => {
                    state.upsert_conversation(updated.clone());
                    on_saved.run(updated);
                }
                Err(e) => error.set(Some(e.message)),
            }
            saving.set(false);
        });
    };
    view! {
        <form class="panel" on:submit=save aria-label="Conversation settings">
            <div class="panel-head">
                <h2>"Conversation settings"</h2>
                <button type="button" class="icon" aria-label="Close settings" on:click=move |_| on_close.run(())><Svg icon=Icon::Close/></button>
            </div>
            <label for="model">"Model"</label>
            <ModelSelect id="model" model=model/>
            <label for="system-prompt">"System prompt"</label>
            <textarea id="system-prompt" rows="4" placeholder="Instructions for the model in this conversation"
                prop:value=move || system_prompt.get() on:input=move |ev| system_prompt.set(event_target_value(&ev))></textarea>
            <div class="two">
                <div>
                    <label for="temperature">"Temperature"</label>
                    <input id="temperature" type="number" min="0" max="2" step="0.1" placeholder="default"
                        prop:value=move || temperature.get() on:input=move |ev| temperature.set(event_target_value(&ev))/>
                </div>
                <div>
                    <label for="max-tokens">"Max answer tokens"</label>
                    <input id="max-tokens" type="number" min="1" step="1" placeholder="default"
                        prop:value=move || max_tokens.get() on:input=move |ev| max_tokens.set(event_target_value(&ev))/>
                </div>
            </div>
            <Show when=move || error.get().is_some()>
                <p class="form-error" role="alert">{move || error.get()}</p>
            </Show>
            <button type="submit" class="primary" disabled=move || saving.get()>
                {move || if saving.get() { "Saving…" } else { "Save" }}
            </button>
        </form>
    }
}
