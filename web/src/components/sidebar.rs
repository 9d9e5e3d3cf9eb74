//! The sidebar: new chat, filter, conversations grouped by date (pinned on top), loaded a page
//! at a time as the list scrolls; rename inline, pin, delete with confirmation; the account
//! menu. On narrow screens it is a drawer.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;
use leptos_router::hooks::{use_navigate, use_params_map};

use crate::api::{self, Conversation, UpdateConversation, Uuid};
use crate::icons::{Icon, Svg};
use crate::interop;
use crate::state::AppState;

/// The date groups, in display order.
const GROUPS: [&str; 6] = [
    "Pinned",
    "Today",
    "Yesterday",
    "Previous 7 days",
    "Previous 30 days",
    "Older",
];

/// The group of a conversation.
fn group_of(conversation: &Conversation, today: f64) -> usize {
    if conversation.pinned {
        return 0;
    }
    let day = 24.0 * 3600.0 * 1000.0;
    let updated = interop::parse_time(&conversation.updated_at);
    if updated >= today {
        1
    } else if updated >= today - day {
        2
    } else if updated >= today - 7.0 * day {
        3
    } else if updated >= today - 30.0 * day {
        4
    } else {
        5
    }
}

/// Height of a conversation row in pixels (fixed in style.css, so that the list can place
/// rows without measuring them).
const ROW_PX: f64 = 38.0;
/// Height of a date group's title in pixels (fixed in style.css).
const HEADER_PX: f64 = 32.0;
/// Rows drawn beyond the visible part, in pixels each way, so that scrolling shows no gaps.
const OVERSCAN_PX: f64 = 800.0;

/// An entry of the list's layout: a date group's title, or the index of a conversation.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Slot {
    /// The title of a group (an index into [`GROUPS`]).
    Header(usize),
    /// A conversation (an index into the loaded list).
    Item(usize),
}

impl Slot {
    fn height(self) -> f64 {
        match self {
            Slot::Header(_) => HEADER_PX,
            Slot::Item(_) => ROW_PX,
        }
    }
}

/// Where every entry of the list goes: entries in order with the top of each, and the height
/// of the whole list. Only the entries near the visible part are drawn.
#[derive(Clone, Debug, Default, PartialEq)]
struct Layout {
    slots: Vec<Slot>,
    tops: Vec<f64>,
    height: f64,
}

impl Layout {
    /// Groups `conversations` (pinned first, newest first, as the server orders them) by date.
    fn of(conversations: &[Conversation], today: f64) -> Self {
        let mut layout = Layout::default();
        let mut last_group = None;
        for (index, conversation) in conversations.iter().enumerate() {
            let group = group_of(conversation, today);
            if last_group != Some(group) {
                layout.push(Slot::Header(group));
                last_group = Some(group);
            }
            layout.push(Slot::Item(index));
        }
        layout
    }

    fn push(&mut self, slot: Slot) {
        self.tops.push(self.height);
        self.height += slot.height();
        self.slots.push(slot);
    }

    /// The entries that overlap `from..to` pixels, as an index range.
    fn range(&self, from: f64, to: f64) -> std::ops::Range<usize> {
        let first = self.tops.partition_point(|&top| top <= from).saturating_sub(1);
        let end = self.tops.partition_point(|&top| top < to);
        first..end.max(first)
    }
}

/// A drawn entry of the list.
#[derive(Clone, Debug, PartialEq)]
enum ListRow {
    /// The title of a group.
    Header(usize),
    /// A conversation (boxed: rows are moved around as the window scrolls).
    Item(Box<Conversation>),
}

impl ListRow {
    /// Changes whenever the row must be drawn again.
    fn key(&self) -> String {
        match self {
            ListRow::Header(group) => format!("group-{group}"),
            ListRow::Item(c) => format!("{}|{}|{}", c.id, c.pinned, c.title),
        }
    }
}

/// The drawn part of the list: its rows and the space above and below them.
#[derive(Clone, Debug, Default, PartialEq)]
struct Window {
    rows: Vec<ListRow>,
    space_above: f64,
    space_below: f64,
}

/// The sidebar.
#[component]
pub fn Sidebar() -> impl IntoView {
    let state = expect_context::<AppState>();
    let navigate = use_navigate();
    let params = use_params_map();
    let active = move || params.with(|p| p.get("id")).and_then(|id| id.parse::<Uuid>().ok());
    // The filter is applied after a short pause in typing.
    let typed = RwSignal::new(state.filter.get_untracked());
    let filter_timer = StoredValue::new(None::<TimeoutHandle>);
    let on_filter = move |ev| {
        typed.set(event_target_value(&ev));
        if let Some(handle) = filter_timer.get_value() {
            handle.clear();
        }
        let handle = set_timeout_with_handle(
            move || {
                state.filter.set(typed.get_untracked());
                state.reload_conversations();
            },
            std::time::Duration::from_millis(250),
        )
        .ok();
        filter_timer.set_value(handle);
    };
    // The list is windowed: only the rows near the visible part are in the page, so that
    // thousands of conversations cost no more to draw and scroll than a screenful.
    let list_ref = NodeRef::<leptos::html::Div>::new();
    let scroll_top = RwSignal::new(0.0);
    let viewport = RwSignal::new(1000.0);
    let measure = move || {
        if let Some(list) = list_ref.get_untracked() {
            scroll_top.set(f64::from(list.scroll_top()));
            viewport.set(f64::from(list.client_height()));
        }
    };
    Effect::new(move |_| {
        if list_ref.get().is_some() {
            measure();
        }
    });
    let resize = window_event_listener(leptos::ev::resize, move |_| measure());
    on_cleanup(move || resize.remove());
    let on_scroll = move |_: leptos::ev::Event| {
        let Some(list) = list_ref.get_untracked() else { return };
        measure();
        if list.scroll_top() + list.client_height() + 400 >= list.scroll_height() {
            state.load_more();
        }
    };
    let layout = Memo::new(move |_| {
        let today = interop::start_of_today();
        state.conversations.with(|list| Layout::of(list, today))
    });
    let window = Memo::new(move |_| {
        let top = scroll_top.get();
        let bottom = top + viewport.get();
        layout.with(|layout| {
            let range = layout.range(top - OVERSCAN_PX, bottom + OVERSCAN_PX);
            state.conversations.with(|list| {
                let rows = layout.slots[range.clone()]
                    .iter()
                    .filter_map(|slot| match *slot {
                        Slot::Header(group) => Some(ListRow::Header(group)),
                        Slot::Item(index) => list.get(index).cloned().map(|c| ListRow::Item(Box::new(c))),
                    })
                    .collect();
                let space_above = layout.tops.get(range.start).copied().unwrap_or(0.0);
                let drawn_end = layout.tops.get(range.end).copied().unwrap_or(layout.height);
                Window {
                    rows,
                    space_above,
                    space_below: (layout.height - drawn_end.max(space_above)).max(0.0),
                }
            })
        })
    });
    let new_chat = {
        let navigate = navigate.clone();
        move |_| {
            state.sidebar_open.set(false);
            navigate("/c", Default::default());
        }
    };
    let sign_out = {
        let navigate = navigate.clone();
        move |_| {
            spawn_local(async move {
                api::logout().await;
                state.end_session(Some("You have signed out."));
            });
            navigate("/login", Default::default());
        }
    };
    view! {
        <div class="scrim" class:open=move || state.sidebar_open.get()
            on:click=move |_| state.sidebar_open.set(false) aria-hidden="true"></div>
        <nav class="sidebar" class:open=move || state.sidebar_open.get() aria-label="Conversations">
            <div class="sidebar-top">
                <button type="button" class="new-chat" on:click=new_chat title="New chat (Ctrl+Shift+N)">
                    <Svg icon=Icon::Plus/>" New chat"
                </button>
                <A href="/documents" attr:class="nav-link" on:click=move |_| state.sidebar_open.set(false)>
                    <Svg icon=Icon::Document/>" Documents"
                </A>
                <label class="visually-hidden" for="filter">"Filter conversations by title"</label>
                <input id="filter" class="filter" type="search" placeholder="Filter by title"
                    prop:value=move || typed.get() on:input=on_filter/>
            </div>
            <div class="conversation-list" on:scroll=on_scroll node_ref=list_ref>
                <Show when=move || state.conversations.with(Vec::is_empty) && !state.loading_list.get()>
                    <p class="empty-list">
                        {move || if state.filter.get().trim().is_empty() {
                            "No conversations yet. Start one with New chat."
                        } else {
                            "No conversation matches the filter."
                        }}
                    </p>
                </Show>
                <ul class="rows"
                    style:padding-top=move || format!("{}px", window.with(|w| w.space_above))
                    style:padding-bottom=move || format!("{}px", window.with(|w| w.space_below))
                    data-count=move || state.conversations.with(Vec::len).to_string()>
                    <For each=move || window.with(|w| w.rows.clone()) key=ListRow::key let:row>
                        {match row {
                            ListRow::Header(group) => view! { <li class="group-title" role="presentation">{GROUPS[group]}</li> }.into_any(),
                            ListRow::Item(c) => view! { <ConversationRow conversation=*c active=Signal::derive(active)/> }.into_any(),
                        }}
                    </For>
                </ul>
                <Show when=move || state.loading_list.get()>
                    <p class="loading-more" role="status">"Loading…"</p>
                </Show>
            </div>
            <div class="sidebar-bottom">
                <A href="/settings" attr:class="account" on:click=move |_| state.sidebar_open.set(false)>
                    <span class="avatar" aria-hidden="true">
                        {move || state.user.get().and_then(|u| u.username.chars().next()).unwrap_or('?').to_uppercase().to_string()}
                    </span>
                    <span>{move || state.user.get().map(|u| u.username).unwrap_or_default()}</span>
                    <span class="sr-hint">" · Settings"</span>
                </A>
                <div class="account-links">
                    <A href="/security" attr:class="nav-link" on:click=move |_| state.sidebar_open.set(false)>"Security"</A>
                    <Show when=move || state.user.get().is_some_and(|u| crate::pages::admin::is_admin(u.role))>
                        <A href="/admin/users" attr:class="nav-link admin-link" on:click=move |_| state.sidebar_open.set(false)>"Admin"</A>
                    </Show>
                    <button type="button" class="ghost" on:click=sign_out>"Sign out"</button>
                </div>
            </div>
        </nav>
    }
}

/// One conversation in the list, with its actions.
#[component]
fn ConversationRow(conversation: Conversation, active: Signal<Option<Uuid>>) -> impl IntoView {
    let state = expect_context::<AppState>();
    let navigate = use_navigate();
    let id = conversation.id;
    let is_active = Memo::new(move |_| active.get() == Some(id));
    let renaming = Memo::new(move |_| state.renaming.with(|r| r.as_ref().is_some_and(|(rid, _)| *rid == id)));
    let confirming = RwSignal::new(false);
    let rename_input = NodeRef::<leptos::html::Input>::new();
    Effect::new(move |_| {
        if let Some(input) = rename_input.get() {
            let _ = input.focus();
            input.select();
        }
    });
    let pinned = conversation.pinned;
    let title = conversation.title.clone();
    let start_rename = {
        let title = title.clone();
        move || state.renaming.set(Some((id, title.clone())))
    };
    let save_title = {
        let original = title.clone();
        move || {
            let Some((rid, typed)) = state.renaming.get_untracked() else {
                return;
            };
            if rid != id {
                return;
            }
            state.renaming.set(None);
            let new_title = typed.trim().to_owned();
            if new_title.is_empty() || new_title == original {
                return;
            }
            spawn_local(async move {
                let body = api::to_json(&UpdateConversation {
                    title: Some(new_title),
                    ..UpdateConversation::default()
                });
                if let Ok(updated) =
                    api::request::<Conversation>("PATCH", &format!("/api/v1/conversations/{id}"), Some(&body)).await
                {
                    state.upsert_conversation(updated);
                }
            });
        }
    };
    let toggle_pin = move |_| {
        spawn_local(async move {
            let body = api::to_json(&UpdateConversation {
                pinned: Some(!pinned),
                ..UpdateConversation::default()
            });
            if let Ok(updated) =
                api::request::<Conversation>("PATCH", &format!("/api/v1/conversations/{id}"), Some(&body)).await
            {
                state.upsert_conversation(updated);
            }
        });
    };
    let delete = {
        let navigate = navigate.clone();
        move |_| {
            confirming.set(false);
            let was_active = active.get_untracked() == Some(id);
            let navigate = navigate.clone();
            spawn_local(async move {
                if api::request_empty("DELETE", &format!("/api/v1/conversations/{id}"), None)
                    .await
                    .is_ok()
                {
                    state.remove_conversation(id);
                    if was_active {
                        navigate("/c", Default::default());
                    }
                }
            });
        }
    };
    let on_key = {
        let save_title = save_title.clone();
        move |ev: leptos::ev::KeyboardEvent| match ev.key().as_str() {
            "Enter" => {
                ev.prevent_default();
                save_title();
            }
            "Escape" => state.renaming.set(None),
            _ => {}
        }
    };
    let href = format!("/c/{id}");
    let shown_title = title.clone();
    view! {
        <li class="row" class:active=move || is_active.get()>
            <Show
                when=move || renaming.get()
                fallback={
                    let href = href.clone();
                    let shown_title = shown_title.clone();
                    let start_rename = start_rename.clone();
                    move || {
                        let start_rename = start_rename.clone();
                        let href = href.clone();
                        let shown_title = shown_title.clone();
                        view! {
                            <A href=href attr:class="row-link" attr:aria-current=move || is_active.get().then_some("page")
                                on:click=move |_| state.sidebar_open.set(false)
                                on:dblclick=move |_| start_rename()>
                                <span class="row-title">{shown_title}</span>
                            </A>
                        }
                    }
                }
            >
                <input class="rename" type="text" aria-label="Conversation title" maxlength="200"
                    prop:value=move || state.renaming.with(|r| r.as_ref().map(|(_, t)| t.clone()).unwrap_or_default())
                    on:input=move |ev| {
                        let typed = event_target_value(&ev);
                        state.renaming.update(|r| if let Some((_, t)) = r { *t = typed });
                    }
                    on:keydown=on_key.clone() on:blur={let save_title = save_title.clone(); move |_| save_title()}
                    node_ref=rename_input/>
            </Show>
            <div class="row-actions">
                <button type="button" class="icon" title="Rename" aria-label="Rename"
                    on:click={let start_rename = start_rename.clone(); move |_| start_rename()}><Svg icon=Icon::Edit/></button>
                <button type="button" class="icon" title=if pinned { "Unpin" } else { "Pin" }
                    aria-label=if pinned { "Unpin" } else { "Pin" } aria-pressed=pinned.to_string() on:click=toggle_pin>
                    <Svg icon=if pinned { Icon::StarFilled } else { Icon::Star }/>
                </button>
                <button type="button" class="icon danger" title="Delete" aria-label="Delete" on:click=move |_| confirming.set(true)><Svg icon=Icon::Trash/></button>
            </div>
            <Show when=move || confirming.get()>
                <div class="confirm" role="alertdialog" aria-label="Delete this conversation?">
                    <p>"Delete “"{title.clone()}"”? This cannot be undone."</p>
                    <div class="confirm-actions">
                        <button type="button" class="ghost" on:click=move |_| confirming.set(false)>"Cancel"</button>
                        <button type="button" class="danger-button" on:click=delete.clone()>"Delete"</button>
                    </div>
                </div>
            </Show>
        </li>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header and 100 conversations: header 0..32, rows from 32 every 38 px.
    fn layout() -> Layout {
        let mut layout = Layout::default();
        layout.push(Slot::Header(1));
        for index in 0..100 {
            layout.push(Slot::Item(index));
        }
        layout
    }

    #[test]
    fn the_window_holds_the_entries_that_overlap_it() {
        let layout = layout();
        assert_eq!(layout.height, 32.0 + 100.0 * 38.0);
        // The top of the list: the header and the rows it reaches into.
        assert_eq!(layout.range(-800.0, 100.0), 0..3);
        // A row cut by the top edge is drawn; the one starting at the bottom edge is not.
        assert_eq!(layout.range(40.0, 32.0 + 38.0 * 3.0), 1..4);
        // Past the end: the last entry at most, never out of bounds.
        let end = layout.range(10_000.0, 12_000.0);
        assert!(end.end <= layout.slots.len() && end.start <= end.end);
        assert_eq!(Layout::default().range(0.0, 100.0), 0..0);
    }
}
