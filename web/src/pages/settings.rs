//! The settings page: theme, default model and system prompt, password.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;
use leptos_router::hooks::use_navigate;

use crate::api::{self, ErrorCode, PasswordChangeRequest, UserSettings};
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
                <PasswordForm/>
            </div>
        </main>
    }
}

/// Changes the password (which ends every session, this one too).
#[component]
fn PasswordForm() -> impl IntoView {
    let state = expect_context::<AppState>();
    let navigate = use_navigate();
    let current = RwSignal::new(String::new());
    let new = RwSignal::new(String::new());
    let confirm = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let (old, fresh, again) = (current.get_untracked(), new.get_untracked(), confirm.get_untracked());
        if fresh.chars().count() < 12 {
            error.set(Some("The new password needs at least 12 characters.".into()));
            return;
        }
        if fresh != again {
            error.set(Some("The two new passwords differ.".into()));
            return;
        }
        error.set(None);
        busy.set(true);
        let navigate = navigate.clone();
        spawn_local(async move {
            let body = api::to_json(&PasswordChangeRequest {
                current_password: old,
                new_password: fresh,
            });
            match api::request_empty("PUT", "/api/v1/auth/password/change", Some(&body)).await {
                Ok(()) => {
                    state.end_session(Some("Password changed. Sign in with the new one."));
                    navigate("/login", Default::default());
                }
                Err(e) => error.set(Some(if e.code == ErrorCode::InvalidCredentials {
                    "The current password is wrong.".into()
                } else {
                    e.message
                })),
            }
            busy.set(false);
        });
    };
    view! {
        <section aria-labelledby="password-title">
            <h2 id="password-title">"Password"</h2>
            <form on:submit=submit novalidate>
                <label for="current-password">"Current password"</label>
                <input id="current-password" type="password" autocomplete="current-password"
                    prop:value=move || current.get() on:input=move |ev| current.set(event_target_value(&ev))/>
                <label for="new-password-1">"New password"</label>
                <input id="new-password-1" type="password" autocomplete="new-password"
                    prop:value=move || new.get() on:input=move |ev| new.set(event_target_value(&ev))/>
                <label for="new-password-2">"New password again"</label>
                <input id="new-password-2" type="password" autocomplete="new-password"
                    prop:value=move || confirm.get() on:input=move |ev| confirm.set(event_target_value(&ev))/>
                <Show when=move || error.get().is_some()>
                    <p class="form-error" role="alert">{move || error.get()}</p>
                </Show>
                <button type="submit" class="primary" disabled=move || busy.get()>"Change password"</button>
            </form>
        </section>
    }
}
