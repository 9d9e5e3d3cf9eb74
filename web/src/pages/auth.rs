//! Sign-in (with the second step an account with 2FA needs), sign-up, and setting a new
//! password through an administrator's reset link.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;
use leptos_router::hooks::{use_navigate, use_query_map};

use crate::api::{self, ErrorCode, PasswordResetRequest, RegisterRequest, SecondFactor};
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
    // The second step: the account has 2FA and the server asked for a code.
    let needs_code = RwSignal::new(false);
    let code = RwSignal::new(String::new());
    let use_recovery = RwSignal::new(false);
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
        let second = match (needs_code.get_untracked(), use_recovery.get_untracked()) {
            (false, _) => SecondFactor::None,
            (true, false) => SecondFactor::Code(code.get_untracked().trim().replace(' ', "")),
            (true, true) => SecondFactor::Recovery(code.get_untracked().trim().to_owned()),
        };
        if second != SecondFactor::None && code.get_untracked().trim().is_empty() {
            error.set(Some("Enter the code.".into()));
            return;
        }
        busy.set(true);
        error.set(None);
        spawn_local(async move {
            match api::login(who.trim(), &secret, second).await {
                Ok(tokens) => {
                    state.notice.set(None);
                    state.start_session(&tokens);
                }
                Err(e) if e.code == ErrorCode::TotpRequired => {
                    needs_code.set(true);
                    request_animation_frame(|| crate::interop::focus("#totp-code"));
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
                <Show when=move || needs_code.get()>
                    <label for="totp-code">
                        {move || if use_recovery.get() { "Recovery code" } else { "Code from your authenticator app" }}
                    </label>
                    <input id="totp-code" name="totp-code" type="text" autocomplete="one-time-code"
                        inputmode=move || if use_recovery.get() { "text" } else { "numeric" }
                        prop:value=move || code.get() on:input=move |ev| code.set(event_target_value(&ev))/>
                    <button type="button" class="link" on:click=move |_| { use_recovery.update(|r| *r = !*r); code.set(String::new()); }>
                        {move || if use_recovery.get() { "Use the app's code instead" } else { "Use a recovery code instead" }}
                    </button>
                </Show>
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
                Ok(()) => api::login(&name, &secret, SecondFactor::None).await,
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

/// The page of an administrator's password reset link (`/reset-password?token=...`): a new
/// password, then sign in with it (every session of the account has ended).
#[component]
pub fn ResetPassword() -> impl IntoView {
    let state = expect_context::<AppState>();
    let navigate = use_navigate();
    let query = use_query_map();
    let token = move || query.with_untracked(|q| q.get("token")).unwrap_or_default();
    let password = RwSignal::new(String::new());
    let confirm = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let (fresh, again) = (password.get_untracked(), confirm.get_untracked());
        if fresh.chars().count() < 12 {
            error.set(Some("The password needs at least 12 characters.".into()));
            return;
        }
        if fresh != again {
            error.set(Some("The two passwords differ.".into()));
            return;
        }
        let token = token();
        if token.is_empty() {
            error.set(Some(
                "This link is incomplete: open the whole link you were given.".into(),
            ));
            return;
        }
        busy.set(true);
        error.set(None);
        let navigate = navigate.clone();
        spawn_local(async move {
            let body = api::to_json(&PasswordResetRequest {
                token,
                new_password: fresh,
            });
            match api::request_empty("POST", "/api/v1/auth/password/reset", Some(&body)).await {
                Ok(()) => {
                    state.end_session(Some("Your new password is set. Sign in with it."));
                    navigate("/login", Default::default());
                }
                Err(e) if e.code == ErrorCode::InvalidLink => error.set(Some(
                    "This link does not work any more (used, expired or revoked). Ask an administrator for a new one."
                        .into(),
                )),
                Err(e) => error.set(Some(e.message)),
            }
            busy.set(false);
        });
    };
    view! {
        <AuthFrame title="Set a new password">
            <form on:submit=submit novalidate>
                <label for="reset-password-1">"New password"</label>
                <input id="reset-password-1" type="password" autocomplete="new-password" autofocus
                    aria-describedby="reset-hint"
                    prop:value=move || password.get() on:input=move |ev| password.set(event_target_value(&ev))/>
                <p id="reset-hint" class="hint">"At least 12 characters."</p>
                <label for="reset-password-2">"New password again"</label>
                <input id="reset-password-2" type="password" autocomplete="new-password"
                    prop:value=move || confirm.get() on:input=move |ev| confirm.set(event_target_value(&ev))/>
                <Show when=move || error.get().is_some()>
                    <p class="form-error" role="alert">{move || error.get()}</p>
                </Show>
                <button type="submit" class="primary" disabled=move || busy.get()>"Set password"</button>
            </form>
            <p class="switch"><A href="/login">"Back to sign in"</A></p>
        </AuthFrame>
    }
}
