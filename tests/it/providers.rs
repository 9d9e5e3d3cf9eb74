//! The remote providers against the fake servers, over real HTTP: what they send, how they read
//! the streams, how they map failures.

use std::time::{Duration, Instant};

use enclave::providers::gemini::GeminiProvider;
use enclave::providers::openai::OpenAiProvider;
use enclave::providers::{
    ChatEvent, ChatMessage, ChatProvider, ChatRequest, ChatStream, FinishReason, GenerationParams, ProviderError, Role,
    Usage,
};
use futures::StreamExt;
use serde_json::json;

use crate::fakes::{fake_embedding, Behaviour, FakeGemini, FakeOpenAi, FAKE_EMBEDDING_DIM, FAKE_PROMPT_TOKENS};

/// No test waits longer than this for a whole stream.
const STREAM_LIMIT: Duration = Duration::from_secs(20);

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("http client")
}

fn openai(base_url: &str, key: Option<&str>) -> OpenAiProvider {
    OpenAiProvider::new(base_url, key.map(str::to_string), http())
}

fn gemini(base_url: &str, key: Option<&str>) -> GeminiProvider {
    GeminiProvider::new(base_url, key.map(str::to_string), http())
}

fn message(role: Role, content: &str) -> ChatMessage {
    ChatMessage {
        role,
        content: content.to_string(),
        images: Vec::new(),
    }
}

fn request(model: &str) -> ChatRequest {
    ChatRequest {
        model: model.to_string(),
        messages: vec![
            message(Role::System, "You are terse."),
            message(Role::User, "Say hello."),
        ],
        params: GenerationParams::default(),
        user: None,
    }
}

/// Every item of a stream, within `STREAM_LIMIT`.
async fn collect(stream: ChatStream) -> Vec<Result<ChatEvent, ProviderError>> {
    tokio::time::timeout(STREAM_LIMIT, stream.collect::<Vec<_>>())
        .await
        .expect("the stream should end")
}

/// The tokens of a stream's items, and its last item.
fn split(items: Vec<Result<ChatEvent, ProviderError>>) -> (Vec<String>, Result<ChatEvent, ProviderError>) {
    let mut items = items;
    let last = items.pop().expect("at least one item");
    let tokens = items
        .into_iter()
        .map(|item| match item {
            Ok(ChatEvent::Token(token)) => token,
            other => panic!("expected a token before the end, got {other:?}"),
        })
        .collect();
    (tokens, last)
}

/// The error that `chat_stream` returns before any event.
async fn start_error(provider: &dyn ChatProvider, request: ChatRequest) -> ProviderError {
    match provider.chat_stream(request).await {
        Ok(_) => panic!("expected an error before the stream"),
        Err(error) => error,
    }
}

/// The whole answer of a stream that must succeed.
async fn answer(provider: &dyn ChatProvider, request: ChatRequest) -> (Vec<String>, FinishReason, Usage) {
    let stream = provider.chat_stream(request).await.expect("stream starts");
    let (tokens, last) = split(collect(stream).await);
    match last {
        Ok(ChatEvent::Done { finish_reason, usage }) => (tokens, finish_reason, usage),
        other => panic!("expected Done at the end, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// OpenAI-compatible
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn openai_streams_tokens_in_order_with_the_servers_usage() {
    let fake = FakeOpenAi::start(Behaviour::reply(&["Hel", "lo", ", world"]));
    let provider = openai(&fake.base_url, Some("sk-test"));
    let mut request = request("gpt-test");
    request.params.temperature = Some(0.25);
    request.params.max_tokens = Some(64);

    let (tokens, finish, usage) = answer(&provider, request).await;
    assert_eq!(tokens, ["Hel", "lo", ", world"]);
    assert_eq!(finish, FinishReason::Stop);
    assert_eq!(
        usage,
        Usage {
            prompt_tokens: FAKE_PROMPT_TOKENS,
            completion_tokens: 3
        }
    );

    let sent = fake.last_request().expect("a request");
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.bearer(), Some("sk-test"));
    assert_eq!(sent.body["model"], "gpt-test");
    assert_eq!(sent.body["stream"], true);
    assert_eq!(sent.body["stream_options"], json!({ "include_usage": true }));
    assert_eq!(
        sent.body["messages"],
        json!([
            { "role": "system", "content": "You are terse." },
            { "role": "user", "content": "Say hello." },
        ])
    );
    assert_eq!(sent.body["temperature"], 0.25);
    assert_eq!(sent.body["max_tokens"], 64);
    for absent in ["top_p", "stop", "seed"] {
        assert!(sent.body.get(absent).is_none(), "{absent} was sent unset");
    }
    assert_eq!(fake.streams_completed(), 1);
}

#[tokio::test]
async fn openai_base_url_may_end_with_a_slash_and_the_key_is_optional() {
    let fake = FakeOpenAi::start(Behaviour::reply(&["ok"]));
    let provider = openai(&format!("{}/", fake.base_url), None);
    let (tokens, _, _) = answer(&provider, request("m")).await;
    assert_eq!(tokens, ["ok"]);
    let sent = fake.last_request().unwrap();
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.header("authorization"), None);
}

#[tokio::test]
async fn openai_usage_is_estimated_when_the_server_sends_none() {
    let fake = FakeOpenAi::start(Behaviour::ReplyWithoutUsage {
        chunks: vec!["one two ".into(), "three".into()],
        delay_ms: 0,
    });
    let provider = openai(&fake.base_url, None);
    let request = request("m");
    let expected_prompt: usize = request
        .messages
        .iter()
        .map(|m| enclave::generation::estimate_tokens(&m.content))
        .sum();
    let (tokens, finish, usage) = answer(&provider, request).await;
    assert_eq!(tokens.concat(), "one two three");
    assert_eq!(finish, FinishReason::Stop);
    assert_eq!(
        usage,
        Usage {
            prompt_tokens: expected_prompt as u32,
            completion_tokens: enclave::generation::estimate_tokens("one two three") as u32,
        }
    );
}

#[tokio::test]
async fn openai_finish_reasons_are_mapped() {
    let fake = FakeOpenAi::start(Behaviour::Finish {
        chunks: vec!["cut".into()],
        finish_reason: "length".into(),
    });
    let provider = openai(&fake.base_url, None);
    let (_, finish, _) = answer(&provider, request("m")).await;
    assert_eq!(finish, FinishReason::Length);

    fake.set_behaviour(Behaviour::PromptBlocked);
    let (tokens, finish, _) = answer(&provider, request("m")).await;
    assert!(tokens.is_empty());
    assert_eq!(finish, FinishReason::ContentFilter);
}

#[tokio::test]
async fn openai_http_failures_are_mapped_before_the_stream() {
    let fake = FakeOpenAi::start(Behaviour::RateLimited { retry_after: 7 });
    let provider = openai(&fake.base_url, Some("k"));

    let error = start_error(&provider, request("m")).await;
    assert!(
        matches!(error, ProviderError::RateLimited { retry_after: Some(7) }),
        "{error:?}"
    );
    assert!(error.should_fall_back());

    fake.set_behaviour(Behaviour::Unavailable);
    let error = start_error(&provider, request("m")).await;
    assert!(matches!(error, ProviderError::Unavailable(_)), "{error:?}");

    fake.set_behaviour(Behaviour::rejected("context_length_exceeded: too long"));
    let error = start_error(&provider, request("m")).await;
    match &error {
        ProviderError::Rejected(message) => {
            assert_eq!(message, "context_length_exceeded: too long")
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert!(!error.should_fall_back());

    fake.set_behaviour(Behaviour::Unauthorized);
    let error = start_error(&provider, request("m")).await;
    assert!(matches!(error, ProviderError::Unauthorized(_)), "{error:?}");
}

#[tokio::test]
async fn openai_wrong_key_is_unauthorized() {
    let fake = FakeOpenAi::start_with_key(Behaviour::reply(&["x"]), "right");
    let error = start_error(&openai(&fake.base_url, Some("wrong")), request("m")).await;
    assert!(
        matches!(error, ProviderError::Unauthorized(ref m) if m.contains("API key")),
        "{error:?}"
    );
    let (tokens, _, _) = answer(&openai(&fake.base_url, Some("right")), request("m")).await;
    assert_eq!(tokens, ["x"]);
}

#[tokio::test]
async fn openai_stream_cut_short_ends_with_an_error() {
    let fake = FakeOpenAi::start(Behaviour::cut_short(&["par", "tial"]));
    let provider = openai(&fake.base_url, None);
    let stream = provider.chat_stream(request("m")).await.expect("stream starts");
    let (tokens, last) = split(collect(stream).await);
    assert_eq!(tokens, ["par", "tial"]);
    match last {
        Err(ProviderError::Unavailable(message)) => assert_eq!(message, "stream ended early"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn openai_error_inside_the_stream_ends_it() {
    let fake = FakeOpenAi::start(Behaviour::StreamError {
        chunks: vec!["a".into()],
        message: "upstream model crashed".into(),
    });
    let provider = openai(&fake.base_url, None);
    let stream = provider.chat_stream(request("m")).await.expect("stream starts");
    let (tokens, last) = split(collect(stream).await);
    assert_eq!(tokens, ["a"]);
    match last {
        Err(ProviderError::Other(message)) => assert_eq!(message, "upstream model crashed"),
        other => panic!("expected Other, got {other:?}"),
    }
}

#[tokio::test]
async fn openai_tokens_arrive_as_they_are_sent() {
    let fake = FakeOpenAi::start(Behaviour::long_reply(5, 400));
    let provider = openai(&fake.base_url, None);
    let started = Instant::now();
    let mut stream = provider.chat_stream(request("m")).await.expect("stream starts");
    let first = stream.next().await.expect("a first event").expect("a token");
    let first_after = started.elapsed();
    assert_eq!(first, ChatEvent::Token("t0 ".into()));
    let rest = collect(stream).await;
    let total = started.elapsed();
    assert!(matches!(rest.last(), Some(Ok(ChatEvent::Done { .. }))));
    assert!(
        total >= Duration::from_millis(1600),
        "the fake paces its chunks ({total:?})"
    );
    assert!(
        first_after < total / 2,
        "first token after {first_after:?} of {total:?}: buffered?"
    );
}

#[tokio::test]
async fn openai_dropping_the_stream_closes_the_upstream_request() {
    let fake = FakeOpenAi::start(Behaviour::long_reply(50, 100));
    let provider = openai(&fake.base_url, None);
    let mut stream = provider.chat_stream(request("m")).await.expect("stream starts");
    assert!(matches!(stream.next().await, Some(Ok(ChatEvent::Token(_)))));
    drop(stream);
    assert!(
        fake.wait_for_dropped_streams(1, Duration::from_secs(5)).await,
        "the fake should see its client go away"
    );
    assert_eq!(fake.streams_completed(), 0);
}

#[tokio::test]
async fn openai_silent_stream_times_out() {
    let fake = FakeOpenAi::start(Behaviour::slow_reply(&["a", "b"], 3_000));
    let provider = openai(&fake.base_url, None).with_idle_timeout(Duration::from_millis(300));
    let stream = provider.chat_stream(request("m")).await.expect("stream starts");
    let items = collect(stream).await;
    assert!(
        matches!(items.last(), Some(Err(ProviderError::Unavailable(_)))),
        "{items:?}"
    );
}

#[tokio::test]
async fn openai_unreachable_server_is_unavailable() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let provider = openai(&format!("http://127.0.0.1:{port}/v1"), None);
    let error = start_error(&provider, request("m")).await;
    assert!(matches!(error, ProviderError::Unavailable(_)), "{error:?}");
    let error = provider.embed("e", vec!["x".into()]).await.unwrap_err();
    assert!(matches!(error, ProviderError::Unavailable(_)), "{error:?}");
}

#[tokio::test]
async fn openai_embeddings_round_trip_in_input_order() {
    let fake = FakeOpenAi::start(Behaviour::reply(&[]));
    let provider = openai(&fake.base_url, Some("k"));
    let inputs = vec![
        "the cat sat".to_string(),
        "a dog ran".to_string(),
        "the cat ran".to_string(),
    ];
    let vectors = provider.embed("embed-test", inputs.clone()).await.expect("embeddings");
    assert_eq!(vectors.len(), 3);
    for (vector, input) in vectors.iter().zip(&inputs) {
        assert_eq!(vector.len(), FAKE_EMBEDDING_DIM);
        assert_eq!(vector, &fake_embedding(input));
    }
    let sent = fake.last_request().unwrap();
    assert_eq!(sent.path, "/v1/embeddings");
    assert_eq!(sent.bearer(), Some("k"));
    assert_eq!(sent.body, json!({ "model": "embed-test", "input": inputs }));

    assert!(provider.embed("embed-test", Vec::new()).await.unwrap().is_empty());

    fake.set_behaviour(Behaviour::RateLimited { retry_after: 2 });
    let error = provider.embed("embed-test", vec!["x".into()]).await.unwrap_err();
    assert!(
        matches!(error, ProviderError::RateLimited { retry_after: Some(2) }),
        "{error:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Gemini
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn gemini_streams_tokens_in_order_with_the_servers_usage() {
    let fake = FakeGemini::start(Behaviour::reply(&["Bon", "jour", "!"]));
    let provider = gemini(&fake.base_url, Some("goog-key"));
    let mut request = request("gemini-test");
    request.messages.push(message(Role::Assistant, "Hello."));
    request.messages.push(message(Role::User, "Again,"));
    request.messages.push(message(Role::User, "in French."));
    request.params.max_tokens = Some(100);
    request.params.stop = vec!["END".into()];

    let (tokens, finish, usage) = answer(&provider, request).await;
    assert_eq!(tokens, ["Bon", "jour", "!"]);
    assert_eq!(finish, FinishReason::Stop);
    assert_eq!(
        usage,
        Usage {
            prompt_tokens: FAKE_PROMPT_TOKENS,
            completion_tokens: 3
        }
    );

    let sent = fake.last_request().expect("a request");
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.path, "/v1beta/models/gemini-test:streamGenerateContent");
    assert_eq!(sent.query.as_deref(), Some("alt=sse"));
    assert_eq!(sent.goog_api_key(), Some("goog-key"));
    assert_eq!(
        sent.header("authorization"),
        None,
        "the key goes in x-goog-api-key only"
    );
    assert_eq!(
        sent.body["systemInstruction"],
        json!({ "parts": [{ "text": "You are terse." }] })
    );
    assert_eq!(
        sent.body["contents"],
        json!([
            { "role": "user", "parts": [{ "text": "Say hello." }] },
            { "role": "model", "parts": [{ "text": "Hello." }] },
            { "role": "user", "parts": [{ "text": "Again," }, { "text": "in French." }] },
        ])
    );
    assert_eq!(
        sent.body["generationConfig"],
        json!({ "maxOutputTokens": 100, "stopSequences": ["END"] })
    );
    assert_eq!(fake.streams_completed(), 1);
}

#[tokio::test]
async fn gemini_default_base_url_and_model_prefix() {
    assert_eq!(
        enclave::providers::gemini::DEFAULT_BASE_URL,
        "https://generativelanguage.googleapis.com/v1beta"
    );
    let fake = FakeGemini::start(Behaviour::reply(&["ok"]));
    let provider = gemini(&format!("{}/", fake.base_url), None);
    let (tokens, _, _) = answer(&provider, request("models/gemini-test")).await;
    assert_eq!(tokens, ["ok"]);
    let sent = fake.last_request().unwrap();
    assert_eq!(sent.path, "/v1beta/models/gemini-test:streamGenerateContent");
    assert_eq!(sent.goog_api_key(), None);
    assert!(sent.body.get("generationConfig").is_none());
}

#[tokio::test]
async fn gemini_finish_reasons_and_blocks_are_mapped() {
    let fake = FakeGemini::start(Behaviour::Finish {
        chunks: vec!["long".into()],
        finish_reason: "MAX_TOKENS".into(),
    });
    let provider = gemini(&fake.base_url, None);
    let (_, finish, _) = answer(&provider, request("g")).await;
    assert_eq!(finish, FinishReason::Length);

    fake.set_behaviour(Behaviour::Finish {
        chunks: vec![],
        finish_reason: "SAFETY".into(),
    });
    let (tokens, finish, _) = answer(&provider, request("g")).await;
    assert!(tokens.is_empty());
    assert_eq!(finish, FinishReason::ContentFilter);

    fake.set_behaviour(Behaviour::PromptBlocked);
    let (tokens, finish, usage) = answer(&provider, request("g")).await;
    assert!(tokens.is_empty());
    assert_eq!(finish, FinishReason::ContentFilter);
    assert_eq!(
        usage,
        Usage {
            prompt_tokens: FAKE_PROMPT_TOKENS,
            completion_tokens: 0
        }
    );
}

#[tokio::test]
async fn gemini_usage_is_estimated_when_the_server_sends_none() {
    let fake = FakeGemini::start(Behaviour::ReplyWithoutUsage {
        chunks: vec!["un deux ".into(), "trois".into()],
        delay_ms: 0,
    });
    let (_, _, usage) = answer(&gemini(&fake.base_url, None), request("g")).await;
    assert_eq!(
        usage.completion_tokens,
        enclave::generation::estimate_tokens("un deux trois") as u32
    );
    assert!(usage.prompt_tokens > 0);
}

#[tokio::test]
async fn gemini_http_failures_are_mapped_before_the_stream() {
    let fake = FakeGemini::start(Behaviour::RateLimited { retry_after: 9 });
    let provider = gemini(&fake.base_url, Some("k"));

    let error = start_error(&provider, request("g")).await;
    assert!(
        matches!(error, ProviderError::RateLimited { retry_after: Some(9) }),
        "{error:?}"
    );

    fake.set_behaviour(Behaviour::Unavailable);
    let error = start_error(&provider, request("g")).await;
    assert!(matches!(error, ProviderError::Unavailable(_)), "{error:?}");

    fake.set_behaviour(Behaviour::rejected("Invalid value at 'contents[0].role'"));
    let error = start_error(&provider, request("g")).await;
    match &error {
        ProviderError::Rejected(message) => {
            assert_eq!(message, "Invalid value at 'contents[0].role'")
        }
        other => panic!("expected Rejected, got {other:?}"),
    }

    fake.set_behaviour(Behaviour::Unauthorized);
    let error = start_error(&provider, request("g")).await;
    assert!(matches!(error, ProviderError::Unauthorized(_)), "{error:?}");
}

#[tokio::test]
async fn gemini_wrong_key_is_unauthorized() {
    let fake = FakeGemini::start_with_key(Behaviour::reply(&["x"]), "right");
    let error = start_error(&gemini(&fake.base_url, Some("wrong")), request("g")).await;
    assert!(matches!(error, ProviderError::Unauthorized(_)), "{error:?}");
    let (tokens, _, _) = answer(&gemini(&fake.base_url, Some("right")), request("g")).await;
    assert_eq!(tokens, ["x"]);
}

#[tokio::test]
async fn gemini_stream_cut_short_ends_with_an_error() {
    let fake = FakeGemini::start(Behaviour::cut_short(&["par", "tial"]));
    let provider = gemini(&fake.base_url, None);
    let stream = provider.chat_stream(request("g")).await.expect("stream starts");
    let (tokens, last) = split(collect(stream).await);
    assert_eq!(tokens, ["par", "tial"]);
    match last {
        Err(ProviderError::Unavailable(message)) => assert_eq!(message, "stream ended early"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn gemini_error_inside_the_stream_ends_it() {
    let fake = FakeGemini::start(Behaviour::StreamError {
        chunks: vec!["a".into()],
        message: "internal error".into(),
    });
    let provider = gemini(&fake.base_url, None);
    let stream = provider.chat_stream(request("g")).await.expect("stream starts");
    let (tokens, last) = split(collect(stream).await);
    assert_eq!(tokens, ["a"]);
    match last {
        Err(ProviderError::Other(message)) => assert_eq!(message, "internal error"),
        other => panic!("expected Other, got {other:?}"),
    }
}

#[tokio::test]
async fn gemini_dropping_the_stream_closes_the_upstream_request() {
    let fake = FakeGemini::start(Behaviour::long_reply(50, 100));
    let provider = gemini(&fake.base_url, None);
    let mut stream = provider.chat_stream(request("g")).await.expect("stream starts");
    assert!(matches!(stream.next().await, Some(Ok(ChatEvent::Token(_)))));
    drop(stream);
    assert!(fake.wait_for_dropped_streams(1, Duration::from_secs(5)).await);
}

#[tokio::test]
async fn gemini_embeddings_round_trip_in_batches() {
    let fake = FakeGemini::start(Behaviour::reply(&[]));
    let provider = gemini(&fake.base_url, Some("k"));
    // More than one batch of 100.
    let inputs: Vec<String> = (0..150).map(|i| format!("document number {i}")).collect();
    let vectors = provider
        .embed("text-embedding-test", inputs.clone())
        .await
        .expect("embeddings");
    assert_eq!(vectors.len(), inputs.len());
    for (vector, input) in vectors.iter().zip(&inputs) {
        assert_eq!(vector, &fake_embedding(input));
    }
    let sent = fake.requests();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].path, "/v1beta/models/text-embedding-test:batchEmbedContents");
    assert_eq!(sent[0].goog_api_key(), Some("k"));
    assert_eq!(sent[0].body["requests"].as_array().unwrap().len(), 100);
    assert_eq!(
        sent[0].body["requests"][0],
        json!({ "model": "models/text-embedding-test",
                "content": { "parts": [{ "text": "document number 0" }] } })
    );
    assert_eq!(sent[1].body["requests"].as_array().unwrap().len(), 50);

    fake.set_behaviour(Behaviour::Unavailable);
    let error = provider
        .embed("text-embedding-test", vec!["x".into()])
        .await
        .unwrap_err();
    assert!(matches!(error, ProviderError::Unavailable(_)), "{error:?}");
}

// ---------------------------------------------------------------------------------------------
// The fakes themselves (the server tests lean on them)
// ---------------------------------------------------------------------------------------------

#[test]
fn fake_embeddings_are_deterministic_unit_vectors_that_reward_shared_words() {
    let cat = fake_embedding("The cat sat on the mat");
    assert_eq!(cat, fake_embedding("the CAT sat on the mat!"));
    let norm: f32 = cat.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5);
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let close = fake_embedding("a cat on a mat");
    let far = fake_embedding("quarterly revenue forecast");
    assert!(dot(&cat, &close) > dot(&cat, &far));
}

#[test]
fn fakes_start_outside_a_runtime_and_stop_on_drop() {
    let fake = FakeOpenAi::start(Behaviour::reply(&["x"]));
    let addr = fake.addr;
    assert!(fake.base_url.ends_with("/v1"));
    assert!(std::net::TcpStream::connect(addr).is_ok());
    drop(fake);
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < deadline, "the fake should stop listening");
        std::thread::sleep(Duration::from_millis(20));
    }
}
