//! The organisation's signing keys, for every protocol: generation, sealing under the master key,
//! the rollover life cycle, and each node's cache of opened keys.
//!
//! Keys are organisation-wide and live in the database, the private key sealed under the master key
//! with the key id as associated data (a sealed key copied onto another row does not open), so every
//! node signs with the same key. The life cycle is announce first, switch later:
//! `stage` creates a NEXT key that metadata (and a JWKS) publish without signing with it;
//! `activate` makes it ACTIVE and the key it replaces PREVIOUS (still published, so a response a
//! node signed just before the switch still verifies); `retire` stops publishing PREVIOUS.
//!
//! Each node caches opened keys by kid (a kid's material never changes) and the current set for
//! [`KEYS_FRESH_FOR`]; metadata reads the set afresh, so a staged key is published at once.

pub mod material;
pub mod service;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

pub use material::{GeneratedKey, KeyMaterialError, SigningKey};

use crate::clock::Timestamp;
use crate::crypto::MasterKey;
use crate::error::CoreError;

/// How long a generated signing certificate is valid (SPs that check validity need a long one;
/// rollover replaces keys well before).
pub const CERT_VALID_DAYS: u32 = 3650;

/// The subject of our self-signed certificates.
const COMMON_NAME: &str = "Latchkey SAML signing";

/// How long a node keeps using the key set it read. A rollover's switch reaches every node within
/// this time; relying parties hold both certificates from the metadata by then (announce first,
/// switch later), so a response signed by the previous key in that window is still accepted.
pub const KEYS_FRESH_FOR: Duration = Duration::from_secs(5);

/// Where a signing key is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    /// Published, not yet signing (rollover: announce first).
    Next,
    /// Signs every response.
    Active,
    /// Signed until the last rollover; still published so that responses a node signed just
    /// before the switch verify at relying parties that reload metadata, until `retire`.
    Previous,
    /// No longer signs or is published; kept for the record.
    Retired,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Next => "NEXT",
            KeyStatus::Active => "ACTIVE",
            KeyStatus::Previous => "PREVIOUS",
            KeyStatus::Retired => "RETIRED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "NEXT" => Some(KeyStatus::Next),
            "ACTIVE" => Some(KeyStatus::Active),
            "PREVIOUS" => Some(KeyStatus::Previous),
            "RETIRED" => Some(KeyStatus::Retired),
            _ => None,
        }
    }
}

/// A signing key as stored: the PKCS#8 private key sealed under the master key (context = kid),
/// the certificate in the clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSigningKey {
    pub kid: String,
    pub status: KeyStatus,
    pub sealed_private_key: String,
    pub certificate_der: Vec<u8>,
    pub created: Timestamp,
}

/// Generates an RSA-2048 key with a self-signed certificate and seals it. Slow (RSA key
/// generation): [`service::SigningKeys`] runs it through its [`crate::offload::Offload`] port.
pub fn generate(
    master_key: &MasterKey,
    status: KeyStatus,
    now: Timestamp,
) -> Result<(StoredSigningKey, SigningKey), CoreError> {
    let (key, material) =
        SigningKey::generate(COMMON_NAME, CERT_VALID_DAYS).map_err(|e| CoreError::Crypto(e.to_string()))?;
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

/// The key that signs now, the one announced next, and the one the last rollover replaced.
#[derive(Clone)]
pub struct KeySet {
    pub active: Arc<SigningKey>,
    pub next: Option<Arc<SigningKey>>,
    pub previous: Option<Arc<SigningKey>>,
}

impl KeySet {
    /// Every published key, in publishing order: the next key first, then the active one, then the
    /// previous one.
    pub fn published(&self) -> impl Iterator<Item = &Arc<SigningKey>> {
        self.next.iter().chain(std::iter::once(&self.active)).chain(self.previous.iter())
    }

    /// Certificates for metadata, in publishing order.
    pub fn published_certs(&self) -> Vec<Vec<u8>> {
        self.published().map(|key| key.cert_der().to_vec()).collect()
    }

    /// The certificate of the published key (next, active or previous) named `kid`.
    pub fn published_cert(&self, kid: &str) -> Option<Vec<u8>> {
        self.published().find(|key| key.kid() == kid).map(|key| key.cert_der().to_vec())
    }
}

/// One node's opened keys by kid, and the current set with when it was read.
#[derive(Default)]
pub struct KeyCache {
    opened: RwLock<HashMap<String, Arc<SigningKey>>>,
    current: RwLock<Option<(Instant, KeySet)>>,
}
