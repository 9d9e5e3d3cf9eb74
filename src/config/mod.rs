//! Configuration: flags, ENCLAVE_* variables and an optional enclave.toml, merged in that
//! order of precedence and checked once at start.

pub mod cli;
pub mod models;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use cli::{
    AuditCommand, AuditVerifyArgs, Cli, Command, CommonArgs, ExtractArgs, SelftestArgs, ServeArgs, SynthModelArgs,
    UserAddArgs, UserCommand, UserLoginArgs,
};
pub use models::{ModelCatalogue, ModelEntry, ModelRole, ProviderEntry, ProviderKind};

/// A configuration problem, with a message meant for the person starting the server.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigError {
    /// A new error with this message.
    pub fn new(message: impl Into<String>) -> ConfigError {
        ConfigError(message.into())
    }
}

/// Sent when neither the conversation nor the user sets a system prompt. Small models answer
/// far better with a plain instruction than with none (SmolLM2's built-in default derails it).
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are a helpful assistant.";

/// Keys accepted in enclave.toml (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    addr: Option<String>,
    data_dir: Option<PathBuf>,
    models: Option<PathBuf>,
    default_model: Option<String>,
    allow_registration: Option<bool>,
    registration: Option<String>,
    metrics_token: Option<String>,
    offline: Option<bool>,
    max_body_bytes: Option<usize>,
    max_upload_bytes: Option<u64>,
    max_image_bytes: Option<usize>,
    max_images_per_message: Option<usize>,
    max_image_request_bytes: Option<usize>,
    ocr_language: Option<String>,
    chunk_tokens: Option<usize>,
    chunk_overlap: Option<usize>,
    embed_batch_tokens: Option<usize>,
    embed_precision: Option<String>,
    extract_timeout_secs: Option<u64>,
    extract_memory_mb: Option<u64>,
    log: Option<String>,
    access_token_ttl_secs: Option<u64>,
    refresh_token_ttl_secs: Option<u64>,
    session_lifetime_secs: Option<u64>,
    rate_limit_per_minute: Option<u32>,
    rate_limit_burst: Option<u32>,
    login_failures_per_minute: Option<u32>,
    trusted_proxies: Option<Vec<String>>,
    audit_retention_days: Option<u32>,
    model_queue_capacity: Option<usize>,
    kv_cache_mb: Option<usize>,
    kv_cache_dtype: Option<String>,
    max_batch_tokens: Option<usize>,
    max_prefill_while_decoding: Option<usize>,
    max_running: Option<usize>,
    request_timeout_secs: Option<u64>,
    default_system_prompt: Option<String>,
}

/// The checked configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address.
    pub addr: SocketAddr,
    /// Database, uploads and downloaded models live here.
    pub data_dir: PathBuf,
    /// The model catalogue.
    pub catalogue: ModelCatalogue,
    /// Model used when a conversation names none.
    pub default_model: String,
    /// Token lifetimes, the registration policy and the limits (what `enclave user` commands
    /// resolve by the same rules).
    pub accounts: AccountConfig,
    /// The bearer secret that opens /metrics without an account.
    pub metrics_token: Option<String>,
    /// Never touch the network for models.
    pub offline: bool,
    /// Largest request body (JSON routes).
    pub max_body_bytes: usize,
    /// Largest uploaded document, per file.
    pub max_upload_bytes: u64,
    /// Largest image, per file (uploads and `data:` URLs), before it is re-encoded.
    pub max_image_bytes: usize,
    /// The most images one message may carry.
    pub max_images_per_message: usize,
    /// Largest body of a `/v1/chat/completions` request (its images come inline as `data:`
    /// URLs, so it has its own limit; every other JSON route keeps `max_body_bytes`).
    pub max_image_request_bytes: usize,
    /// The Tesseract language(s) scans and photos are read in (`eng`, `eng+deu`); `None`
    /// switches OCR off.
    pub ocr_language: Option<String>,
    /// Tokens per document chunk (the embedding model's window when `None`).
    pub chunk_tokens: Option<usize>,
    /// Tokens shared by neighbouring chunks (an eighth when `None`).
    pub chunk_overlap: Option<usize>,
    /// The most tokens (padding included) of one embedding batch.
    pub embed_batch_tokens: usize,
    /// The arithmetic of the embedding models' linear layers.
    pub embed_precision: crate::engine::EmbedPrecision,
    /// Time limit for reading one document.
    pub extract_timeout: Duration,
    /// Memory limit of the process that reads a document.
    pub extract_memory_bytes: u64,
    /// Log filter.
    pub log: String,
    /// Peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// How long audit entries are kept (`None`: forever).
    pub audit_retention: Option<Duration>,
    /// Requests waiting per local model before OVERLOADED.
    pub model_queue_capacity: usize,
    /// Bytes of KV cache per local model.
    pub kv_cache_bytes: usize,
    /// What the KV caches store (`None`: each model's default, f16 on a CPU, f32 on a GPU).
    pub kv_cache_dtype: Option<candle_core::DType>,
    /// The most tokens per engine step.
    pub max_batch_tokens: usize,
    /// The most prompt tokens in an engine step that also continues answers.
    pub max_prefill_while_decoding: Option<usize>,
    /// The most sequences a local model runs at once.
    pub max_running: usize,
    /// Time limit for a remote provider to start answering.
    pub request_timeout: Duration,
    /// System prompt for conversations (and users) that set none; empty for none at all.
    pub default_system_prompt: String,
}

impl Config {
    /// The database file.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("enclave.redb")
    }

    /// What the auth service runs with.
    pub fn auth_settings(&self) -> crate::auth::AuthSettings {
        self.accounts.auth_settings()
    }

    /// Where hf-hub downloads go.
    pub fn model_cache_dir(&self) -> PathBuf {
        self.data_dir.join("models")
    }

    /// Where images attached to messages are stored (named by id).
    pub fn images_dir(&self) -> PathBuf {
        self.data_dir.join("images")
    }

    /// Where uploaded documents are stored (named by id).
    pub fn documents_dir(&self) -> PathBuf {
        self.data_dir.join("documents")
    }

    /// Where the document chunks and their vectors live (LanceDB).
    pub fn vectors_dir(&self) -> PathBuf {
        self.data_dir.join("lance")
    }
}

fn read_file_config(common: &CommonArgs) -> Result<FileConfig, ConfigError> {
    let (path, required) = match &common.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from("enclave.toml"), false),
    };
    if !path.exists() {
        if required {
            return Err(ConfigError::new(format!(
                "configuration file {} does not exist",
                path.display()
            )));
        }
        return Ok(FileConfig::default());
    }
    let text =
        std::fs::read_to_string(&path).map_err(|e| ConfigError::new(format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| ConfigError::new(format!("{} is not valid: {e}", path.display())))
}

/// What every command that opens the account database needs (`serve`, `user add`), resolved
/// by the same rules for both.
#[derive(Debug, Clone)]
pub struct AccountConfig {
    /// Database, uploads and downloaded models live here.
    pub data_dir: PathBuf,
    /// Lifetime of access tokens.
    pub access_token_ttl: Duration,
    /// Lifetime of refresh tokens.
    pub refresh_token_ttl: Duration,
    /// The longest a session lives from its login, however often it is refreshed.
    pub session_lifetime: Duration,
    /// Who may register unless an administrator chose otherwise (the first account always can).
    pub registration: crate::store::RegistrationPolicy,
    /// Request and failure budgets.
    pub limits: crate::auth::limits::LimitSettings,
}

impl AccountConfig {
    /// The database file.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("enclave.redb")
    }

    /// The data directory and token lifetimes chosen by flags, variables or the file.
    pub fn resolve(common: &CommonArgs) -> Result<AccountConfig, ConfigError> {
        let serve = ServeArgs {
            common: common.clone(),
            ..ServeArgs::default()
        };
        AccountConfig::from_parts(&serve, &read_file_config(common)?)
    }

    /// What the auth service runs with.
    pub fn auth_settings(&self) -> crate::auth::AuthSettings {
        crate::auth::AuthSettings {
            access_ttl: self.access_token_ttl,
            refresh_ttl: self.refresh_token_ttl,
            session_lifetime: self.session_lifetime,
            registration: self.registration,
            limits: self.limits,
        }
    }

    fn from_parts(args: &ServeArgs, file: &FileConfig) -> Result<AccountConfig, ConfigError> {
        let common = &args.common;
        let data_dir = common
            .data_dir
            .clone()
            .or(file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from("data"));
        let access = file.access_token_ttl_secs.unwrap_or(15 * 60);
        let refresh = file.refresh_token_ttl_secs.unwrap_or(7 * 24 * 3600);
        if access == 0 || refresh <= access {
            return Err(ConfigError::new(
                "access_token_ttl_secs must be positive and shorter than refresh_token_ttl_secs",
            ));
        }
        let lifetime = file.session_lifetime_secs.unwrap_or(30 * 24 * 3600);
        if lifetime == 0 {
            return Err(ConfigError::new("session_lifetime_secs must be positive"));
        }
        Ok(AccountConfig {
            data_dir,
            access_token_ttl: Duration::from_secs(access),
            refresh_token_ttl: Duration::from_secs(refresh),
            session_lifetime: Duration::from_secs(lifetime),
            registration: registration_policy(args, file)?,
            limits: limit_settings(args, file)?,
        })
    }
}

impl Config {
    /// Merges flags / variables (already merged by clap) over the file over the defaults,
    /// then checks the result.
    pub fn resolve(args: &ServeArgs) -> Result<Config, ConfigError> {
        let file = read_file_config(&args.common)?;
        let accounts = AccountConfig::from_parts(args, &file)?;
        let trusted_proxies = trusted_proxies(args.trusted_proxies.as_ref().or(file.trusted_proxies.as_ref()))?;
        let addr_text = args
            .addr
            .clone()
            .or(file.addr)
            .unwrap_or_else(|| "127.0.0.1:8080".into());
        let addr: SocketAddr = addr_text
            .parse()
            .map_err(|_| ConfigError::new(format!("addr {addr_text:?} is not HOST:PORT (e.g. 127.0.0.1:8080)")))?;
        let data_dir = accounts.data_dir.clone();
        std::fs::create_dir_all(&data_dir)
            .map_err(|e| ConfigError::new(format!("cannot create the data directory {}: {e}", data_dir.display())))?;
        let models_path = args
            .models
            .clone()
            .or(file.models)
            .unwrap_or_else(|| PathBuf::from("models.toml"));
        let catalogue = ModelCatalogue::load(&models_path)?;
        let default_model = match args.default_model.clone().or(file.default_model) {
            Some(id) => {
                catalogue.check_chat_model(&id)?;
                id
            }
            None => catalogue
                .default_chat_model()
                .ok_or_else(|| ConfigError::new(format!("{} has no chat model", models_path.display())))?
                .to_string(),
        };
        let max_body_bytes = args.max_body_bytes.or(file.max_body_bytes).unwrap_or(1 << 20);
        if max_body_bytes < 1024 {
            return Err(ConfigError::new("max_body_bytes must be at least 1024"));
        }
        let max_upload_bytes = args
            .max_upload_bytes
            .or(file.max_upload_bytes)
            .unwrap_or(50 * 1024 * 1024);
        if max_upload_bytes == 0 {
            return Err(ConfigError::new("max_upload_bytes must be at least 1"));
        }
        let max_image_bytes = file.max_image_bytes.unwrap_or(20 * 1024 * 1024);
        if max_image_bytes < 1024 {
            return Err(ConfigError::new("max_image_bytes must be at least 1024"));
        }
        let max_images_per_message = file.max_images_per_message.unwrap_or(16);
        if !(1..=256).contains(&max_images_per_message) {
            return Err(ConfigError::new("max_images_per_message must be between 1 and 256"));
        }
        let max_image_request_bytes = file.max_image_request_bytes.unwrap_or(64 << 20).max(max_body_bytes);
        let ocr_language = match file.ocr_language {
            None => Some("eng".to_owned()),
            Some(language) if language.trim().is_empty() => None,
            Some(language) => {
                let language = language.trim().to_owned();
                if !language
                    .split('+')
                    .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
                {
                    return Err(ConfigError::new(format!(
                        "ocr_language {language:?} is not a Tesseract language list such as \"eng\" or \"eng+deu\""
                    )));
                }
                Some(language)
            }
        };
        let chunk_tokens = args.chunk_tokens.or(file.chunk_tokens);
        if chunk_tokens.is_some_and(|t| t < 16) {
            return Err(ConfigError::new("chunk_tokens must be at least 16"));
        }
        let chunk_overlap = args.chunk_overlap.or(file.chunk_overlap);
        if let (Some(overlap), Some(tokens)) = (chunk_overlap, chunk_tokens) {
            if overlap * 2 > tokens {
                return Err(ConfigError::new("chunk_overlap must be at most half of chunk_tokens"));
            }
        }
        let embed_precision = match file.embed_precision.as_deref() {
            None => crate::engine::EmbedPrecision::Auto,
            Some(value) => crate::engine::EmbedPrecision::parse(value).ok_or_else(|| {
                ConfigError::new(format!("embed_precision must be \"auto\" or \"f32\", not {value:?}"))
            })?,
        };
        let queue = file.model_queue_capacity.unwrap_or(64);
        if queue == 0 {
            return Err(ConfigError::new("model_queue_capacity must be at least 1"));
        }
        let kv_cache_mb = args.kv_cache_mb.or(file.kv_cache_mb).unwrap_or(2048);
        if kv_cache_mb == 0 {
            return Err(ConfigError::new("kv_cache_mb must be at least 1"));
        }
        let kv_cache_dtype = match args.kv_cache_dtype.clone().or(file.kv_cache_dtype).as_deref() {
            None | Some("auto") => None,
            Some("f16") => Some(candle_core::DType::F16),
            Some("f32") => Some(candle_core::DType::F32),
            Some(other) => {
                return Err(ConfigError::new(format!(
                    "kv_cache_dtype must be \"auto\", \"f16\" or \"f32\", not {other:?}"
                )))
            }
        };
        let max_batch_tokens = args.max_batch_tokens.or(file.max_batch_tokens).unwrap_or(512);
        let max_running = args.max_running.or(file.max_running).unwrap_or(64);
        if max_running == 0 || max_batch_tokens < max_running {
            return Err(ConfigError::new(
                "max_running must be at least 1 and max_batch_tokens at least max_running",
            ));
        }
        let max_prefill_while_decoding = args.max_prefill_while_decoding.or(file.max_prefill_while_decoding);
        if max_prefill_while_decoding == Some(0) {
            return Err(ConfigError::new("max_prefill_while_decoding must be at least 1"));
        }
        Ok(Config {
            addr,
            data_dir: absolute(&data_dir),
            catalogue,
            default_model,
            metrics_token: args
                .metrics_token
                .clone()
                .or(file.metrics_token)
                .filter(|t| !t.is_empty()),
            offline: args.offline.or(file.offline).unwrap_or(false),
            max_body_bytes,
            max_upload_bytes,
            max_image_bytes,
            max_images_per_message,
            max_image_request_bytes,
            ocr_language,
            chunk_tokens,
            chunk_overlap,
            embed_batch_tokens: file.embed_batch_tokens.unwrap_or(8192).max(256),
            embed_precision,
            extract_timeout: Duration::from_secs(file.extract_timeout_secs.unwrap_or(300).max(1)),
            extract_memory_bytes: file.extract_memory_mb.unwrap_or(2048).max(256) << 20,
            log: args.log.clone().or(file.log).unwrap_or_else(|| "info".into()),
            accounts,
            trusted_proxies,
            audit_retention: match args.audit_retention_days.or(file.audit_retention_days).unwrap_or(365) {
                0 => None,
                days => Some(Duration::from_secs(u64::from(days) * 86400)),
            },
            model_queue_capacity: queue,
            kv_cache_bytes: kv_cache_mb << 20,
            kv_cache_dtype,
            max_batch_tokens,
            max_prefill_while_decoding,
            max_running,
            request_timeout: Duration::from_secs(file.request_timeout_secs.unwrap_or(60)),
            default_system_prompt: args
                .default_system_prompt
                .clone()
                .or(file.default_system_prompt)
                .unwrap_or_else(|| DEFAULT_SYSTEM_PROMPT.to_string()),
        })
    }
}

/// The request and failure budgets: flags and variables over the file over the defaults.
fn limit_settings(args: &ServeArgs, file: &FileConfig) -> Result<crate::auth::limits::LimitSettings, ConfigError> {
    let defaults = crate::auth::limits::LimitSettings::default();
    let settings = crate::auth::limits::LimitSettings {
        requests_per_minute: args
            .rate_limit_per_minute
            .or(file.rate_limit_per_minute)
            .unwrap_or(defaults.requests_per_minute),
        request_burst: args
            .rate_limit_burst
            .or(file.rate_limit_burst)
            .unwrap_or(defaults.request_burst),
        failures_per_minute: args
            .login_failures_per_minute
            .or(file.login_failures_per_minute)
            .unwrap_or(defaults.failures_per_minute),
    };
    if settings.request_burst == 0 {
        return Err(ConfigError::new(
            "rate_limit_burst must be at least 1 (set rate_limit_per_minute to 0 to turn the limit off)",
        ));
    }
    Ok(settings)
}

/// The registration policy: `registration` (open, invite-only, closed), or the older
/// `allow_registration` (true: open, false: closed); both at once must agree.
fn registration_policy(args: &ServeArgs, file: &FileConfig) -> Result<crate::store::RegistrationPolicy, ConfigError> {
    use crate::store::RegistrationPolicy;
    let policy = match args.registration.as_ref().or(file.registration.as_ref()) {
        Some(text) => Some(text.parse::<RegistrationPolicy>().map_err(ConfigError::new)?),
        None => None,
    };
    let allow = args.allow_registration.or(file.allow_registration);
    let from_allow = allow.map(|open| {
        if open {
            RegistrationPolicy::Open
        } else {
            RegistrationPolicy::Closed
        }
    });
    match (policy, from_allow) {
        (Some(policy), Some(old)) if policy != old => Err(ConfigError::new(format!(
            "registration {policy:?} and allow_registration {} disagree; keep only registration",
            allow.unwrap_or(true)
        ))),
        (Some(policy), _) => Ok(policy),
        (None, Some(old)) => Ok(old),
        (None, None) => Ok(RegistrationPolicy::Open),
    }
}

/// Parses the trusted proxies: addresses (one host) or CIDR networks.
fn trusted_proxies(entries: Option<&Vec<String>>) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    entries
        .into_iter()
        .flatten()
        .map(|entry| entry.trim())
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry
                .parse::<ipnet::IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    ConfigError::new(format!(
                        "trusted_proxies: {entry:?} is neither an address nor a network (10.0.0.1, 10.0.0.0/8)"
                    ))
                })
        })
        .collect()
}

fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}
