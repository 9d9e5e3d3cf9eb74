//! Requests per user on the costly routes (sending a chat message, regenerating, the
//! OpenAI-compatible `/v1` API): a token bucket per user (governor's GCRA), refilled at the
//! configured rate per minute and holding a burst. Every request takes a token; with none left
//! the request is refused with the time until the next one.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use uuid::Uuid;

/// Checks between sweeps of users whose bucket is full again (their state is dropped).
const SWEEP_EVERY: u64 = 4096;

/// The request budget of every user.
pub struct UserRequests {
    /// `None` when the limit is off.
    limiter: Option<DefaultKeyedRateLimiter<Uuid>>,
    checks: AtomicU64,
}

impl UserRequests {
    /// `per_minute` requests a minute per user with bursts of `burst` (per_minute 0 turns the
    /// limit off; burst 0 counts as 1).
    pub fn new(per_minute: u32, burst: u32) -> UserRequests {
        let limiter = NonZeroU32::new(per_minute).and_then(|rate| {
            let period = Duration::from_secs(60) / rate.get();
            Quota::with_period(period).map(|quota| {
                DefaultKeyedRateLimiter::keyed(quota.allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN)))
            })
        });
        UserRequests {
            limiter,
            checks: AtomicU64::new(0),
        }
    }

    /// Takes a token of `user`'s bucket, or says how long until one is there.
    pub fn check(&self, user: Uuid) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            limiter.retain_recent();
        }
        limiter
            .check_key(&user)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_gets_the_burst_then_waits_and_others_are_not_affected() {
        let requests = UserRequests::new(60, 3);
        let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
        for _ in 0..3 {
            assert!(requests.check(alice).is_ok());
        }
        let wait = requests.check(alice).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
        assert!(requests.check(bob).is_ok());
    }

    #[test]
    fn zero_per_minute_turns_the_limit_off() {
        let requests = UserRequests::new(0, 1);
        let alice = Uuid::now_v7();
        for _ in 0..1000 {
            assert!(requests.check(alice).is_ok());
        }
    }
}
