//! What the benchmarks share: free ports, child processes that end with them, an Enclave
//! server on one local model, and its benchmark account.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The benchmark account's sign-in name and password.
pub const BENCH_USER: &str = "bench";
pub const BENCH_PASSWORD: &str = "a long bench password";

/// A child process, killed when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    /// The process id.
    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `enclave serve` on `port` with `model` as its one (default) local model `id`; the
/// catalogue and the data go under `dir`. Logs errors only; stdout is discarded.
pub fn enclave_serve(dir: &Path, model: &Path, id: &str, port: u16) -> Command {
    std::fs::write(
        dir.join("models.toml"),
        format!(
            "default_chat = \"{id}\"\n\n[[models]]\nid = \"{id}\"\nrole = \"chat\"\nprovider = \"local\"\npath = \"{}\"\n",
            model.display()
        ),
    )
    .expect("write models.toml");
    let mut command = Command::new(env!("CARGO_BIN_EXE_enclave"));
    command
        .arg("serve")
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--models")
        .arg(dir.join("models.toml"))
        .env("ENCLAVE_LOG", "error")
        // A load generator is one user sending far more than a person would.
        .env("ENCLAVE_RATE_LIMIT_PER_MINUTE", "0")
        .env("ENCLAVE_LOGIN_FAILURES_PER_MINUTE", "0")
        .stdout(Stdio::null());
    command
}

/// Waits until `url` answers with a success; panics when `child` exits first or after 300 s.
pub async fn wait_ready(client: &reqwest::Client, url: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the server exited while starting: {status}");
        }
        if let Ok(response) = client.get(url).send().await {
            if response.status().is_success() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{url} never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Registers the benchmark account on the Enclave at `base` and signs in: the access token.
pub async fn register_and_sign_in(client: &reqwest::Client, base: &str) -> String {
    let account = json!({"email": "bench@example.com", "username": BENCH_USER, "password": BENCH_PASSWORD});
    client
        .post(format!("{base}/api/v1/auth/register"))
        .json(&account)
        .send()
        .await
        .expect("register");
    let login: Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&account)
        .send()
        .await
        .expect("sign in")
        .json()
        .await
        .expect("the sign-in answer");
    login["access_token"].as_str().expect("an access token").to_owned()
}
