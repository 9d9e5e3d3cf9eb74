//! Streaming turns: send a message, regenerate, stop. Answers stream as SSE in exactly the
//! format of docs/ARCHITECTURE.md (`citation` events first when the answer uses documents,
//! then `token`, and `done` or `error`).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderName, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use enclave_protocol::{Attachment, DoneEvent, SendMessage, TokenEvent};
use futures::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use super::error::ApiError;
use super::extract::{ApiJson, Authenticated, ClientInfo, IdPath};
use super::AppState;
use crate::auth::roles::Permission;
use crate::chat::{DocumentChoice, Placement, StartedTurn, StreamEvent};

/// `POST /conversations/{id}/messages`: stores the message and streams the answer.
pub async fn send(
    State(state): State<AppState>,
    caller: Authenticated,
    ClientInfo(client): ClientInfo,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<SendMessage>,
) -> Result<Response, ApiError> {
    let user = caller.require(Permission::Chat)?;
    let attachments = body
        .attachments
        .iter()
        .map(|attachment| match attachment {
            Attachment::Image { image_id } => *image_id,
        })
        .collect();
    let placement = match (body.parent_message_id, body.edit_message_id) {
        (Some(_), Some(_)) => {
            return Err(ApiError::validation(
                "send parent_message_id or edit_message_id, not both",
            ));
        }
        (Some(parent), None) => Placement::Under(parent),
        (None, Some(edited)) => Placement::EditOf(edited),
        (None, None) => Placement::AfterLeaf,
    };
    let documents = DocumentChoice {
        use_documents: body.use_documents,
        document_ids: body.document_ids,
    };
    let turn = state
        .chat
        .send_message(
            user.user_id,
            id,
            body.content,
            attachments,
            placement,
            documents,
            client,
        )
        .await?;
    Ok(stream_response(turn))
}

/// `POST /conversations/{id}/regenerate`: a new answer beside the last one.
pub async fn regenerate(
    State(state): State<AppState>,
    caller: Authenticated,
    ClientInfo(client): ClientInfo,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    let user = caller.require(Permission::Chat)?;
    let turn = state.chat.regenerate(user.user_id, id, client).await?;
    Ok(stream_response(turn))
}

/// `POST /conversations/{id}/stop`: stops the running answer (kept, marked stopped) and
/// answers once it is stored.
pub async fn stop(
    State(state): State<AppState>,
    caller: Authenticated,
    IdPath(id): IdPath,
) -> Result<impl IntoResponse, ApiError> {
    let user = caller.require(Permission::Chat)?;
    let stopped = state.chat.stop(user.user_id, id).await?;
    Ok(Json(serde_json::json!({ "stopped": stopped })))
}

fn stream_response(turn: StartedTurn) -> Response {
    let events = ReceiverStream::new(turn.events).map(to_sse);
    let mut response = sse(events).into_response();
    let headers = response.headers_mut();
    // The ids let a client address the new messages without re-reading the conversation.
    if let Ok(v) = HeaderValue::from_str(&turn.assistant_message_id.to_string()) {
        headers.insert(HeaderName::from_static("x-assistant-message-id"), v);
    }
    if let Some(Ok(v)) = turn.user_message_id.map(|id| HeaderValue::from_str(&id.to_string())) {
        headers.insert(HeaderName::from_static("x-user-message-id"), v);
    }
    headers.insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    headers.insert(axum::http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn sse(
    events: impl Stream<Item = Result<Event, Infallible>> + Send + 'static,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// One chat event as an SSE event; the fields keep the order docs/ARCHITECTURE.md shows.
pub fn to_sse(event: StreamEvent) -> Result<Event, Infallible> {
    let (name, data) = match event {
        StreamEvent::Citation(citation) => ("citation", serde_json::to_string(&citation)),
        StreamEvent::Token(content) => (
            "token",
            serde_json::to_string(&TokenEvent {
                content,
                finish_reason: None,
            }),
        ),
        StreamEvent::Done { finish_reason, usage } => {
            ("done", serde_json::to_string(&DoneEvent { finish_reason, usage }))
        }
        StreamEvent::Error { code, message } => ("error", serde_json::to_string(&ApiError::body(code, &message))),
    };
    // These structs always serialize.
    let data = data.unwrap_or_default();
    Ok(Event::default().event(name).data(data))
}
