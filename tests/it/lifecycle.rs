//! Start-up, readiness, model status, configuration errors and graceful shutdown.

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::common::{text_of, Client, Options, Remote, TestServer, LOCAL_MODEL};
use crate::fakes::{Behaviour, FakeOpenAi};

#[tokio::test]
async fn health_ready_and_model_status() {
    let server = TestServer::start_with(Options {
        remotes: vec![Remote {
            id: "oa",
            kind: "openai",
            base_url: "http://127.0.0.1:9/v1".into(),
            fallback: vec![],
            capabilities: vec![],
        }],
        env: vec![],
        ..Default::default()
    });
    let mut c = Client::new(&server);
    assert_eq!(c.get("/health").await.body["status"], "ok");
    let ready = c.get("/ready").await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.body["default_model"]["id"], LOCAL_MODEL);

    c.signup("pat").await;
    let models = c.get("/api/v1/models").await;
    assert_eq!(models.body["default"], LOCAL_MODEL);
    let list = models.body["models"].as_array().unwrap();
    assert_eq!(list[0]["id"], LOCAL_MODEL);
    assert_eq!(list[0]["status"], "ready");
    assert_eq!(list[0]["context_length"], 2048);
    assert_eq!(list[1]["id"], "oa");
    let status = c.get("/api/v1/models/tiny/status").await;
    assert_eq!(status.body["status"], "ready");
}

#[tokio::test]
async fn missing_model_is_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models.toml");
    std::fs::write(
        &models,
        "[[models]]\nid = \"ghost\"\nrole = \"chat\"\nprovider = \"local\"\npath = \"nowhere/ghost.gguf\"\nhf_repo = \"example/ghost\"\nhf_file = \"ghost.gguf\"\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_enclave"))
        .args(["serve", "--addr", "127.0.0.1:0", "--offline", "true"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--models")
        .arg(&models)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut line).unwrap();
    let base = line.trim().strip_prefix("enclave listening on ").unwrap().to_string();
    let client = reqwest::Client::new();
    let mut body = serde_json::Value::Null;
    for _ in 0..200 {
        let r = client.get(format!("{base}/ready")).send().await.unwrap();
        assert_eq!(r.status(), 503, "a server without its model is not ready");
        body = r.json().await.unwrap();
        if body["default_model"]["status"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(body["default_model"]["status"], "failed");
    let error = body["default_model"]["error"].as_str().unwrap();
    assert!(error.contains("ghost.gguf"), "the error names what is missing: {error}");
    assert_eq!(client.get(format!("{base}/health")).send().await.unwrap().status(), 200);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn configuration_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_enclave"))
            .current_dir(dir.path())
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    std::fs::write(
        dir.path().join("models.toml"),
        "[[models]]\nid = \"x\"\nrole = \"chat\"\nprovider = \"nowhere\"\n",
    )
    .unwrap();
    assert!(run(&["serve"]).contains("no [providers.nowhere] table"));
    std::fs::write(dir.path().join("models.toml"), "default_chat = \"x\"\n").unwrap();
    assert!(run(&["serve"]).contains("not in the model catalogue"));
    // A default reranker must be a local rerank model.
    std::fs::write(
        dir.path().join("models.toml"),
        "default_rerank = \"x\"\n[[models]]\nid = \"x\"\nrole = \"chat\"\nprovider = \"local\"\npath = \"x.gguf\"\n",
    )
    .unwrap();
    assert!(run(&["serve"]).contains("default_rerank \"x\" is not a rerank model"));
    std::fs::write(
        dir.path().join("models.toml"),
        "[providers.p]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9\"\n[[models]]\nid = \"r\"\nrole = \"rerank\"\nprovider = \"p\"\n",
    )
    .unwrap();
    assert!(run(&["serve"]).contains("rerank model \"r\" must be local"));
    std::fs::write(
        dir.path().join("models.toml"),
        "[[models]]\nid = \"x\"\nrole = \"chat\"\nprovider = \"local\"\npath = \"x.gguf\"\n",
    )
    .unwrap();
    assert!(run(&["serve", "--addr", "localhost"]).contains("is not HOST:PORT"));
    std::fs::write(dir.path().join("enclave.toml"), "adr = \"oops\"\n").unwrap();
    assert!(run(&["serve"]).contains("enclave.toml is not valid"));
    std::fs::write(dir.path().join("enclave.toml"), "session_lifetime_secs = 0\n").unwrap();
    assert!(run(&["serve"]).contains("session_lifetime_secs must be positive"));
    std::fs::write(dir.path().join("enclave.toml"), "rate_limit_burst = 0\n").unwrap();
    assert!(run(&["serve"]).contains("rate_limit_burst must be at least 1"));
    std::fs::write(dir.path().join("enclave.toml"), "").unwrap();
    assert!(run(&["serve", "--trusted-proxies", "10.0.0.1,proxy.local"]).contains("\"proxy.local\" is neither"));
    std::fs::write(dir.path().join("enclave.toml"), "embed_precision = \"int4\"\n").unwrap();
    assert!(run(&["serve"]).contains("embed_precision must be \"auto\" or \"f32\""));
    std::fs::write(dir.path().join("enclave.toml"), "").unwrap();
    assert!(run(&["serve", "--kv-cache-dtype", "q8_0"]).contains("kv_cache_dtype must be \"auto\", \"f16\" or \"f32\""));
    assert!(run(&["serve", "--config", "missing.toml"]).contains("does not exist"));

    let help = Command::new(env!("CARGO_BIN_EXE_enclave"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--addr",
        "--data-dir",
        "--models",
        "--config",
        "--default-model",
        "--allow-registration",
        "--rate-limit-per-minute",
        "--rate-limit-burst",
        "--login-failures-per-minute",
        "--trusted-proxies",
        "ENCLAVE_ADDR",
    ] {
        assert!(help.contains(flag), "--help documents {flag}");
    }
}

#[tokio::test]
async fn shutdown_ends_streams_and_keeps_their_text() {
    let openai = FakeOpenAi::start(Behaviour::long_reply(400, 25));
    let mut server = TestServer::start_with(Options {
        remotes: vec![Remote {
            id: "oa",
            kind: "openai",
            base_url: openai.base_url.clone(),
            fallback: vec![],
            capabilities: vec![],
        }],
        ..Default::default()
    });
    let mut c = Client::new(&server);
    c.signup("quinn").await;
    let id = c.new_conversation(json!({"model": "oa"})).await;
    let mut s = c
        .stream(
            &format!("/api/v1/conversations/{id}/messages"),
            json!({"content": "go"}),
        )
        .await;
    let mut received = vec![s.next().await.unwrap(), s.next().await.unwrap()];

    let status = tokio::task::spawn_blocking(move || {
        let status = server.terminate();
        (server, status)
    });
    received.extend(s.collect().await);
    let (mut server, status) = status.await.unwrap();
    assert!(status.success(), "clean exit: {status:?}");
    let last = received.last().unwrap();
    assert_eq!(last.event, "error", "{last:?}");
    assert_eq!(last.data["code"], "SHUTTING_DOWN");

    // The partial answer survived the restart.
    server.restart();
    let mut c2 = Client::new(&server);
    let login = c2
        .post(
            "/api/v1/auth/login",
            json!({"username": "quinn", "password": "quinn-password-123"}),
        )
        .await;
    c2.token = Some(login.body["access_token"].as_str().unwrap().to_string());
    let conv = c2.get(&format!("/api/v1/conversations/{id}")).await;
    let answer = &conv.body["messages"][1];
    assert_eq!(answer["status"], "stopped");
    assert_eq!(answer["content"], text_of(&received).as_str());
    assert!(!answer["content"].as_str().unwrap().is_empty());
}
