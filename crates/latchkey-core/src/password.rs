//! Passwords: argon2id hashing parameters, complexity checking against the password policy, and
//! the [`PasswordHashing`] port through which use cases reach the (CPU-heavy) hasher.
//!
//! Hashing is deliberately not run here: the caller's adapter runs [`hash`] and [`verify`] off the async
//! runtime behind a concurrency limit (`latchkey-http`'s hashing pool), so a flood of sign-ins cannot starve
//! it.

use argon2::password_hash::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::future::Future;

use crate::error::FieldError;
use crate::policy::Complexity;

/// Longest password accepted anywhere (Okta caps at 72 for bcrypt imports; argon2 has no limit, but an
/// unbounded input is free work for an attacker).
pub const MAX_PASSWORD_LEN: usize = 256;

/// OWASP's argon2id recommendation: 19 MiB, 2 iterations, 1 lane.
const M_COST: u32 = 19 * 1024;
const T_COST: u32 = 2;
const P_COST: u32 = 1;
const OUTPUT_LEN: usize = 32;
const SALT_LEN: usize = 16;

fn argon2_with(m: u32, t: u32, p: u32, output: usize) -> Option<Argon2<'static>> {
    let params = Params::new(m, t, p, Some(output)).ok()?;
    Some(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

thread_local! {
    /// The 19 MiB working memory of argon2id, kept per hashing thread and reused while sign-ins keep
    /// coming: allocating it per hash costs thousands of page faults (a measurable share of every
    /// sign-in). The hashing pool gives it back after a quiet period ([`release_working_memory`]).
    static BLOCKS: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Frees this thread's argon2id working memory; the next hash on the thread allocates it again.
pub fn release_working_memory() {
    BLOCKS.with(|cell| {
        if let Ok(mut blocks) = cell.try_borrow_mut() {
            *blocks = Vec::new();
        }
    });
}

/// Whether this thread holds argon2id working memory now.
pub fn holds_working_memory() -> bool {
    BLOCKS.with(|cell| cell.try_borrow().map(|blocks| blocks.capacity() > 0).unwrap_or(true))
}

/// Runs argon2id into `out`, reusing this thread's working memory.
fn compute(hasher: &Argon2<'_>, m_cost: u32, password: &[u8], salt: &[u8], out: &mut [u8]) -> bool {
    BLOCKS.with(|cell| {
        let Ok(mut blocks) = cell.try_borrow_mut() else { return false };
        let wanted = m_cost as usize;
        if blocks.len() != wanted {
            blocks.clear();
            blocks.resize(wanted, Block::new());
        }
        hasher.hash_password_into_with_memory(password, salt, out, &mut blocks[..]).is_ok()
    })
}

/// Hashes a password into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`).
/// Blocking: CPU-bound.
pub fn hash(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt: [u8; SALT_LEN] = random_bytes();
    let hasher =
        argon2_with(M_COST, T_COST, P_COST, OUTPUT_LEN).ok_or(argon2::password_hash::Error::Algorithm)?;
    let mut out = [0u8; OUTPUT_LEN];
    if !compute(&hasher, M_COST, password.as_bytes(), &salt, &mut out) {
        return Err(argon2::password_hash::Error::Algorithm);
    }
    Ok(phc_string(&salt, &out))
}

/// A PHC string with the production parameters, a random salt and a random "hash" that no password
/// produces (a chance of 2^-256): verifying against it costs exactly what verifying a real password
/// costs, which is what unknown users are verified against. Computing it costs nothing.
pub fn unmatchable_hash() -> String {
    let salt: [u8; SALT_LEN] = random_bytes();
    let out: [u8; OUTPUT_LEN] = random_bytes();
    phc_string(&salt, &out)
}

fn random_bytes<const N: usize>() -> [u8; N] {
    use rand::Rng as _;
    let mut bytes = [0u8; N];
    rand::rng().fill(&mut bytes);
    bytes
}

/// The PHC string of a hash made with the production parameters.
fn phc_string(salt: &[u8], hash: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
    format!("$argon2id$v=19$m={M_COST},t={T_COST},p={P_COST}${}${}", b64.encode(salt), b64.encode(hash))
}

/// Checks a password against a stored PHC string in constant time. Blocking: CPU-bound.
/// A malformed stored hash verifies as false.
pub fn verify(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else { return false };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else { return false };
    let param = |name: &str| parsed.params.get_decimal(name);
    let (Some(m), Some(t), Some(p)) = (param("m"), param("t"), param("p")) else { return false };
    if parsed.algorithm.as_str() != "argon2id" || parsed.version.is_some_and(|v| v != 0x13) {
        return false;
    }
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else { return false };
    let Some(hasher) = argon2_with(m, t, p, expected.len()) else { return false };
    let mut out = vec![0u8; expected.len()];
    compute(&hasher, m, password.as_bytes(), salt, &mut out)
        && crate::crypto::constant_time_eq(&out, expected.as_bytes())
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
    fn interoperates_with_the_argon2_crates_own_phc_code() {
        use argon2::password_hash::rand_core::OsRng;
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _, SaltString};
        let theirs = argon2_with(M_COST, T_COST, P_COST, OUTPUT_LEN)
            .unwrap()
            .hash_password(b"Their-Hash-1", &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string();
        assert!(verify("Their-Hash-1", &theirs), "we verify what argon2 wrote");
        assert!(!verify("their-hash-1", &theirs));
        let ours = hash("Our-Hash-22").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            argon2_with(M_COST, T_COST, P_COST, OUTPUT_LEN)
                .unwrap()
                .verify_password(b"Our-Hash-22", &parsed)
                .is_ok()
        );
        // Other parameters (older hashes) still verify, with memory sized for them.
        let small =
            Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(8 * 1024, 1, 1, None).unwrap())
                .hash_password(b"Small-Params-3", &SaltString::generate(&mut OsRng))
                .unwrap()
                .to_string();
        assert!(verify("Small-Params-3", &small));
        assert!(verify("Our-Hash-22", &ours), "and the usual size again afterwards");
    }

    #[test]
    fn the_unmatchable_hash_has_the_production_parameters_and_matches_nothing() {
        let phc = unmatchable_hash();
        let real = hash("Correct-Horse-1").unwrap();
        let params = |phc: &str| phc.rsplitn(3, '$').nth(2).map(str::to_owned);
        assert_eq!(params(&phc), params(&real), "the same work as a real verification");
        assert_ne!(phc, unmatchable_hash(), "a random salt each time");
        let parsed = PasswordHash::new(&phc).unwrap();
        assert_eq!(parsed.hash.map(|h| h.len()), Some(OUTPUT_LEN));
        assert!(!verify("", &phc) && !verify("Correct-Horse-1", &phc));
    }

    #[test]
    fn working_memory_is_held_after_a_hash_until_released() {
        std::thread::spawn(|| {
            assert!(!holds_working_memory(), "nothing before the first hash");
            let phc = hash("Correct-Horse-1").unwrap();
            assert!(holds_working_memory(), "kept for the next hash");
            release_working_memory();
            assert!(!holds_working_memory());
            assert!(verify("Correct-Horse-1", &phc), "allocated again when needed");
            assert!(holds_working_memory());
        })
        .join()
        .unwrap();
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
