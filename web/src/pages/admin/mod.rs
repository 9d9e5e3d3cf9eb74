//! The administrators' pages: accounts ([`users`]), the audit log ([`audit`]), and who may
//! register ([`registration`]). Shown to admins and super_admins; the server checks every
//! request again.

mod audit;
mod registration;
mod users;

use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_params_map;

use crate::api::UserRole;
use crate::state::AppState;

/// Whether `role` may open the administrators' pages.
pub fn is_admin(role: UserRole) -> bool {
    matches!(role, UserRole::Admin | UserRole::SuperAdmin)
}

/// The administrators' pages, one tab each (`/admin/users`, `/admin/audit`,
/// `/admin/registration`).
#[component]
pub fn AdminPage() -> impl IntoView {
    let state = expect_context::<AppState>();
    let params = use_params_map();
    let tab = move || params.with(|p| p.get("tab")).unwrap_or_else(|| "users".into());
    let allowed = move || state.user.get().is_some_and(|u| is_admin(u.role));
    view! {
        <main class="admin-page">
            <div class="admin-card">
                <div class="settings-head">
                    <A href="/c" attr:class="back">"← Back to chat"</A>
                    <h1>"Administration"</h1>
                </div>
                <Show when=allowed fallback=|| view! { <p class="form-error" role="alert">"Only administrators can open this page."</p> }>
                    <nav class="tabs" aria-label="Administration">
                        {[("users", "Users"), ("audit", "Audit log"), ("registration", "Registration")]
                            .into_iter()
                            .map(|(id, label)| view! {
                                <A href=format!("/admin/{id}") attr:class="tab"
                                    attr:aria-current=move || (tab() == id).then_some("page")>{label}</A>
                            })
                            .collect_view()}
                    </nav>
                    {move || match tab().as_str() {
                        "audit" => view! { <audit::AuditTab/> }.into_any(),
                        "registration" => view! { <registration::RegistrationTab/> }.into_any(),
                        _ => view! { <users::UsersTab/> }.into_any(),
                    }}
                </Show>
            </div>
        </main>
    }
}
