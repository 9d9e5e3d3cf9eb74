//! The `enclave` binary: parses the command line and hands over to the library.

use std::io::Read;
use std::process::ExitCode;

use clap::Parser;
use enclave::config::{self, Cli, Command, Config, UserCommand};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Extract(args) = &cli.command {
        // The document reader's child process: no runtime, no logging, JSON out.
        return enclave::documents::extract::isolate::run_child(&args.kind, &args.limits, &args.file);
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
            Command::User(UserCommand::Unlock(args)) => unlock_user(args),
            Command::User(UserCommand::Reset2fa(args)) => reset_two_factor(args),
            Command::Extract(_) => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
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
    let auth = enclave::auth::AuthService::new(store, accounts.auth_settings())?;
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
    println!("created {} ({}) with role {:?}", user.username, user.email, user.role);
    Ok(())
}

/// `enclave user unlock LOGIN`: ends an account's lockout.
fn unlock_user(args: config::UserLoginArgs) -> anyhow::Result<()> {
    let accounts = config::AccountConfig::resolve(&args.common)?;
    let store = open_store(&accounts)?;
    let auth = enclave::auth::AuthService::new(store, accounts.auth_settings())?;
    if !auth.unlock(&args.login)? {
        anyhow::bail!("no account has the email or username {:?}", args.login);
    }
    println!("unlocked {}", args.login);
    Ok(())
}

/// `enclave user reset-2fa LOGIN`: removes an account's second factor.
fn reset_two_factor(args: config::UserLoginArgs) -> anyhow::Result<()> {
    let accounts = config::AccountConfig::resolve(&args.common)?;
    let auth = enclave::auth::AuthService::new(open_store(&accounts)?, accounts.auth_settings())?;
    if !auth.reset_totp(&args.login)? {
        anyhow::bail!("no account has the email or username {:?}", args.login);
    }
    println!("two-factor authentication removed from {}", args.login);
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
