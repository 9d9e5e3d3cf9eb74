//! The `enclave` binary: parses the command line and hands over to the library.

use std::io::Read;
use std::process::ExitCode;

use clap::Parser;
use enclave::audit::{AuditEvent, AuditLog};
use enclave::config::{self, AuditCommand, Cli, Command, Config, UserCommand};
use enclave_protocol::AuditAction;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Extract(args) = &cli.command {
        // The document reader's child process: no runtime, no logging, JSON out.
        return enclave::documents::extract::isolate::run_child(&args.kind, &args.options, &args.file);
    }
    match &cli.command {
        // Engine tools: no runtime, no server.
        Command::Selftest(args) => return selftest(args),
        Command::SynthModel(args) => return report(synth_model(args)),
        _ => {}
    }
    enclave::server::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => {
                let config = Config::resolve(&args)?;
                enclave::telemetry::init(&config.log);
                enclave::server::run(config).await
            }
            Command::User(UserCommand::Add(args)) => add_user(args).await,
            Command::User(UserCommand::Unlock(args)) => unlock_user(args).await,
            Command::User(UserCommand::Reset2fa(args)) => reset_two_factor(args).await,
            Command::Audit(AuditCommand::Verify(args)) => verify_audit(args),
            Command::Extract(_) | Command::Selftest(_) | Command::SynthModel(_) => Ok(()),
        }
    });
    report(result)
}

/// The exit status of a command's result; an error is printed.
fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `enclave selftest`: prints the JSON report; fails when a check does.
fn selftest(args: &config::SelftestArgs) -> ExitCode {
    enclave::telemetry::init(&std::env::var("ENCLAVE_LOG").unwrap_or_else(|_| "warn".into()));
    let choice = match args.device.as_str() {
        "cuda" => enclave::engine::DeviceChoice::Cuda,
        "cpu" => enclave::engine::DeviceChoice::Cpu,
        _ => enclave::engine::DeviceChoice::Auto,
    };
    let outcome = enclave::engine::selftest::run_selftest(choice)
        .map_err(anyhow::Error::from)
        .and_then(|report| {
            let text = serde_json::to_string_pretty(&report)?;
            println!("{text}");
            if let Some(path) = &args.json {
                std::fs::write(path, &text)?;
            }
            Ok(report.passed)
        });
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("error: a self-test check failed (see the report)");
            ExitCode::FAILURE
        }
        Err(e) => report(Err(e)),
    }
}

/// `enclave synth-model`: writes the file and says what it holds.
fn synth_model(args: &config::SynthModelArgs) -> anyhow::Result<()> {
    use enclave::engine::synthetic::{write_synthetic_model, SyntheticShape, SyntheticWeights};
    let shape = SyntheticShape::by_name(&args.shape).ok_or_else(|| anyhow::anyhow!("unknown shape {}", args.shape))?;
    let weights =
        SyntheticWeights::by_name(&args.weights).ok_or_else(|| anyhow::anyhow!("unknown weights {}", args.weights))?;
    let started = std::time::Instant::now();
    let summary = write_synthetic_model(&args.out, &shape, weights, args.seed)?;
    // One JSON line: the GPU check reads the bytes a decode step reads from it.
    let line = serde_json::json!({
        "path": args.out,
        "shape": args.shape,
        "weights": args.weights,
        "tensors": summary.tensors,
        "tensor_bytes": summary.tensor_bytes,
        "bytes_read_per_token": summary.bytes_read_per_token,
        "parameters": shape.parameters(),
        "seconds": started.elapsed().as_secs_f64(),
    });
    println!("{line}");
    Ok(())
}

async fn add_user(args: config::UserAddArgs) -> anyhow::Result<()> {
    let role: enclave::store::UserRole = args.role.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    let password = match std::env::var("ENCLAVE_NEW_PASSWORD") {
        Ok(p) => p,
        Err(_) => {
            eprintln!("password (read from standard input, at least 12 characters):");
            let mut line = String::new();
            std::io::stdin().read_to_string(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    // The same data directory and token lifetimes as `serve` with the same flags and file.
    let accounts = config::AccountConfig::resolve(&args.common)?;
    let store = open_store(&accounts)?;
    let auth = enclave::auth::AuthService::new(store.clone(), accounts.auth_settings())?;
    let user = auth
        .create_user(
            enclave::auth::Registration {
                email: args.email,
                username: args.username,
                password,
            },
            role,
        )
        .await?;
    let event = AuditEvent::new(AuditAction::UserCreate)
        .about(user.id)
        .with(serde_json::json!({ "role": user.role, "via": "command line" }));
    record(&store, event).await?;
    println!("created {} ({}) with role {:?}", user.username, user.email, user.role);
    Ok(())
}

/// `enclave user unlock LOGIN`: ends an account's lockout.
async fn unlock_user(args: config::UserLoginArgs) -> anyhow::Result<()> {
    let accounts = config::AccountConfig::resolve(&args.common)?;
    let store = open_store(&accounts)?;
    let auth = enclave::auth::AuthService::new(store.clone(), accounts.auth_settings())?;
    let Some(id) = auth.account_id(&args.login)? else {
        anyhow::bail!("no account has the email or username {:?}", args.login);
    };
    auth.unlock(&args.login)?;
    let event = AuditEvent::new(AuditAction::Unlock)
        .about(id)
        .with(serde_json::json!({ "via": "command line" }));
    record(&store, event).await?;
    println!("unlocked {}", args.login);
    Ok(())
}

/// `enclave user reset-2fa LOGIN`: removes an account's second factor.
async fn reset_two_factor(args: config::UserLoginArgs) -> anyhow::Result<()> {
    let accounts = config::AccountConfig::resolve(&args.common)?;
    let store = open_store(&accounts)?;
    let auth = enclave::auth::AuthService::new(store.clone(), accounts.auth_settings())?;
    let Some(id) = auth.account_id(&args.login)? else {
        anyhow::bail!("no account has the email or username {:?}", args.login);
    };
    auth.reset_totp(&args.login)?;
    let event = AuditEvent::new(AuditAction::TotpReset)
        .about(id)
        .with(serde_json::json!({ "via": "command line" }));
    record(&store, event).await?;
    println!("two-factor authentication removed from {}", args.login);
    Ok(())
}

/// `enclave audit verify`: checks the chain of the audit log; an error names the first entry
/// that does not hold.
fn verify_audit(args: config::AuditVerifyArgs) -> anyhow::Result<()> {
    let accounts = config::AccountConfig::resolve(&args.common)?;
    let check = open_store(&accounts)?.verify_audit()?;
    match check.broken {
        None => {
            println!("the audit log is intact: {} entries checked", check.checked);
            Ok(())
        }
        Some((seq, problem)) => anyhow::bail!(
            "the audit log is broken at entry {seq}: {problem} ({} entries checked)",
            check.checked
        ),
    }
}

/// Records what a command did in the audit log (no account acted: someone at the server's
/// console did) and waits until it is stored.
async fn record(store: &enclave::store::Store, event: AuditEvent) -> anyhow::Result<()> {
    let log = AuditLog::start(store.clone())?;
    log.record(event);
    log.flush().await;
    Ok(())
}

/// The account database, for commands run beside (not through) the server.
fn open_store(accounts: &config::AccountConfig) -> anyhow::Result<enclave::store::Store> {
    enclave::store::Store::open(&accounts.database_path()).map_err(|e| {
        anyhow::anyhow!(
            "cannot open {} ({e}); if the server is running, stop it first: it holds the database",
            accounts.database_path().display()
        )
    })
}
