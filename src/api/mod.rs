//! HTTP: routes, extractors, error mapping and SSE encoding. The only module that knows HTTP;
//! it holds no business rules (those live in `auth` and `chat`).

mod admin;
mod audit;
mod auth;
mod conversations;
mod denials;
mod documents;
mod error;
mod extract;
mod health;
mod images;
mod limits;
mod messages;
mod models;
mod multipart;
mod openai_compat;
mod settings;
mod web;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::Router;
use enclave_protocol::ErrorCode;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::auth::AuthService;
use crate::chat::ChatService;
use crate::config::Config;
use crate::documents::DocumentService;
use crate::images::ImageService;
pub use error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// Accounts and tokens.
    pub auth: AuthService,
    /// Who did what: the security-relevant events.
    pub audit: crate::audit::AuditLog,
    /// Conversations, streaming answers, chat preferences, models.
    pub chat: ChatService,
    /// Uploaded documents, their ingestion and search.
    pub documents: DocumentService,
    /// Images attached to messages.
    pub images: ImageService,
    /// The running configuration.
    pub config: Arc<Config>,
    /// Renders the Prometheus scrape text (absent when another recorder owns the process).
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    if web::is_built() {
        tracing::info!(files = web::ASSETS.len(), "web UI embedded");
    } else {
        tracing::warn!("this build has no web UI (scripts/build-web.sh builds it); the API works without it");
    }
    // Chat and /v1 requests are charged to the caller's request budget.
    let charged = axum::middleware::from_fn_with_state(state.clone(), limits::charge_user_request);
    let api = Router::new()
        .route("/auth/register", post(auth::register))
        .route("/auth/login", post(auth::login))
        .route("/auth/refresh", post(auth::refresh))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/password/change", put(auth::change_password))
        .route("/auth/password/reset", post(auth::reset_password))
        .route("/auth/me", get(auth::me))
        .route("/auth/sessions", get(auth::sessions))
        .route("/auth/sessions/{id}", delete(auth::end_session))
        .route("/auth/2fa/setup", post(auth::totp_setup))
        .route("/auth/2fa/verify", post(auth::totp_verify))
        .route("/auth/2fa/disable", post(auth::totp_disable))
        .route("/conversations", get(conversations::list).post(conversations::create))
        .route(
            "/conversations/{id}",
            get(conversations::get)
                .patch(conversations::update)
                .put(conversations::update)
                .delete(conversations::delete),
        )
        .merge(
            Router::new()
                .route("/conversations/{id}/messages", post(messages::send))
                .route("/conversations/{id}/regenerate", post(messages::regenerate))
                .route_layer(charged.clone()),
        )
        .route("/conversations/{id}/stop", post(messages::stop))
        .route(
            "/documents/upload",
            post(documents::upload).layer(DefaultBodyLimit::max(upload_body_limit(&state.config))),
        )
        .route("/documents", get(documents::list))
        .route("/documents/search", post(documents::search))
        .route("/documents/{id}", get(documents::get).delete(documents::delete))
        .route("/documents/{id}/status", get(documents::get))
        .route("/documents/{id}/file", get(documents::file))
        .route("/documents/{id}/sections/{index}", get(documents::section))
        .route("/documents/{id}/retry", post(documents::retry))
        .route(
            "/images",
            // Decoding is costly: uploads are charged to the caller's request budget.
            post(images::upload)
                .layer(DefaultBodyLimit::max(image_upload_body_limit(&state.config)))
                .route_layer(charged.clone()),
        )
        .route("/images/{id}", get(images::file).delete(images::delete))
        .route("/images/{id}/info", get(images::info))
        .route("/models", get(models::list))
        .route("/models/{id}/status", get(models::status))
        .route("/settings", get(settings::get).put(settings::put))
        .route("/admin/users", get(admin::list_users).post(admin::create_user))
        .route("/admin/users/{id}", get(admin::get_user).patch(admin::update_user))
        .route("/admin/users/{id}/sign-out", post(admin::sign_out))
        .route("/admin/users/{id}/unlock", post(admin::unlock))
        .route("/admin/users/{id}/reset-2fa", post(admin::reset_two_factor))
        .route("/admin/users/{id}/password-reset", post(admin::password_reset_link))
        .route("/admin/users/{id}/sessions", get(admin::user_sessions))
        .route("/admin/users/{id}/sessions/{session}", delete(admin::end_user_session))
        .route("/admin/users/{id}/documents", get(admin::user_documents))
        .route(
            "/admin/registration",
            get(admin::registration).put(admin::set_registration),
        )
        .route("/admin/security", get(admin::security).put(admin::set_security))
        .route("/admin/audit", get(audit::list))
        .route("/admin/audit/verify", get(audit::verify))
        .route("/admin/invites", get(admin::invites).post(admin::create_invite))
        .route("/admin/invites/{id}", delete(admin::revoke_invite));
    Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .nest("/api/v1", api)
        .merge(
            Router::new()
                .route(
                    "/v1/chat/completions",
                    // Images come inline as `data:` URLs: this route has its own body limit.
                    post(openai_compat::chat_completions)
                        .layer(DefaultBodyLimit::max(state.config.max_image_request_bytes)),
                )
                .route("/v1/models", get(openai_compat::models))
                .route("/v1/embeddings", post(openai_compat::embeddings))
                .route_layer(charged),
        )
        .fallback(web::fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            denials::record_denials,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::InternalError,
                "internal error; see the server log",
            )
            .into_response_boxed()
        }))
        // A 503 (model still loading, overloaded) is an expected state, not an error: real
        // faults are logged where they happen.
        .layer(TraceLayer::new_for_http().on_failure(DefaultOnFailure::new().level(tracing::Level::WARN)))
        .layer(axum::middleware::map_response(add_security_headers))
        .with_state(state)
}

/// The body limit of an upload: many files of up to the per-file limit each (each file is
/// checked on its own as it streams in).
fn upload_body_limit(config: &Config) -> usize {
    usize::try_from(config.max_upload_bytes.saturating_mul(128)).unwrap_or(usize::MAX)
}

/// The body limit of an image upload: as many images of the largest size as one message may
/// carry (each is checked on its own as it streams in).
fn image_upload_body_limit(config: &Config) -> usize {
    config
        .max_image_bytes
        .saturating_mul(config.max_images_per_message)
        .saturating_add(1 << 20)
}

impl ApiError {
    fn into_response_boxed(self) -> axum::response::Response {
        axum::response::IntoResponse::into_response(self)
    }
}

/// Adds the security headers (CSP, nosniff, no framing, no referrer) a response lacks.
async fn add_security_headers(mut response: axum::response::Response) -> axum::response::Response {
    let headers = response.headers_mut();
    for (name, value) in web::security_headers() {
        headers.entry(name).or_insert(value);
    }
    response
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "this endpoint does not take that method",
    )
}

/// Milliseconds since the epoch as RFC 3339 (UTC).
pub fn rfc3339(ms: i64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}
