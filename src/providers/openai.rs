//! The OpenAI-compatible provider: OpenAI itself, OpenRouter, and local servers that speak the
//! same API (vLLM, Ollama, llama.cpp server).
//!
//! Chat goes through `POST {base}/chat/completions` with `stream: true`; the answer arrives as
//! server-sent events of `chat.completion.chunk` objects, then `data: [DONE]`. Embeddings go
//! through `POST {base}/embeddings`.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::endpoint::{Credential, Endpoint};
use super::sse::{self, HttpFailure};
use super::{ChatEvent, ChatMessage, ChatProvider, ChatRequest, ChatStream, FinishReason, ProviderError, Usage};

/// The name of this provider in logs and metrics.
const KIND: &str = "openai";

/// A client of one OpenAI-compatible server.
#[derive(Clone, Debug)]
pub struct OpenAiProvider {
    /// Where and how to reach the API.
    endpoint: Endpoint,
}

impl OpenAiProvider {
    /// A provider for the API rooted at `base_url` (e.g. `https://openrouter.ai/api/v1` or
    /// `http://localhost:8000/v1`); `api_key`, when set, is sent as a bearer token.
    pub fn new(base_url: impl Into<String>, api_key: Option<String>, http: reqwest::Client) -> Self {
        Self {
            endpoint: Endpoint::new(base_url, api_key.map(Credential::Bearer), http),
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

    /// A POST to `{base}/{path}` with the credentials attached.
    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.endpoint.post(path)
    }
}

/// A message's `content`: its text, or, when it carries images, an array of parts (the text,
/// then one `image_url` part per image as a `data:` URL).
fn message_content(message: &ChatMessage) -> Value {
    if message.images.is_empty() {
        return json!(message.content);
    }
    let text = (!message.content.is_empty()).then(|| json!({ "type": "text", "text": message.content }));
    let images = message
        .images
        .iter()
        .map(|image| json!({ "type": "image_url", "image_url": { "url": image.data_url() } }));
    Value::Array(text.into_iter().chain(images).collect())
}

/// The JSON body of a streamed chat completion request; optional settings appear only when set.
fn chat_body(request: &ChatRequest) -> Value {
    let messages: Vec<Value> = request
        .messages
        .iter()
        .map(|m| json!({ "role": m.role.as_str(), "content": message_content(m) }))
        .collect();
    let mut body = Map::new();
    body.insert("model".into(), json!(request.model));
    body.insert("messages".into(), Value::Array(messages));
    body.insert("stream".into(), json!(true));
    body.insert("stream_options".into(), json!({ "include_usage": true }));
    let params = &request.params;
    if let Some(temperature) = params.temperature {
        body.insert("temperature".into(), json!(temperature));
    }
    if let Some(top_p) = params.top_p {
        body.insert("top_p".into(), json!(top_p));
    }
    if let Some(max_tokens) = params.max_tokens {
        body.insert("max_tokens".into(), json!(max_tokens));
    }
    if !params.stop.is_empty() {
        body.insert("stop".into(), json!(params.stop));
    }
    if let Some(seed) = params.seed {
        // The API takes a signed 64-bit seed.
        body.insert("seed".into(), json!(seed & i64::MAX as u64));
    }
    // Standard penalties, then the extensions that vLLM, llama.cpp and OpenRouter take (sent
    // only when asked for: OpenAI itself refuses unknown arguments).
    let optional = [
        ("presence_penalty", params.presence_penalty),
        ("frequency_penalty", params.frequency_penalty),
        ("min_p", params.min_p),
        ("repetition_penalty", params.repetition_penalty),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            body.insert(key.into(), json!(value));
        }
    }
    if let Some(top_k) = params.top_k {
        body.insert("top_k".into(), json!(top_k));
    }
    if params.ignore_eos {
        body.insert("ignore_eos".into(), json!(true));
    }
    Value::Object(body)
}

/// An error object as OpenAI and most compatible servers send it.
#[derive(Debug, Default, Deserialize)]
struct WireError {
    /// What went wrong, for people.
    #[serde(default)]
    message: Option<String>,
    /// The error's type (`invalid_request_error`, `rate_limit_exceeded`...).
    #[serde(default, rename = "type")]
    kind: Option<String>,
    /// A code: a string at OpenAI, an HTTP status number at OpenRouter and llama.cpp.
    #[serde(default)]
    code: Option<Value>,
}

impl WireError {
    /// Whether the error says that we are sending too much.
    fn is_rate_limit(&self) -> bool {
        let code_says = match &self.code {
            Some(Value::Number(n)) => n.as_u64() == Some(429),
            Some(Value::String(s)) => s == "429" || s.contains("rate_limit"),
            _ => false,
        };
        code_says || self.kind.as_deref().is_some_and(|k| k.contains("rate_limit"))
    }
}

/// The error message of a failed request, from the body shapes that OpenAI-compatible servers
/// use: `{"error": {"message"}}` (OpenAI, OpenRouter, llama.cpp), `{"message"}` (vLLM),
/// `{"error": "..."}` (Ollama), else the raw body.
fn error_message(body: &str) -> String {
    let Ok(value) = serde_json::from_str::<Value>(body) else {
        return body.trim().to_string();
    };
    let found = match value.get("error") {
        Some(Value::String(message)) => Some(message.clone()),
        Some(error) => error.get("message").and_then(Value::as_str).map(str::to_string),
        None => value.get("message").and_then(Value::as_str).map(str::to_string),
    };
    found.unwrap_or_else(|| body.trim().to_string())
}

/// Classifies a non-success answer of an OpenAI-compatible server.
fn classify(failure: HttpFailure) -> ProviderError {
    sse::error_for_status(failure.status, failure.retry_after, error_message(&failure.body))
}

/// One `chat.completion.chunk` of the stream (only the fields we read).
#[derive(Debug, Deserialize)]
struct Chunk {
    /// The choices; empty in the final usage chunk.
    #[serde(default)]
    choices: Vec<Choice>,
    /// Token counts, in the final chunk when `include_usage` was asked for.
    #[serde(default)]
    usage: Option<WireUsage>,
    /// An error that happened after the stream started.
    #[serde(default)]
    error: Option<WireError>,
}

/// One choice of a chunk.
#[derive(Debug, Deserialize)]
struct Choice {
    /// Which choice this is (we ask for one, so 0).
    #[serde(default)]
    index: u32,
    /// The new text.
    #[serde(default)]
    delta: Option<Delta>,
    /// Set in the choice's last chunk.
    #[serde(default)]
    finish_reason: Option<String>,
}

/// The new part of a choice's message.
#[derive(Debug, Deserialize)]
struct Delta {
    /// New answer text, if any.
    #[serde(default)]
    content: Option<String>,
}

/// Token counts as the server reports them.
#[derive(Debug, Deserialize)]
struct WireUsage {
    /// Tokens in the prompt.
    #[serde(default)]
    prompt_tokens: u32,
    /// Tokens generated.
    #[serde(default)]
    completion_tokens: u32,
}

/// Maps an OpenAI finish reason to ours; unknown reasons (`tool_calls`...) count as a stop.
fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "length" => FinishReason::Length,
        "content_filter" => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    }
}

/// What one `data` payload means for the caller.
#[derive(Debug)]
enum Step {
    /// Pass these tokens on and read further.
    Continue(Vec<String>),
    /// The server said `[DONE]`: the answer is complete.
    Done,
    /// The stream failed.
    Failed(ProviderError),
}

/// The state of one streamed answer: what was seen so far.
#[derive(Debug, Default)]
struct StreamState {
    /// The finish reason, once the server sent it.
    finish: Option<FinishReason>,
    /// Token counts, once the server sent them.
    usage: Option<Usage>,
    /// The whole answer so far, to estimate its tokens when the server does not count them.
    output: String,
}

impl StreamState {
    /// Reads one `data` payload.
    fn on_data(&mut self, data: &str) -> Step {
        if data.trim() == "[DONE]" {
            return Step::Done;
        }
        let chunk: Chunk = match serde_json::from_str(data) {
            Ok(chunk) => chunk,
            // The payload may hold answer text: it is not quoted in the error.
            Err(e) => return Step::Failed(ProviderError::Other(format!("malformed chunk: {e}"))),
        };
        if let Some(error) = chunk.error {
            return Step::Failed(if error.is_rate_limit() {
                ProviderError::RateLimited { retry_after: None }
            } else {
                let message = error.message.unwrap_or_else(|| "unknown error".to_string());
                ProviderError::Other(sse::truncate(&message))
            });
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(Usage {
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
            });
        }
        let mut tokens = Vec::new();
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            if let Some(content) = choice.delta.and_then(|d| d.content) {
                if !content.is_empty() {
                    self.output.push_str(&content);
                    tokens.push(content);
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finish = Some(finish_reason(&reason));
            }
        }
        Step::Continue(tokens)
    }

    /// The final event: the server's counts, or estimates over the prompt and the answer.
    fn done(&self, finish_reason: FinishReason, request: &ChatRequest) -> ChatEvent {
        let usage = self.usage.unwrap_or_else(|| sse::estimate_usage(request, &self.output));
        ChatEvent::Done { finish_reason, usage }
    }
}

#[async_trait]
impl ChatProvider for OpenAiProvider {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn chat_stream(&self, request: ChatRequest) -> Result<ChatStream, ProviderError> {
        let started = Instant::now();
        let http_request = self
            .post("chat/completions")
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(&chat_body(&request));
        let response = sse::send(KIND, http_request, classify).await?;
        let mut data = Box::pin(sse::data_stream(response, self.endpoint.idle_timeout()));
        let stream = async_stream::stream! {
            let mut state = StreamState::default();
            let saw_done = loop {
                let payload = match data.next().await {
                    Some(Ok(payload)) => payload,
                    Some(Err(error)) => {
                        tracing::warn!(provider = KIND, "stream failed: {error}");
                        yield Err(error);
                        return;
                    }
                    None => break false,
                };
                match state.on_data(&payload) {
                    Step::Continue(tokens) => {
                        for token in tokens {
                            yield Ok(ChatEvent::Token(token));
                        }
                    }
                    Step::Done => break true,
                    Step::Failed(error) => {
                        tracing::warn!(provider = KIND, "provider reported an error mid-stream");
                        yield Err(error);
                        return;
                    }
                }
            };
            // Here the body ended or said [DONE]. Without either [DONE] or a finish reason the
            // answer was cut off.
            let reason = match (state.finish, saw_done) {
                (Some(reason), _) => reason,
                (None, true) => FinishReason::Stop,
                (None, false) => {
                    tracing::warn!(provider = KIND, "stream ended early");
                    yield Err(ProviderError::Unavailable("stream ended early".to_string()));
                    return;
                }
            };
            let done = state.done(reason, &request);
            if let ChatEvent::Done { usage, .. } = &done {
                tracing::debug!(
                    provider = KIND,
                    finish_reason = ?reason,
                    prompt_tokens = usage.prompt_tokens,
                    completion_tokens = usage.completion_tokens,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "stream finished"
                );
            }
            yield Ok(done);
        };
        Ok(Box::pin(stream))
    }

    async fn embed(&self, model: &str, inputs: Vec<String>) -> Result<Vec<Vec<f32>>, ProviderError> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let count = inputs.len();
        let request = self
            .post("embeddings")
            .json(&json!({ "model": model, "input": inputs }));
        let response = sse::send(KIND, request, classify).await?;
        let body: EmbeddingResponse = sse::read_json(response).await?;
        order_embeddings(body.data, count)
    }
}

/// The answer to an embeddings request.
#[derive(Debug, Deserialize)]
struct EmbeddingResponse {
    /// One item per input, not necessarily in input order.
    data: Vec<EmbeddingItem>,
}

/// The embedding of one input.
#[derive(Debug, Deserialize)]
struct EmbeddingItem {
    /// The vector.
    embedding: Vec<f32>,
    /// The position of its input in the request.
    #[serde(default)]
    index: Option<usize>,
}

/// Puts the vectors in input order (by `index`, or as sent where a server leaves it out) and
/// checks that there is exactly one per input.
fn order_embeddings(items: Vec<EmbeddingItem>, count: usize) -> Result<Vec<Vec<f32>>, ProviderError> {
    if items.len() != count {
        return Err(ProviderError::Other(format!(
            "asked for {count} embeddings, got {}",
            items.len()
        )));
    }
    let mut slots: Vec<Option<Vec<f32>>> = vec![None; count];
    for (position, item) in items.into_iter().enumerate() {
        let index = item.index.unwrap_or(position);
        match slots.get_mut(index) {
            Some(slot) if slot.is_none() => *slot = Some(item.embedding),
            _ => {
                return Err(ProviderError::Other(format!(
                    "embedding index {index} is out of range or repeated"
                )))
            }
        }
    }
    Ok(slots.into_iter().map(|slot| slot.unwrap_or_default()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{ChatMessage, GenerationParams, Role};

    fn request(params: GenerationParams) -> ChatRequest {
        ChatRequest {
            model: "m".into(),
            messages: vec![
                ChatMessage {
                    role: Role::System,
                    content: "be brief".into(),
                    images: Vec::new(),
                },
                ChatMessage {
                    role: Role::User,
                    content: "hello there".into(),
                    images: Vec::new(),
                },
            ],
            params,
            user: None,
        }
    }

    #[test]
    fn body_has_only_the_settings_that_are_set() {
        let body = chat_body(&request(GenerationParams::default()));
        assert_eq!(body["model"], "m");
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["messages"][0]["role"], "system");
        assert_eq!(body["messages"][1]["content"], "hello there");
        for key in ["temperature", "top_p", "max_tokens", "stop", "seed"] {
            assert!(body.get(key).is_none(), "{key} should be absent");
        }
        let body = chat_body(&request(GenerationParams {
            temperature: Some(0.5),
            top_p: Some(0.25),
            max_tokens: Some(7),
            stop: vec!["END".into()],
            seed: Some(u64::MAX),
            presence_penalty: Some(0.5),
            top_k: Some(20),
            ..GenerationParams::default()
        }));
        assert_eq!(body["presence_penalty"], 0.5);
        assert_eq!(body["top_k"], 20);
        assert!(body.get("min_p").is_none() && body.get("frequency_penalty").is_none());
        assert_eq!(body["temperature"], 0.5);
        assert_eq!(body["top_p"], 0.25);
        assert_eq!(body["max_tokens"], 7);
        assert_eq!(body["stop"], json!(["END"]));
        assert_eq!(body["seed"], json!(i64::MAX));
    }

    #[test]
    fn chunks_give_tokens_finish_and_usage() {
        let mut state = StreamState::default();
        let step = state
            .on_data(r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#);
        assert!(matches!(step, Step::Continue(t) if t.is_empty()));
        let step =
            state.on_data(r#"{"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}],"usage":null}"#);
        assert!(matches!(step, Step::Continue(t) if t == ["Hi"]));
        let step = state.on_data(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#);
        assert!(matches!(step, Step::Continue(t) if t.is_empty()));
        state.on_data(r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}"#);
        assert!(matches!(state.on_data("[DONE]"), Step::Done));
        assert_eq!(state.finish, Some(FinishReason::Length));
        let done = state.done(FinishReason::Length, &request(GenerationParams::default()));
        let usage = Usage {
            prompt_tokens: 5,
            completion_tokens: 1,
        };
        assert_eq!(
            done,
            ChatEvent::Done {
                finish_reason: FinishReason::Length,
                usage
            }
        );
    }

    #[test]
    fn usage_is_estimated_when_not_sent() {
        let mut state = StreamState::default();
        state.on_data(r#"{"choices":[{"delta":{"content":"one two three"},"finish_reason":"stop"}]}"#);
        let done = state.done(FinishReason::Stop, &request(GenerationParams::default()));
        let usage = Usage {
            prompt_tokens: 2 + 3,
            completion_tokens: 4,
        };
        assert_eq!(
            done,
            ChatEvent::Done {
                finish_reason: FinishReason::Stop,
                usage
            }
        );
    }

    #[test]
    fn errors_in_the_stream_fail_it() {
        let mut state = StreamState::default();
        let step = state.on_data(r#"{"error":{"message":"boom","code":502}}"#);
        assert!(matches!(step, Step::Failed(ProviderError::Other(m)) if m == "boom"));
        let step = state.on_data(r#"{"error":{"message":"slow down","code":429}}"#);
        assert!(matches!(step, Step::Failed(ProviderError::RateLimited { .. })));
        let step = state.on_data("{not json");
        assert!(matches!(step, Step::Failed(ProviderError::Other(_))));
    }

    #[test]
    fn error_messages_are_found_in_the_usual_shapes() {
        assert_eq!(
            error_message(r#"{"error":{"message":"bad model","type":"x"}}"#),
            "bad model"
        );
        assert_eq!(error_message(r#"{"object":"error","message":"too long"}"#), "too long");
        assert_eq!(error_message(r#"{"error":"model not found"}"#), "model not found");
        assert_eq!(error_message("plain text\n"), "plain text");
    }

    #[test]
    fn embeddings_are_put_in_input_order() {
        let items = vec![
            EmbeddingItem {
                embedding: vec![1.0],
                index: Some(1),
            },
            EmbeddingItem {
                embedding: vec![0.0],
                index: Some(0),
            },
        ];
        assert_eq!(order_embeddings(items, 2).unwrap(), vec![vec![0.0], vec![1.0]]);
        let items = vec![EmbeddingItem {
            embedding: vec![1.0],
            index: Some(5),
        }];
        assert!(order_embeddings(items, 1).is_err());
        assert!(order_embeddings(Vec::new(), 1).is_err());
    }
}
