//! Accounts: search, a table with each account's role, state and 2FA, and the actions on it
//! (role, disable / enable, sign out everywhere, unlock, remove 2FA, a password reset link);
//! and creating an account.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{self, AdminUser, AdminUserCreate, AdminUserPage, AdminUserUpdate, GrantLink, UserRole};
use crate::interop::local_time;

/// Accounts per page.
const PAGE: usize = 50;

/// The users tab.
#[component]
pub fn UsersTab() -> impl IntoView {
    let users = RwSignal::new(Vec::<AdminUser>::new());
    let next_cursor = RwSignal::new(None::<String>);
    let search = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let notice = RwSignal::new(None::<String>);
    let load = move |append: bool| {
        let mut query = format!("/api/v1/admin/users?limit={PAGE}");
        let typed = search.get_untracked();
        if !typed.trim().is_empty() {
            query.push_str(&format!("&search={}", api::encode(typed.trim())));
        }
        if append {
            match next_cursor.get_untracked() {
                Some(cursor) => query.push_str(&format!("&cursor={}", api::encode(&cursor))),
                None => return,
            }
        }
        spawn_local(async move {
            match api::request::<AdminUserPage>("GET", &query, None).await {
                Ok(page) => {
                    if append {
                        users.update(|u| u.extend(page.users));
                    } else {
                        users.set(page.users);
                    }
                    next_cursor.set(page.next_cursor);
                    error.set(None);
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    load(false);
    // One action on one account, then the list again.
    let act = move |method: &'static str, path: String, body: Option<serde_json::Value>, done: &'static str| {
        notice.set(None);
        spawn_local(async move {
            match api::request_empty(method, &path, body.as_ref()).await {
                Ok(()) => {
                    notice.set(Some(done.into()));
                    load(false);
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    let reset_link = move |id: api::Uuid| {
        notice.set(None);
        spawn_local(async move {
            let path = format!("/api/v1/admin/users/{id}/password-reset");
            match api::request::<GrantLink>("POST", &path, Some(&serde_json::json!({}))).await {
                Ok(link) => {
                    let origin = web_sys::window()
                        .and_then(|w| w.location().origin().ok())
                        .unwrap_or_default();
                    let url = format!("{origin}{}", link.path.unwrap_or_default());
                    notice.set(Some(format!("Password reset link (works once, for 24 hours): {url}")));
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    view! {
        <section aria-labelledby="users-title">
            <h2 id="users-title">"Users"</h2>
            <form class="search-row" on:submit=move |ev: leptos::ev::SubmitEvent| { ev.prevent_default(); load(false); }>
                <label class="visually-hidden" for="admin-search">"Search by email or username"</label>
                <input id="admin-search" type="search" placeholder="Search by email or username"
                    prop:value=move || search.get() on:input=move |ev| search.set(event_target_value(&ev))/>
                <button type="submit" class="ghost">"Search"</button>
            </form>
            <Show when=move || error.get().is_some()>
                <p class="form-error" role="alert">{move || error.get()}</p>
            </Show>
            <Show when=move || notice.get().is_some()>
                <p class="form-ok notice-line" role="status">{move || notice.get()}</p>
            </Show>
            <div class="table-scroll">
                <table class="admin-table users-table">
                    <thead><tr>
                        <th scope="col">"User"</th><th scope="col">"Role"</th><th scope="col">"State"</th>
                        <th scope="col">"2FA"</th><th scope="col">"Created"</th><th scope="col">"Actions"</th>
                    </tr></thead>
                    <tbody>
                        <For each=move || users.get() key=|u| (u.user.id, u.user.role, u.disabled, u.locked_until.clone(), u.user.totp_enabled) let:account>
                            <UserRow account=account act=act reset_link=reset_link/>
                        </For>
                    </tbody>
                </table>
            </div>
            <Show when=move || next_cursor.get().is_some()>
                <button type="button" class="ghost" on:click=move |_| load(true)>"Load more"</button>
            </Show>
        </section>
        <CreateUser on_created=move || load(false)/>
    }
}

/// One account's row.
#[component]
fn UserRow(
    account: AdminUser,
    act: impl Fn(&'static str, String, Option<serde_json::Value>, &'static str) + Copy + 'static,
    reset_link: impl Fn(api::Uuid) + Copy + 'static,
) -> impl IntoView {
    let id = account.user.id;
    let base = format!("/api/v1/admin/users/{id}");
    let locked = account.locked_until.is_some();
    let state_label = match (account.disabled, locked) {
        (true, _) => "Disabled".to_owned(),
        (false, true) => format!("Locked ({} failed logins)", account.failed_logins),
        (false, false) => "Active".to_owned(),
    };
    let role = account.user.role;
    let on_role = {
        let base = base.clone();
        move |ev: leptos::ev::Event| {
            if let Ok(role) = event_target_value(&ev).parse::<UserRole>() {
                let body = api::to_json(&AdminUserUpdate {
                    role: Some(role),
                    disabled: None,
                });
                act("PATCH", base.clone(), Some(body), "Role changed.");
            }
        }
    };
    let toggle = {
        let base = base.clone();
        let disabled = account.disabled;
        move |_| {
            let body = api::to_json(&AdminUserUpdate {
                role: None,
                disabled: Some(!disabled),
            });
            act(
                "PATCH",
                base.clone(),
                Some(body),
                if disabled {
                    "Account enabled."
                } else {
                    "Account disabled: its sessions have ended."
                },
            );
        }
    };
    let post = move |suffix: &'static str, done: &'static str| {
        let path = format!("/api/v1/admin/users/{id}/{suffix}");
        move |_| act("POST", path.clone(), Some(serde_json::json!({})), done)
    };
    view! {
        <tr data-username=account.user.username.clone()>
            <td><strong>{account.user.username.clone()}</strong><div class="hint">{account.user.email.clone()}</div></td>
            <td>
                <label class="visually-hidden" for=format!("role-{id}")>"Role"</label>
                <select id=format!("role-{id}") class="role-select" on:change=on_role>
                    {UserRole::ALL.into_iter().map(|r| view! {
                        <option value=r.as_str() selected=r == role>{r.as_str()}</option>
                    }).collect_view()}
                </select>
            </td>
            <td class="state" class:disabled=account.disabled>{state_label}</td>
            <td>{if account.user.totp_enabled { "On" } else { "Off" }}</td>
            <td>{local_time(&account.user.created_at)}</td>
            <td class="actions">
                <button type="button" class="ghost toggle-user" on:click=toggle>
                    {if account.disabled { "Enable" } else { "Disable" }}
                </button>
                <button type="button" class="ghost sign-out-user" on:click=post("sign-out", "Signed out everywhere.")>"Sign out"</button>
                {locked.then(|| view! {
                    <button type="button" class="ghost unlock-user" on:click=post("unlock", "Unlocked.")>"Unlock"</button>
                })}
                {account.user.totp_enabled.then(|| view! {
                    <button type="button" class="ghost reset-2fa" on:click=post("reset-2fa", "2FA removed.")>"Remove 2FA"</button>
                })}
                <button type="button" class="ghost reset-link" on:click=move |_| reset_link(id)>"Reset link"</button>
            </td>
        </tr>
    }
}

/// Creates an account with a role.
#[component]
fn CreateUser(on_created: impl Fn() + Copy + 'static) -> impl IntoView {
    let email = RwSignal::new(String::new());
    let username = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let role = RwSignal::new(UserRole::User);
    let error = RwSignal::new(None::<String>);
    let done = RwSignal::new(None::<String>);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let body = AdminUserCreate {
            email: email.get_untracked().trim().to_owned(),
            username: username.get_untracked().trim().to_owned(),
            password: password.get_untracked(),
            role: role.get_untracked(),
        };
        error.set(None);
        done.set(None);
        spawn_local(async move {
            match api::request_empty("POST", "/api/v1/admin/users", Some(&api::to_json(&body))).await {
                Ok(()) => {
                    done.set(Some(format!("Created {}.", body.username)));
                    email.set(String::new());
                    username.set(String::new());
                    password.set(String::new());
                    on_created();
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    view! {
        <section aria-labelledby="create-title">
            <h2 id="create-title">"Create an account"</h2>
            <form class="grid-form" on:submit=submit novalidate>
                <label for="new-email">"Email"</label>
                <input id="new-email" type="email" autocomplete="off"
                    prop:value=move || email.get() on:input=move |ev| email.set(event_target_value(&ev))/>
                <label for="new-username">"Username"</label>
                <input id="new-username" type="text" autocomplete="off"
                    prop:value=move || username.get() on:input=move |ev| username.set(event_target_value(&ev))/>
                <label for="new-user-password">"Password (at least 12 characters)"</label>
                <input id="new-user-password" type="password" autocomplete="new-password"
                    prop:value=move || password.get() on:input=move |ev| password.set(event_target_value(&ev))/>
                <label for="new-role">"Role"</label>
                <select id="new-role" on:change=move |ev| { if let Ok(r) = event_target_value(&ev).parse() { role.set(r) } }>
                    {UserRole::ALL.into_iter().map(|r| view! {
                        <option value=r.as_str() selected=r == UserRole::User>{r.as_str()}</option>
                    }).collect_view()}
                </select>
                <Show when=move || error.get().is_some()>
                    <p class="form-error" role="alert">{move || error.get()}</p>
                </Show>
                <Show when=move || done.get().is_some()>
                    <p class="form-ok" role="status">{move || done.get()}</p>
                </Show>
                <button type="submit" class="primary">"Create"</button>
            </form>
        </section>
    }
}
