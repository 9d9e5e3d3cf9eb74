//! `/api/v1/conversations`: list, create, get with messages, update, delete.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{ApiJson, Authenticated, IdPath};
use super::{rfc3339, AppState};
use crate::auth::roles::Permission;
use crate::chat::{path_to, DEFAULT_TITLE};
use crate::store::{
    ConversationRecord, ConversationSettings, ListCursor, MessageRecord, MessageRole, MessageStatus, MessageUsage,
};

/// Longest title, in characters.
const MAX_TITLE_CHARS: usize = 200;
/// Longest system prompt, in characters.
pub const MAX_SYSTEM_PROMPT_CHARS: usize = 20_000;
const MAX_FOLDER_CHARS: usize = 100;
const MAX_PAGE: usize = 200;

/// A conversation as the API shows it.
#[derive(Serialize)]
pub struct ConversationView {
    id: Uuid,
    title: String,
    model: Option<String>,
    system_prompt: Option<String>,
    settings: ConversationSettings,
    pinned: bool,
    folder: Option<String>,
    active_leaf_id: Option<Uuid>,
    created_at: String,
    updated_at: String,
}

impl From<ConversationRecord> for ConversationView {
    fn from(c: ConversationRecord) -> Self {
        ConversationView {
            id: c.id,
            title: c.title,
            model: c.model,
            system_prompt: c.system_prompt,
            settings: c.settings,
            pinned: c.pinned,
            folder: c.folder,
            active_leaf_id: c.active_leaf_id,
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
        }
    }
}

/// A message as the API shows it, with its siblings for branch navigation.
#[derive(Serialize)]
pub struct MessageView {
    id: Uuid,
    parent_id: Option<Uuid>,
    role: MessageRole,
    content: String,
    status: MessageStatus,
    model: Option<String>,
    usage: Option<MessageUsage>,
    finish_reason: Option<String>,
    error_code: Option<String>,
    created_at: String,
    /// Every message with the same parent (this one included), oldest first.
    sibling_ids: Vec<Uuid>,
}

#[derive(Serialize)]
struct ConversationWithMessages {
    #[serde(flatten)]
    conversation: ConversationView,
    /// The active branch, root first.
    messages: Vec<MessageView>,
}

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<usize>,
    cursor: Option<String>,
    q: Option<String>,
}

/// `GET /conversations?limit=&cursor=&q=`: pinned first, then newest first.
pub async fn list(
    State(state): State<AppState>,
    caller: Authenticated,
    Query(query): Query<ListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let user = caller.require(Permission::Read)?;
    let limit = query.limit.unwrap_or(50).clamp(1, MAX_PAGE);
    let cursor = match query.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(text) => Some(ListCursor::decode(text).ok_or_else(|| ApiError::validation("cursor is not valid"))?),
        None => None,
    };
    let page = state
        .store
        .list_conversations(user.user_id, cursor, limit, query.q.as_deref())?;
    let items: Vec<ConversationView> = page.items.into_iter().map(Into::into).collect();
    Ok(Json(
        serde_json::json!({ "items": items, "next_cursor": page.next.map(|c| c.encode()) }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    title: Option<String>,
    model: Option<String>,
    system_prompt: Option<String>,
    #[serde(default)]
    settings: ConversationSettings,
}

/// `POST /conversations`
pub async fn create(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<impl IntoResponse, ApiError> {
    let user = caller.require(Permission::Chat)?;
    let defaults = state.store.get_user_settings(user.user_id)?;
    let title_set_by_user = body.title.as_ref().is_some_and(|t| !t.trim().is_empty());
    let title = clean_title(
        body.title
            .as_deref()
            .filter(|t| !t.trim().is_empty())
            .unwrap_or(DEFAULT_TITLE),
    )?;
    let model = body.model.or(defaults
        .default_model
        .filter(|m| state.chat.registry().is_chat_model(m)));
    check_model(&state, model.as_deref())?;
    let system_prompt = body.system_prompt.or(defaults.default_system_prompt);
    check_system_prompt(system_prompt.as_deref())?;
    check_settings(&body.settings)?;
    let record = state.store.create_conversation(
        user.user_id,
        title,
        model,
        system_prompt,
        body.settings,
        title_set_by_user,
    )?;
    Ok((StatusCode::CREATED, Json(ConversationView::from(record))))
}

/// `GET /conversations/{id}`: the conversation and its active branch of messages.
pub async fn get(
    State(state): State<AppState>,
    caller: Authenticated,
    IdPath(id): IdPath,
) -> Result<impl IntoResponse, ApiError> {
    let user = caller.require(Permission::Read)?;
    let conversation = state
        .store
        .get_conversation(user.user_id, id)
        .map_err(|_| ApiError::not_found("conversation"))?;
    let all = state.store.list_messages(user.user_id, id)?;
    let mut siblings: HashMap<Option<Uuid>, Vec<Uuid>> = HashMap::new();
    for m in &all {
        siblings.entry(m.parent_id).or_default().push(m.id);
    }
    let path: Vec<&MessageRecord> = match conversation.active_leaf_id {
        Some(leaf) => path_to(&all, leaf),
        None => Vec::new(),
    };
    let messages = path
        .into_iter()
        .map(|m| MessageView {
            id: m.id,
            parent_id: m.parent_id,
            role: m.role,
            content: m.content.clone(),
            status: m.status,
            model: m.model.clone(),
            usage: m.usage,
            finish_reason: m.finish_reason.clone(),
            error_code: m.error_code.clone(),
            created_at: rfc3339(m.created_at),
            sibling_ids: siblings.get(&m.parent_id).cloned().unwrap_or_default(),
        })
        .collect();
    Ok(Json(ConversationWithMessages {
        conversation: conversation.into(),
        messages,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    title: Option<String>,
    /// An empty string clears the system prompt.
    system_prompt: Option<String>,
    pinned: Option<bool>,
    /// An empty string removes the conversation from its folder.
    folder: Option<String>,
    model: Option<String>,
    settings: Option<ConversationSettings>,
    /// Show the branch through this message (its newest descendant becomes the leaf).
    active_message_id: Option<Uuid>,
}

/// `PATCH /conversations/{id}` (also `PUT`): rename, system prompt, pin, folder, model,
/// settings, branch.
pub async fn update(
    State(state): State<AppState>,
    caller: Authenticated,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<UpdateBody>,
) -> Result<impl IntoResponse, ApiError> {
    let user = caller.require(Permission::Chat)?;
    let title = body.title.as_deref().map(clean_title).transpose()?;
    if let Some(model) = &body.model {
        check_model(&state, Some(model))?;
    }
    check_system_prompt(body.system_prompt.as_deref())?;
    if let Some(settings) = &body.settings {
        check_settings(settings)?;
    }
    if body
        .folder
        .as_ref()
        .is_some_and(|f| f.chars().count() > MAX_FOLDER_CHARS)
    {
        return Err(ApiError::validation(format!(
            "folder must be at most {MAX_FOLDER_CHARS} characters"
        )));
    }
    let leaf = match body.active_message_id {
        Some(message_id) => {
            let all = state
                .store
                .list_messages(user.user_id, id)
                .map_err(|_| ApiError::not_found("conversation"))?;
            Some(newest_leaf_under(&all, message_id).ok_or_else(|| ApiError::not_found("message"))?)
        }
        None => None,
    };
    let record = state
        .store
        .update_conversation(user.user_id, id, false, |c| {
            if let Some(title) = title {
                c.title = title;
                c.title_set_by_user = true;
            }
            if let Some(prompt) = body.system_prompt {
                c.system_prompt = Some(prompt).filter(|p| !p.is_empty());
            }
            if let Some(pinned) = body.pinned {
                c.pinned = pinned;
            }
            if let Some(folder) = body.folder {
                c.folder = Some(folder).filter(|f| !f.trim().is_empty());
            }
            if body.model.is_some() {
                c.model = body.model;
            }
            if let Some(settings) = body.settings {
                c.settings = settings;
            }
            if leaf.is_some() {
                c.active_leaf_id = leaf;
            }
        })
        .map_err(|_| ApiError::not_found("conversation"))?;
    Ok(Json(ConversationView::from(record)))
}

/// `DELETE /conversations/{id}`: stops a running answer first.
pub async fn delete(
    State(state): State<AppState>,
    caller: Authenticated,
    IdPath(id): IdPath,
) -> Result<impl IntoResponse, ApiError> {
    let user = caller.require(Permission::Chat)?;
    state
        .chat
        .stop(user.user_id, id)
        .await
        .map_err(|_| ApiError::not_found("conversation"))?;
    state
        .store
        .delete_conversation(user.user_id, id)
        .map_err(|_| ApiError::not_found("conversation"))?;
    Ok(StatusCode::NO_CONTENT)
}

/// The newest leaf in the subtree of `message_id`, following the newest child at each step.
fn newest_leaf_under(all: &[MessageRecord], message_id: Uuid) -> Option<Uuid> {
    all.iter().find(|m| m.id == message_id)?;
    let mut current = message_id;
    // Ids are time-ordered, so the largest id is the newest child.
    while let Some(child) = all.iter().filter(|m| m.parent_id == Some(current)).map(|m| m.id).max() {
        current = child;
    }
    Some(current)
}

fn clean_title(raw: &str) -> Result<String, ApiError> {
    let title = raw.trim();
    if title.is_empty() {
        return Err(ApiError::validation("title must not be empty"));
    }
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(ApiError::validation(format!(
            "title must be at most {MAX_TITLE_CHARS} characters"
        )));
    }
    Ok(title.to_string())
}

fn check_model(state: &AppState, model: Option<&str>) -> Result<(), ApiError> {
    match model {
        Some(m) if !state.chat.registry().is_chat_model(m) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "MODEL_NOT_FOUND",
            format!("unknown chat model {m:?}; see GET /api/v1/models"),
        )),
        _ => Ok(()),
    }
}

fn check_system_prompt(prompt: Option<&str>) -> Result<(), ApiError> {
    if prompt.is_some_and(|p| p.chars().count() > MAX_SYSTEM_PROMPT_CHARS) {
        return Err(ApiError::validation(format!(
            "system_prompt must be at most {MAX_SYSTEM_PROMPT_CHARS} characters"
        )));
    }
    Ok(())
}

fn check_settings(settings: &ConversationSettings) -> Result<(), ApiError> {
    if settings.temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
        return Err(ApiError::validation("settings.temperature must be between 0 and 2"));
    }
    if settings.top_p.is_some_and(|p| !(p > 0.0 && p <= 1.0)) {
        return Err(ApiError::validation("settings.top_p must be in (0, 1]"));
    }
    if settings.max_tokens.is_some_and(|m| m == 0 || m > 32_768) {
        return Err(ApiError::validation("settings.max_tokens must be between 1 and 32768"));
    }
    Ok(())
}
