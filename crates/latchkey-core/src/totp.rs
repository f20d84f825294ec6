//! Time-based one-time passwords (RFC 6238 over RFC 4226): SHA-1, 6 digits, 30-second steps, the
//! parameters Okta Verify and Google Authenticator use for `token:software:totp`.
//!
//! Verification accepts the current step and one step either side (clock drift) and reports which
//! step matched, so the caller can refuse a step already used (replay), which the store records
//! atomically.

use rand::Rng;

use crate::crypto::{constant_time_eq, hmac_sha1};

pub const STEP_SECONDS: i64 = 30;
pub const DIGITS: u32 = 6;
const SECRET_BYTES: usize = 20;
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A fresh shared secret, base32 without padding (32 characters for 160 bits).
pub fn generate_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rng().fill(&mut bytes);
    base32_encode(&bytes)
}

pub fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            out.push(char::from(BASE32[((buffer >> (bits - 5)) & 31) as usize]));
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(char::from(BASE32[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for c in text.chars().filter(|c| *c != '=' && !c.is_whitespace()) {
        let value = BASE32.iter().position(|b| char::from(*b) == c.to_ascii_uppercase())?;
        buffer = (buffer << 5) | value as u32;
        bits += 5;
        if bits >= 8 {
            out.push((buffer >> (bits - 8)) as u8);
            bits -= 8;
        }
    }
    Some(out)
}

/// The time step containing `unix_seconds`.
pub fn step_at(unix_seconds: i64) -> i64 {
    unix_seconds.div_euclid(STEP_SECONDS)
}

/// The code for one step (RFC 4226 dynamic truncation), zero-padded to six digits.
pub fn code_at(secret: &[u8], step: i64) -> String {
    let mac = hmac_sha1(secret, &step.to_be_bytes());
    let offset = usize::from(mac[19] & 0x0f);
    let binary = (u32::from(mac[offset] & 0x7f) << 24)
        | (u32::from(mac[offset + 1]) << 16)
        | (u32::from(mac[offset + 2]) << 8)
        | u32::from(mac[offset + 3]);
    format!("{:06}", binary % 10u32.pow(DIGITS))
}

/// The step (current ±1) whose code equals `passcode`, if any. Every candidate is compared, in
/// constant time, so timing does not reveal which step matched.
pub fn matching_step(secret: &[u8], passcode: &str, unix_seconds: i64) -> Option<i64> {
    if passcode.len() != DIGITS as usize || !passcode.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = step_at(unix_seconds);
    let mut found = None;
    for step in [now - 1, now, now + 1] {
        if constant_time_eq(code_at(secret, step).as_bytes(), passcode.as_bytes()) {
            found = Some(step);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_vectors() {
        // RFC 6238 appendix B, SHA-1 secret "12345678901234567890", last six digits of the 8-digit codes.
        let secret = b"12345678901234567890";
        for (time, code) in
            [(59, "287082"), (1_111_111_109, "081804"), (1_234_567_890, "005924"), (2_000_000_000, "279037")]
        {
            assert_eq!(code_at(secret, step_at(time)), code, "t={time}");
        }
    }

    #[test]
    fn base32_round_trip() {
        assert_eq!(base32_encode(b"12345678901234567890"), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(base32_decode("gezdgnbvgy3tqojqgezdgnbvgy3tqojq").unwrap(), b"12345678901234567890");
        assert_eq!(base32_decode("0189"), None);
        let secret = generate_secret();
        assert_eq!(secret.len(), 32);
        assert_eq!(base32_decode(&secret).unwrap().len(), 20);
    }

    #[test]
    fn window_is_one_step_each_side() {
        let secret = b"12345678901234567890";
        let t = 1_234_567_890;
        let now = step_at(t);
        assert_eq!(matching_step(secret, &code_at(secret, now), t), Some(now));
        assert_eq!(matching_step(secret, &code_at(secret, now - 1), t), Some(now - 1));
        assert_eq!(matching_step(secret, &code_at(secret, now + 1), t), Some(now + 1));
        assert_eq!(matching_step(secret, &code_at(secret, now - 2), t), None);
        assert_eq!(matching_step(secret, "12345", t), None);
        assert_eq!(matching_step(secret, "abcdef", t), None);
    }
}
