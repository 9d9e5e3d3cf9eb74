//! Streaming chat over real HTTP: the tiny local model and fake remote providers.

use std::time::Duration;

use serde_json::json;

use crate::common::{eventually, text_of, Client, Options, Remote, TestServer, LOCAL_MODEL};
use crate::fakes::{Behaviour, FakeGemini, FakeOpenAi, FakeServer, RecordedRequest, FAKE_PROMPT_TOKENS};

/// The requests that asked for an answer (not for a conversation title), oldest first.
fn answer_requests(fake: &FakeServer) -> Vec<RecordedRequest> {
    fake.chat_requests()
        .into_iter()
        .filter(|r| !r.body.to_string().contains("You write short titles"))
        .collect()
}

/// The newest answer request.
fn last_answer_request(fake: &FakeServer) -> RecordedRequest {
    answer_requests(fake).pop().expect("an answer request")
}

fn roles_of(request: &RecordedRequest) -> Vec<String> {
    request.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap().to_string())
        .collect()
}

fn remote(id: &'static str, kind: &'static str, fake: &FakeServer, fallback: Vec<&'static str>) -> Remote {
    Remote {
        id,
        kind,
        base_url: fake.base_url.clone(),
        fallback,
        capabilities: vec![],
    }
}

#[tokio::test]
async fn local_model_streams_an_answer_event_by_event() {
    let server = TestServer::start();
    let mut c = Client::new(&server);
    c.signup("ivan").await;
    let id = c.new_conversation(json!({"settings": {"max_tokens": 24}})).await;

    let mut stream = c
        .stream(
            &format!("/api/v1/conversations/{id}/messages"),
            json!({"content": "Hello there"}),
        )
        .await;
    assert_eq!(stream.status, 200);
    assert_eq!(stream.headers["content-type"], "text/event-stream");
    let assistant_id = stream.headers["x-assistant-message-id"].to_str().unwrap().to_string();
    let user_id = stream.headers["x-user-message-id"].to_str().unwrap().to_string();
    let events = stream.collect().await;
    let (last, tokens) = events.split_last().expect("events");
    assert!(!tokens.is_empty(), "at least one token");
    for e in tokens {
        assert_eq!(e.event, "token");
        assert!(e.data["content"].is_string());
        assert!(e.data["finish_reason"].is_null());
        assert_eq!(
            e.data.as_object().unwrap().len(),
            2,
            "token data is exactly content + finish_reason"
        );
    }
    assert_eq!(last.event, "done", "{last:?}");
    let finish = last.data["finish_reason"].as_str().unwrap();
    assert!(finish == "stop" || finish == "length", "{finish}");
    let usage = &last.data["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 5);
    let completion = usage["completion_tokens"].as_u64().unwrap();
    assert!((1..=24).contains(&completion), "max_tokens respected: {completion}");
    // The exact wire format of docs/ARCHITECTURE.md.
    assert!(
        stream.raw.starts_with("event: token\ndata: {"),
        "{:?}",
        &stream.raw[..stream.raw.len().min(80)]
    );

    // Stored: the user message and the answer with its usage.
    let conv = c.get(&format!("/api/v1/conversations/{id}")).await;
    let messages = conv.body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["id"], user_id.as_str());
    assert_eq!(messages[0]["role"], "user");
    assert_eq!(messages[0]["content"], "Hello there");
    assert_eq!(messages[1]["id"], assistant_id.as_str());
    assert_eq!(messages[1]["role"], "assistant");
    assert_eq!(messages[1]["content"], text_of(tokens).as_str());
    assert_eq!(messages[1]["status"], "complete");
    assert_eq!(messages[1]["model"], LOCAL_MODEL);
    assert_eq!(messages[1]["usage"]["completion_tokens"], completion);
    assert_eq!(conv.body["active_leaf_id"], assistant_id.as_str());
    // The title is no longer the placeholder.
    assert_ne!(conv.body["title"], "New chat");

    // Greedy (temperature 0) answers are reproducible.
    c.patch(
        &format!("/api/v1/conversations/{id}"),
        json!({"settings": {"temperature": 0.0, "max_tokens": 12}}),
    )
    .await;
    let a = c
        .new_conversation(json!({"settings": {"temperature": 0.0, "max_tokens": 12}}))
        .await;
    let b = c
        .new_conversation(json!({"settings": {"temperature": 0.0, "max_tokens": 12}}))
        .await;
    let mut sa = c
        .stream(
            &format!("/api/v1/conversations/{a}/messages"),
            json!({"content": "Same prompt"}),
        )
        .await;
    let mut sb = c
        .stream(
            &format!("/api/v1/conversations/{b}/messages"),
            json!({"content": "Same prompt"}),
        )
        .await;
    assert_eq!(text_of(&sa.collect().await), text_of(&sb.collect().await));

    // A prompt that can never fit the tiny model's 2048-token context.
    let long = "lorem ipsum ".repeat(4000);
    let too_long = c
        .stream(
            &format!("/api/v1/conversations/{id}/messages"),
            json!({"content": long}),
        )
        .await;
    assert_eq!(too_long.status, 422);
}

#[tokio::test]
async fn remote_providers_stream_and_receive_the_history() {
    let openai = FakeOpenAi::start(Behaviour::reply(&["Bon", "jour", "!"]));
    let gemini = FakeGemini::start(Behaviour::reply(&["Hal", "lo"]));
    let server = TestServer::start_with(Options {
        remotes: vec![
            remote("oa", "openai", &openai, vec![]),
            remote("gm", "gemini", &gemini, vec![]),
        ],
        ..Default::default()
    });
    let mut c = Client::new(&server);
    c.signup("judy").await;

    let id = c
        .new_conversation(json!({"model": "oa", "system_prompt": "Answer in French."}))
        .await;
    let mut s = c
        .stream(
            &format!("/api/v1/conversations/{id}/messages"),
            json!({"content": "Say hello"}),
        )
        .await;
    let events = s.collect().await;
    assert_eq!(text_of(&events), "Bonjour!");
    let done = events.last().unwrap();
    assert_eq!(done.event, "done");
    assert_eq!(
        done.data,
        json!({"finish_reason": "stop", "usage": {"prompt_tokens": FAKE_PROMPT_TOKENS, "completion_tokens": 3}})
    );
    // Field order as docs/ARCHITECTURE.md shows it.
    let exact =
        "event: done\ndata: {\"finish_reason\":\"stop\",\"usage\":{\"prompt_tokens\":42,\"completion_tokens\":3}}\n\n";
    assert!(s.raw.ends_with(exact), "{}", s.raw);

    // A second turn carries the system prompt and the whole history, in order.
    let mut s = c
        .stream(
            &format!("/api/v1/conversations/{id}/messages"),
            json!({"content": "Again"}),
        )
        .await;
    s.collect().await;
    let request = last_answer_request(&openai);
    assert_eq!(request.bearer(), Some("test-key-0"));
    assert_eq!(request.body["model"], "fake-model");
    assert_eq!(request.body["stream"], true);
    assert_eq!(roles_of(&request), ["system", "user", "assistant", "user"]);
    assert_eq!(request.body["messages"][0]["content"], "Answer in French.");
    assert_eq!(request.body["messages"][2]["content"], "Bonjour!");

    let gid = c
        .new_conversation(json!({"model": "gm", "system_prompt": "Be German."}))
        .await;
    let mut s = c
        .stream(
            &format!("/api/v1/conversations/{gid}/messages"),
            json!({"content": "Say hello"}),
        )
        .await;
    assert_eq!(text_of(&s.collect().await), "Hallo");
    let request = last_answer_request(&gemini);
    assert_eq!(request.goog_api_key(), Some("test-key-1"));
    assert!(
        request.path.contains("fake-model:streamGenerateContent"),
        "{}",
        request.path
    );
    assert_eq!(request.body["systemInstruction"]["parts"][0]["text"], "Be German.");
    let conv = c.get(&format!("/api/v1/conversations/{gid}")).await;
    assert_eq!(conv.body["messages"][1]["model"], "gm");

    // The title comes from the model after the first exchange (the fake always says "Hallo").
    let title = eventually(|| {
        let c = c.clone();
        let gid = gid.clone();
        async move {
            let conv = c.get(&format!("/api/v1/conversations/{gid}")).await;
            let title = conv.body["title"].as_str().unwrap().to_string();
            (title != "Say hello").then_some(title)
        }
    })
    .await;
    assert_eq!(title, "Hallo");
    let title_request = gemini
        .chat_requests()
        .into_iter()
        .find(|r| r.body.to_string().contains("You write short titles"));
    assert!(
        title_request.is_some(),
        "the title was asked of the conversation's model"
    );
}

#[tokio::test]
async fn rate_limit_falls_back_to_the_next_provider() {
    let gemini = FakeGemini::start(Behaviour::RateLimited { retry_after: 30 });
    let openai = FakeOpenAi::start(Behaviour::reply(&["from ", "fallback"]));
    let server = TestServer::start_with(Options {
        remotes: vec![
            remote("gm", "gemini", &gemini, vec!["oa"]),
            remote("oa", "openai", &openai, vec![]),
        ],
        ..Default::default()
    });
    let mut c = Client::new(&server);
    c.signup("kate").await;
    let id = c.new_conversation(json!({"model": "gm"})).await;
    let mut s = c
        .stream(
            &format!("/api/v1/conversations/{id}/messages"),
            json!({"content": "hi"}),
        )
        .await;
    let events = s.collect().await;
    assert_eq!(text_of(&events), "from fallback");
    assert_eq!(events.last().unwrap().event, "done");
    assert_eq!(answer_requests(&gemini).len(), 1, "the primary was asked first");
    assert_eq!(answer_requests(&openai).len(), 1, "the fallback served the answer");
    let conv = c.get(&format!("/api/v1/conversations/{id}")).await;
    assert_eq!(
        conv.body["messages"][1]["model"], "oa",
        "the answer records who served it"
    );

    // With every provider rate-limited, the stream ends with an error event and the failure is
    // stored on the message.
    openai.set_behaviour(Behaviour::RateLimited { retry_after: 5 });
    let mut s = c
        .stream(
            &format!("/api/v1/conversations/{id}/messages"),
            json!({"content": "again"}),
        )
        .await;
    let events = s.collect().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event, "error");
    assert_eq!(events[0].data["code"], "RATE_LIMITED");
    assert!(events[0].data["error"].is_string());
    let conv = c.get(&format!("/api/v1/conversations/{id}")).await;
    let last = conv.body["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["status"], "error");
    assert_eq!(last["error_code"], "RATE_LIMITED");

    // The decisions show in the metrics.
    let scrape = c.metrics().await;
    assert!(
        scrape.contains(r#"enclave_model_fallbacks_total{requested="gm",served_by="oa"} 1"#),
        "{scrape}"
    );
    assert!(
        scrape.contains(r#"enclave_chat_answers_total{model="oa",status="complete"} 1"#),
        "{scrape}"
    );
    assert!(
        scrape.contains(r#"enclave_chat_answers_total{model="gm",status="error"} 1"#),
        "{scrape}"
    );
    assert!(
        scrape.contains("enclave_chat_time_to_first_token_seconds_bucket"),
        "{scrape}"
    );
}

#[tokio::test]
async fn stop_and_disconnect_keep_the_partial_answer() {
    let openai = FakeOpenAi::start(Behaviour::long_reply(400, 25));
    let server = TestServer::start_with(Options {
        remotes: vec![remote("oa", "openai", &openai, vec![])],
        ..Default::default()
    });
    let mut c = Client::new(&server);
    c.signup("leo").await;
    let id = c.new_conversation(json!({"model": "oa"})).await;

    // Stop button.
    let mut s = c
        .stream(
            &format!("/api/v1/conversations/{id}/messages"),
            json!({"content": "count"}),
        )
        .await;
    let mut received = String::new();
    for _ in 0..3 {
        let e = s.next().await.unwrap();
        assert_eq!(e.event, "token");
        received.push_str(e.data["content"].as_str().unwrap());
    }
    // A second message while one is generating is refused.
    let busy = c
        .stream(
            &format!("/api/v1/conversations/{id}/messages"),
            json!({"content": "wait"}),
        )
        .await;
    assert_eq!(busy.status, 409);
    let stop = c.post(&format!("/api/v1/conversations/{id}/stop"), json!({})).await;
    assert_eq!(stop.body["stopped"], true);
    let rest = s.collect().await;
    let done = rest.last().unwrap();
    assert_eq!(done.event, "done");
    assert_eq!(done.data["finish_reason"], "stopped");
    received.push_str(&text_of(&rest));
    assert!(received.len() < 400 * 3, "stopped well before the end");
    assert!(
        openai.wait_for_dropped_streams(1, Duration::from_secs(10)).await,
        "the provider stream was cancelled"
    );
    let conv = c.get(&format!("/api/v1/conversations/{id}")).await;
    let answer = &conv.body["messages"][1];
    assert_eq!(answer["status"], "stopped");
    assert_eq!(answer["content"], received.as_str());
    assert_eq!(answer["finish_reason"], "stopped");

    // Client disconnect.
    let mut s = c
        .stream(
            &format!("/api/v1/conversations/{id}/messages"),
            json!({"content": "more"}),
        )
        .await;
    s.next().await.unwrap();
    s.disconnect();
    assert!(openai.wait_for_dropped_streams(2, Duration::from_secs(10)).await);
    let stored = eventually(|| {
        let c = c.clone();
        let id = id.clone();
        async move {
            let conv = c.get(&format!("/api/v1/conversations/{id}")).await;
            let messages = conv.body["messages"].as_array().unwrap().clone();
            (messages.len() == 4).then(|| messages[3].clone())
        }
    })
    .await;
    assert_eq!(stored["status"], "stopped");
    assert!(stored["content"].as_str().unwrap().starts_with("t0 "));
    // Nothing is running any more.
    assert_eq!(
        c.post(&format!("/api/v1/conversations/{id}/stop"), json!({}))
            .await
            .body["stopped"],
        false
    );
}

#[tokio::test]
async fn regenerate_and_edit_make_branches() {
    let openai = FakeOpenAi::start(Behaviour::reply(&["first answer"]));
    let server = TestServer::start_with(Options {
        remotes: vec![remote("oa", "openai", &openai, vec![])],
        ..Default::default()
    });
    let mut c = Client::new(&server);
    c.signup("mia").await;
    let id = c.new_conversation(json!({"model": "oa"})).await;
    let path = format!("/api/v1/conversations/{id}");

    let nothing = c.post(&format!("{path}/regenerate"), json!({})).await;
    assert_eq!((nothing.status, nothing.code()), (409, "NOTHING_TO_REGENERATE"));

    let mut s = c
        .stream(&format!("{path}/messages"), json!({"content": "question"}))
        .await;
    s.collect().await;
    let first = c.get(&path).await.body["messages"][1]["id"]
        .as_str()
        .unwrap()
        .to_string();

    openai.set_behaviour(Behaviour::reply(&["second answer"]));
    let mut s = c.stream(&format!("{path}/regenerate"), json!({})).await;
    assert_eq!(s.status, 200);
    assert!(s.headers.get("x-user-message-id").is_none());
    assert_eq!(text_of(&s.collect().await), "second answer");
    let conv = c.get(&path).await;
    let messages = conv.body["messages"].as_array().unwrap();
    assert_eq!(
        messages.len(),
        2,
        "the new answer replaces the old one on the active branch"
    );
    assert_eq!(messages[1]["content"], "second answer");
    assert_eq!(messages[1]["sibling_ids"].as_array().unwrap().len(), 2);
    assert_eq!(messages[1]["sibling_ids"][0], first.as_str());
    // The regenerated prompt is the same history (no duplicated user message).
    let roles = roles_of(&last_answer_request(&openai));
    assert_eq!(roles, ["system", "user"]);

    // Switch back to the first answer.
    let switched = c.patch(&path, json!({"active_message_id": first})).await;
    assert_eq!(switched.status, 200, "{:?}", switched.body);
    assert_eq!(c.get(&path).await.body["messages"][1]["content"], "first answer");

    // Edit the question and resend: a sibling of the first user message.
    let question = c.get(&path).await.body["messages"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    openai.set_behaviour(Behaviour::reply(&["edited answer"]));
    let mut s = c
        .stream(
            &format!("{path}/messages"),
            json!({"content": "better question", "edit_message_id": question}),
        )
        .await;
    assert_eq!(text_of(&s.collect().await), "edited answer");
    let conv = c.get(&path).await;
    let messages = conv.body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["content"], "better question");
    assert_eq!(messages[0]["sibling_ids"].as_array().unwrap().len(), 2);
    assert!(messages[0]["parent_id"].is_null());
    let roles = roles_of(&last_answer_request(&openai));
    assert_eq!(
        roles,
        ["system", "user"],
        "the edited branch does not carry the old exchange"
    );

    let answer = messages[1]["id"].as_str().unwrap().to_string();
    let bad = c
        .stream(
            &format!("{path}/messages"),
            json!({"content": "x", "edit_message_id": answer}),
        )
        .await;
    assert_eq!(bad.status, 422);
    let unknown = c
        .stream(
            &format!("{path}/messages"),
            json!({"content": "x", "parent_message_id": uuid::Uuid::now_v7()}),
        )
        .await;
    assert_eq!(unknown.status, 404);
}

#[tokio::test]
async fn oldest_turns_are_dropped_to_fit_the_context() {
    let openai = FakeOpenAi::start(Behaviour::reply(&["ok"]));
    let server = TestServer::start_with(Options {
        remotes: vec![remote("oa", "openai", &openai, vec![])],
        ..Default::default()
    });
    let mut c = Client::new(&server);
    c.signup("nina").await;
    // Remote models here have 4096 tokens; each message below is about 1500 estimated tokens.
    let id = c
        .new_conversation(json!({"model": "oa", "system_prompt": "Keep me.", "settings": {"max_tokens": 256}}))
        .await;
    for i in 0..4 {
        let content = format!("turn {i} {}", "word ".repeat(1200));
        let mut s = c
            .stream(
                &format!("/api/v1/conversations/{id}/messages"),
                json!({"content": content}),
            )
            .await;
        s.collect().await;
    }
    let request = last_answer_request(&openai);
    let messages = request.body["messages"].as_array().unwrap();
    assert_eq!(messages[0]["content"], "Keep me.", "the system prompt is kept");
    let last = messages.last().unwrap()["content"].as_str().unwrap();
    assert!(last.starts_with("turn 3 "), "the newest message is sent");
    assert!(
        messages.len() < 8,
        "older turns were dropped: {} messages",
        messages.len()
    );
    assert!(!messages
        .iter()
        .any(|m| m["content"].as_str().unwrap().starts_with("turn 0 ")));
    assert_eq!(
        messages[1]["role"], "user",
        "history never starts with an assistant turn"
    );
}

#[tokio::test]
async fn stopping_the_local_model_frees_it_for_the_next_turn() {
    let server = TestServer::start();
    let mut c = Client::new(&server);
    c.signup("omar").await;
    // The tiny model never ends on its own, so this would run for 2000 tokens unless stopped.
    let id = c.new_conversation(json!({"settings": {"max_tokens": 2000}})).await;
    let mut s = c
        .stream(
            &format!("/api/v1/conversations/{id}/messages"),
            json!({"content": "Go on forever"}),
        )
        .await;
    assert_eq!(s.next().await.unwrap().event, "token");
    let stop = c.post(&format!("/api/v1/conversations/{id}/stop"), json!({})).await;
    assert_eq!(stop.body["stopped"], true);
    let rest = s.collect().await;
    let done = rest.last().unwrap();
    assert_eq!(done.event, "done");
    assert_eq!(done.data["finish_reason"], "stopped");
    let completion = done.data["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(completion < 2000, "stopped early: {completion} tokens");

    // The model is free again: a short answer in another conversation completes.
    let other = c.new_conversation(json!({"settings": {"max_tokens": 4}})).await;
    let mut s = c
        .stream(
            &format!("/api/v1/conversations/{other}/messages"),
            json!({"content": "Short"}),
        )
        .await;
    let events = s.collect().await;
    assert_eq!(events.last().unwrap().data["finish_reason"], "length");
    assert_eq!(events.last().unwrap().data["usage"]["completion_tokens"], 4);
    let conv = c.get(&format!("/api/v1/conversations/{id}")).await;
    assert_eq!(conv.body["messages"][1]["status"], "stopped");
}
