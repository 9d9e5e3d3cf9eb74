//! Sign-in and sign-up pages.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;
use leptos_router::hooks::{use_navigate, use_query_map};

use crate::api::{self, RegisterRequest};
use crate::errors::describe_sign_in_error;
use crate::state::{AppState, Session};

/// The frame of both pages: logo, title, the form.
#[component]
fn AuthFrame(title: &'static str, children: Children) -> impl IntoView {
    view! {
        <main class="auth">
            <div class="auth-card">
                <div class="brand"><span class="logo" aria-hidden="true">"◆"</span>" Enclave"</div>
                <h1>{title}</h1>
                {children()}
            </div>
        </main>
    }
}

/// The sign-in page.
#[component]
pub fn Login() -> impl IntoView {
    let state = expect_context::<AppState>();
    let navigate = use_navigate();
    let login = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    {
        let navigate = navigate.clone();
        Effect::new(move |_| {
            if state.session.get() == Session::SignedIn {
                navigate("/c", Default::default());
            }
        });
    }
    // The sign-in form is on screen and answers input: the app is interactive.
    request_animation_frame(|| crate::interop::mark("enclave-interactive"));
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if busy.get_untracked() {
            return;
        }
        let (who, secret) = (login.get_untracked(), password.get_untracked());
        if who.trim().is_empty() || secret.is_empty() {
            error.set(Some("Enter your email or username and your password.".into()));
            return;
        }
        busy.set(true);
        error.set(None);
        spawn_local(async move {
            match api::login(who.trim(), &secret).await {
                Ok(tokens) => {
                    state.notice.set(None);
                    state.start_session(&tokens);
                }
                Err(e) => error.set(Some(describe_sign_in_error(&e))),
            }
            busy.set(false);
        });
    };
    view! {
        <AuthFrame title="Sign in">
            <Show when=move || state.notice.get().is_some()>
                <p class="notice" role="status">{move || state.notice.get()}</p>
            </Show>
            <form on:submit=submit novalidate>
                <label for="login">"Email or username"</label>
                <input id="login" name="login" type="text" autocomplete="username" autofocus
                    prop:value=move || login.get() on:input=move |ev| login.set(event_target_value(&ev))/>
                <label for="password">"Password"</label>
                <input id="password" name="password" type="password" autocomplete="current-password"
                    prop:value=move || password.get() on:input=move |ev| password.set(event_target_value(&ev))/>
                <Show when=move || error.get().is_some()>
                    <p class="form-error" role="alert">{move || error.get()}</p>
                </Show>
                <button type="submit" class="primary" disabled=move || busy.get()>
                    {move || if busy.get() { "Signing in…" } else { "Sign in" }}
                </button>
            </form>
            <p class="switch">"No account yet? "<A href="/register">"Create one"</A></p>
        </AuthFrame>
    }
}

/// The sign-up page.
#[component]
pub fn Register() -> impl IntoView {
    let state = expect_context::<AppState>();
    let email = RwSignal::new(String::new());
    let username = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let navigate = use_navigate();
    // An invitation link (`/register?invite=...`) carries its token.
    let query = use_query_map();
    let invite = move || query.with_untracked(|q| q.get("invite")).filter(|t| !t.is_empty());
    Effect::new(move |_| {
        if state.session.get() == Session::SignedIn {
            navigate("/c", Default::default());
        }
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if busy.get_untracked() {
            return;
        }
        let invite = invite();
        let (mail, name, secret) = (
            email.get_untracked().trim().to_owned(),
            username.get_untracked().trim().to_owned(),
            password.get_untracked(),
        );
        if mail.is_empty() || name.is_empty() {
            error.set(Some("Enter an email address and a username.".into()));
            return;
        }
        if secret.chars().count() < 12 {
            error.set(Some("The password needs at least 12 characters.".into()));
            return;
        }
        busy.set(true);
        error.set(None);
        spawn_local(async move {
            let body = RegisterRequest {
                email: mail,
                username: name.clone(),
                password: secret.clone(),
                invite,
            };
            let created = api::request_empty("POST", "/api/v1/auth/register", Some(&api::to_json(&body))).await;
            let result = match created {
                Ok(()) => api::login(&name, &secret).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(tokens) => state.start_session(&tokens),
                Err(e) => error.set(Some(describe_sign_in_error(&e))),
            }
            busy.set(false);
        });
    };
    view! {
        <AuthFrame title="Create your account">
            <form on:submit=submit novalidate>
                <label for="email">"Email"</label>
                <input id="email" name="email" type="email" autocomplete="email" autofocus
                    prop:value=move || email.get() on:input=move |ev| email.set(event_target_value(&ev))/>
                <label for="username">"Username"</label>
                <input id="username" name="username" type="text" autocomplete="username"
                    prop:value=move || username.get() on:input=move |ev| username.set(event_target_value(&ev))/>
                <label for="new-password">"Password"</label>
                <input id="new-password" name="password" type="password" autocomplete="new-password"
                    aria-describedby="password-hint"
                    prop:value=move || password.get() on:input=move |ev| password.set(event_target_value(&ev))/>
                <p id="password-hint" class="hint">"At least 12 characters."</p>
                <Show when=move || error.get().is_some()>
                    <p class="form-error" role="alert">{move || error.get()}</p>
                </Show>
                <button type="submit" class="primary" disabled=move || busy.get()>
                    {move || if busy.get() { "Creating…" } else { "Create account" }}
                </button>
            </form>
            <p class="switch">"Already have an account? "<A href="/login">"Sign in"</A></p>
        </AuthFrame>
    }
}
