//! A signing key of the IdP: an RSA-2048 key pair and its self-signed X.509 certificate, as every
//! protocol uses it (SAML signatures and metadata; a JWKS publishes the same keys).
//!
//! Private-key operations use aws-lc-rs only: constant-time RSA (the pure-Rust `rsa` crate is exposed
//! to the Marvin timing attack, RUSTSEC-2023-0071). Key material is stored as PKCS#8 DER, sealed with
//! [`crate::crypto::MasterKey`] by [`super::generate`]; the certificate is public and goes into metadata
//! and `ds:KeyInfo`. Signatures are RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017 §8.2), which is
//! deterministic: the same key and bytes always give the same signature (that is what makes
//! golden-byte tests possible).

use crate::der;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

/// Smallest accepted modulus, in bytes (2048 bits; NIST SP 800-131A).
const MIN_MODULUS_BYTES: usize = 256;

/// What can go wrong with key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyMaterialError {
    /// The key material could not be loaded or does not match its certificate.
    #[error("invalid signing key: {0}")]
    InvalidKey(&'static str),
    /// Key or certificate generation failed.
    #[error("key generation failed: {0}")]
    KeyGeneration(String),
    /// The RSA signing operation failed.
    #[error("RSA signing failed")]
    Signing,
}

/// A loaded signing key. Cheap to share behind an `Arc`; never printed.
pub struct SigningKey {
    key_pair: RsaKeyPair,
    cert_der: Vec<u8>,
    kid: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

/// The material of a freshly generated key, to be stored (the PKCS#8 sealed, the certificate as is).
pub struct GeneratedKey {
    pub pkcs8_der: Vec<u8>,
    pub cert_der: Vec<u8>,
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GeneratedKey(***)")
    }
}

impl SigningKey {
    /// Generates an RSA-2048 key and a self-signed certificate (subject and issuer `CN=common_name`,
    /// valid from one day ago, to absorb clock skew at SPs, for `valid_days` days, signed
    /// sha256WithRSAEncryption).
    ///
    /// Slow (RSA prime generation takes 100 ms to seconds): [`super::service::SigningKeys`] runs it through
    /// its [`crate::offload::Offload`] port, off the async runtime.
    pub fn generate(
        common_name: &str,
        valid_days: u32,
    ) -> Result<(SigningKey, GeneratedKey), KeyMaterialError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
            .map_err(|e| KeyMaterialError::KeyGeneration(e.to_string()))?;
        let mut params = rcgen::CertificateParams::default();
        let mut name = rcgen::DistinguishedName::new();
        name.push(rcgen::DnType::CommonName, common_name);
        params.distinguished_name = name;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(i64::from(valid_days));
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).map_err(|e| KeyMaterialError::KeyGeneration(e.to_string()))?;
        let generated = GeneratedKey { pkcs8_der: key.serialize_der(), cert_der: cert.der().to_vec() };
        let signing = SigningKey::from_der(&generated.pkcs8_der, &generated.cert_der)?;
        Ok((signing, generated))
    }

    /// Loads stored material. Refuses keys under 2048 bits and a certificate whose public key is not
    /// the key pair's (a mismatch would publish a certificate no SP can verify our signatures with).
    pub fn from_der(pkcs8_der: &[u8], cert_der: &[u8]) -> Result<SigningKey, KeyMaterialError> {
        let key_pair = RsaKeyPair::from_pkcs8(pkcs8_der)
            .map_err(|_| KeyMaterialError::InvalidKey("not an RSA PKCS#8 key"))?;
        if key_pair.public_modulus_len() < MIN_MODULUS_BYTES {
            return Err(KeyMaterialError::InvalidKey("RSA keys must be at least 2048 bits"));
        }
        let cert_key = der::rsa_public_key_from_cert(cert_der)
            .map_err(|_| KeyMaterialError::InvalidKey("the certificate is not an X.509 RSA certificate"))?;
        if cert_key != key_pair.public_key().as_ref() {
            return Err(KeyMaterialError::InvalidKey("the certificate does not belong to the key"));
        }
        let digest = Sha256::digest(cert_der);
        let kid = URL_SAFE_NO_PAD.encode(&digest[..16]);
        Ok(SigningKey { key_pair, cert_der: cert_der.to_vec(), kid })
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 over `bytes` (XMLDSig `rsa-sha256`, RFC 6931 §2.3.2).
    pub fn sign_rsa_sha256(&self, bytes: &[u8]) -> Result<Vec<u8>, KeyMaterialError> {
        let mut signature = vec![0u8; self.key_pair.public_modulus_len()];
        self.key_pair
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), bytes, &mut signature)
            .map_err(|_| KeyMaterialError::Signing)?;
        Ok(signature)
    }

    /// The certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The certificate as one line of standard base64, as `ds:X509Certificate` carries it.
    pub fn cert_base64(&self) -> String {
        STANDARD.encode(&self.cert_der)
    }

    /// The certificate as PEM (for admins and SP configuration screens).
    pub fn cert_pem(&self) -> String {
        cert_pem(&self.cert_der)
    }

    /// A stable, public key id: base64url (no padding) of the first 16 bytes of the SHA-256 of the
    /// certificate DER (22 characters). It names the certificate, so a renewed certificate for the same
    /// key gets a new id; it labels keys in storage, the admin API and (as `kid`) a JWKS.
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

/// PEM (RFC 7468) of a DER certificate, 64-character lines.
pub fn cert_pem(cert_der: &[u8]) -> String {
    let b64 = STANDARD.encode(cert_der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(chunk));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// TEST ONLY key pair committed under `tests/data/` (never used outside tests).
    pub(crate) fn test_key() -> SigningKey {
        SigningKey::from_der(
            include_bytes!("../../tests/data/saml-test-key.pk8"),
            include_bytes!("../../tests/data/saml-test-cert.der"),
        )
        .unwrap()
    }

    #[test]
    fn generates_a_key_whose_certificate_matches() {
        let (key, material) = SigningKey::generate("latchkey.test", 30).unwrap();
        let again = SigningKey::from_der(&material.pkcs8_der, &material.cert_der).unwrap();
        assert_eq!(again.kid(), key.kid());
        assert_eq!(key.kid().len(), 22);
        assert_eq!(key.sign_rsa_sha256(b"x").unwrap(), again.sign_rsa_sha256(b"x").unwrap(), "deterministic");
        assert!(key.cert_pem().starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(!format!("{key:?} {material:?}").contains(&key.cert_base64()));
    }

    #[test]
    fn refuses_a_foreign_certificate_and_garbage() {
        let key = test_key();
        let (_, other) = SigningKey::generate("other", 1).unwrap();
        let pk8 = include_bytes!("../../tests/data/saml-test-key.pk8");
        assert_eq!(
            SigningKey::from_der(pk8, &other.cert_der).unwrap_err(),
            KeyMaterialError::InvalidKey("the certificate does not belong to the key")
        );
        assert!(SigningKey::from_der(b"junk", key.cert_der()).is_err());
        assert!(SigningKey::from_der(pk8, b"junk").is_err());
    }
}
