//! Failed attempts per client address (logins, registrations, 2FA codes, password changes): a
//! leaky bucket per address that fills by one on each failure and drains at the configured
//! number per minute. While it is full every attempt from that address is refused, good or
//! bad (letting a good one through would tell a guesser it was good); successes never fill
//! it, so a busy office behind one address keeps logging in.
//!
//! Hand-written rather than a governor limiter: governor spends a cell when it checks, and
//! here the check (before the attempt) and the charge (after a failure) are separate steps.
//!
//! IPv6 clients are counted by their /64 network (one host owns a whole /64); IPv4-mapped
//! IPv6 addresses count as the IPv4 address.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked before the drained ones are dropped.
const TRACKED_MAX: usize = 50_000;

/// The failure budget of every client address.
pub struct AddressFailures {
    /// Failures allowed per minute (and in a burst); `None` is off.
    per_minute: Option<u32>,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    /// Failures not yet drained, as of `at`.
    level: f64,
    at: Instant,
}

impl AddressFailures {
    /// A budget of `per_minute` failures a minute per address (0 turns it off).
    pub fn new(per_minute: u32) -> AddressFailures {
        AddressFailures {
            per_minute: (per_minute > 0).then_some(per_minute),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `address` may try now; otherwise how long until it may. An unknown address
    /// (no socket information) is never refused.
    pub fn check(&self, address: Option<IpAddr>) -> Result<(), Duration> {
        self.check_at(address, Instant::now())
    }

    /// Counts a failure from `address`.
    pub fn charge(&self, address: Option<IpAddr>) {
        self.charge_at(address, Instant::now())
    }

    fn check_at(&self, address: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        let (Some(per_minute), Some(address)) = (self.per_minute, address) else {
            return Ok(());
        };
        let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let Some(bucket) = buckets.get(&network_of(address)) else {
            return Ok(());
        };
        let level = drained(*bucket, per_minute, now);
        let room = f64::from(per_minute) - 1.0;
        if level <= room {
            return Ok(());
        }
        let per_second = f64::from(per_minute) / 60.0;
        Err(Duration::from_secs_f64((level - room) / per_second))
    }

    fn charge_at(&self, address: Option<IpAddr>, now: Instant) {
        let (Some(per_minute), Some(address)) = (self.per_minute, address) else {
            return;
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= TRACKED_MAX {
            buckets.retain(|_, bucket| drained(*bucket, per_minute, now) > 0.0);
        }
        let bucket = buckets
            .entry(network_of(address))
            .or_insert(Bucket { level: 0.0, at: now });
        // A full bucket stays full: failures past the budget (refused attempts are never
        // charged, but concurrent ones checked before the bucket filled are) do not pile up.
        let level = (drained(*bucket, per_minute, now) + 1.0).min(f64::from(per_minute));
        *bucket = Bucket { level, at: now };
    }
}

/// The bucket's level at `now`, after draining since it was last filled.
fn drained(bucket: Bucket, per_minute: u32, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
    (bucket.level - elapsed * f64::from(per_minute) / 60.0).max(0.0)
}

/// The key an address is counted under: itself for IPv4, its /64 for IPv6.
fn network_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn an_address_is_refused_after_its_budget_of_failures_and_not_before() {
        let failures = AddressFailures::new(20);
        let now = Instant::now();
        for _ in 0..19 {
            failures.charge_at(ip("192.0.2.1"), now);
            assert!(failures.check_at(ip("192.0.2.1"), now).is_ok());
        }
        failures.charge_at(ip("192.0.2.1"), now);
        let wait = failures.check_at(ip("192.0.2.1"), now).unwrap_err();
        assert!(
            wait > Duration::from_secs(2) && wait <= Duration::from_secs(3),
            "{wait:?}"
        );
        // Other addresses are not affected.
        assert!(failures.check_at(ip("192.0.2.2"), now).is_ok());
    }

    #[test]
    fn the_budget_drains_with_time() {
        let failures = AddressFailures::new(60);
        let now = Instant::now();
        for _ in 0..60 {
            failures.charge_at(ip("192.0.2.1"), now);
        }
        assert!(failures.check_at(ip("192.0.2.1"), now).is_err());
        assert!(failures
            .check_at(ip("192.0.2.1"), now + Duration::from_millis(1_001))
            .is_ok());
    }

    #[test]
    fn ipv6_hosts_of_one_network_share_a_budget_and_mapped_ipv4_is_ipv4() {
        let failures = AddressFailures::new(2);
        let now = Instant::now();
        failures.charge_at(ip("2001:db8:1:2::1"), now);
        failures.charge_at(ip("2001:db8:1:2::ffff"), now);
        assert!(failures.check_at(ip("2001:db8:1:2:3::9"), now).is_err());
        assert!(failures.check_at(ip("2001:db8:1:3::1"), now).is_ok());
        failures.charge_at(ip("::ffff:192.0.2.9"), now);
        failures.charge_at(ip("192.0.2.9"), now);
        assert!(failures.check_at(ip("192.0.2.9"), now).is_err());
    }

    #[test]
    fn zero_turns_it_off_and_an_unknown_address_is_never_refused() {
        let off = AddressFailures::new(0);
        let now = Instant::now();
        for _ in 0..100 {
            off.charge_at(ip("192.0.2.1"), now);
        }
        assert!(off.check_at(ip("192.0.2.1"), now).is_ok());
        let on = AddressFailures::new(1);
        on.charge_at(None, now);
        assert!(on.check_at(None, now).is_ok());
    }
}
