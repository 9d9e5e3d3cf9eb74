//! Fake model providers for the tests: small HTTP servers on 127.0.0.1 that speak the real wire
//! formats of an OpenAI-compatible server and of the Gemini API, stream a fixed, bounded answer
//! (optionally slowly), fail on demand, and log every request they receive.
//!
//! Each fake runs on its own thread with its own Tokio runtime, so it works from `#[test]` and
//! from `#[tokio::test]` alike (any flavour), and outlives nothing: dropping the [`FakeServer`]
//! stops it.
//!
//! ```ignore
//! let fake = FakeOpenAi::start(Behaviour::reply(&["Hel", "lo"]));
//! // point a provider (or the server's config) at fake.base_url ...
//! let request = fake.last_request().unwrap();
//! assert_eq!(request.body["model"], "fake-model");
//! ```
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

/// The prompt token count that the fakes report in their usage.
pub const FAKE_PROMPT_TOKENS: u32 = 42;

/// The length of the fakes' embedding vectors.
pub const FAKE_EMBEDDING_DIM: usize = 64;

/// The model a fake lists at `GET {base}/models`; any model name is accepted for chat.
pub const FAKE_MODEL: &str = "fake-model";

/// What a fake does with the chat requests (and, for the failures, the embedding requests)
/// that it receives. Streams are bounded: the fake sends its fixed events and ends.
#[derive(Debug, Clone, PartialEq)]
pub enum Behaviour {
    /// Streams `chunks` as text deltas, `delay_ms` apart, then a normal stop with usage
    /// (`FAKE_PROMPT_TOKENS` prompt tokens, one completion token per chunk); for OpenAI the usage
    /// chunk only when the request asked for it (`stream_options.include_usage`), then `[DONE]`.
    Reply {
        /// The answer's text pieces, in order.
        chunks: Vec<String>,
        /// Pause before every event after the first, in milliseconds.
        delay_ms: u64,
    },
    /// Like `Reply`, but never reports usage.
    ReplyWithoutUsage {
        /// The answer's text pieces, in order.
        chunks: Vec<String>,
        /// Pause before every event after the first, in milliseconds.
        delay_ms: u64,
    },
    /// Streams `chunks`, then ends with `finish_reason` spelled as the wire format spells it
    /// (OpenAI: `length`, `content_filter`; Gemini: `MAX_TOKENS`, `SAFETY`...), with usage.
    Finish {
        /// The answer's text pieces, in order.
        chunks: Vec<String>,
        /// The finish reason, verbatim.
        finish_reason: String,
    },
    /// The prompt is refused by the provider's filter: Gemini sends
    /// `promptFeedback.blockReason: SAFETY` and no candidate, OpenAI a `content_filter` finish
    /// with no text.
    PromptBlocked,
    /// Streams `chunks`, then closes the body without a finish reason or `[DONE]`.
    CutShort {
        /// The text pieces sent before the cut.
        chunks: Vec<String>,
        /// Pause before every event after the first, in milliseconds.
        delay_ms: u64,
    },
    /// Streams `chunks`, then an error object inside the stream, then ends.
    StreamError {
        /// The text pieces sent before the error.
        chunks: Vec<String>,
        /// The error's message.
        message: String,
    },
    /// Answers 429. OpenAI: `Retry-After: {retry_after}` header; Gemini: `RESOURCE_EXHAUSTED`
    /// with a `RetryInfo` detail `retryDelay: "{retry_after}s"` (and no header, as Google does).
    RateLimited {
        /// Seconds the client is asked to wait.
        retry_after: u64,
    },
    /// Answers 503 (`UNAVAILABLE` for Gemini).
    Unavailable,
    /// Answers 400 with `message` in the provider's error body.
    Rejected {
        /// The error message.
        message: String,
    },
    /// Refuses the credentials: OpenAI 401 `invalid_api_key`; Gemini 400 `API_KEY_INVALID`
    /// (what Google really sends for a bad key).
    Unauthorized,
}

impl Behaviour {
    /// `Reply` with these chunks and no delay.
    pub fn reply(chunks: &[&str]) -> Self {
        Behaviour::Reply {
            chunks: to_strings(chunks),
            delay_ms: 0,
        }
    }

    /// `Reply` with these chunks, `delay_ms` apart.
    pub fn slow_reply(chunks: &[&str], delay_ms: u64) -> Self {
        Behaviour::Reply {
            chunks: to_strings(chunks),
            delay_ms,
        }
    }

    /// A `Reply` of `count` chunks `"t0 "`, `"t1 "`, ..., `delay_ms` apart: a long, slow answer
    /// to stop midway.
    pub fn long_reply(count: usize, delay_ms: u64) -> Self {
        Behaviour::Reply {
            chunks: (0..count).map(|i| format!("t{i} ")).collect(),
            delay_ms,
        }
    }

    /// `CutShort` after these chunks.
    pub fn cut_short(chunks: &[&str]) -> Self {
        Behaviour::CutShort {
            chunks: to_strings(chunks),
            delay_ms: 0,
        }
    }

    /// `Rejected` with this message.
    pub fn rejected(message: &str) -> Self {
        Behaviour::Rejected {
            message: message.to_string(),
        }
    }
}

/// Owned copies of string slices.
fn to_strings(chunks: &[&str]) -> Vec<String> {
    chunks.iter().map(|c| c.to_string()).collect()
}

/// One HTTP request that a fake received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// `GET`, `POST`...
    pub method: String,
    /// The path without the query (e.g. `/v1/chat/completions`,
    /// `/v1beta/models/gemini-x:streamGenerateContent`).
    pub path: String,
    /// The query string without `?` (e.g. `alt=sse`), when there was one.
    pub query: Option<String>,
    /// The headers, names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON (`Value::Null` when empty or not JSON).
    pub body: Value,
}

impl RecordedRequest {
    /// The first value of a header (the name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    /// The token of an `Authorization: Bearer` header.
    pub fn bearer(&self) -> Option<&str> {
        self.header("authorization")?.strip_prefix("Bearer ")
    }

    /// The `x-goog-api-key` header.
    pub fn goog_api_key(&self) -> Option<&str> {
        self.header("x-goog-api-key")
    }
}

/// Serves `app` on a free port of 127.0.0.1 from a thread of its own (with its own runtime,
/// so that it works from any test); returns the address and the sender that stops it.
pub fn serve_on_a_thread(app: Router, name: &str) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a fake server");
    listener.set_nonblocking(true).expect("non-blocking listener");
    let addr = listener.local_addr().expect("fake server address");
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name(format!("{name}-{}", addr.port()))
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("fake server runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                tokio::select! {
                    _ = axum::serve(listener, app) => {}
                    _ = stopped => {}
                }
            });
            // Dropping the runtime here cancels the streams still running.
        })
        .expect("spawn the fake server thread");
    (addr, shutdown)
}

/// Which wire format a fake speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    /// OpenAI-compatible, rooted at `/v1`.
    OpenAi,
    /// Gemini, rooted at `/v1beta`.
    Gemini,
}

/// What the handlers share with the test.
struct Shared {
    /// The wire format.
    flavour: Flavour,
    /// The key that requests must carry, when set.
    api_key: Option<String>,
    /// What to do with the next requests.
    behaviour: Mutex<Behaviour>,
    /// Every request received, in order.
    requests: Mutex<Vec<RecordedRequest>>,
    /// Streamed answers begun.
    streams_started: AtomicUsize,
    /// Streamed answers sent to their end.
    streams_completed: AtomicUsize,
    /// Streamed answers abandoned because the client went away.
    streams_dropped: AtomicUsize,
}

/// A running fake provider; dropping it stops the server.
pub struct FakeServer {
    /// The API root to configure a provider with: `http://127.0.0.1:PORT/v1` (OpenAI) or
    /// `http://127.0.0.1:PORT/v1beta` (Gemini).
    pub base_url: String,
    /// The address the server listens on.
    pub addr: SocketAddr,
    /// State shared with the handlers.
    shared: Arc<Shared>,
    /// Stops the server when sent or dropped.
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

impl std::fmt::Debug for FakeServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeServer").field("base_url", &self.base_url).finish()
    }
}

impl FakeServer {
    /// Starts a fake of `flavour` on a free port of 127.0.0.1, on a thread of its own.
    fn start(flavour: Flavour, behaviour: Behaviour, api_key: Option<String>) -> FakeServer {
        let shared = Arc::new(Shared {
            flavour,
            api_key,
            behaviour: Mutex::new(behaviour),
            requests: Mutex::new(Vec::new()),
            streams_started: AtomicUsize::new(0),
            streams_completed: AtomicUsize::new(0),
            streams_dropped: AtomicUsize::new(0),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let (addr, shutdown) = serve_on_a_thread(app, &format!("fake-{flavour:?}"));
        let root = match flavour {
            Flavour::OpenAi => "v1",
            Flavour::Gemini => "v1beta",
        };
        FakeServer {
            base_url: format!("http://{addr}/{root}"),
            addr,
            shared,
            shutdown: Some(shutdown),
        }
    }

    /// Changes what the fake does from the next request on.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        *self.shared.behaviour.lock().unwrap() = behaviour;
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The latest request received.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.shared.requests.lock().unwrap().last().cloned()
    }

    /// How many requests were received so far.
    pub fn request_count(&self) -> usize {
        self.shared.requests.lock().unwrap().len()
    }

    /// The chat requests received so far (`/chat/completions` or `:streamGenerateContent`).
    pub fn chat_requests(&self) -> Vec<RecordedRequest> {
        self.requests().into_iter().filter(|r| is_chat_path(&r.path)).collect()
    }

    /// How many streamed answers were begun.
    pub fn streams_started(&self) -> usize {
        self.shared.streams_started.load(Ordering::SeqCst)
    }

    /// How many streamed answers were sent to their end.
    pub fn streams_completed(&self) -> usize {
        self.shared.streams_completed.load(Ordering::SeqCst)
    }

    /// How many streamed answers were abandoned midway because the client went away (a stop
    /// or a disconnect reached the provider).
    pub fn streams_dropped(&self) -> usize {
        self.shared.streams_dropped.load(Ordering::SeqCst)
    }

    /// Waits until at least `count` requests were received; false on timeout.
    pub async fn wait_for_requests(&self, count: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.request_count() >= count).await
    }

    /// Waits until at least `count` streams were abandoned by their client; false on timeout.
    /// The fake notices a gone client when it next writes, so allow a chunk delay or more.
    pub async fn wait_for_dropped_streams(&self, count: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.streams_dropped() >= count).await
    }
}

/// Polls `condition` every 10 ms until it holds or `timeout` passes.
async fn wait_until(timeout: Duration, condition: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A fake OpenAI-compatible server (`/v1/chat/completions`, `/v1/embeddings`, `/v1/models`).
pub struct FakeOpenAi;

impl FakeOpenAi {
    /// Starts one that accepts any key (or none).
    pub fn start(behaviour: Behaviour) -> FakeServer {
        FakeServer::start(Flavour::OpenAi, behaviour, None)
    }

    /// Starts one that answers 401 unless the request carries `Authorization: Bearer {key}`.
    pub fn start_with_key(behaviour: Behaviour, key: &str) -> FakeServer {
        FakeServer::start(Flavour::OpenAi, behaviour, Some(key.to_string()))
    }
}

/// A fake Gemini API (`/v1beta/models/{model}:streamGenerateContent?alt=sse`,
/// `/v1beta/models/{model}:batchEmbedContents`, `/v1beta/models`).
pub struct FakeGemini;

impl FakeGemini {
    /// Starts one that accepts any key (or none).
    pub fn start(behaviour: Behaviour) -> FakeServer {
        FakeServer::start(Flavour::Gemini, behaviour, None)
    }

    /// Starts one that refuses requests whose `x-goog-api-key` is not `key`.
    pub fn start_with_key(behaviour: Behaviour, key: &str) -> FakeServer {
        FakeServer::start(Flavour::Gemini, behaviour, Some(key.to_string()))
    }
}

/// A deterministic embedding: words (lower-cased alphanumeric runs) hashed into
/// `FAKE_EMBEDDING_DIM` buckets, L2-normalised; texts that share words are close, so it is
/// good enough for retrieval tests. Text without words gives a unit vector on axis 0.
pub fn fake_embedding(text: &str) -> Vec<f32> {
    let mut vector = vec![0.0f32; FAKE_EMBEDDING_DIM];
    let lower = text.to_lowercase();
    for word in lower.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        // FNV-1a.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in word.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        vector[(hash % FAKE_EMBEDDING_DIM as u64) as usize] += 1.0;
    }
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 {
        vector[0] = 1.0;
    } else {
        vector.iter_mut().for_each(|x| *x /= norm);
    }
    vector
}

/// Whether a path is a chat endpoint of either flavour.
fn is_chat_path(path: &str) -> bool {
    path.ends_with("/chat/completions") || path.ends_with(":streamGenerateContent")
}

/// The one handler: logs the request, checks the key, routes by path.
async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let recorded = RecordedRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers: headers
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
            .collect(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    shared.requests.lock().unwrap().push(recorded.clone());
    let behaviour = shared.behaviour.lock().unwrap().clone();
    match shared.flavour {
        Flavour::OpenAi => openai::handle(&shared, &method, &recorded, behaviour),
        Flavour::Gemini => gemini::handle(&shared, &method, &recorded, behaviour),
    }
}

/// A JSON response.
fn json_response(status: StatusCode, body: Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// Counts a stream as completed or dropped when it goes away.
struct StreamGuard {
    /// Where to count.
    shared: Arc<Shared>,
    /// Set once the last event was handed to the server.
    finished: bool,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let counter = if self.finished {
            &self.shared.streams_completed
        } else {
            &self.shared.streams_dropped
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

/// A `text/event-stream` response that sends `events` (whole SSE frames), `delay_ms` apart.
fn sse_response(shared: &Arc<Shared>, events: Vec<String>, delay_ms: u64) -> Response {
    shared.streams_started.fetch_add(1, Ordering::SeqCst);
    let mut guard = StreamGuard {
        shared: shared.clone(),
        finished: false,
    };
    let stream = async_stream::stream! {
        for (i, event) in events.into_iter().enumerate() {
            if i > 0 && delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            }
            yield Ok::<Bytes, Infallible>(Bytes::from(event));
        }
        guard.finished = true;
        drop(guard);
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .expect("sse response")
}

/// The OpenAI-compatible wire format.
mod openai {
    use super::*;

    /// An OpenAI error response.
    fn error(status: StatusCode, message: &str, kind: &str, code: Value) -> Response {
        json_response(
            status,
            json!({ "error": { "message": message, "type": kind, "param": null, "code": code } }),
        )
    }

    /// The response for a failure behaviour, or `None` for the streaming ones.
    fn failure(behaviour: &Behaviour) -> Option<Response> {
        Some(match behaviour {
            Behaviour::RateLimited { retry_after } => {
                let mut response = error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Rate limit reached for requests",
                    "requests",
                    json!("rate_limit_exceeded"),
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, (*retry_after).into());
                response
            }
            Behaviour::Unavailable => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "The server is overloaded or not ready yet.",
                "server_error",
                Value::Null,
            ),
            Behaviour::Rejected { message } => {
                error(StatusCode::BAD_REQUEST, message, "invalid_request_error", Value::Null)
            }
            Behaviour::Unauthorized => unauthorized(),
            _ => return None,
        })
    }

    /// The answer to a bad key.
    fn unauthorized() -> Response {
        error(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided.",
            "invalid_request_error",
            json!("invalid_api_key"),
        )
    }

    /// Routes one request.
    pub(super) fn handle(
        shared: &Arc<Shared>,
        method: &Method,
        request: &RecordedRequest,
        behaviour: Behaviour,
    ) -> Response {
        if let Some(key) = &shared.api_key {
            if request.bearer() != Some(key.as_str()) {
                return unauthorized();
            }
        }
        match (method.as_str(), request.path.as_str()) {
            ("POST", "/v1/chat/completions") => {
                failure(&behaviour).unwrap_or_else(|| chat(shared, &request.body, behaviour))
            }
            ("POST", "/v1/embeddings") => failure(&behaviour).unwrap_or_else(|| embeddings(&request.body)),
            ("GET", "/v1/models") => json_response(
                StatusCode::OK,
                json!({ "object": "list",
                        "data": [{ "id": FAKE_MODEL, "object": "model", "owned_by": "fake" }] }),
            ),
            _ => error(
                StatusCode::NOT_FOUND,
                "Unknown endpoint",
                "invalid_request_error",
                Value::Null,
            ),
        }
    }

    /// One `chat.completion.chunk` frame.
    fn chunk(model: &str, delta: Value, finish_reason: Option<&str>) -> String {
        let chunk = json!({
            "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": model,
            "choices": [{ "index": 0, "delta": delta, "logprobs": null,
                          "finish_reason": finish_reason }],
        });
        format!("data: {chunk}\n\n")
    }

    /// A streamed chat completion.
    fn chat(shared: &Arc<Shared>, body: &Value, behaviour: Behaviour) -> Response {
        let Some(model) = body["model"].as_str() else {
            return error(
                StatusCode::BAD_REQUEST,
                "model is required",
                "invalid_request_error",
                Value::Null,
            );
        };
        if body["messages"].as_array().is_none_or(|m| m.is_empty()) {
            return error(
                StatusCode::BAD_REQUEST,
                "messages must be a non-empty array",
                "invalid_request_error",
                Value::Null,
            );
        }
        if body["stream"] != json!(true) {
            return error(
                StatusCode::BAD_REQUEST,
                "this fake only streams",
                "invalid_request_error",
                Value::Null,
            );
        }
        let wants_usage = body["stream_options"]["include_usage"] == json!(true);
        let (chunks, delay_ms, ending) = match behaviour {
            Behaviour::Reply { chunks, delay_ms } => (chunks, delay_ms, End::Finish("stop".into(), true)),
            Behaviour::ReplyWithoutUsage { chunks, delay_ms } => (chunks, delay_ms, End::Finish("stop".into(), false)),
            Behaviour::Finish { chunks, finish_reason } => (chunks, 0, End::Finish(finish_reason, true)),
            Behaviour::PromptBlocked => (Vec::new(), 0, End::Finish("content_filter".into(), true)),
            Behaviour::CutShort { chunks, delay_ms } => (chunks, delay_ms, End::Cut),
            Behaviour::StreamError { chunks, message } => (chunks, 0, End::Error(message)),
            _ => unreachable!("failures are answered before"),
        };
        let mut events = vec![chunk(model, json!({ "role": "assistant", "content": "" }), None)];
        for text in &chunks {
            events.push(chunk(model, json!({ "content": text }), None));
        }
        match ending {
            End::Finish(reason, usage) => {
                events.push(chunk(model, json!({}), Some(&reason)));
                if usage && wants_usage {
                    let completion = chunks.len() as u32;
                    let usage = json!({
                        "id": "chatcmpl-fake", "object": "chat.completion.chunk",
                        "created": 1_700_000_000, "model": model, "choices": [],
                        "usage": { "prompt_tokens": FAKE_PROMPT_TOKENS,
                                   "completion_tokens": completion,
                                   "total_tokens": FAKE_PROMPT_TOKENS + completion },
                    });
                    events.push(format!("data: {usage}\n\n"));
                }
                events.push("data: [DONE]\n\n".to_string());
            }
            End::Cut => {}
            End::Error(message) => {
                // As OpenRouter reports an error after the stream began.
                let error = json!({
                    "id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": model,
                    "error": { "code": 502, "message": message },
                    "choices": [{ "index": 0, "delta": { "content": "" },
                                  "finish_reason": "error" }],
                });
                events.push(format!("data: {error}\n\n"));
            }
        }
        sse_response(shared, events, delay_ms)
    }

    /// An embeddings answer, its items in reverse order (the index says where each belongs).
    fn embeddings(body: &Value) -> Response {
        let model = body["model"].as_str().unwrap_or_default();
        let inputs: Vec<String> = match &body["input"] {
            Value::String(text) => vec![text.clone()],
            Value::Array(items) if items.iter().all(Value::is_string) => {
                items.iter().filter_map(|i| i.as_str().map(str::to_string)).collect()
            }
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "input must be a string or an array of strings",
                    "invalid_request_error",
                    Value::Null,
                )
            }
        };
        let data: Vec<Value> = inputs
            .iter()
            .enumerate()
            .rev()
            .map(|(index, text)| json!({ "object": "embedding", "index": index, "embedding": fake_embedding(text) }))
            .collect();
        let tokens: usize = inputs.iter().map(|t| t.split_whitespace().count()).sum();
        json_response(
            StatusCode::OK,
            json!({ "object": "list", "data": data, "model": model,
                    "usage": { "prompt_tokens": tokens, "total_tokens": tokens } }),
        )
    }

    /// How a fake stream ends.
    enum End {
        /// A finish chunk with this reason, with usage when the flag is set, then `[DONE]`.
        Finish(String, bool),
        /// Nothing: the body just ends.
        Cut,
        /// An error object in the stream.
        Error(String),
    }
}

/// The Gemini wire format.
mod gemini {
    use super::*;

    /// A Gemini error response.
    fn error(status: StatusCode, grpc_status: &str, message: &str, details: Value) -> Response {
        let mut error = json!({ "code": status.as_u16(), "message": message, "status": grpc_status });
        if !details.is_null() {
            error["details"] = details;
        }
        json_response(status, json!({ "error": error }))
    }

    /// What Google answers to a bad key.
    fn bad_key() -> Response {
        error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
            json!([{ "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                     "reason": "API_KEY_INVALID", "domain": "googleapis.com" }]),
        )
    }

    /// The response for a failure behaviour, or `None` for the streaming ones.
    fn failure(behaviour: &Behaviour) -> Option<Response> {
        Some(match behaviour {
            Behaviour::RateLimited { retry_after } => error(
                StatusCode::TOO_MANY_REQUESTS,
                "RESOURCE_EXHAUSTED",
                "Resource has been exhausted (e.g. check quota).",
                json!([{ "@type": "type.googleapis.com/google.rpc.RetryInfo",
                         "retryDelay": format!("{retry_after}s") }]),
            ),
            Behaviour::Unavailable => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "The model is overloaded. Please try again later.",
                Value::Null,
            ),
            Behaviour::Rejected { message } => error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message, Value::Null),
            Behaviour::Unauthorized => bad_key(),
            _ => return None,
        })
    }

    /// Routes one request.
    pub(super) fn handle(
        shared: &Arc<Shared>,
        method: &Method,
        request: &RecordedRequest,
        behaviour: Behaviour,
    ) -> Response {
        if let Some(key) = &shared.api_key {
            if request.goog_api_key() != Some(key.as_str()) {
                return bad_key();
            }
        }
        if method == Method::GET && request.path == "/v1beta/models" {
            return json_response(
                StatusCode::OK,
                json!({ "models": [{ "name": format!("models/{FAKE_MODEL}"),
                                     "supportedGenerationMethods": ["generateContent"] }] }),
            );
        }
        let target = request
            .path
            .strip_prefix("/v1beta/models/")
            .filter(|_| method == Method::POST);
        let Some((model, action)) = target.and_then(|t| t.split_once(':')) else {
            return error(StatusCode::NOT_FOUND, "NOT_FOUND", "Unknown endpoint", Value::Null);
        };
        match action {
            "streamGenerateContent" => {
                if request.query.as_deref() != Some("alt=sse") {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "INVALID_ARGUMENT",
                        "this fake only speaks alt=sse",
                        Value::Null,
                    );
                }
                failure(&behaviour).unwrap_or_else(|| chat(shared, model, &request.body, behaviour))
            }
            "batchEmbedContents" => failure(&behaviour).unwrap_or_else(|| embeddings(model, &request.body)),
            _ => error(StatusCode::NOT_FOUND, "NOT_FOUND", "Unknown method", Value::Null),
        }
    }

    /// One `GenerateContentResponse` frame, with Google's CRLF line ends.
    fn frame(value: Value) -> String {
        format!("data: {value}\r\n\r\n")
    }

    /// The usage metadata after `completion` chunks.
    fn usage(completion: usize, with_usage: bool) -> Value {
        if !with_usage {
            return Value::Null;
        }
        let completion = completion as u32;
        json!({ "promptTokenCount": FAKE_PROMPT_TOKENS, "candidatesTokenCount": completion,
                "totalTokenCount": FAKE_PROMPT_TOKENS + completion })
    }

    /// One candidate chunk.
    fn candidate(model: &str, text: &str, finish: Option<&str>, usage: Value) -> String {
        let mut candidate = json!({ "content": { "parts": [{ "text": text }], "role": "model" },
                                    "index": 0 });
        if let Some(finish) = finish {
            candidate["finishReason"] = json!(finish);
        }
        let mut chunk = json!({ "candidates": [candidate], "modelVersion": model });
        if !usage.is_null() {
            chunk["usageMetadata"] = usage;
        }
        frame(chunk)
    }

    /// A streamed `generateContent`.
    fn chat(shared: &Arc<Shared>, model: &str, body: &Value, behaviour: Behaviour) -> Response {
        if body["contents"].as_array().is_none_or(|c| c.is_empty()) {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                "* GenerateContentRequest.contents: contents is not specified",
                Value::Null,
            );
        }
        let (chunks, delay_ms, finish, with_usage) = match behaviour {
            Behaviour::Reply { chunks, delay_ms } => (chunks, delay_ms, Some("STOP".to_string()), true),
            Behaviour::ReplyWithoutUsage { chunks, delay_ms } => (chunks, delay_ms, Some("STOP".to_string()), false),
            Behaviour::Finish { chunks, finish_reason } => (chunks, 0, Some(finish_reason), true),
            Behaviour::PromptBlocked => {
                let blocked = json!({
                    "promptFeedback": { "blockReason": "SAFETY" },
                    "usageMetadata": { "promptTokenCount": FAKE_PROMPT_TOKENS,
                                       "totalTokenCount": FAKE_PROMPT_TOKENS },
                    "modelVersion": model,
                });
                return sse_response(shared, vec![frame(blocked)], 0);
            }
            Behaviour::CutShort { chunks, delay_ms } => (chunks, delay_ms, None, true),
            Behaviour::StreamError { chunks, message } => {
                let mut events: Vec<String> = chunks
                    .iter()
                    .enumerate()
                    .map(|(i, text)| candidate(model, text, None, usage(i + 1, true)))
                    .collect();
                events.push(frame(json!({ "error": { "code": 500, "message": message,
                                                     "status": "INTERNAL" } })));
                return sse_response(shared, events, 0);
            }
            _ => unreachable!("failures are answered before"),
        };
        let mut events = Vec::new();
        let count = chunks.len();
        for (i, text) in chunks.iter().enumerate() {
            // As Gemini does, the finish reason rides on the last text chunk.
            let last = i + 1 == count;
            let finish = if last { finish.as_deref() } else { None };
            events.push(candidate(model, text, finish, usage(i + 1, with_usage)));
        }
        if count == 0 {
            if let Some(finish) = finish.as_deref() {
                events.push(candidate(model, "", Some(finish), usage(0, with_usage)));
            }
        }
        sse_response(shared, events, delay_ms)
    }

    /// A `batchEmbedContents` answer; each request must name `models/{model}` as Google checks.
    fn embeddings(model: &str, body: &Value) -> Response {
        let Some(requests) = body["requests"].as_array() else {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                "requests is required",
                Value::Null,
            );
        };
        let expected = format!("models/{model}");
        let mut embeddings = Vec::new();
        for (i, request) in requests.iter().enumerate() {
            if request["model"].as_str() != Some(expected.as_str()) {
                let message = format!("requests[{i}].model must be {expected}");
                return error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", &message, Value::Null);
            }
            let text: String = request["content"]["parts"]
                .as_array()
                .map(|parts| parts.iter().filter_map(|p| p["text"].as_str()).collect())
                .unwrap_or_default();
            embeddings.push(json!({ "values": fake_embedding(&text) }));
        }
        json_response(StatusCode::OK, json!({ "embeddings": embeddings }))
    }
}
