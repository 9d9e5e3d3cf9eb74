//! Brute force and abuse: what stops a caller from trying passwords at full speed or taking
//! more than a fair share of the models.
//!
//! Three limits, each in its own file, all owned by the auth service:
//! - [`lockout`]: per account, failed logins in a row lock it for a growing while (and a name
//!   of no account answers the same, so the lock reveals nothing);
//! - [`address_failures`]: per client address, failed logins, registrations, 2FA codes and
//!   password changes a minute (successes are free);
//! - [`user_requests`]: per user, requests a minute on chat and `/v1` (a token bucket).
//!
//! The fourth guard, the bounded pool that runs password hashing, lives with the hashing
//! (`passwords.rs`). Every refusal is counted in `enclave_limit_refusals_total{limit}`.

pub mod address_failures;
pub mod lockout;
pub mod user_requests;

/// The configured limits (see `--rate-limit-per-minute`, `--rate-limit-burst`,
/// `--login-failures-per-minute`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSettings {
    /// Chat and `/v1` requests per user a minute; 0 is no limit.
    pub requests_per_minute: u32,
    /// The burst of requests a user may send at once.
    pub request_burst: u32,
    /// Failed attempts per client address a minute; 0 is no limit.
    pub failures_per_minute: u32,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            requests_per_minute: 60,
            request_burst: 30,
            failures_per_minute: 20,
        }
    }
}

/// Which limit refused a request (the label of the refusal metric).
#[derive(Debug, Clone, Copy)]
pub enum Refusal {
    /// A user's request budget.
    UserRequests,
    /// A client address's failure budget.
    AddressFailures,
    /// An account (or unknown name) locked by failed logins.
    Lockout,
    /// The password hashing pool was full.
    HashingPool,
}

/// Counts one refusal by `limit`.
pub fn count_refusal(limit: Refusal) {
    let label = match limit {
        Refusal::UserRequests => "user_requests",
        Refusal::AddressFailures => "address_failures",
        Refusal::Lockout => "lockout",
        Refusal::HashingPool => "hashing_pool",
    };
    metrics::counter!("enclave_limit_refusals_total", "limit" => label).increment(1);
}
