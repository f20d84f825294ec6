//! The organisation's SAML signing keys as stored: generation, sealing under the master key, and
//! opening for use. Keys are shared by every node through the database; the private key is sealed
//! with the key id as associated data, so a sealed key copied onto another row does not open.

use crate::Timestamp;
use crate::apps::{KeyStatus, StoredSigningKey};
use crate::crypto::MasterKey;
use crate::error::CoreError;
use crate::saml::SigningKey;

/// How long a generated signing certificate is valid (SPs that check validity need a long one;
/// rollover replaces keys well before).
pub const CERT_VALID_DAYS: u32 = 3650;

/// Generates an RSA-2048 key with a self-signed certificate and seals it. Slow (RSA key
/// generation): run it off the async runtime.
pub fn generate(
    master_key: &MasterKey,
    status: KeyStatus,
    now: Timestamp,
    common_name: &str,
) -> Result<(StoredSigningKey, SigningKey), CoreError> {
    let (key, material) =
        SigningKey::generate(common_name, CERT_VALID_DAYS).map_err(|e| CoreError::Crypto(e.to_string()))?;
    let sealed =
        master_key.seal(key.kid(), &material.pkcs8_der).map_err(|e| CoreError::Crypto(e.to_string()))?;
    let stored = StoredSigningKey {
        kid: key.kid().to_owned(),
        status,
        sealed_private_key: sealed,
        certificate_der: material.cert_der,
        created: now,
    };
    Ok((stored, key))
}

/// Opens a stored key. Fails when the master key is not the one that sealed it.
pub fn open(master_key: &MasterKey, stored: &StoredSigningKey) -> Result<SigningKey, CoreError> {
    let pkcs8 = master_key
        .open(&stored.kid, &stored.sealed_private_key)
        .map_err(|e| CoreError::Crypto(format!("signing key {}: {e}", stored.kid)))?;
    SigningKey::from_der(&pkcs8, &stored.certificate_der).map_err(|e| CoreError::Crypto(e.to_string()))
}
