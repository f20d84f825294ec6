//! Identifiers and secrets: Okta-style prefixed ids, random bearer secrets and their stored hashes.
//!
//! Ids are public and only need to be unique; secrets (API tokens, activation and recovery tokens,
//! later session cookies) carry at least 256 bits from the OS generator and are stored only as a
//! SHA-256 digest, so a database dump grants nothing. A fast digest is right here because the secret
//! has full entropy; passwords, which do not, go through argon2id in [`crate::password`].

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};

/// The prefixes Okta uses for each kind of object; clients display them and some log them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    User,
    ApiToken,
    Policy,
    PolicyRule,
    ErrorId,
    Event,
    /// An Okta Verify TOTP factor.
    OktaTotp,
    /// A Google Authenticator TOTP factor.
    GoogleTotp,
    TrustedOrigin,
    Session,
    Org,
    App,
    /// An app's external key (names it in SAML URLs and entity ids).
    AppExternalKey,
    /// An app's embed link.
    AppLink,
    Group,
    GroupRule,
    /// An OpenID Connect client secret.
    ClientSecret,
    /// A custom scope of an authorization server.
    OAuthScope,
    /// A custom claim of an authorization server.
    OAuthClaim,
}

impl IdKind {
    fn prefix(self) -> &'static str {
        match self {
            IdKind::User => "00u",
            IdKind::ApiToken => "00T",
            IdKind::Policy => "00p",
            IdKind::PolicyRule => "0pr",
            IdKind::ErrorId => "oae",
            IdKind::Event => "evt",
            IdKind::OktaTotp => "ost",
            IdKind::GoogleTotp => "uft",
            IdKind::TrustedOrigin => "tos",
            IdKind::Session => "102",
            IdKind::Org => "00o",
            IdKind::App => "0oa",
            IdKind::AppExternalKey => "exk",
            IdKind::AppLink => "aln",
            IdKind::Group => "00g",
            IdKind::GroupRule => "0pr",
            IdKind::ClientSecret => "ocs",
            IdKind::OAuthScope => "scp",
            IdKind::OAuthClaim => "ocl",
        }
    }
}

/// A new id: the kind's prefix and 17 random alphanumerics (20 characters, like Okta's).
pub fn new_id(kind: IdKind) -> String {
    let mut id = String::with_capacity(20);
    id.push_str(kind.prefix());
    id.extend(rand::rng().sample_iter(&Alphanumeric).take(17).map(char::from));
    id
}

/// `_` and 160 random bits as 40 lowercase hex digits. The leading underscore keeps it an `xs:ID`
/// (an NCName, SAML core 1.3.4): SAML message IDs and per-app session indexes are such ids.
pub fn new_xml_id() -> String {
    let mut bytes = [0u8; 20];
    rand::rng().fill(&mut bytes);
    let mut id = String::with_capacity(41);
    id.push('_');
    push_hex(&mut id, &bytes);
    id
}

/// A random alphanumeric string, for request ids and other non-secret correlation values.
pub fn random_alphanumeric(len: usize) -> String {
    rand::rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}

/// A bearer secret handed to a client once; only [`secret_digest`] of it is ever stored.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// 32 bytes from the OS generator, base64url without padding (43 characters).
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn digest(&self) -> String {
        secret_digest(&self.0)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The stored form of a bearer secret: hex SHA-256. Lookups compare digests, never the secret.
pub fn secret_digest(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    let mut hex = String::with_capacity(64);
    push_hex(&mut hex, &digest);
    hex
}

/// Appends `bytes` as lowercase hex digits.
fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_okta_shape() {
        let id = new_id(IdKind::User);
        assert_eq!(id.len(), 20);
        assert!(id.starts_with("00u"));
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(id, new_id(IdKind::User));
    }

    #[test]
    fn secrets_are_long_and_digest_is_stable() {
        let s = Secret::generate();
        assert_eq!(s.expose().len(), 43);
        assert_eq!(s.digest(), secret_digest(s.expose()));
        assert_eq!(secret_digest("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }
}
