//! OpenAI-compatible endpoints (`/v1/chat/completions`, `/v1/models`) so that existing
//! clients, SDKs and load tools work against Enclave. Stateless: nothing is stored (images
//! sent as `data:` URLs are checked and re-encoded like uploads, then forgotten); the caller
//! authenticates with the same bearer access token as the rest of the API.

use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::{ApiJson, Authenticated, ClientInfo};
use super::AppState;
use crate::audit::AuditEvent;
use crate::auth::roles::Permission;
use crate::images::{ImageError, ImageService};
use crate::providers::registry::RegistryError;
use crate::providers::{
    ChatEvent, ChatMessage, ChatRequest, FinishReason, GenerationParams, ProviderError, Role, Usage,
};
use base64::Engine;
use enclave_protocol::{AuditAction, ErrorCode};

#[derive(Deserialize)]
pub struct CompletionBody {
    model: Option<String>,
    messages: Vec<CompatMessage>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    stop: Option<StopField>,
    seed: Option<u64>,
    top_k: Option<u32>,
    min_p: Option<f32>,
    repetition_penalty: Option<f32>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    /// vLLM's and llama.cpp's extension: generate max_tokens whatever the model says.
    #[serde(default)]
    ignore_eos: bool,
}

#[derive(Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Deserialize)]
pub struct CompatMessage {
    role: String,
    content: Content,
}

/// Message content: a string, or an array of parts (`text`, and `image_url` with a `data:`
/// URL).
#[derive(Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
pub struct Part {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
    image_url: Option<ImageUrl>,
}

#[derive(Deserialize)]
pub struct ImageUrl {
    url: String,
    /// OpenAI's resolution hint; every image is sent at the server's pixel budget.
    #[allow(dead_code)]
    detail: Option<String>,
}

/// The bytes of a `data:` URL (`data:<type>;base64,<data>`; the declared type is ignored: the
/// bytes decide). Any other URL is refused: the server never fetches one.
fn data_url_bytes(url: &str) -> Result<Vec<u8>, ApiError> {
    let refuse_remote = || {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::ImageUrlNotAllowed,
            "image_url must be a data: URL with base64 data; this server never fetches images from other URLs",
        )
    };
    let rest = url
        .get(..5)
        .filter(|scheme| scheme.eq_ignore_ascii_case("data:"))
        .map(|_| &url[5..])
        .ok_or_else(refuse_remote)?;
    let (header, data) = rest.split_once(',').ok_or_else(refuse_remote)?;
    if !header.to_ascii_lowercase().ends_with(";base64") {
        return Err(ApiError::validation(
            "image_url data: URLs must be base64-encoded (data:image/png;base64,...)",
        ));
    }
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|_| ApiError::validation("image_url holds a data: URL whose base64 cannot be decoded"))
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum StopField {
    One(String),
    Many(Vec<String>),
}

async fn to_request(
    body: CompletionBody,
    model: String,
    user: String,
    images: &ImageService,
) -> Result<(ChatRequest, bool), ApiError> {
    if body.messages.is_empty() {
        return Err(ApiError::validation("messages must not be empty"));
    }
    let mut messages = Vec::with_capacity(body.messages.len());
    for m in body.messages {
        let role = match m.role.as_str() {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => return Err(ApiError::validation(format!("unsupported message role {other:?}"))),
        };
        let mut message = ChatMessage::text(role, String::new());
        match m.content {
            Content::Text(text) => message.content = text,
            Content::Parts(parts) => {
                let mut texts = Vec::new();
                let mut pictures = Vec::new();
                for part in parts {
                    match (part.kind.as_str(), part.text, part.image_url) {
                        ("text", Some(text), _) => texts.push(text),
                        ("image_url", _, Some(image)) => pictures.push(data_url_bytes(&image.url)?),
                        ("text", None, _) => return Err(ApiError::validation("a text content part needs \"text\"")),
                        ("image_url", _, None) => {
                            return Err(ApiError::validation(
                                "an image_url content part needs \"image_url\": {\"url\"}",
                            ))
                        }
                        (other, _, _) => {
                            return Err(ApiError::validation(format!(
                                "content part type {other:?} is not supported (text and image_url are)"
                            )))
                        }
                    }
                }
                if !pictures.is_empty() && role != Role::User {
                    return Err(ApiError::validation("only user messages may carry images"));
                }
                let most = images.max_per_message();
                if pictures.len() > most {
                    return Err(ImageError::TooMany {
                        count: pictures.len(),
                        limit: most,
                    }
                    .into());
                }
                message.content = texts.join("\n");
                for bytes in pictures {
                    message.images.push(images.inline(bytes).await?);
                }
            }
        }
        messages.push(message);
    }
    let stop = match body.stop {
        None => Vec::new(),
        Some(StopField::One(s)) => vec![s],
        Some(StopField::Many(v)) => v,
    };
    let params = GenerationParams {
        temperature: body.temperature,
        top_p: body.top_p,
        top_k: body.top_k,
        min_p: body.min_p,
        repetition_penalty: body.repetition_penalty,
        presence_penalty: body.presence_penalty,
        frequency_penalty: body.frequency_penalty,
        max_tokens: body.max_completion_tokens.or(body.max_tokens),
        stop,
        seed: body.seed,
        ignore_eos: body.ignore_eos,
    };
    params.validate().map_err(|e| ApiError::validation(e.to_string()))?;
    let include_usage = body.stream_options.is_some_and(|o| o.include_usage);
    Ok((
        ChatRequest {
            model,
            messages,
            params,
            user: Some(user),
        },
        include_usage,
    ))
}

/// OpenAI's error shape, which its clients parse.
fn compat_error(error: RegistryError) -> Response {
    let (status, code) = match &error {
        RegistryError::UnknownModel(_) => (StatusCode::NOT_FOUND, "model_not_found"),
        RegistryError::CannotSee(_) => (StatusCode::BAD_REQUEST, "model_cannot_see"),
        RegistryError::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "model_unavailable"),
        RegistryError::Provider(ProviderError::RateLimited { .. }) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        RegistryError::Provider(ProviderError::Overloaded) => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
        RegistryError::Provider(ProviderError::Rejected(_)) => (StatusCode::BAD_REQUEST, "invalid_request"),
        RegistryError::Provider(_) => (StatusCode::BAD_GATEWAY, "provider_error"),
    };
    let body = json!({"error": {"message": error.to_string(), "type": code, "code": code}});
    (status, Json(body)).into_response()
}

fn finish_name(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop | FinishReason::Stopped => "stop",
        FinishReason::Length => "length",
        FinishReason::ContentFilter => "content_filter",
    }
}

fn usage_json(usage: Usage) -> Value {
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    })
}

/// `POST /v1/chat/completions`, streamed (`"stream": true`) or whole.
pub async fn chat_completions(
    State(state): State<AppState>,
    caller: Authenticated,
    ClientInfo(client): ClientInfo,
    ApiJson(body): ApiJson<CompletionBody>,
) -> Result<Response, ApiError> {
    caller.require(Permission::Chat)?;
    let audit = state.audit.clone();
    let answered = AuditEvent::new(AuditAction::ChatAnswer)
        .by(caller.0.user_id)
        .from_client(&client);
    let registry = state.chat.registry().clone();
    let model = body
        .model
        .clone()
        .unwrap_or_else(|| registry.default_model().to_string());
    if !registry.is_chat_model(&model) {
        return Ok(compat_error(RegistryError::UnknownModel(model)));
    }
    let stream_mode = body.stream;
    let (request, include_usage) = to_request(body, model.clone(), caller.0.user_id.to_string(), &state.images).await?;
    // Images go to the requested model if it can see, else to the configured vision model.
    let model = if request.has_images() {
        match registry.model_for_images(&model) {
            Ok(model) => model,
            Err(e) => return Ok(compat_error(e)),
        }
    } else {
        model
    };
    let (mut stream, served_by) = match registry.chat_stream(&model, request).await {
        Ok(ok) => ok,
        Err(e) => return Ok(compat_error(e)),
    };
    let id = format!("chatcmpl-{}", uuid::Uuid::now_v7().simple());
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);

    if !stream_mode {
        let mut text = String::new();
        while let Some(event) = stream.next().await {
            match event {
                Ok(ChatEvent::Token(t)) => text.push_str(&t),
                Ok(ChatEvent::Done { finish_reason, usage }) => {
                    audit.record(answer_event(answered, &served_by, usage, finish_reason));
                    return Ok(Json(json!({
                        "id": id, "object": "chat.completion", "created": created, "model": served_by,
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                     "finish_reason": finish_name(finish_reason)}],
                        "usage": usage_json(usage),
                    }))
                    .into_response());
                }
                Err(e) => return Ok(compat_error(RegistryError::Provider(e))),
            }
        }
        return Ok(compat_error(RegistryError::Provider(ProviderError::Other(
            "the model's stream ended early".into(),
        ))));
    }

    let model_name = served_by.clone();
    let chunk = move |delta: Value, finish: Option<&str>| {
        json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": served_by,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let events = async_stream::stream! {
        yield Ok::<_, Infallible>(Event::default().data(chunk(json!({"role": "assistant", "content": ""}), None).to_string()));
        while let Some(event) = stream.next().await {
            match event {
                Ok(ChatEvent::Token(t)) => yield Ok(Event::default().data(chunk(json!({"content": t}), None).to_string())),
                Ok(ChatEvent::Done { finish_reason, usage }) => {
                    audit.record(answer_event(answered, &model_name, usage, finish_reason));
                    yield Ok(Event::default().data(chunk(json!({}), Some(finish_name(finish_reason))).to_string()));
                    if include_usage {
                        let mut last = chunk(json!({}), None);
                        last["choices"] = json!([]);
                        last["usage"] = usage_json(usage);
                        yield Ok(Event::default().data(last.to_string()));
                    }
                    break;
                }
                Err(e) => {
                    let body = json!({"error": {"message": e.to_string(), "type": "provider_error"}});
                    yield Ok(Event::default().data(body.to_string()));
                    break;
                }
            }
        }
        yield Ok(Event::default().data("[DONE]"));
    };
    Ok(Sse::new(events).keep_alive(KeepAlive::default()).into_response())
}

/// The audit entry of a finished `/v1` answer: model and token counts, never the text.
fn answer_event(event: AuditEvent, model: &str, usage: Usage, finish: FinishReason) -> AuditEvent {
    event.with(json!({
        "api": "v1",
        "model": model,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "finish_reason": finish_name(finish),
    }))
}

/// `GET /v1/models`: the chat models, in OpenAI's list shape.
pub async fn models(State(state): State<AppState>, caller: Authenticated) -> Result<impl IntoResponse, ApiError> {
    caller.require(Permission::ReadOwn)?;
    let data: Vec<Value> = state
        .chat
        .registry()
        .statuses()
        .into_iter()
        .filter(|m| m.role == crate::config::ModelRole::Chat)
        .map(|m| json!({"id": m.id, "object": "model", "created": 0, "owned_by": m.provider}))
        .collect();
    Ok(Json(json!({"object": "list", "data": data})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingsBody {
    model: Option<String>,
    input: EmbeddingInput,
    encoding_format: Option<String>,
    dimensions: Option<usize>,
    /// Accepted and ignored, as OpenAI does for its own purposes.
    #[allow(dead_code)]
    user: Option<String>,
}

/// `input`: one text or several (token arrays are refused by name).
#[derive(Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
    /// Token arrays: recognised only to be refused by name.
    Tokens(#[allow(dead_code)] Vec<Value>),
}

/// The most texts one embeddings request may carry (OpenAI's limit).
const MAX_EMBEDDING_INPUTS: usize = 2048;

/// `POST /v1/embeddings`: `encoding_format` `float` or `base64` (little-endian f32, what the
/// openai SDK asks for by default), `dimensions` for models that allow shorter vectors.
pub async fn embeddings(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiJson(body): ApiJson<EmbeddingsBody>,
) -> Result<Response, ApiError> {
    caller.require(Permission::Chat)?;
    let registry = state.chat.registry().clone();
    let Some(model) = body.model.or_else(|| registry.default_embed_model().map(str::to_owned)) else {
        return Ok(compat_error(RegistryError::UnknownModel(
            "(no embedding model configured)".into(),
        )));
    };
    if !registry.is_embed_model(&model) {
        return Ok(compat_error(RegistryError::UnknownModel(model)));
    }
    let inputs = match body.input {
        EmbeddingInput::One(text) => vec![text],
        EmbeddingInput::Many(texts) => texts,
        EmbeddingInput::Tokens(_) => {
            return Err(ApiError::validation(
                "input as token arrays is not supported; send text",
            ));
        }
    };
    if inputs.is_empty() || inputs.len() > MAX_EMBEDDING_INPUTS {
        return Err(ApiError::validation(format!(
            "input must hold 1 to {MAX_EMBEDDING_INPUTS} texts"
        )));
    }
    let base64 = match body.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::validation(format!(
                "encoding_format {other:?} is not supported (float, base64)"
            )))
        }
    };
    if body.dimensions == Some(0) {
        return Err(ApiError::validation("dimensions must be at least 1"));
    }
    let tokens: usize = inputs.iter().map(|t| registry.count_embedding_tokens(&model, t)).sum();
    let vectors = match registry.embed(&model, inputs, body.dimensions).await {
        Ok(vectors) => vectors,
        Err(RegistryError::Provider(ProviderError::Rejected(message))) => return Err(ApiError::validation(message)),
        Err(e) => return Ok(compat_error(e)),
    };
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(index, vector)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    bytes
                ))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
    .into_response())
}
