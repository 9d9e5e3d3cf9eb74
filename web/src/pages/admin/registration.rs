//! Who may register (open, by invitation, closed), the roles that must use 2FA, and the open
//! invitations (create with a role and a lifetime, copy the link, revoke).

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{
    self, GrantLink, InviteList, InviteRequest, RegistrationPolicy, RegistrationSettings, SecuritySettings, UserRole,
};
use crate::interop::local_time;

/// The registration tab.
#[component]
pub fn RegistrationTab() -> impl IntoView {
    let policy = RwSignal::new(None::<RegistrationPolicy>);
    let required = RwSignal::new(Vec::<UserRole>::new());
    let invites = RwSignal::new(Vec::<GrantLink>::new());
    let new_link = RwSignal::new(None::<String>);
    let invite_role = RwSignal::new(UserRole::User);
    let invite_hours = RwSignal::new(String::from("72"));
    let error = RwSignal::new(None::<String>);
    let saved = RwSignal::new(None::<String>);
    let load_invites = move || {
        spawn_local(async move {
            match api::request::<InviteList>("GET", "/api/v1/admin/invites", None).await {
                Ok(list) => invites.set(list.invites),
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    spawn_local(async move {
        match api::request::<RegistrationSettings>("GET", "/api/v1/admin/registration", None).await {
            Ok(s) => policy.set(Some(s.policy)),
            Err(e) => error.set(Some(e.message)),
        }
        if let Ok(s) = api::request::<SecuritySettings>("GET", "/api/v1/admin/security", None).await {
            required.set(s.require_2fa_for);
        }
    });
    load_invites();
    let set_policy = move |chosen: RegistrationPolicy| {
        saved.set(None);
        spawn_local(async move {
            let body = api::to_json(&RegistrationSettings { policy: chosen });
            match api::request::<RegistrationSettings>("PUT", "/api/v1/admin/registration", Some(&body)).await {
                Ok(s) => {
                    policy.set(Some(s.policy));
                    saved.set(Some("Registration policy saved.".into()));
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    let toggle_required = move |role: UserRole, on: bool| {
        let mut roles = required.get_untracked();
        roles.retain(|r| *r != role);
        if on {
            roles.push(role);
        }
        saved.set(None);
        spawn_local(async move {
            let body = api::to_json(&SecuritySettings { require_2fa_for: roles });
            match api::request::<SecuritySettings>("PUT", "/api/v1/admin/security", Some(&body)).await {
                Ok(s) => {
                    required.set(s.require_2fa_for);
                    saved.set(Some("2FA requirement saved.".into()));
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    let invite = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let hours = invite_hours.get_untracked().trim().parse::<u32>().ok();
        let body = InviteRequest {
            role: invite_role.get_untracked(),
            expires_in_hours: hours,
        };
        new_link.set(None);
        spawn_local(async move {
            match api::request::<GrantLink>("POST", "/api/v1/admin/invites", Some(&api::to_json(&body))).await {
                Ok(link) => {
                    let origin = web_sys::window()
                        .and_then(|w| w.location().origin().ok())
                        .unwrap_or_default();
                    new_link.set(link.path.map(|p| format!("{origin}{p}")));
                    load_invites();
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    let revoke = move |id: api::Uuid| {
        spawn_local(async move {
            match api::request_empty("DELETE", &format!("/api/v1/admin/invites/{id}"), None).await {
                Ok(()) => load_invites(),
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    let policies = [
        (RegistrationPolicy::Open, "Open", "Anyone can create an account."),
        (
            RegistrationPolicy::InviteOnly,
            "By invitation",
            "Only with an invitation link.",
        ),
        (
            RegistrationPolicy::Closed,
            "Closed",
            "Only administrators create accounts.",
        ),
    ];
    view! {
        <Show when=move || error.get().is_some()>
            <p class="form-error" role="alert">{move || error.get()}</p>
        </Show>
        <Show when=move || saved.get().is_some()>
            <p class="form-ok" role="status">{move || saved.get()}</p>
        </Show>
        <section aria-labelledby="policy-title">
            <h2 id="policy-title">"Who may register"</h2>
            <div class="segmented" role="radiogroup" aria-label="Registration policy">
                {policies.into_iter().map(|(p, label, hint)| view! {
                    <button type="button" role="radio" title=hint data-policy=format!("{p:?}")
                        aria-checked=move || (policy.get() == Some(p)).to_string()
                        class:selected=move || policy.get() == Some(p) on:click=move |_| set_policy(p)>{label}</button>
                }).collect_view()}
            </div>
        </section>
        <section aria-labelledby="required-title">
            <h2 id="required-title">"Two-factor authentication required for"</h2>
            <div class="checks">
                {UserRole::ALL.into_iter().map(|role| view! {
                    <label class="check">
                        <input type="checkbox" prop:checked=move || required.get().contains(&role)
                            on:change=move |ev| toggle_required(role, event_target_checked(&ev))/>
                        {role.as_str()}
                    </label>
                }).collect_view()}
            </div>
        </section>
        <section aria-labelledby="invites-title">
            <h2 id="invites-title">"Invitations"</h2>
            <form class="search-row" on:submit=invite>
                <label for="invite-role">"Role"</label>
                <select id="invite-role" on:change=move |ev| { if let Ok(r) = event_target_value(&ev).parse() { invite_role.set(r) } }>
                    {UserRole::ALL.into_iter().map(|r| view! { <option value=r.as_str() selected=r == UserRole::User>{r.as_str()}</option> }).collect_view()}
                </select>
                <label for="invite-hours">"Valid for (hours)"</label>
                <input id="invite-hours" type="number" min="1" max="720" size="5"
                    prop:value=move || invite_hours.get() on:input=move |ev| invite_hours.set(event_target_value(&ev))/>
                <button type="submit" class="primary">"Create invitation"</button>
            </form>
            {move || new_link.get().map(|link| {
                let copied = link.clone();
                view! {
                    <p class="form-ok" role="status">"New invitation (shown once): "<code id="invite-link">{link}</code>
                        " "<button type="button" class="link" on:click=move |_| crate::interop::copy(&copied)>"Copy"</button></p>
                }
            })}
            <ul class="session-list">
                <For each=move || invites.get() key=|i| i.id let:link>
                    <li class="session">
                        <div>
                            <strong>{link.role.map(|r| r.as_str()).unwrap_or("user")}</strong>
                            <div class="hint">"created "{local_time(&link.created_at)}" · expires "{local_time(&link.expires_at)}</div>
                        </div>
                        <button type="button" class="ghost" on:click=move |_| revoke(link.id)>"Revoke"</button>
                    </li>
                </For>
            </ul>
        </section>
    }
}
