//! Assembles the rooms into a running server and shuts it down cleanly.

use std::sync::Arc;

use crate::api::{self, AppState};
use crate::auth::AuthService;
use crate::chat::ChatService;
use crate::config::Config;
use crate::providers::registry::ModelRegistry;
use crate::store::Store;

/// Runs the server until SIGINT or SIGTERM; then running answers get a final event and are
/// stored, connections drain and the database is closed.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let store = Store::open(&config.database_path())
        .map_err(|e| anyhow::anyhow!("cannot open the database {}: {e}", config.database_path().display()))?;
    let auth = AuthService::new(
        store.clone(),
        config.access_token_ttl,
        config.refresh_token_ttl,
        config.allow_registration,
    )?;
    let registry = ModelRegistry::start(&config);
    let chat = ChatService::new(store.clone(), registry, config.default_system_prompt.clone());
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.addr))?;
    let addr = listener.local_addr()?;
    let metrics = crate::telemetry::install_metrics();
    let state = AppState {
        auth,
        chat: chat.clone(),
        config: Arc::new(config),
        metrics,
    };
    // Tests and scripts read this line to learn the port when started with port 0.
    tracing::info!(%addr, "listening on http://{addr}");
    println!("enclave listening on http://{addr}");
    let shutdown_chat = chat.clone();
    axum::serve(listener, api::router(state))
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            tracing::info!("shutting down: stopping running answers");
            shutdown_chat.shutdown().await;
        })
        .await?;
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
