//! Passwords: argon2id hashing parameters, complexity checking against the password policy, and
//! the [`PasswordHashing`] port through which use cases reach the (CPU-heavy) hasher.
//!
//! Hashing is deliberately not run here: the caller's adapter runs [`hash`] and [`verify`] off the
//! async runtime behind a concurrency limit (DESIGN §7), so a flood of sign-ins cannot starve it.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::future::Future;

use crate::error::FieldError;
use crate::policy::Complexity;

/// Longest password accepted anywhere (Okta caps at 72 for bcrypt imports; argon2 has no limit, but an
/// unbounded input is free work for an attacker).
pub const MAX_PASSWORD_LEN: usize = 256;

/// OWASP's argon2id recommendation: 19 MiB, 2 iterations, 1 lane.
fn argon2() -> Result<Argon2<'static>, argon2::Error> {
    let params = Params::new(19 * 1024, 2, 1, None)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes a password into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`). Blocking: CPU-bound.
pub fn hash(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    let hasher = argon2().map_err(|_| argon2::password_hash::Error::Algorithm)?;
    Ok(hasher.hash_password(password.as_bytes(), &salt)?.to_string())
}

/// Checks a password against a stored PHC string in constant time. Blocking: CPU-bound.
/// A malformed stored hash verifies as false.
pub fn verify(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else { return false };
    let Ok(hasher) = argon2() else { return false };
    hasher.verify_password(password.as_bytes(), &parsed).is_ok()
}

/// Where use cases get hashes computed. Implemented by the runtime adapter (a bounded blocking pool).
pub trait PasswordHashing: Send + Sync {
    /// `None` when the hashing pool failed or is saturated.
    fn hash(&self, password: String) -> impl Future<Output = Option<String>> + Send;
    /// `None` when the hashing pool failed or is saturated (never "wrong password").
    fn verify(&self, password: String, phc: String) -> impl Future<Output = Option<bool>> + Send;
}

/// Checks `password` against the policy's complexity rules; `context` supplies the username and the
/// profile values that may not appear in it. Returns Okta's single "requirements" cause on failure.
pub fn check_complexity(
    rules: &Complexity,
    password: &str,
    login: &str,
    excluded_values: &[&str],
    field: &str,
) -> Result<(), FieldError> {
    let count = |pred: fn(&char) -> bool| password.chars().filter(pred).count();
    let lower = count(|c| c.is_lowercase());
    let upper = count(|c| c.is_uppercase());
    let digits = count(char::is_ascii_digit);
    let symbols = count(|c| !c.is_alphanumeric() && !c.is_whitespace());
    let length = password.chars().count();

    let mut ok = length >= rules.min_length as usize
        && length <= MAX_PASSWORD_LEN
        && lower >= rules.min_lower_case as usize
        && upper >= rules.min_upper_case as usize
        && digits >= rules.min_number as usize
        && symbols >= rules.min_symbol as usize;
    let lowered = password.to_lowercase();
    if rules.exclude_username {
        ok &= !username_parts(login).any(|part| lowered.contains(&part));
    }
    for value in excluded_values {
        let value = value.trim().to_lowercase();
        ok &= value.chars().count() < 3 || !lowered.contains(&value);
    }
    if ok { Ok(()) } else { Err(FieldError::new(field, requirements_text(rules))) }
}

/// Parts of a login that a password may not contain (Okta: "no parts of your username"): the pieces
/// between `@ . _ - +` that are at least three characters long.
fn username_parts(login: &str) -> impl Iterator<Item = String> + '_ {
    login.split(['@', '.', '_', '-', '+']).filter(|part| part.chars().count() >= 3).map(str::to_lowercase)
}

/// Okta's wording: "Password requirements were not met. Password requirements: at least 8 characters, ...".
pub fn requirements_text(rules: &Complexity) -> String {
    let mut parts = vec![format!("at least {} characters", rules.min_length)];
    let mut push = |n: u32, one: &str, many: &str| match n {
        0 => {}
        1 => parts.push(one.to_owned()),
        n => parts.push(format!("at least {n} {many}")),
    };
    push(rules.min_lower_case, "a lowercase letter", "lowercase letters");
    push(rules.min_upper_case, "an uppercase letter", "uppercase letters");
    push(rules.min_number, "a number", "numbers");
    push(rules.min_symbol, "a symbol", "symbols");
    if rules.exclude_username {
        parts.push("no parts of your username".to_owned());
    }
    for attribute in &rules.exclude_attributes {
        let name = match attribute.as_str() {
            "firstName" => "your first name",
            "lastName" => "your last name",
            other => other,
        };
        parts.push(format!("does not include {name}"));
    }
    format!("Password requirements were not met. Password requirements: {}.", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Complexity {
        Complexity::default()
    }

    #[test]
    fn default_rules_accept_and_refuse() {
        let ok = |pw: &str| check_complexity(&rules(), pw, "alice.smith@example.com", &[], "password");
        assert!(ok("Tr0ub4dor&3").is_ok());
        assert!(ok("short1A").is_err(), "too short");
        assert!(ok("alllowercase1").is_err(), "no upper");
        assert!(ok("NoDigitsHere").is_err(), "no number");
        assert!(ok("Smith-Secure1").is_err(), "contains a username part");
        assert!(ok(&"Aa1".repeat(100)).is_err(), "too long");
    }

    #[test]
    fn excluded_attributes_are_refused() {
        let mut r = rules();
        r.exclude_attributes = vec!["firstName".into()];
        let res = check_complexity(&r, "Zebulon2024x", "z@example.com", &["Zebulon"], "password");
        let err = res.err().map(|e| e.message).unwrap_or_default();
        assert!(err.contains("does not include your first name"), "{err}");
    }

    #[test]
    fn requirements_text_matches_okta_wording() {
        assert_eq!(
            requirements_text(&rules()),
            "Password requirements were not met. Password requirements: at least 8 characters, \
             a lowercase letter, an uppercase letter, a number, no parts of your username."
        );
    }

    #[test]
    fn hash_and_verify_round_trip() {
        let phc = hash("Correct-Horse-1").unwrap_or_default();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify("Correct-Horse-1", &phc));
        assert!(!verify("correct-horse-1", &phc));
        assert!(!verify("Correct-Horse-1", "not a hash"));
    }
}
