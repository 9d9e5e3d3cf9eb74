//! What the pages share: the session (started, kept fresh before the access token expires,
//! ended), the conversation list, the models, the preferences.

use std::time::Duration;

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{
    self, ApiError, Conversation, ConversationPage, ModelList, ModelRole, ModelStatus, Tokens, User, UserSettings, Uuid,
};

/// Where the session stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Session {
    /// Asking the server whether the refresh cookie still holds (page load).
    Checking,
    /// Signed in.
    SignedIn,
    /// Not signed in.
    SignedOut,
}

/// The app's shared state, in the context of every component.
#[derive(Clone, Copy)]
pub struct AppState {
    /// Where the session stands.
    pub session: RwSignal<Session>,
    /// The signed-in user.
    pub user: RwSignal<Option<User>>,
    /// The conversations loaded so far (pages appended as the list scrolls).
    pub conversations: RwSignal<Vec<Conversation>>,
    /// The cursor of the next page; `None` when all are loaded.
    pub next_cursor: RwSignal<Option<String>>,
    /// Whether a page is being loaded.
    pub loading_list: RwSignal<bool>,
    /// The title filter of the list.
    pub filter: RwSignal<String>,
    /// Every model and its status.
    pub models: RwSignal<Vec<ModelStatus>>,
    /// The server's default chat model.
    pub default_model: RwSignal<String>,
    /// The user's preferences.
    pub settings: RwSignal<UserSettings>,
    /// The theme in force: `dark`, `light` or `system`.
    pub theme: RwSignal<String>,
    /// Whether the sidebar drawer is open (narrow screens).
    pub sidebar_open: RwSignal<bool>,
    /// A message for the sign-in page (why the session ended).
    pub notice: RwSignal<Option<String>>,
    /// The conversation whose title is being edited in the list, and the title typed so far
    /// (kept here so that a list refresh does not lose it).
    pub renaming: RwSignal<Option<(Uuid, String)>>,
}

/// Conversations per page of the list.
const PAGE: usize = 60;

/// Seconds before expiry at which the access token is renewed.
const REFRESH_MARGIN_SECS: u64 = 60;

impl AppState {
    /// A fresh state.
    pub fn new() -> Self {
        Self {
            session: RwSignal::new(Session::Checking),
            user: RwSignal::new(None),
            conversations: RwSignal::new(Vec::new()),
            next_cursor: RwSignal::new(None),
            loading_list: RwSignal::new(false),
            filter: RwSignal::new(String::new()),
            models: RwSignal::new(Vec::new()),
            default_model: RwSignal::new(String::new()),
            settings: RwSignal::new(UserSettings::default()),
            theme: RwSignal::new(crate::interop::stored("enclave.theme").unwrap_or_else(|| "system".into())),
            sidebar_open: RwSignal::new(false),
            notice: RwSignal::new(None),
            renaming: RwSignal::new(None),
        }
    }

    /// Signs in the page's state after a login or refresh.
    pub fn start_session(self, tokens: &Tokens) {
        self.session.set(Session::SignedIn);
        self.load_after_sign_in();
        self.keep_fresh(tokens.expires_in);
    }

    /// Ends the session on this page (the server side is ended by the caller when it should
    /// be); `notice` tells the sign-in page why.
    pub fn end_session(self, notice: Option<&str>) {
        api::set_access_token(None);
        self.clear();
        self.notice.set(notice.map(str::to_owned));
        self.session.set(Session::SignedOut);
    }

    /// Renews the access token shortly before it expires (in `expires_in` seconds), for as
    /// long as the session lasts.
    fn keep_fresh(self, expires_in: u64) {
        let wait = expires_in.saturating_sub(REFRESH_MARGIN_SECS).max(5);
        set_timeout(
            move || {
                if self.session.get_untracked() != Session::SignedIn {
                    return;
                }
                spawn_local(async move {
                    match api::refresh().await {
                        Ok(tokens) => self.keep_fresh(tokens.expires_in),
                        // Offline for now: try again soon, the token may still be valid.
                        Err(error) if error.status == 0 => self.keep_fresh(REFRESH_MARGIN_SECS + 15),
                        Err(_) => self.end_session(Some("Your session has ended. Please sign in again.")),
                    }
                });
            },
            Duration::from_secs(wait),
        );
    }

    /// Loads what a signed-in user needs: who they are, the first page of conversations, the
    /// models and the preferences.
    pub fn load_after_sign_in(self) {
        spawn_local(async move {
            if let Ok(user) = api::request::<User>("GET", "/api/v1/auth/me", None).await {
                self.user.set(Some(user));
            }
        });
        self.reload_conversations();
        self.reload_models();
        spawn_local(async move {
            if let Ok(settings) = api::request::<UserSettings>("GET", "/api/v1/settings", None).await {
                if let Some(theme) = settings.theme.clone() {
                    self.set_theme(&theme);
                }
                self.settings.set(settings);
            }
        });
    }

    /// Forgets everything of the signed-out user.
    pub fn clear(self) {
        self.user.set(None);
        self.conversations.set(Vec::new());
        self.next_cursor.set(None);
        self.settings.set(UserSettings::default());
    }

    /// Applies and remembers a theme.
    pub fn set_theme(self, theme: &str) {
        crate::interop::store("enclave.theme", theme);
        crate::interop::apply_theme(theme);
        self.theme.set(theme.to_owned());
    }

    /// The list from its first page (after a change or a new filter).
    pub fn reload_conversations(self) {
        self.next_cursor.set(None);
        self.load_page(true);
    }

    /// The next page of the list, if there is one.
    pub fn load_more(self) {
        if self.next_cursor.get_untracked().is_some() && !self.loading_list.get_untracked() {
            self.load_page(false);
        }
    }

    fn load_page(self, reset: bool) {
        self.loading_list.set(true);
        let cursor = if reset { None } else { self.next_cursor.get_untracked() };
        let filter = self.filter.get_untracked();
        spawn_local(async move {
            let mut path = format!("/api/v1/conversations?limit={PAGE}");
            if let Some(cursor) = cursor {
                path.push_str(&format!("&cursor={}", api::encode(&cursor)));
            }
            if !filter.trim().is_empty() {
                path.push_str(&format!("&q={}", api::encode(filter.trim())));
            }
            let result: Result<ConversationPage, ApiError> = api::request("GET", &path, None).await;
            // A newer filter may have been typed meanwhile: keep only the latest answer.
            if self.filter.get_untracked() == filter {
                if let Ok(page) = result {
                    self.conversations.update(|list| {
                        if reset {
                            list.clear();
                        }
                        list.extend(page.items);
                    });
                    self.next_cursor.set(page.next_cursor);
                }
            }
            self.loading_list.set(false);
        });
    }

    /// Puts a changed (or new) conversation in the list in place, moving it to the top of its
    /// group, without reloading the list.
    pub fn upsert_conversation(self, conversation: Conversation) {
        self.conversations.update(|list| {
            list.retain(|c| c.id != conversation.id);
            let at = if conversation.pinned {
                0
            } else {
                list.iter().position(|c| !c.pinned).unwrap_or(list.len())
            };
            list.insert(at, conversation);
        });
    }

    /// Removes a conversation from the list.
    pub fn remove_conversation(self, id: Uuid) {
        self.conversations.update(|list| list.retain(|c| c.id != id));
    }

    /// The models and their status.
    pub fn reload_models(self) {
        spawn_local(async move {
            if let Ok(models) = api::request::<ModelList>("GET", "/api/v1/models", None).await {
                self.default_model.set(models.default);
                self.models.set(models.models);
            }
        });
    }

    /// The chat models, for pickers.
    pub fn chat_models(self) -> Vec<ModelStatus> {
        self.models
            .get()
            .into_iter()
            .filter(|m| m.role == ModelRole::Chat)
            .collect()
    }
}
