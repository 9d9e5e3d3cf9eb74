//! The command line: `enclave serve`, `enclave user add`, `enclave selftest`...

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Enclave: a private, self-hosted ChatGPT in one binary.
#[derive(Debug, Parser)]
#[command(name = "enclave", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Sub-commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the server.
    Serve(Box<ServeArgs>),
    /// Manage accounts from the command line.
    #[command(subcommand)]
    User(UserCommand),
    /// Check the audit log from the command line.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Read a document's text and print it as JSON (the server runs this in a child process,
    /// with time and memory limits, to isolate its parsers).
    #[command(hide = true)]
    Extract(ExtractArgs),
    /// Check that the engine computes right on this machine's device (CUDA GPU or CPU):
    /// logits against the CPU, greedy output alone and batched; prints a JSON report.
    Selftest(SelftestArgs),
    /// Write a random-weight model of a real size (for speed measurements without a
    /// download).
    SynthModel(SynthModelArgs),
}

/// `enclave selftest` options.
#[derive(Debug, Args)]
pub struct SelftestArgs {
    /// `auto` (a CUDA GPU when there is one), `cuda` or `cpu`.
    #[arg(long, default_value = "auto", value_parser = ["auto", "cuda", "cpu"])]
    pub device: String,
    /// Also write the report to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// `enclave synth-model` options.
#[derive(Debug, Args)]
pub struct SynthModelArgs {
    /// The shape: `llama3-8b`, `llama3-1b` or `small`.
    #[arg(long, default_value = "llama3-8b", value_parser = ["llama3-8b", "llama3-1b", "small"])]
    pub shape: String,
    /// The weights' format: `q4_k_m` or `f16`.
    #[arg(long, default_value = "q4_k_m", value_parser = ["q4_k_m", "f16"])]
    pub weights: String,
    /// The same seed writes the same file.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The GGUF file to write.
    pub out: PathBuf,
}

/// `enclave extract` options (internal).
#[derive(Debug, Args)]
pub struct ExtractArgs {
    /// The document kind (`pdf`, `docx`...).
    #[arg(long)]
    pub kind: String,
    /// How to read it (limits, OCR language), as JSON.
    #[arg(long)]
    pub options: String,
    /// The file.
    pub file: PathBuf,
}

/// Account commands (run them while the server is stopped: it holds the database open).
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account (the password is read from ENCLAVE_NEW_PASSWORD or standard input).
    Add(UserAddArgs),
    /// End the lockout that failed logins put on an account (for example a locked-out
    /// super_admin's).
    Unlock(UserLoginArgs),
    /// Remove an account's two-factor authentication (its owner lost the app and the recovery
    /// codes); they log in with the password alone and can set it up again.
    #[command(name = "reset-2fa")]
    Reset2fa(UserLoginArgs),
}

/// Audit log commands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check that no entry of the audit log was edited or removed: every entry must match its
    /// hash and link to the one before. Exits with 1 and names the first entry that does not
    /// hold. Reads the database, so run it while the server is stopped; a running server
    /// answers the same check at GET /api/v1/admin/audit/verify.
    Verify(AuditVerifyArgs),
}

/// `enclave audit verify` options.
#[derive(Debug, Args)]
pub struct AuditVerifyArgs {
    /// Common options.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Options of account commands that name one account.
#[derive(Debug, Args)]
pub struct UserLoginArgs {
    /// Common options.
    #[command(flatten)]
    pub common: CommonArgs,
    /// The account's email or username.
    pub login: String,
}

/// Options shared by every command that opens the data directory.
#[derive(Debug, Clone, Default, Args)]
pub struct CommonArgs {
    /// Configuration file (TOML); optional. Values in it are overridden by ENCLAVE_* variables
    /// and flags.
    #[arg(long, env = "ENCLAVE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the database and uploaded files live [default: ./data].
    #[arg(long, env = "ENCLAVE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// `enclave serve` options. Every flag also reads an ENCLAVE_* variable and a key of the
/// same name in the configuration file.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Common options.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "ENCLAVE_ADDR", value_name = "HOST:PORT")]
    pub addr: Option<String>,
    /// Model catalogue [default: models.toml].
    #[arg(long, env = "ENCLAVE_MODELS", value_name = "FILE")]
    pub models: Option<PathBuf>,
    /// Model id used when a conversation names none [default: the catalogue's default_chat].
    #[arg(long, env = "ENCLAVE_DEFAULT_MODEL", value_name = "ID")]
    pub default_model: Option<String>,
    /// Whether anyone may register (the first account can always be created) [default: true].
    /// Kept for older setups: true is `--registration open`, false `--registration closed`.
    #[arg(long, env = "ENCLAVE_ALLOW_REGISTRATION", value_name = "BOOL")]
    pub allow_registration: Option<bool>,
    /// Who may register: open, invite-only or closed (the first account always can; an
    /// administrator's choice in the web UI or API wins over this) [default: open].
    #[arg(long, env = "ENCLAVE_REGISTRATION", value_name = "POLICY")]
    pub registration: Option<String>,
    /// A bearer secret that opens /metrics to a scraper without an account (admins can always
    /// read it) [default: none].
    #[arg(long, env = "ENCLAVE_METRICS_TOKEN", value_name = "SECRET")]
    pub metrics_token: Option<String>,
    /// Chat and /v1 requests each user may send a minute; 0 turns the limit off [default: 60].
    #[arg(long, env = "ENCLAVE_RATE_LIMIT_PER_MINUTE", value_name = "N")]
    pub rate_limit_per_minute: Option<u32>,
    /// Chat and /v1 requests a user may send at once before the per-minute rate applies
    /// [default: 30].
    #[arg(long, env = "ENCLAVE_RATE_LIMIT_BURST", value_name = "N")]
    pub rate_limit_burst: Option<u32>,
    /// Failed logins (and registrations, 2FA codes, password changes) each client address may
    /// make a minute before every attempt from it is refused for a while; 0 turns the limit
    /// off [default: 20].
    #[arg(long, env = "ENCLAVE_LOGIN_FAILURES_PER_MINUTE", value_name = "N")]
    pub login_failures_per_minute: Option<u32>,
    /// Reverse proxies (addresses or CIDR networks, comma-separated) whose X-Forwarded-For
    /// header names the client; from any other peer the header is ignored [default: none].
    #[arg(long, env = "ENCLAVE_TRUSTED_PROXIES", value_name = "ADDRS", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<String>>,
    /// Days the audit log keeps its entries; older ones are removed hourly (the chain of
    /// hashes goes on from the newest removed); 0 keeps them forever [default: 365].
    #[arg(long, env = "ENCLAVE_AUDIT_RETENTION_DAYS", value_name = "DAYS")]
    pub audit_retention_days: Option<u32>,
    /// Never download models; use only local files and the hf-hub cache [default: false].
    #[arg(long, env = "ENCLAVE_OFFLINE", value_name = "BOOL")]
    pub offline: Option<bool>,
    /// Largest accepted request body in bytes [default: 1048576]. Document uploads have
    /// their own limit (--max-upload-bytes).
    #[arg(long, env = "ENCLAVE_MAX_BODY_BYTES", value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Largest accepted document, per file, in bytes [default: 52428800 (50 MB)].
    #[arg(long, env = "ENCLAVE_MAX_UPLOAD_BYTES", value_name = "BYTES")]
    pub max_upload_bytes: Option<u64>,
    /// Tokens per document chunk [default: the embedding model's window].
    #[arg(long, env = "ENCLAVE_CHUNK_TOKENS", value_name = "TOKENS")]
    pub chunk_tokens: Option<usize>,
    /// Tokens shared by neighbouring chunks [default: an eighth of the chunk].
    #[arg(long, env = "ENCLAVE_CHUNK_OVERLAP", value_name = "TOKENS")]
    pub chunk_overlap: Option<usize>,
    /// System prompt for conversations that set none; "" for none
    /// [default: "You are a helpful assistant."].
    #[arg(long, env = "ENCLAVE_DEFAULT_SYSTEM_PROMPT", value_name = "TEXT")]
    pub default_system_prompt: Option<String>,
    /// Memory for each local model's KV cache, in MiB [default: 2048]. More lets more
    /// conversations run at once and keeps more shared prompt prefixes cached.
    #[arg(long, env = "ENCLAVE_KV_CACHE_MB", value_name = "MIB")]
    pub kv_cache_mb: Option<usize>,
    /// What the KV cache stores keys and values in: auto (f16 on a CPU, f32 on a GPU), f16
    /// (half the memory, twice the tokens a budget holds) or f32 [default: auto].
    #[arg(long, env = "ENCLAVE_KV_CACHE_DTYPE", value_name = "auto|f16|f32")]
    pub kv_cache_dtype: Option<String>,
    /// The most tokens one engine step runs (decode tokens and prompt chunks) [default: 512].
    #[arg(long, env = "ENCLAVE_MAX_BATCH_TOKENS", value_name = "TOKENS")]
    pub max_batch_tokens: Option<usize>,
    /// The most prompt tokens in an engine step that also continues running answers
    /// [default: 128 on a CPU, --max-batch-tokens on a GPU]. Lower keeps streaming answers
    /// smoother while new prompts arrive; higher gives more throughput and starts new answers
    /// sooner (docs/BENCHMARKS.md).
    #[arg(long, env = "ENCLAVE_MAX_PREFILL_WHILE_DECODING", value_name = "TOKENS")]
    pub max_prefill_while_decoding: Option<usize>,
    /// The most answers one local model generates at once [default: 64].
    #[arg(long, env = "ENCLAVE_MAX_RUNNING", value_name = "N")]
    pub max_running: Option<usize>,
    /// Log filter, e.g. `info` or `enclave=debug` [default: info].
    #[arg(long, env = "ENCLAVE_LOG", value_name = "FILTER")]
    pub log: Option<String>,
}

/// `enclave user add` options.
#[derive(Debug, Args)]
pub struct UserAddArgs {
    /// Common options.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Email address (the login).
    #[arg(long)]
    pub email: String,
    /// Username (also accepted at login).
    #[arg(long)]
    pub username: String,
    /// Role: viewer, user, admin or super_admin.
    #[arg(long, default_value = "user")]
    pub role: String,
}
