//! Assembles the rooms into a running server and shuts it down cleanly.

use std::sync::Arc;

use crate::api::{self, AppState};
use crate::audit::AuditLog;
use crate::auth::AuthService;
use crate::chat::ChatService;
use crate::config::Config;
use crate::documents::extract::isolate::Isolation;
use crate::documents::extract::Limits;
use crate::documents::{DocumentService, DocumentSettings};
use crate::images::{ImageLimits, ImageService, ImageSettings};
use crate::providers::registry::ModelRegistry;
use crate::store::{ChunkIndex, Store};

/// Names the process's TLS crypto provider (aws-lc-rs). Two TLS stacks in the dependency tree
/// enable both of rustls's providers, and rustls then refuses to guess: every program of this
/// crate that opens TLS connections calls this first. Calling it again does nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Runs the server until SIGINT or SIGTERM; then running answers get a final event and are
/// stored, connections drain and the database is closed.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let store = Store::open(&config.database_path())
        .map_err(|e| anyhow::anyhow!("cannot open the database {}: {e}", config.database_path().display()))?;
    let auth = AuthService::new(store.clone(), config.auth_settings())?;
    let audit = AuditLog::start(store.clone()).map_err(|e| anyhow::anyhow!("cannot start the audit writer: {e}"))?;
    crate::audit::retention::spawn(audit.clone(), config.audit_retention);
    let registry = ModelRegistry::start(&config);
    let chunks = ChunkIndex::open(&config.vectors_dir())
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the document index {}: {e}", config.vectors_dir().display()))?;
    let documents = DocumentService::start(
        store.clone(),
        chunks,
        registry.clone(),
        DocumentSettings {
            files_dir: config.documents_dir(),
            max_upload_bytes: config.max_upload_bytes,
            isolation: Isolation {
                // The same binary reads documents in a child process (`enclave extract`).
                executable: std::env::current_exe().ok(),
                timeout: config.extract_timeout,
                memory_bytes: config.extract_memory_bytes,
                limits: Limits::default(),
                ocr_language: config.ocr_language.clone(),
            },
            chunk_tokens: config.chunk_tokens,
            chunk_overlap: config.chunk_overlap,
        },
    )?;
    let images = ImageService::start(
        store.clone(),
        ImageSettings {
            dir: config.images_dir(),
            limits: ImageLimits {
                max_bytes: config.max_image_bytes,
                ..ImageLimits::default()
            },
            max_per_message: config.max_images_per_message,
        },
    )
    .map_err(|e| anyhow::anyhow!("cannot start the images service: {e}"))?;
    let chat = ChatService::new(
        store.clone(),
        registry,
        documents.clone(),
        images.clone(),
        audit.clone(),
        config.default_system_prompt.clone(),
    );
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.addr))?;
    let addr = listener.local_addr()?;
    let metrics = crate::telemetry::install_metrics();
    let state = AppState {
        auth,
        audit: audit.clone(),
        chat: chat.clone(),
        documents: documents.clone(),
        images,
        config: Arc::new(config),
        metrics,
    };
    // Tests and scripts read this line to learn the port when started with port 0.
    tracing::info!(%addr, "listening on http://{addr}");
    println!("enclave listening on http://{addr}");
    let shutdown_chat = chat.clone();
    // The peer's address reaches handlers (sessions record it).
    let app = api::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            tracing::info!("shutting down: stopping running answers");
            shutdown_chat.shutdown().await;
        })
        .await?;
    documents.shutdown().await;
    // The answers stopped above recorded their entries: store them before the process ends.
    audit.flush().await;
    drop(chat);
    drop(store);
    tracing::info!("stopped cleanly");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
