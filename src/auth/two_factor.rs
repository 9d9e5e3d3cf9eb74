//! The authenticator second factor (TOTP, RFC 6238: SHA-1, 6 digits, 30-second steps, one
//! step of clock skew either way; what every authenticator app speaks), and recovery codes.
//!
//! A code is accepted once: the step it matched is stored and only later steps pass after it
//! (so a code seen over someone's shoulder cannot be replayed). Recovery codes are ten random
//! 50-bit codes shown once; only their SHA-256 is kept (they are random, so a fast hash is
//! enough), and each is crossed out when used.

use rand::Rng;
use sha2::{Digest, Sha256};
use totp_rs::{Algorithm, TOTP};

use crate::store::TotpRecord;

/// Seconds per step.
const STEP_SECS: u64 = 30;
/// Steps of clock difference allowed either way.
const SKEW_STEPS: u64 = 1;
/// Bytes of a new secret (160 bits, RFC 4226's recommendation).
const SECRET_BYTES: usize = 20;
/// Recovery codes per account.
pub const RECOVERY_CODES: usize = 10;
/// The name apps show beside the account.
const ISSUER: &str = "Enclave";
/// Lower-case base32 without look-alikes' ambiguity (RFC 4648 alphabet).
const CODE_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A new secret, base32 (unpadded).
pub fn new_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rng().fill(&mut bytes[..]);
    totp_rs::Secret::Raw(bytes.to_vec()).to_encoded().to_string()
}

/// The generator of `secret` for `account` (its email: what apps label it with).
fn generator(secret: &str, account: &str) -> Option<TOTP> {
    let bytes = totp_rs::Secret::Encoded(secret.to_owned()).to_bytes().ok()?;
    TOTP::new(
        Algorithm::SHA1,
        6,
        SKEW_STEPS as u8,
        STEP_SECS,
        bytes,
        Some(ISSUER.to_owned()),
        account.replace(':', ""),
    )
    .ok()
}

/// The `otpauth://` URI an app reads (from the QR code).
pub fn otpauth_uri(secret: &str, account: &str) -> Option<String> {
    generator(secret, account).map(|g| g.get_url())
}

/// The URI as an SVG QR code.
pub fn qr_svg(uri: &str) -> Option<String> {
    let code = qrcode::QrCode::new(uri.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .quiet_zone(true)
            .build(),
    )
}

/// The step `code` matches at `now_secs`, if it matches one after `record.last_step` (within the
/// skew); compared in constant time.
pub fn matching_step(record: &TotpRecord, account: &str, code: &str, now_secs: u64) -> Option<u64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let generator = generator(&record.secret, account)?;
    let now_step = now_secs / STEP_SECS;
    let mut matched = None;
    for step in now_step.saturating_sub(SKEW_STEPS)..=now_step + SKEW_STEPS {
        // Every candidate is computed and compared, matched or not: the time taken says nothing.
        if same(generator.generate(step * STEP_SECS).as_bytes(), code.as_bytes()) && step > record.last_step {
            matched = Some(step);
        }
    }
    matched
}

/// Ten new recovery codes (`xxxxx-xxxxx`) and their hashes, in the same order.
pub fn new_recovery_codes() -> (Vec<String>, Vec<String>) {
    let mut rng = rand::rng();
    let codes: Vec<String> = (0..RECOVERY_CODES)
        .map(|_| {
            let chars: String = (0..10)
                .map(|_| CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())] as char)
                .collect();
            format!("{}-{}", &chars[..5], &chars[5..])
        })
        .collect();
    let hashes = codes.iter().map(|c| recovery_hash(c)).collect();
    (codes, hashes)
}

/// The stored form of a recovery code as typed (case, spaces and dashes ignored).
fn recovery_hash(code: &str) -> String {
    let normalized: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    Sha256::digest(normalized.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Crosses `code` out of `record`'s recovery codes; false when it is not one of them.
pub fn use_recovery_code(record: &mut TotpRecord, code: &str) -> bool {
    let hash = recovery_hash(code);
    match record
        .recovery_codes
        .iter()
        .position(|h| same(h.as_bytes(), hash.as_bytes()))
    {
        Some(at) => {
            record.recovery_codes.remove(at);
            true
        }
        None => false,
    }
}

/// Byte equality in time independent of where the bytes differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> TotpRecord {
        TotpRecord {
            secret: new_secret(),
            enabled: true,
            recovery_codes: Vec::new(),
            last_step: 0,
        }
    }

    fn code_at(record: &TotpRecord, secs: u64) -> String {
        generator(&record.secret, "a@example.com").unwrap().generate(secs)
    }

    #[test]
    fn the_current_code_and_its_neighbours_match_and_older_ones_do_not() {
        let r = record();
        let now = 1_700_000_000;
        for (offset, ok) in [(0i64, true), (-30, true), (30, true), (-90, false), (90, false)] {
            let code = code_at(&r, (now as i64 + offset) as u64);
            assert_eq!(
                matching_step(&r, "a@example.com", &code, now).is_some(),
                ok,
                "offset {offset}"
            );
        }
        assert_eq!(matching_step(&r, "a@example.com", "12345", now), None);
        assert_eq!(matching_step(&r, "a@example.com", "abcdef", now), None);
    }

    #[test]
    fn a_code_works_once() {
        let mut r = record();
        let now = 1_700_000_000;
        let code = code_at(&r, now);
        let step = matching_step(&r, "a@example.com", &code, now).unwrap();
        r.last_step = step;
        assert_eq!(matching_step(&r, "a@example.com", &code, now), None);
        // The next step's code still works.
        let next = code_at(&r, now + 30);
        assert!(matching_step(&r, "a@example.com", &next, now + 30).is_some());
    }

    #[test]
    fn recovery_codes_are_ten_distinct_one_time_codes_typed_loosely() {
        let (codes, hashes) = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        assert_eq!(
            codes.iter().collect::<std::collections::HashSet<_>>().len(),
            RECOVERY_CODES
        );
        let mut r = record();
        r.recovery_codes = hashes;
        let typed = codes[3].to_uppercase().replace('-', " ");
        assert!(use_recovery_code(&mut r, &typed));
        assert!(!use_recovery_code(&mut r, &codes[3]), "used up");
        assert_eq!(r.recovery_codes.len(), RECOVERY_CODES - 1);
        assert!(!use_recovery_code(&mut r, "aaaaa-aaaaa"));
    }

    #[test]
    fn the_uri_names_the_issuer_and_account_and_the_qr_code_is_svg() {
        let r = record();
        let uri = otpauth_uri(&r.secret, "ann@example.com").unwrap();
        assert!(uri.starts_with("otpauth://totp/Enclave:ann%40example.com?"), "{uri}");
        assert!(uri.contains(&format!("secret={}", r.secret)));
        let svg = qr_svg(&uri).unwrap();
        assert!(svg.contains("<svg") && svg.contains("</svg>"));
    }
}
