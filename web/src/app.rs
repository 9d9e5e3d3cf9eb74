//! The app: routes, the session (restored on load through the refresh cookie, kept fresh
//! before the access token expires), the theme, global keyboard shortcuts.

use std::time::Duration;

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::{Redirect, Route, Router, Routes};
use leptos_router::hooks::use_navigate;
use leptos_router::path;

use crate::api::{self, Tokens};
use crate::pages::auth::{Login, Register};
use crate::pages::chat::ChatPage;
use crate::pages::settings::SettingsPage;
use crate::state::{AppState, Session};

/// Seconds before expiry at which the access token is renewed.
const REFRESH_MARGIN_SECS: u64 = 60;

/// Renews the access token shortly before it expires, for as long as the session lasts.
pub fn keep_fresh(state: AppState, tokens: &Tokens) {
    let wait = tokens.expires_in.saturating_sub(REFRESH_MARGIN_SECS).max(5);
    set_timeout(
        move || {
            if state.session.get_untracked() != Session::SignedIn {
                return;
            }
            spawn_local(async move {
                match api::refresh().await {
                    Ok(tokens) => keep_fresh(state, &tokens),
                    Err(error) if error.status == 0 => {
                        // Offline for now: try again soon, the token may still be valid.
                        keep_fresh(
                            state,
                            &Tokens {
                                access_token: String::new(),
                                expires_in: REFRESH_MARGIN_SECS + 15,
                            },
                        );
                    }
                    Err(_) => end_session(state, Some("Your session has ended. Please sign in again.")),
                }
            });
        },
        Duration::from_secs(wait),
    );
}

/// Signs in the page's state after a login or refresh.
pub fn start_session(state: AppState, tokens: &Tokens) {
    state.session.set(Session::SignedIn);
    state.load_after_sign_in();
    keep_fresh(state, tokens);
}

/// Ends the session on this page (the server side is ended by the caller when it should be).
pub fn end_session(state: AppState, notice: Option<&str>) {
    api::set_access_token(None);
    state.clear();
    state.notice.set(notice.map(str::to_owned));
    state.session.set(Session::SignedOut);
}

/// The root component.
#[component]
pub fn App() -> impl IntoView {
    let state = AppState::new();
    provide_context(state);
    crate::interop::apply_theme(&state.theme.get_untracked());
    api::on_signed_out(move || end_session(state, Some("Your session has ended. Please sign in again.")));
    // A reload: the HttpOnly cookie may still hold a session.
    spawn_local(async move {
        match api::refresh().await {
            Ok(tokens) => start_session(state, &tokens),
            Err(_) => state.session.set(Session::SignedOut),
        }
    });
    view! {
        <Router>
            <Shortcuts/>
            <Routes fallback=|| view! { <Redirect path="/c"/> }>
                <Route path=path!("/login") view=Login/>
                <Route path=path!("/register") view=Register/>
                <Route path=path!("/settings") view=move || view! { <SignedIn><SettingsPage/></SignedIn> }/>
                <Route path=path!("/c/:id?") view=move || view! { <SignedIn><ChatPage/></SignedIn> }/>
                <Route path=path!("/") view=|| view! { <Redirect path="/c"/> }/>
            </Routes>
        </Router>
    }
}

/// Shows its children to a signed-in user, a loading screen while the session is being
/// checked, and sends everyone else to the sign-in page.
#[component]
fn SignedIn(children: ChildrenFn) -> impl IntoView {
    let state = expect_context::<AppState>();
    let navigate = use_navigate();
    Effect::new(move |_| {
        if state.session.get() == Session::SignedOut {
            navigate("/login", Default::default());
        }
    });
    view! {
        <Show
            when=move || state.session.get() == Session::SignedIn
            fallback=|| view! { <div class="splash" role="status"><div class="spinner" aria-hidden="true"></div><p>"Loading Enclave…"</p></div> }
        >
            {children()}
        </Show>
    }
}

/// Keyboard shortcuts that work everywhere: Ctrl+Shift+N for a new chat.
#[component]
fn Shortcuts() -> impl IntoView {
    let navigate = use_navigate();
    let handle = window_event_listener(leptos::ev::keydown, move |ev| {
        if ev.ctrl_key() && ev.shift_key() && ev.key().eq_ignore_ascii_case("n") {
            ev.prevent_default();
            navigate("/c", Default::default());
        }
    });
    on_cleanup(move || handle.remove());
}
