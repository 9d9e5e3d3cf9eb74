//! The settings page: theme, default model and system prompt (the password, 2FA and sessions
//! are on the security page).

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;

use crate::api::{self, UserSettings};
use crate::components::conversation_settings::ModelSelect;
use crate::state::AppState;

/// The settings page.
#[component]
pub fn SettingsPage() -> impl IntoView {
    let state = expect_context::<AppState>();
    let initial = state.settings.get_untracked();
    let default_model = RwSignal::new(initial.default_model.clone().unwrap_or_default());
    let system_prompt = RwSignal::new(initial.default_system_prompt.clone().unwrap_or_default());
    // The settings may arrive after the page opens.
    Effect::new(move |_| {
        let s = state.settings.get();
        default_model.set(s.default_model.unwrap_or_default());
        system_prompt.set(s.default_system_prompt.unwrap_or_default());
    });
    let saved = RwSignal::new(None::<String>);
    let error = RwSignal::new(None::<String>);
    let save_preferences = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let settings = UserSettings {
            theme: Some(state.theme.get_untracked()),
            default_model: Some(default_model.get_untracked()).filter(|m| !m.is_empty()),
            default_system_prompt: Some(system_prompt.get_untracked()).filter(|p| !p.trim().is_empty()),
        };
        saved.set(None);
        error.set(None);
        spawn_local(async move {
            let body = api::to_json(&settings);
            match api::request::<UserSettings>("PUT", "/api/v1/settings", Some(&body)).await {
                Ok(s) => {
                    state.settings.set(s);
                    saved.set(Some("Saved.".into()));
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    let set_theme = move |theme: &'static str| {
        state.set_theme(theme);
        let mut settings = state.settings.get_untracked();
        settings.theme = Some(theme.to_owned());
        spawn_local(async move {
            let body = api::to_json(&settings);
            if let Ok(s) = api::request::<UserSettings>("PUT", "/api/v1/settings", Some(&body)).await {
                state.settings.set(s);
            }
        });
    };
    view! {
        <main class="settings-page">
            <div class="settings-card">
                <div class="settings-head">
                    <A href="/c" attr:class="back">"← Back to chat"</A>
                    <h1>"Settings"</h1>
                </div>
                <section aria-labelledby="appearance">
                    <h2 id="appearance">"Appearance"</h2>
                    <div class="segmented" role="radiogroup" aria-label="Theme">
                        {["light", "dark", "system"].into_iter().map(|theme| view! {
                            <button type="button" role="radio" aria-checked=move || (state.theme.get() == theme).to_string()
                                class:selected=move || state.theme.get() == theme on:click=move |_| set_theme(theme)>
                                {match theme { "light" => "Light", "dark" => "Dark", _ => "System" }}
                            </button>
                        }).collect_view()}
                    </div>
                </section>
                <section aria-labelledby="defaults">
                    <h2 id="defaults">"New conversations"</h2>
                    <form on:submit=save_preferences>
                        <label for="default-model">"Default model"</label>
                        <ModelSelect id="default-model" model=default_model/>
                        <label for="default-prompt">"Default system prompt"</label>
                        <textarea id="default-prompt" rows="4" placeholder="You are a helpful assistant."
                            prop:value=move || system_prompt.get() on:input=move |ev| system_prompt.set(event_target_value(&ev))></textarea>
                        <Show when=move || error.get().is_some()>
                            <p class="form-error" role="alert">{move || error.get()}</p>
                        </Show>
                        <Show when=move || saved.get().is_some()>
                            <p class="form-ok" role="status">{move || saved.get()}</p>
                        </Show>
                        <button type="submit" class="primary">"Save"</button>
                    </form>
                </section>
                <section aria-labelledby="security-link">
                    <h2 id="security-link">"Security"</h2>
                    <p>"Password, two-factor authentication and the devices signed in: "
                        <A href="/security">"Security settings"</A></p>
                </section>
            </div>
        </main>
    }
}
