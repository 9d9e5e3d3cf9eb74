//! The Gemini provider (Google's Generative Language API).
//!
//! Chat goes through `POST {base}/models/{model}:streamGenerateContent?alt=sse`: each
//! server-sent event holds a `GenerateContentResponse`, the last one with a `finishReason`;
//! there is no `[DONE]` marker, the body simply ends. Embeddings go through
//! `POST {base}/models/{model}:batchEmbedContents`.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::endpoint::{Credential, Endpoint};
use super::sse::{self, HttpFailure};
use super::{ChatEvent, ChatProvider, ChatRequest, ChatStream, FinishReason, ProviderError, Role, Usage};

/// The public Gemini API root.
pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com/v1beta";

/// The name of this provider in logs and metrics.
const KIND: &str = "gemini";

/// The most texts that one `batchEmbedContents` call may carry.
const EMBED_BATCH_LIMIT: usize = 100;

/// A client of the Gemini API.
#[derive(Clone, Debug)]
pub struct GeminiProvider {
    /// Where and how to reach the API.
    endpoint: Endpoint,
}

impl GeminiProvider {
    /// A provider for the API rooted at `base_url` (usually [`DEFAULT_BASE_URL`]); `api_key`,
    /// when set, is sent in the `x-goog-api-key` header.
    pub fn new(base_url: impl Into<String>, api_key: Option<String>, http: reqwest::Client) -> Self {
        Self {
            endpoint: Endpoint::new(
                base_url,
                api_key.map(|key| Credential::Header("x-goog-api-key", key)),
                http,
            ),
        }
    }

    /// Sets how long a streamed answer may stay silent before it fails with `Unavailable`
    /// (five minutes by default).
    pub fn with_idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.endpoint.set_idle_timeout(idle_timeout);
        self
    }

    /// The API root this provider talks to, without a trailing slash.
    pub fn base_url(&self) -> &str {
        self.endpoint.base_url()
    }

    /// A POST to `{base}/models/{model}:{method}` with the credentials attached.
    fn post(&self, model: &str, method: &str) -> reqwest::RequestBuilder {
        self.endpoint.post(&format!("models/{}:{method}", bare_model(model)))
    }
}

/// The model's name without the `models/` prefix that the API's resource names carry.
fn bare_model(model: &str) -> &str {
    model.strip_prefix("models/").unwrap_or(model)
}

/// The JSON body of a `streamGenerateContent` request: system messages become the
/// `systemInstruction`, the others `contents` with roles `user` and `model` (consecutive
/// messages of one role merged into one content of several parts, as the API wants turns to
/// alternate), and `generationConfig` holds only the settings that are set.
fn chat_body(request: &ChatRequest) -> Value {
    let mut system_parts = Vec::new();
    let mut contents: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for message in &request.messages {
        // The API refuses empty parts; images follow the text as `inline_data` parts.
        let text = (!message.content.is_empty()).then(|| json!({ "text": message.content }));
        let images = message
            .images
            .iter()
            .map(|image| json!({ "inline_data": { "mime_type": image.media_type(), "data": image.base64() } }));
        let message_parts: Vec<Value> = text.into_iter().chain(images).collect();
        if message_parts.is_empty() {
            continue;
        }
        let role = match message.role {
            Role::System => {
                system_parts.extend(message_parts);
                continue;
            }
            Role::User => "user",
            Role::Assistant => "model",
        };
        match contents.last_mut() {
            Some((last_role, parts)) if *last_role == role => parts.extend(message_parts),
            _ => contents.push((role, message_parts)),
        }
    }
    let contents: Vec<Value> = contents
        .into_iter()
        .map(|(role, parts)| json!({ "role": role, "parts": parts }))
        .collect();

    let mut body = Map::new();
    body.insert("contents".into(), Value::Array(contents));
    if !system_parts.is_empty() {
        body.insert("systemInstruction".into(), json!({ "parts": system_parts }));
    }
    let params = &request.params;
    let mut config = Map::new();
    if let Some(temperature) = params.temperature {
        config.insert("temperature".into(), json!(temperature));
    }
    if let Some(top_p) = params.top_p {
        config.insert("topP".into(), json!(top_p));
    }
    if let Some(max_tokens) = params.max_tokens {
        config.insert("maxOutputTokens".into(), json!(max_tokens));
    }
    if !params.stop.is_empty() {
        config.insert("stopSequences".into(), json!(params.stop));
    }
    if let Some(seed) = params.seed {
        // The API takes a 32-bit signed seed: keep the low 31 bits.
        config.insert("seed".into(), json!(seed & 0x7fff_ffff));
    }
    if let Some(top_k) = params.top_k {
        config.insert("topK".into(), json!(top_k));
    }
    if let Some(presence) = params.presence_penalty {
        config.insert("presencePenalty".into(), json!(presence));
    }
    if let Some(frequency) = params.frequency_penalty {
        config.insert("frequencyPenalty".into(), json!(frequency));
    }
    if !config.is_empty() {
        body.insert("generationConfig".into(), Value::Object(config));
    }
    Value::Object(body)
}

/// A Gemini error object: `{"error": {"code", "message", "status", "details"}}`.
#[derive(Debug, Default, Deserialize)]
struct WireError {
    /// The HTTP status code.
    #[serde(default)]
    code: Option<u16>,
    /// What went wrong, for people.
    #[serde(default)]
    message: Option<String>,
    /// The gRPC status name (`RESOURCE_EXHAUSTED`, `UNAVAILABLE`...).
    #[serde(default)]
    status: Option<String>,
    /// Typed details (`RetryInfo`, `ErrorInfo`...).
    #[serde(default)]
    details: Vec<Value>,
}

impl WireError {
    /// The `retryDelay` of a `RetryInfo` detail (`"37s"`), rounded up to whole seconds.
    fn retry_delay(&self) -> Option<u64> {
        self.details.iter().find_map(|detail| {
            let delay = detail.get("retryDelay")?.as_str()?;
            let seconds: f64 = delay.trim().strip_suffix('s')?.parse().ok()?;
            (seconds.is_finite() && seconds >= 0.0).then(|| seconds.ceil() as u64)
        })
    }

    /// Whether an `ErrorInfo` detail says that the key is not valid.
    fn bad_key(&self) -> bool {
        self.details.iter().any(|detail| {
            detail
                .get("reason")
                .and_then(Value::as_str)
                .is_some_and(|reason| matches!(reason, "API_KEY_INVALID" | "API_KEY_SERVICE_BLOCKED"))
        })
    }

    /// The provider error this stands for, given the HTTP status and `Retry-After` header.
    fn into_provider_error(self, http_status: reqwest::StatusCode, header_retry: Option<u64>) -> ProviderError {
        let retry_after = header_retry.or_else(|| self.retry_delay());
        let bad_key = self.bad_key();
        let message = match self.message.as_deref().map(str::trim) {
            Some(message) if !message.is_empty() => sse::truncate(message),
            _ => http_status.to_string(),
        };
        match self.status.as_deref() {
            Some("RESOURCE_EXHAUSTED") => ProviderError::RateLimited { retry_after },
            Some("UNAVAILABLE") => ProviderError::Unavailable(message),
            Some("UNAUTHENTICATED") | Some("PERMISSION_DENIED") => ProviderError::Unauthorized(message),
            _ if bad_key => ProviderError::Unauthorized(message),
            _ => sse::error_for_status(http_status, retry_after, message),
        }
    }
}

/// Classifies a non-success answer of the Gemini API.
fn classify(failure: HttpFailure) -> ProviderError {
    let value: Value = serde_json::from_str(&failure.body).unwrap_or(Value::Null);
    // Gemini sometimes wraps the error in a one-element array.
    let error = match &value {
        Value::Array(items) => items.first().and_then(|item| item.get("error")),
        other => other.get("error"),
    };
    match error.and_then(|e| serde_json::from_value::<WireError>(e.clone()).ok()) {
        Some(error) => error.into_provider_error(failure.status, failure.retry_after),
        None => sse::error_for_status(failure.status, failure.retry_after, failure.body),
    }
}

/// One `GenerateContentResponse` of the stream (only the fields we read).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Chunk {
    /// The candidates (we ask for one).
    #[serde(default)]
    candidates: Vec<Candidate>,
    /// Token counts so far; the last chunk has the totals.
    #[serde(default)]
    usage_metadata: Option<UsageMetadata>,
    /// Set when the prompt itself was blocked.
    #[serde(default)]
    prompt_feedback: Option<PromptFeedback>,
    /// An error that happened after the stream started.
    #[serde(default)]
    error: Option<WireError>,
}

/// One candidate answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    /// The new text.
    #[serde(default)]
    content: Option<Content>,
    /// Set in the candidate's last chunk.
    #[serde(default)]
    finish_reason: Option<String>,
    /// Which candidate this is.
    #[serde(default)]
    index: u32,
}

/// A candidate's new content.
#[derive(Debug, Deserialize)]
struct Content {
    /// Its parts, in order.
    #[serde(default)]
    parts: Vec<Part>,
}

/// One part of a content.
#[derive(Debug, Deserialize)]
struct Part {
    /// The text, for a text part.
    #[serde(default)]
    text: Option<String>,
    /// True for a thinking model's thought summary, which is not part of the answer.
    #[serde(default)]
    thought: bool,
}

/// Token counts as Gemini reports them.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    /// Tokens in the prompt.
    #[serde(default)]
    prompt_token_count: u32,
    /// Tokens of the answer.
    #[serde(default)]
    candidates_token_count: u32,
    /// Tokens a thinking model spent thinking (billed as output).
    #[serde(default)]
    thoughts_token_count: u32,
}

/// Why the prompt was refused.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    /// Set when the prompt was blocked.
    #[serde(default)]
    block_reason: Option<String>,
}

/// Maps a Gemini finish reason to ours: the safety family is a content filter, `MAX_TOKENS` a
/// length stop, anything else (`STOP`, `OTHER`...) a stop.
fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" | "LANGUAGE" => {
            FinishReason::ContentFilter
        }
        _ => FinishReason::Stop,
    }
}

/// The state of one streamed answer: what was seen so far.
#[derive(Debug, Default)]
struct StreamState {
    /// The finish reason, once the server sent it (or blocked the prompt).
    finish: Option<FinishReason>,
    /// The latest token counts the server sent.
    usage: Option<Usage>,
    /// The whole answer so far, to estimate its tokens when the server does not count them.
    output: String,
}

impl StreamState {
    /// Reads one `data` payload: the answer's new tokens, or the error that ends the stream.
    fn on_data(&mut self, data: &str) -> Result<Vec<String>, ProviderError> {
        let chunk: Chunk = serde_json::from_str(data)
            // The payload may hold answer text: it is not quoted in the error.
            .map_err(|e| ProviderError::Other(format!("malformed chunk: {e}")))?;
        if let Some(error) = chunk.error {
            let rate_limited = error.status.as_deref() == Some("RESOURCE_EXHAUSTED") || error.code == Some(429);
            return Err(if rate_limited {
                ProviderError::RateLimited {
                    retry_after: error.retry_delay(),
                }
            } else {
                let message = error.message.unwrap_or_else(|| "unknown error".to_string());
                ProviderError::Other(sse::truncate(&message))
            });
        }
        if let Some(usage) = chunk.usage_metadata {
            self.usage = Some(Usage {
                prompt_tokens: usage.prompt_token_count,
                completion_tokens: usage.candidates_token_count.saturating_add(usage.thoughts_token_count),
            });
        }
        if chunk.prompt_feedback.and_then(|f| f.block_reason).is_some() {
            self.finish = Some(FinishReason::ContentFilter);
        }
        let mut tokens = Vec::new();
        for candidate in chunk.candidates.into_iter().filter(|c| c.index == 0) {
            let parts = candidate.content.map(|c| c.parts).unwrap_or_default();
            for part in parts.into_iter().filter(|p| !p.thought) {
                if let Some(text) = part.text.filter(|t| !t.is_empty()) {
                    self.output.push_str(&text);
                    tokens.push(text);
                }
            }
            if let Some(reason) = candidate.finish_reason {
                self.finish = Some(finish_reason(&reason));
            }
        }
        Ok(tokens)
    }
}

#[async_trait]
impl ChatProvider for GeminiProvider {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn chat_stream(&self, request: ChatRequest) -> Result<ChatStream, ProviderError> {
        let started = Instant::now();
        let http_request = self
            .post(&request.model, "streamGenerateContent?alt=sse")
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(&chat_body(&request));
        let response = sse::send(KIND, http_request, classify).await?;
        let mut data = Box::pin(sse::data_stream(response, self.endpoint.idle_timeout()));
        let stream = async_stream::stream! {
            let mut state = StreamState::default();
            while let Some(payload) = data.next().await {
                let tokens = match payload.and_then(|payload| state.on_data(&payload)) {
                    Ok(tokens) => tokens,
                    Err(error) => {
                        tracing::warn!(provider = KIND, "stream failed: {error}");
                        yield Err(error);
                        return;
                    }
                };
                for token in tokens {
                    yield Ok(ChatEvent::Token(token));
                }
            }
            // Gemini has no end marker: an answer without a finish reason was cut off.
            let Some(finish_reason) = state.finish else {
                tracing::warn!(provider = KIND, "stream ended early");
                yield Err(ProviderError::Unavailable("stream ended early".to_string()));
                return;
            };
            let usage = state.usage.unwrap_or_else(|| sse::estimate_usage(&request, &state.output));
            tracing::debug!(
                provider = KIND,
                ?finish_reason,
                prompt_tokens = usage.prompt_tokens,
                completion_tokens = usage.completion_tokens,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "stream finished"
            );
            yield Ok(ChatEvent::Done { finish_reason, usage });
        };
        Ok(Box::pin(stream))
    }

    async fn embed(&self, model: &str, inputs: Vec<String>) -> Result<Vec<Vec<f32>>, ProviderError> {
        let resource = format!("models/{}", bare_model(model));
        let mut vectors = Vec::with_capacity(inputs.len());
        for batch in inputs.chunks(EMBED_BATCH_LIMIT) {
            let requests: Vec<Value> = batch
                .iter()
                .map(|text| json!({ "model": resource, "content": { "parts": [{ "text": text }] } }))
                .collect();
            let request = self
                .post(model, "batchEmbedContents")
                .json(&json!({ "requests": requests }));
            let response = sse::send(KIND, request, classify).await?;
            let body: EmbedResponse = sse::read_json(response).await?;
            if body.embeddings.len() != batch.len() {
                return Err(ProviderError::Other(format!(
                    "asked for {} embeddings, got {}",
                    batch.len(),
                    body.embeddings.len()
                )));
            }
            vectors.extend(body.embeddings.into_iter().map(|e| e.values));
        }
        Ok(vectors)
    }
}

/// The answer to `batchEmbedContents`.
#[derive(Debug, Deserialize)]
struct EmbedResponse {
    /// One embedding per request, in request order.
    #[serde(default)]
    embeddings: Vec<Embedding>,
}

/// One embedding.
#[derive(Debug, Deserialize)]
struct Embedding {
    /// The vector.
    values: Vec<f32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{ChatMessage, GenerationParams};

    fn message(role: Role, content: &str) -> ChatMessage {
        ChatMessage {
            role,
            content: content.into(),
            images: Vec::new(),
        }
    }

    #[test]
    fn body_merges_roles_and_lifts_the_system_prompt() {
        let request = ChatRequest {
            model: "gemini-x".into(),
            messages: vec![
                message(Role::System, "be brief"),
                message(Role::User, "a"),
                message(Role::User, "b"),
                message(Role::Assistant, "c"),
                message(Role::Assistant, ""),
                message(Role::User, "d"),
            ],
            params: GenerationParams::default(),
            user: None,
        };
        let body = chat_body(&request);
        assert_eq!(body["systemInstruction"], json!({ "parts": [{ "text": "be brief" }] }));
        assert_eq!(
            body["contents"],
            json!([
                { "role": "user", "parts": [{ "text": "a" }, { "text": "b" }] },
                { "role": "model", "parts": [{ "text": "c" }] },
                { "role": "user", "parts": [{ "text": "d" }] },
            ])
        );
        assert!(body.get("generationConfig").is_none());

        let request = ChatRequest {
            params: GenerationParams {
                temperature: Some(0.5),
                top_p: Some(0.25),
                max_tokens: Some(9),
                stop: vec!["X".into()],
                seed: Some(7),
                ..GenerationParams::default()
            },
            ..request
        };
        let config = &chat_body(&request)["generationConfig"];
        assert_eq!(
            config,
            &json!({ "temperature": 0.5, "topP": 0.25, "maxOutputTokens": 9,
                     "stopSequences": ["X"], "seed": 7 })
        );
    }

    #[test]
    fn chunks_give_tokens_finish_and_usage() {
        let mut state = StreamState::default();
        let tokens = state
            .on_data(r#"{"candidates":[{"content":{"parts":[{"text":"thinking","thought":true},{"text":"Hi"}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":4}}"#)
            .unwrap();
        assert_eq!(tokens, ["Hi"]);
        let tokens = state
            .on_data(r#"{"candidates":[{"content":{"parts":[{"text":" there"}],"role":"model"},"finishReason":"MAX_TOKENS","index":0}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":2,"thoughtsTokenCount":3}}"#)
            .unwrap();
        assert_eq!(tokens, [" there"]);
        assert_eq!(state.finish, Some(FinishReason::Length));
        assert_eq!(
            state.usage,
            Some(Usage {
                prompt_tokens: 4,
                completion_tokens: 5
            })
        );
        assert_eq!(state.output, "Hi there");
    }

    #[test]
    fn blocks_and_errors() {
        let mut state = StreamState::default();
        state.on_data(r#"{"promptFeedback":{"blockReason":"SAFETY"}}"#).unwrap();
        assert_eq!(state.finish, Some(FinishReason::ContentFilter));
        let mut state = StreamState::default();
        state
            .on_data(r#"{"candidates":[{"finishReason":"RECITATION","index":0}]}"#)
            .unwrap();
        assert_eq!(state.finish, Some(FinishReason::ContentFilter));
        let error = state
            .on_data(r#"{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED","details":[{"retryDelay":"2.5s"}]}}"#)
            .unwrap_err();
        assert!(matches!(error, ProviderError::RateLimited { retry_after: Some(3) }));
        let error = state
            .on_data(r#"{"error":{"code":500,"message":"internal","status":"INTERNAL"}}"#)
            .unwrap_err();
        assert!(matches!(error, ProviderError::Other(m) if m == "internal"));
    }

    #[test]
    fn failures_are_classified() {
        let failure = |status: u16, body: &str| HttpFailure {
            status: reqwest::StatusCode::from_u16(status).unwrap(),
            retry_after: None,
            body: body.to_string(),
        };
        let e = classify(failure(
            429,
            r#"{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"37s"}]}}"#,
        ));
        assert!(matches!(e, ProviderError::RateLimited { retry_after: Some(37) }));
        let e = classify(failure(
            503,
            r#"{"error":{"code":503,"message":"overloaded","status":"UNAVAILABLE"}}"#,
        ));
        assert!(matches!(e, ProviderError::Unavailable(m) if m == "overloaded"));
        let e = classify(failure(
            400,
            r#"{"error":{"code":400,"message":"API key not valid","status":"INVALID_ARGUMENT","details":[{"reason":"API_KEY_INVALID"}]}}"#,
        ));
        assert!(matches!(e, ProviderError::Unauthorized(_)));
        let e = classify(failure(
            400,
            r#"[{"error":{"code":400,"message":"bad","status":"INVALID_ARGUMENT"}}]"#,
        ));
        assert!(matches!(e, ProviderError::Rejected(m) if m == "bad"));
        let e = classify(failure(502, "<html>bad gateway</html>"));
        assert!(matches!(e, ProviderError::Unavailable(_)));
    }

    #[test]
    fn model_prefix_is_not_doubled() {
        assert_eq!(bare_model("models/gemini-x"), "gemini-x");
        assert_eq!(bare_model("gemini-x"), "gemini-x");
    }
}
