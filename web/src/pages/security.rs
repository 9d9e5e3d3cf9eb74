//! The security page of every account: two-factor authentication (set up with the QR code and
//! a first code, which brings the recovery codes, shown this once; turned off with the password
//! and a code), the account's sessions (each with its device, address and last use; any can be
//! ended), and the password.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;
use leptos_router::hooks::use_navigate;

use crate::api::{
    self, ErrorCode, PasswordChangeRequest, RecoveryCodes, Session, SessionList, TotpDisableRequest, TotpSetup,
    TotpVerifyRequest, User,
};
use crate::interop::local_time;
use crate::state::AppState;

/// The security page.
#[component]
pub fn SecurityPage() -> impl IntoView {
    let state = expect_context::<AppState>();
    view! {
        <main class="settings-page">
            <div class="settings-card">
                <div class="settings-head">
                    <A href="/c" attr:class="back">"← Back to chat"</A>
                    <h1>"Security"</h1>
                </div>
                <Show when=move || state.user.get().is_some_and(|u| u.totp_setup_required)>
                    <p class="notice" role="alert">
                        "Your role requires two-factor authentication. Set it up below to use Enclave."
                    </p>
                </Show>
                <TwoFactor/>
                <Sessions/>
                <PasswordForm/>
            </div>
        </main>
    }
}

/// Where setting up 2FA stands.
#[derive(Clone, PartialEq)]
enum Stage {
    /// Nothing under way.
    Idle,
    /// A new secret is shown; waiting for its first code.
    Confirming(TotpSetup),
    /// 2FA is on: the recovery codes, shown this once.
    Codes(Vec<String>),
}

/// Reads the account again (2FA state) into the app state.
fn reload_user(state: AppState) {
    spawn_local(async move {
        if let Ok(user) = api::request::<User>("GET", "/api/v1/auth/me", None).await {
            state.user.set(Some(user));
        }
    });
}

/// Two-factor authentication: set up, confirm, recovery codes, turn off.
#[component]
fn TwoFactor() -> impl IntoView {
    let state = expect_context::<AppState>();
    let stage = RwSignal::new(Stage::Idle);
    let code = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let enabled = move || state.user.get().is_some_and(|u| u.totp_enabled);
    let start = move |_| {
        error.set(None);
        busy.set(true);
        spawn_local(async move {
            match api::request::<TotpSetup>("POST", "/api/v1/auth/2fa/setup", Some(&serde_json::json!({}))).await {
                Ok(setup) => {
                    code.set(String::new());
                    stage.set(Stage::Confirming(setup));
                    request_animation_frame(|| crate::interop::focus("#totp-verify-code"));
                }
                Err(e) => error.set(Some(e.message)),
            }
            busy.set(false);
        });
    };
    let confirm = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let typed = code.get_untracked().trim().replace(' ', "");
        if typed.is_empty() {
            error.set(Some("Enter the 6-digit code your app shows.".into()));
            return;
        }
        error.set(None);
        busy.set(true);
        spawn_local(async move {
            let body = api::to_json(&TotpVerifyRequest { code: typed });
            match api::request::<RecoveryCodes>("POST", "/api/v1/auth/2fa/verify", Some(&body)).await {
                Ok(codes) => {
                    stage.set(Stage::Codes(codes.recovery_codes));
                    reload_user(state);
                }
                Err(e) if e.code == ErrorCode::InvalidTotp => error.set(Some(
                    "That code does not match. Check the app's clock and type the code it shows now.".into(),
                )),
                Err(e) => error.set(Some(e.message)),
            }
            busy.set(false);
        });
    };
    let turn_off = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let (secret, typed) = (password.get_untracked(), code.get_untracked().trim().to_owned());
        if secret.is_empty() || typed.is_empty() {
            error.set(Some("Enter your password and a code (or a recovery code).".into()));
            return;
        }
        // Six digits are the app's code; anything else is a recovery code.
        let app_code = typed.len() == 6 && typed.chars().all(|c| c.is_ascii_digit());
        let body = TotpDisableRequest {
            password: secret,
            code: app_code.then(|| typed.clone()),
            recovery_code: (!app_code).then_some(typed),
        };
        error.set(None);
        busy.set(true);
        spawn_local(async move {
            match api::request_empty("POST", "/api/v1/auth/2fa/disable", Some(&api::to_json(&body))).await {
                Ok(()) => {
                    password.set(String::new());
                    code.set(String::new());
                    stage.set(Stage::Idle);
                    reload_user(state);
                }
                Err(e) if e.code == ErrorCode::InvalidCredentials => error.set(Some("The password is wrong.".into())),
                Err(e) if e.code == ErrorCode::InvalidTotp => error.set(Some("That code is not right.".into())),
                Err(e) => error.set(Some(e.message)),
            }
            busy.set(false);
        });
    };
    let error_line = move || {
        view! {
            <Show when=move || error.get().is_some()>
                <p class="form-error" role="alert">{move || error.get()}</p>
            </Show>
        }
    };
    view! {
        <section aria-labelledby="totp-title" class="two-factor">
            <h2 id="totp-title">"Two-factor authentication"</h2>
            {move || match stage.get() {
                Stage::Confirming(setup) => view! {
                    <p>"Scan this code with an authenticator app (Aegis, Google Authenticator, 1Password…), then type the code it shows."</p>
                    <div class="qr" aria-label="QR code of the authenticator secret" role="img" inner_html=setup.qr_svg></div>
                    <p class="hint">"Or enter this key by hand: "<code id="totp-secret">{setup.secret}</code></p>
                    <form on:submit=confirm novalidate>
                        <label for="totp-verify-code">"Code from the app"</label>
                        <input id="totp-verify-code" type="text" inputmode="numeric" autocomplete="one-time-code"
                            prop:value=move || code.get() on:input=move |ev| code.set(event_target_value(&ev))/>
                        {error_line()}
                        <div class="row-actions">
                            <button type="submit" class="primary" disabled=move || busy.get()>"Turn on"</button>
                            <button type="button" class="ghost" on:click=move |_| stage.set(Stage::Idle)>"Cancel"</button>
                        </div>
                    </form>
                }.into_any(),
                Stage::Codes(codes) => {
                    let all = codes.join("\n");
                    view! {
                        <p class="form-ok" role="status">"Two-factor authentication is on."</p>
                        <p>"Keep these recovery codes somewhere safe. Each works once, in place of a code, if you lose the app. They are shown only now."</p>
                        <ol class="recovery-codes">
                            {codes.into_iter().map(|c| view! { <li><code>{c}</code></li> }).collect_view()}
                        </ol>
                        <div class="row-actions">
                            <button type="button" class="ghost" on:click=move |_| crate::interop::copy(&all)>"Copy codes"</button>
                            <button type="button" class="primary" on:click=move |_| stage.set(Stage::Idle)>"I saved them"</button>
                        </div>
                    }.into_any()
                }
                Stage::Idle => if enabled() {
                    view! {
                        <p class="status-on">"On: signing in needs a code from your app."</p>
                        <form on:submit=turn_off novalidate>
                            <label for="totp-off-password">"Password"</label>
                            <input id="totp-off-password" type="password" autocomplete="current-password"
                                prop:value=move || password.get() on:input=move |ev| password.set(event_target_value(&ev))/>
                            <label for="totp-off-code">"Code from the app, or a recovery code"</label>
                            <input id="totp-off-code" type="text" autocomplete="one-time-code"
                                prop:value=move || code.get() on:input=move |ev| code.set(event_target_value(&ev))/>
                            {error_line()}
                            <button type="submit" class="danger-button" disabled=move || busy.get()>"Turn off"</button>
                        </form>
                    }.into_any()
                } else {
                    view! {
                        <p>"Off. With it on, signing in also needs a code from an app on your phone."</p>
                        {error_line()}
                        <button type="button" class="primary" id="totp-start" on:click=start disabled=move || busy.get()>
                            "Set up two-factor authentication"
                        </button>
                    }.into_any()
                },
            }}
        </section>
    }
}

/// The account's sessions, with a button to end each.
#[component]
fn Sessions() -> impl IntoView {
    let state = expect_context::<AppState>();
    let navigate = use_navigate();
    let sessions = RwSignal::new(Vec::<Session>::new());
    let error = RwSignal::new(None::<String>);
    let load = move || {
        spawn_local(async move {
            match api::request::<SessionList>("GET", "/api/v1/auth/sessions", None).await {
                Ok(list) => sessions.set(list.sessions),
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    load();
    let end = move |session: Session| {
        let navigate = navigate.clone();
        spawn_local(async move {
            match api::request_empty("DELETE", &format!("/api/v1/auth/sessions/{}", session.id), None).await {
                Ok(()) if session.current => {
                    api::remember_session(false);
                    state.end_session(Some("You signed this device out."));
                    navigate("/login", Default::default());
                }
                Ok(()) => load(),
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    view! {
        <section aria-labelledby="sessions-title">
            <h2 id="sessions-title">"Sessions"</h2>
            <p class="hint">"Where your account is signed in. End any you do not recognise."</p>
            <Show when=move || error.get().is_some()>
                <p class="form-error" role="alert">{move || error.get()}</p>
            </Show>
            <ul class="session-list">
                <For each=move || sessions.get() key=|s| s.id let:session>
                    {
                        let end = end.clone();
                        let ended = session.clone();
                        view! {
                            <li class="session" data-id=session.id.to_string()>
                                <div>
                                    <strong>{session.user_agent.clone().unwrap_or_else(|| "Unknown device".into())}</strong>
                                    {session.current.then(|| view! { <span class="badge">"This device"</span> })}
                                    <div class="hint">
                                        {session.ip.clone().unwrap_or_else(|| "unknown address".into())}
                                        " · signed in "{local_time(&session.created_at)}
                                        " · last used "{local_time(&session.last_seen_at)}
                                    </div>
                                </div>
                                <button type="button" class="ghost end-session" on:click=move |_| end(ended.clone())>
                                    {if session.current { "Sign out" } else { "End session" }}
                                </button>
                            </li>
                        }
                    }
                </For>
            </ul>
        </section>
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
