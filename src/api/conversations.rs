//! `/api/v1/conversations`: list, create, get with messages, update, delete. Extract, call the
//! chat service, map its records to the wire types.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use enclave_protocol::{
    AuditAction, Conversation, ConversationDetail, ConversationPage, CreateConversation, ListQuery, Message,
    UpdateConversation,
};

use super::audit::audited;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, Authenticated, ClientInfo, IdPath};
use super::{rfc3339, AppState};
use crate::audit::AuditEvent;
use crate::auth::roles::Permission;
use crate::chat::BranchMessage;
use crate::store::ConversationRecord;

/// A conversation record as the API shows it.
fn conversation_view(c: ConversationRecord) -> Conversation {
    Conversation {
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

/// A message of the active branch as the API shows it.
fn message_view(entry: BranchMessage) -> Message {
    let m = entry.message;
    Message {
        id: m.id,
        parent_id: m.parent_id,
        role: m.role,
        content: m.content,
        status: m.status,
        model: m.model,
        usage: m.usage,
        finish_reason: m.finish_reason,
        error_code: m.error_code,
        created_at: rfc3339(m.created_at),
        sibling_ids: entry.sibling_ids,
        citations: m.citations,
        attachments: m
            .attachments
            .into_iter()
            .map(|image_id| enclave_protocol::Attachment::Image { image_id })
            .collect(),
    }
}

/// `GET /conversations?limit=&cursor=&q=`: pinned first, then newest first.
pub async fn list(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let user = caller.require(Permission::ReadOwn)?;
    let page = state
        .chat
        .list_conversations(user.user_id, query.limit, query.cursor.as_deref(), query.q.as_deref())?;
    Ok(Json(ConversationPage {
        items: page.items.into_iter().map(conversation_view).collect(),
        next_cursor: page.next.map(|c| c.encode()),
    }))
}

/// `POST /conversations`
pub async fn create(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiJson(body): ApiJson<CreateConversation>,
) -> Result<impl IntoResponse, ApiError> {
    let user = caller.require(Permission::Chat)?;
    let record = state.chat.create_conversation(user.user_id, body)?;
    Ok((StatusCode::CREATED, Json(conversation_view(record))))
}

/// `GET /conversations/{id}`: the conversation and its active branch of messages.
pub async fn get(
    State(state): State<AppState>,
    caller: Authenticated,
    IdPath(id): IdPath,
) -> Result<impl IntoResponse, ApiError> {
    let user = caller.require(Permission::ReadOwn)?;
    let (conversation, branch) = state.chat.conversation_with_branch(user.user_id, id)?;
    Ok(Json(ConversationDetail {
        conversation: conversation_view(conversation),
        messages: branch.into_iter().map(message_view).collect(),
    }))
}

/// `PATCH /conversations/{id}` (also `PUT`): rename, system prompt, pin, folder, model,
/// settings, branch.
pub async fn update(
    State(state): State<AppState>,
    caller: Authenticated,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<UpdateConversation>,
) -> Result<impl IntoResponse, ApiError> {
    let user = caller.require(Permission::Chat)?;
    let record = state.chat.update_conversation(user.user_id, id, body)?;
    Ok(Json(conversation_view(record)))
}

/// `DELETE /conversations/{id}`: stops a running answer first.
pub async fn delete(
    State(state): State<AppState>,
    caller: Authenticated,
    ClientInfo(client): ClientInfo,
    IdPath(id): IdPath,
) -> Result<impl IntoResponse, ApiError> {
    let user = caller.require(Permission::Chat)?;
    let event = AuditEvent::new(AuditAction::ConversationDelete)
        .by(user.user_id)
        .on(format!("conversation/{id}"))
        .from_client(&client);
    audited(&state, event, state.chat.delete_conversation(user.user_id, id).await)?;
    Ok(StatusCode::NO_CONTENT)
}
