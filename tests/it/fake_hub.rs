//! A fake Hugging Face Hub: the two requests hf-hub makes to fetch one file (`HEAD` then `GET`
//! of `/{owner}/{name}/resolve/{revision}/{file}`), with the headers the real Hub sends
//! (`ETag`, `X-Repo-Commit`, `Content-Length`), the body streamed slowly so that a download's
//! progress can be watched. Runs on its own thread and runtime; dropping it stops it.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;

use crate::common::{tiny_model, Options, TestServer};
use crate::fakes::serve_on_a_thread;

/// Where the fake serves the tiny model.
pub const TINY_REPO: &str = "enclave-test/tiny";
/// The tiny model's file name in [`TINY_REPO`].
pub const TINY_FILE: &str = "tiny.gguf";

/// A fake Hub serving the tiny model in `chunks` pieces `delay` apart, and a server (not yet
/// ready) whose local model is to be downloaded from it, with no local file.
pub fn server_downloading_the_tiny_model(chunks: usize, delay: Duration) -> (FakeHub, TestServer) {
    let content = std::fs::read(tiny_model()).expect("the tiny model");
    let hub = FakeHub::start(TINY_REPO, TINY_FILE, content, chunks, delay);
    let server = TestServer::start_with(Options {
        local_source: Some(format!("hf_repo = \"{TINY_REPO}\"\nhf_file = \"{TINY_FILE}\"")),
        env: vec![("HF_ENDPOINT", hub.endpoint.clone())],
        no_wait: true,
        ..Options::default()
    });
    (hub, server)
}

/// The commit the fake's `main` points at.
pub const FAKE_COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// What the handler serves.
struct Hub {
    /// `/{owner}/{name}/resolve/main/{file}`.
    path: String,
    /// The file.
    content: Bytes,
    /// Pieces the body is sent in.
    chunks: usize,
    /// Pause before each piece.
    delay: Duration,
    /// Whole downloads begun (`GET`s of the file).
    downloads: AtomicUsize,
}

/// A running fake Hub.
pub struct FakeHub {
    /// `http://127.0.0.1:PORT`, for `HF_ENDPOINT`.
    pub endpoint: String,
    hub: Arc<Hub>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FakeHub {
    /// Serves `content` as `repo`'s `file` at `main`, in `chunks` pieces `delay` apart.
    pub fn start(repo: &str, file: &str, content: Vec<u8>, chunks: usize, delay: Duration) -> FakeHub {
        let hub = Arc::new(Hub {
            path: format!("/{repo}/resolve/main/{file}"),
            content: Bytes::from(content),
            chunks: chunks.max(1),
            delay,
            downloads: AtomicUsize::new(0),
        });
        let app = Router::new().fallback(serve).with_state(hub.clone());
        let (addr, shutdown) = serve_on_a_thread(app, "fake-hub");
        FakeHub {
            endpoint: format!("http://{addr}"),
            hub,
            shutdown: Some(shutdown),
        }
    }

    /// `GET`s of the file so far.
    pub fn downloads(&self) -> usize {
        self.hub.downloads.load(Ordering::SeqCst)
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

async fn serve(State(hub): State<Arc<Hub>>, method: Method, uri: Uri) -> Response {
    if uri.path() != hub.path {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header("x-error-code", "EntryNotFound")
            .body(Body::from("Entry not found"))
            .expect("a valid response");
    }
    let builder = Response::builder()
        .header(header::ETAG, "\"fake-etag-1\"")
        .header("x-repo-commit", FAKE_COMMIT)
        .header(header::CONTENT_LENGTH, hub.content.len());
    if method == Method::HEAD {
        return builder.body(Body::empty()).expect("a valid response");
    }
    hub.downloads.fetch_add(1, Ordering::SeqCst);
    let size = hub.content.len().div_ceil(hub.chunks);
    let pieces: Vec<Bytes> = (0..hub.content.len())
        .step_by(size.max(1))
        .map(|start| hub.content.slice(start..(start + size).min(hub.content.len())))
        .collect();
    let delay = hub.delay;
    let body = async_stream::stream! {
        for piece in pieces {
            tokio::time::sleep(delay).await;
            yield Ok::<Bytes, std::convert::Infallible>(piece);
        }
    };
    builder.body(Body::from_stream(body)).expect("a valid response")
}
