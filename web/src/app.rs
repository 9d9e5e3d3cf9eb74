//! The app: routes, the session restored on load (through the refresh cookie, when this
//! browser signed in before), the theme, global keyboard shortcuts.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::{Redirect, Route, Router, Routes};
use leptos_router::hooks::use_navigate;
use leptos_router::path;

use crate::api;
use crate::pages::admin::AdminPage;
use crate::pages::auth::{Login, Register, ResetPassword};
use crate::pages::chat::ChatPage;
use crate::pages::documents::DocumentsPage;
use crate::pages::security::SecurityPage;
use crate::pages::settings::SettingsPage;
use crate::state::{AppState, Session};

/// The root component.
#[component]
pub fn App() -> impl IntoView {
    let state = AppState::new();
    provide_context(state);
    crate::interop::apply_theme(&state.theme.get_untracked());
    api::on_signed_out(move |reason| state.end_session(Some(reason)));
    // A reload: the HttpOnly cookie may still hold a session. A first visit has none to ask
    // about.
    if api::may_have_session() {
        spawn_local(async move {
            match api::refresh().await {
                Ok(tokens) => state.start_session(&tokens),
                Err(_) => state.session.set(Session::SignedOut),
            }
        });
    } else {
        state.session.set(Session::SignedOut);
    }
    view! {
        <Router>
            <Shortcuts/>
            <Routes fallback=|| view! { <Redirect path="/c"/> }>
                <Route path=path!("/login") view=Login/>
                <Route path=path!("/register") view=Register/>
                <Route path=path!("/reset-password") view=ResetPassword/>
                <Route path=path!("/security") view=move || view! { <SignedIn><SecurityPage/></SignedIn> }/>
                <Route path=path!("/admin/:tab?") view=move || view! { <SignedIn><AdminPage/></SignedIn> }/>
                <Route path=path!("/documents") view=move || view! { <SignedIn><DocumentsPage/></SignedIn> }/>
                <Route path=path!("/settings") view=move || view! { <SignedIn><SettingsPage/></SignedIn> }/>
                <Route path=path!("/c/:id?") view=move || view! { <SignedIn><ChatPage/></SignedIn> }/>
                <Route path=path!("/") view=|| view! { <Redirect path="/c"/> }/>
            </Routes>
        </Router>
    }
}

/// Shows its children to a signed-in user, a loading screen while the session is being
/// checked, and sends everyone else to the sign-in page. An account whose role requires 2FA
/// and has none yet is sent to the security page (nothing else answers it).
#[component]
fn SignedIn(children: ChildrenFn) -> impl IntoView {
    let state = expect_context::<AppState>();
    let navigate = use_navigate();
    let location = leptos_router::hooks::use_location();
    Effect::new(move |_| {
        if state.session.get() == Session::SignedOut {
            navigate("/login", Default::default());
        } else if state.user.get().is_some_and(|u| u.totp_setup_required) && location.pathname.get() != "/security" {
            navigate("/security", Default::default());
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
