//! Small helpers shared by every benchmark: the error type, randomness
//! without a `rand` dependency, and text clean-up.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

/// Boxed error used across the harness (no `anyhow` on purpose).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
/// Result alias used across the harness.
pub type Result<T> = std::result::Result<T, BoxError>;

/// Build an error from a message: `Err(err(format!(..)))`.
pub fn err(msg: impl Into<String>) -> BoxError {
    msg.into().into()
}

/// A random-enough `u64` for naming scratch databases and users.
///
/// `RandomState` is seeded from the OS once per thread and then varied, which
/// is plenty for names that only need to avoid collisions between runs.
pub fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    h.finish()
}

/// Lower-case hex suffix of `len` characters (at most 16).
pub fn random_suffix(len: usize) -> String {
    let s = format!("{:016x}", random_u64());
    s[..len.min(16)].to_string()
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Remove ANSI CSI escape sequences (`ESC [ ... letter`).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansi_is_stripped() {
        assert_eq!(strip_ansi("\u{1b}[2mts\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m x"), "ts  INFO x");
    }

    #[test]
    fn suffixes_differ() {
        assert_ne!(random_suffix(12), random_suffix(12));
        assert_eq!(random_suffix(8).len(), 8);
    }
}
