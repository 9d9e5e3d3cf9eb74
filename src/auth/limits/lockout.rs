//! Account lockout: after [`LOCK_AFTER`] failed logins in a row an account refuses logins for a
//! while, and each further failure once the lock has passed doubles the wait (1 minute, 2, 4...
//! up to an hour). A good login clears the count; failures a day old are forgotten. It is a
//! soft lock: time or an administrator (`enclave user unlock`) ends it.
//!
//! A name that belongs to no account must get the same answers, or the lock would tell an
//! attacker which names exist: [`UnknownNames`] keeps the same count for such names, in memory
//! (an account's count is stored with the account; a restart forgets only unknown names).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::store::LoginFailures;

/// Failures in a row that lock an account.
pub const LOCK_AFTER: u32 = 5;
/// The first lock's length; each later one doubles it.
const FIRST_LOCK_MS: i64 = 60_000;
/// The longest lock.
const LONGEST_LOCK_MS: i64 = 3_600_000;
/// Failures this old (and not locking now) no longer count.
const FORGET_AFTER_MS: i64 = 24 * 3_600_000;
/// Unknown names remembered at most (the oldest lock is dropped for a new one).
const UNKNOWN_NAMES_MAX: usize = 10_000;

/// How long logins stay refused, or `None` when they are not.
pub fn locked_for(failures: &LoginFailures, now_ms: i64) -> Option<Duration> {
    (failures.locked_until > now_ms).then(|| Duration::from_millis((failures.locked_until - now_ms) as u64))
}

/// The state after one more failed login at `now_ms`.
pub fn after_failure(failures: LoginFailures, now_ms: i64) -> LoginFailures {
    let forgotten = now_ms - failures.last_at > FORGET_AFTER_MS && failures.locked_until <= now_ms;
    let count = if forgotten { 1 } else { failures.count.saturating_add(1) };
    let locked_until = if count >= LOCK_AFTER {
        let doublings = (count - LOCK_AFTER).min(16);
        now_ms + (FIRST_LOCK_MS << doublings).min(LONGEST_LOCK_MS)
    } else {
        failures.locked_until
    };
    LoginFailures {
        count,
        last_at: now_ms,
        locked_until,
    }
}

/// Lockout state of login names that belong to no account, by lower-cased name.
#[derive(Default)]
pub struct UnknownNames {
    names: Mutex<HashMap<String, LoginFailures>>,
}

impl UnknownNames {
    /// How long logins as `name` stay refused.
    pub fn locked_for(&self, name: &str, now_ms: i64) -> Option<Duration> {
        let names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        names.get(&name.to_lowercase()).and_then(|f| locked_for(f, now_ms))
    }

    /// Counts a failed login as `name`.
    pub fn failed(&self, name: &str, now_ms: i64) {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        let key = name.to_lowercase();
        if !names.contains_key(&key) && names.len() >= UNKNOWN_NAMES_MAX {
            names.retain(|_, f| f.locked_until > now_ms || now_ms - f.last_at <= FORGET_AFTER_MS);
            if names.len() >= UNKNOWN_NAMES_MAX {
                let oldest = names.iter().min_by_key(|(_, f)| f.last_at).map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    names.remove(&oldest);
                }
            }
        }
        let entry = names.entry(key).or_default();
        *entry = after_failure(*entry, now_ms);
    }

    /// Forgets every unknown name's failures (an administrator's unlock of a name).
    pub fn forget(&self, name: &str) {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        names.remove(&name.to_lowercase());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail_times(n: u32, now: i64) -> LoginFailures {
        (0..n).fold(LoginFailures::default(), |f, _| after_failure(f, now))
    }

    #[test]
    fn four_failures_do_not_lock_and_the_fifth_does_for_a_minute() {
        let now = 1_000_000_000;
        assert_eq!(locked_for(&fail_times(4, now), now), None);
        assert_eq!(locked_for(&fail_times(5, now), now), Some(Duration::from_secs(60)));
    }

    #[test]
    fn each_failure_after_a_lock_doubles_the_next_lock_up_to_an_hour() {
        let mut now = 1_000_000_000;
        let mut failures = fail_times(5, now);
        let mut expected = 60;
        for _ in 0..8 {
            now = failures.locked_until;
            failures = after_failure(failures, now);
            expected = (expected * 2).min(3600);
            assert_eq!(locked_for(&failures, now), Some(Duration::from_secs(expected)));
        }
        assert_eq!(expected, 3600);
    }

    #[test]
    fn failures_a_day_old_are_forgotten() {
        let now = 1_000_000_000;
        let old = fail_times(4, now);
        let later = after_failure(old, now + FORGET_AFTER_MS + 1);
        assert_eq!(later.count, 1);
        assert_eq!(locked_for(&later, now + FORGET_AFTER_MS + 1), None);
    }

    #[test]
    fn an_unknown_name_locks_like_an_account_whatever_its_case() {
        let names = UnknownNames::default();
        let now = 1_000_000_000;
        for _ in 0..4 {
            names.failed("Nobody", now);
        }
        assert_eq!(names.locked_for("nobody", now), None);
        names.failed("NOBODY", now);
        assert_eq!(names.locked_for("nobody", now), Some(Duration::from_secs(60)));
        names.forget("nobody");
        assert_eq!(names.locked_for("nobody", now), None);
    }

    #[test]
    fn unknown_names_stay_bounded() {
        let names = UnknownNames::default();
        for i in 0..UNKNOWN_NAMES_MAX + 10 {
            names.failed(&format!("name{i}"), 1_000 + i as i64);
        }
        assert!(names.names.lock().unwrap().len() <= UNKNOWN_NAMES_MAX);
        // The newest name is still counted.
        assert!(names
            .names
            .lock()
            .unwrap()
            .contains_key(&format!("name{}", UNKNOWN_NAMES_MAX + 9)));
    }
}
