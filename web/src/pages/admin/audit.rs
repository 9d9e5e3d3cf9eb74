//! The audit log: filters (account, action, outcome, time), pages of entries newest first, the
//! export of every matching entry as JSON Lines, and the check of the chain of hashes.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{self, AuditAction, AuditEntry, AuditPage, AuditUser, AuditVerification};
use crate::interop::local_time;

/// Entries per page.
const PAGE: usize = 50;

/// The filters, as typed.
#[derive(Clone, Copy)]
struct Filters {
    user: RwSignal<Option<AuditUser>>,
    action: RwSignal<String>,
    outcome: RwSignal<String>,
    since: RwSignal<String>,
    until: RwSignal<String>,
}

impl Filters {
    /// The query string of the filters (without paging).
    fn query(self) -> String {
        let mut query = String::new();
        if let Some(user) = self.user.get_untracked() {
            query.push_str(&format!("&user={}", user.id));
        }
        for (key, value) in [
            ("action", self.action.get_untracked()),
            ("outcome", self.outcome.get_untracked()),
        ] {
            if !value.trim().is_empty() {
                query.push_str(&format!("&{key}={}", api::encode(value.trim())));
            }
        }
        for (key, value) in [
            ("since", self.since.get_untracked()),
            ("until", self.until.get_untracked()),
        ] {
            // A `datetime-local` value is local time; the server takes UTC.
            if !value.is_empty() {
                let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_str(&value));
                if !date.get_time().is_nan() {
                    let utc: String = date.to_iso_string().into();
                    query.push_str(&format!("&{key}={}", api::encode(&utc)));
                }
            }
        }
        query
    }
}

/// The audit tab.
#[component]
pub fn AuditTab() -> impl IntoView {
    let filters = Filters {
        user: RwSignal::new(None),
        action: RwSignal::new(String::new()),
        outcome: RwSignal::new(String::new()),
        since: RwSignal::new(String::new()),
        until: RwSignal::new(String::new()),
    };
    let entries = RwSignal::new(Vec::<AuditEntry>::new());
    let next_before = RwSignal::new(None::<u64>);
    let error = RwSignal::new(None::<String>);
    let verification = RwSignal::new(None::<AuditVerification>);
    let load = move |append: bool| {
        let mut query = format!("/api/v1/admin/audit?limit={PAGE}{}", filters.query());
        if append {
            match next_before.get_untracked() {
                Some(before) => query.push_str(&format!("&before={before}")),
                None => return,
            }
        }
        spawn_local(async move {
            match api::request::<AuditPage>("GET", &query, None).await {
                Ok(page) => {
                    if append {
                        entries.update(|e| e.extend(page.entries));
                    } else {
                        entries.set(page.entries);
                    }
                    next_before.set(page.next_before);
                    error.set(None);
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    load(false);
    let export = move |_| {
        let path = format!("/api/v1/admin/audit?format=jsonl{}", filters.query());
        spawn_local(async move {
            if let Err(e) = api::download(&path, "enclave-audit.jsonl").await {
                error.set(Some(e.message));
            }
        });
    };
    let verify = move |_| {
        verification.set(None);
        spawn_local(async move {
            match api::request::<AuditVerification>("GET", "/api/v1/admin/audit/verify", None).await {
                Ok(v) => verification.set(Some(v)),
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    let pick_user = move |user: AuditUser| {
        filters.user.set(Some(user));
        load(false);
    };
    view! {
        <section aria-labelledby="audit-title">
            <h2 id="audit-title">"Audit log"</h2>
            <form class="filter-row" on:submit=move |ev: leptos::ev::SubmitEvent| { ev.prevent_default(); load(false); }>
                <Show when=move || filters.user.get().is_some()>
                    <span class="chip">
                        "User: "{move || filters.user.get().map(|u| u.username).unwrap_or_default()}
                        <button type="button" class="link" aria-label="Any user" on:click=move |_| { filters.user.set(None); load(false); }>"×"</button>
                    </span>
                </Show>
                <label for="audit-action">"Action"</label>
                <select id="audit-action" on:change=move |ev| { filters.action.set(event_target_value(&ev)); load(false); }>
                    <option value="">"Any"</option>
                    {AuditAction::ALL.into_iter().map(|a| view! { <option value=a.as_str()>{a.as_str()}</option> }).collect_view()}
                </select>
                <label for="audit-outcome">"Outcome"</label>
                <input id="audit-outcome" type="text" placeholder="ok, INVALID_CREDENTIALS…" size="16"
                    prop:value=move || filters.outcome.get() on:input=move |ev| filters.outcome.set(event_target_value(&ev))/>
                <label for="audit-since">"From"</label>
                <input id="audit-since" type="datetime-local"
                    prop:value=move || filters.since.get() on:input=move |ev| filters.since.set(event_target_value(&ev))/>
                <label for="audit-until">"Until"</label>
                <input id="audit-until" type="datetime-local"
                    prop:value=move || filters.until.get() on:input=move |ev| filters.until.set(event_target_value(&ev))/>
                <button type="submit" class="ghost">"Apply"</button>
                <button type="button" class="ghost" id="audit-export" on:click=export>"Export (JSON Lines)"</button>
                <button type="button" class="ghost" id="audit-verify" on:click=verify>"Verify chain"</button>
            </form>
            <Show when=move || error.get().is_some()>
                <p class="form-error" role="alert">{move || error.get()}</p>
            </Show>
            {move || verification.get().map(|v| if v.intact {
                view! { <p class="form-ok verification" role="status">{format!("Intact: {} entries checked, none edited or missing.", v.checked)}</p> }.into_any()
            } else {
                view! { <p class="form-error verification" role="alert">{format!(
                    "Broken at entry {}: {}.", v.broken_at.unwrap_or_default(), v.problem.unwrap_or_default()
                )}</p> }.into_any()
            })}
            <div class="table-scroll">
                <table class="admin-table audit-table">
                    <thead><tr>
                        <th scope="col">"#"</th><th scope="col">"Time"</th><th scope="col">"Action"</th>
                        <th scope="col">"Outcome"</th><th scope="col">"By"</th><th scope="col">"About"</th>
                        <th scope="col">"Resource"</th><th scope="col">"Address"</th><th scope="col">"Details"</th>
                    </tr></thead>
                    <tbody>
                        <For each=move || entries.get() key=|e| e.seq let:entry>
                            <tr data-action=entry.action.clone() data-outcome=entry.outcome.clone()>
                                <td>{entry.seq}</td>
                                <td>{local_time(&entry.at)}</td>
                                <td><code>{entry.action.clone()}</code></td>
                                <td class:failed=entry.outcome != "ok">{entry.outcome.clone()}</td>
                                <td>{account_cell(entry.actor_user.clone(), entry.actor.clone(), pick_user)}</td>
                                <td>{account_cell(entry.subject_user.clone(), entry.subject.clone(), pick_user)}</td>
                                <td class="resource">{entry.resource.clone().unwrap_or_default()}</td>
                                <td title=entry.user_agent.clone().unwrap_or_default()>{entry.ip.clone().unwrap_or_default()}</td>
                                <td class="details"><code>{details_text(&entry.details)}</code></td>
                            </tr>
                        </For>
                    </tbody>
                </table>
            </div>
            <Show when=move || next_before.get().is_some()>
                <button type="button" class="ghost" on:click=move |_| load(true)>"Load older"</button>
            </Show>
        </section>
    }
}

/// An account in a cell: its name (a button that filters by it) while it exists, else the
/// pseudonym.
fn account_cell(
    user: Option<AuditUser>,
    pseudonym: Option<String>,
    pick: impl Fn(AuditUser) + Copy + 'static,
) -> AnyView {
    match (user, pseudonym) {
        (Some(user), _) => {
            let name = user.username.clone();
            view! { <button type="button" class="link" title="Show only this user's entries" on:click=move |_| pick(user.clone())>{name}</button> }.into_any()
        }
        (None, Some(pseudonym)) => {
            view! { <span class="hint" title="Account erased or unknown">{pseudonym}</span> }.into_any()
        }
        (None, None) => view! { <span class="hint">"—"</span> }.into_any(),
    }
}

/// The details object in one line (empty for none).
fn details_text(details: &serde_json::Value) -> String {
    match details {
        serde_json::Value::Object(map) if map.is_empty() => String::new(),
        other => other.to_string(),
    }
}
