//! Time as the domain sees it: millisecond UTC timestamps and a [`Clock`] port so tests can fix "now".
//!
//! Okta renders every date-time as ISO-8601 UTC with exactly three fractional digits
//! (`2015-11-03T10:15:57.000Z`); strict clients (PyPI `okta`'s pydantic models) parse them, so the
//! rendering lives here, once.

use std::fmt;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Milliseconds since the Unix epoch, UTC. Stored as a 64-bit integer by every backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    pub fn plus_seconds(self, seconds: i64) -> Self {
        Self(self.0.saturating_add(seconds.saturating_mul(1000)))
    }

    /// Parses an ISO-8601 / RFC 3339 date-time as used in Okta filter expressions.
    pub fn parse_iso(text: &str) -> Option<Self> {
        let parsed = OffsetDateTime::parse(text, &Rfc3339).ok()?;
        let millis = parsed.unix_timestamp_nanos() / 1_000_000;
        i64::try_from(millis).ok().map(Self)
    }

    /// Okta's wire format: `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub fn to_iso(self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        let Ok(t) = OffsetDateTime::from_unix_timestamp_nanos(nanos) else {
            // Out of range for a calendar date: only reachable with a corrupt stored value.
            return "1970-01-01T00:00:00.000Z".to_owned();
        };
        let Ok(year) = u32::try_from(t.year()) else {
            return "1970-01-01T00:00:00.000Z".to_owned();
        };
        // Written digit by digit: `format!` with padding was a visible share of a session check.
        let mut out = String::with_capacity(24);
        push_padded(&mut out, year, 4);
        out.push('-');
        push_padded(&mut out, u32::from(u8::from(t.month())), 2);
        out.push('-');
        push_padded(&mut out, u32::from(t.day()), 2);
        out.push('T');
        push_padded(&mut out, u32::from(t.hour()), 2);
        out.push(':');
        push_padded(&mut out, u32::from(t.minute()), 2);
        out.push(':');
        push_padded(&mut out, u32::from(t.second()), 2);
        out.push('.');
        push_padded(&mut out, u32::from(t.millisecond()), 3);
        out.push('Z');
        out
    }

    /// Seconds since the epoch, rounded down (HTTP rate-limit headers use epoch seconds).
    pub fn epoch_seconds(self) -> i64 {
        self.0.div_euclid(1000)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_iso())
    }
}

/// Source of "now". Injected everywhere a rule depends on time (expiry, lockout, password age).
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let millis = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        Timestamp(i64::try_from(millis).unwrap_or(i64::MAX))
    }
}

/// Appends the last `width` decimal digits of `value`, zero-padded (`time` keeps years within
/// -9999..=9999, so four digits always hold a non-negative year).
fn push_padded(out: &mut String, value: u32, width: u32) {
    for position in (0..width).rev() {
        let digit = (value / 10u32.pow(position)) % 10;
        out.push(char::from(b'0' + digit as u8));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_okta_format_with_millis() {
        assert_eq!(Timestamp(1_446_545_757_000).to_iso(), "2015-11-03T10:15:57.000Z");
        assert_eq!(Timestamp(1_446_545_757_042).to_iso(), "2015-11-03T10:15:57.042Z");
        assert_eq!(Timestamp(-62_135_596_800_000).to_iso(), "0001-01-01T00:00:00.000Z", "padded year");
        assert_eq!(Timestamp(253_402_300_799_999).to_iso(), "9999-12-31T23:59:59.999Z");
        assert_eq!(Timestamp(-62_135_596_800_001).to_iso(), "0000-12-31T23:59:59.999Z");
        assert_eq!(
            Timestamp(-62_200_000_000_000).to_iso(),
            "1970-01-01T00:00:00.000Z",
            "negative year: corrupt"
        );
        assert_eq!(Timestamp(i64::MAX).to_iso(), "1970-01-01T00:00:00.000Z", "out of range: corrupt");
    }

    #[test]
    fn parses_what_it_renders_and_offsets() {
        let t = Timestamp(1_700_000_000_123);
        assert_eq!(Timestamp::parse_iso(&t.to_iso()), Some(t));
        assert_eq!(Timestamp::parse_iso("2015-11-03T12:15:57.000+02:00"), Some(Timestamp(1_446_545_757_000)));
        assert_eq!(Timestamp::parse_iso("yesterday"), None);
    }
}
