//! Secrets at rest: the organisation's master key and authenticated encryption under it.
//!
//! Values that must be read back (TOTP shared secrets now, SAML signing keys later) are sealed with
//! AES-256-GCM under the master key, with a fresh random nonce and the owning record's id as
//! associated data, so a sealed value copied onto another record does not open. Every node of an
//! organisation shares the master key; it never enters the database.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use rand::Rng;

/// Prefix of sealed values, naming the format so it can change later.
const SEALED_V1: &str = "v1:";

/// 32 bytes that encrypt the organisation's stored secrets.
pub struct MasterKey {
    key: LessSafeKey,
    /// HMAC-SHA256 key derived from the master key (never the master key itself), for values that
    /// must be recomputed rather than decrypted, such as CSRF tokens.
    mac_key: aws_lc_rs::hmac::Key,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the master key must be 32 bytes, base64-encoded")]
    BadKey,
    #[error("a sealed value could not be opened (wrong master key or corrupt data)")]
    Unseal,
}

impl MasterKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() != 32 {
            return Err(KeyError::BadKey);
        }
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| KeyError::BadKey)?;
        use aws_lc_rs::hmac;
        let derived = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, bytes), b"latchkey:mac-key:v1");
        let mac_key = hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref());
        Ok(Self { key: LessSafeKey::new(unbound), mac_key })
    }

    /// Parses the base64 text form (standard alphabet, padding optional, surrounding space ignored).
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let trimmed = text.trim().trim_end_matches('=');
        let bytes = STANDARD_NO_PAD.decode(trimmed).map_err(|_| KeyError::BadKey)?;
        Self::from_bytes(&bytes)
    }

    /// A new random key and its base64 text form (for a key file).
    pub fn generate() -> Result<(Self, String), KeyError> {
        let mut bytes = [0u8; 32];
        rand::rng().fill(&mut bytes);
        Ok((Self::from_bytes(&bytes)?, STANDARD_NO_PAD.encode(bytes)))
    }

    /// Encrypts `plaintext`, bound to `context` (the owning record's id).
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<String, KeyError> {
        let mut nonce_bytes = [0u8; NONCE_LEN];
        rand::rng().fill(&mut nonce_bytes);
        let mut buffer = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(context.as_bytes()),
                &mut buffer,
            )
            .map_err(|_| KeyError::Unseal)?;
        let mut sealed = nonce_bytes.to_vec();
        sealed.extend_from_slice(&buffer);
        Ok(format!("{SEALED_V1}{}", STANDARD_NO_PAD.encode(sealed)))
    }

    /// HMAC-SHA256 of `data` for `purpose` under the derived MAC key, base64url without padding.
    /// Different purposes never produce the same tag for the same data.
    pub fn mac(&self, purpose: &str, data: &[u8]) -> String {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut ctx = aws_lc_rs::hmac::Context::with_key(&self.mac_key);
        ctx.update(purpose.as_bytes());
        ctx.update(&[0]);
        ctx.update(data);
        URL_SAFE_NO_PAD.encode(ctx.sign().as_ref())
    }

    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, KeyError> {
        let encoded = sealed.strip_prefix(SEALED_V1).ok_or(KeyError::Unseal)?;
        let bytes = STANDARD_NO_PAD.decode(encoded).map_err(|_| KeyError::Unseal)?;
        if bytes.len() < NONCE_LEN {
            return Err(KeyError::Unseal);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| KeyError::Unseal)?;
        let mut buffer = ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buffer)
            .map_err(|_| KeyError::Unseal)?;
        Ok(plain.to_vec())
    }
}

/// HMAC-SHA1, as RFC 4226/6238 one-time passwords require (not used for anything else).
pub fn hmac_sha1(key: &[u8], message: &[u8]) -> [u8; 20] {
    use aws_lc_rs::hmac;
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    let tag = hmac::sign(&key, message);
    let mut out = [0u8; 20];
    out.copy_from_slice(&tag.as_ref()[..20]);
    out
}

/// Constant-time equality for secrets compared in memory.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_binding() {
        let (key, text) = MasterKey::generate().unwrap();
        let sealed = key.seal("ostABC", b"JBSWY3DPEHPK3PXP").unwrap();
        assert!(sealed.starts_with("v1:"));
        assert_eq!(key.open("ostABC", &sealed).unwrap(), b"JBSWY3DPEHPK3PXP");
        assert_eq!(key.open("ostOTHER", &sealed), Err(KeyError::Unseal), "bound to its record");
        let same = MasterKey::from_base64(&text).unwrap();
        assert_eq!(same.open("ostABC", &sealed).unwrap(), b"JBSWY3DPEHPK3PXP");
        let (other, _) = MasterKey::generate().unwrap();
        assert_eq!(other.open("ostABC", &sealed), Err(KeyError::Unseal));
        assert_ne!(key.seal("ostABC", b"x").unwrap(), key.seal("ostABC", b"x").unwrap(), "fresh nonces");
    }

    #[test]
    fn macs_are_keyed_and_separated_by_purpose() {
        let (key, text) = MasterKey::generate().unwrap();
        let tag = key.mac("csrf", b"abc");
        assert_eq!(tag, MasterKey::from_base64(&text).unwrap().mac("csrf", b"abc"));
        assert_ne!(tag, key.mac("other", b"abc"));
        assert_ne!(tag, key.mac("csrf", b"abd"));
        assert_ne!(tag, MasterKey::generate().unwrap().0.mac("csrf", b"abc"));
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
        assert!(MasterKey::from_base64("not base64!").is_err());
    }

    #[test]
    fn hmac_sha1_matches_rfc2202() {
        let tag = hmac_sha1(&[0x0b; 20], b"Hi There");
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "b617318655057264e28bc0b6fb378c8ef146be00");
    }
}
