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

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

pub use material::{GeneratedKey, KeyMaterialError, SigningKey};

use crate::clock::{Clock, Timestamp};
use crate::crypto::MasterKey;
use crate::error::{CoreError, StoreError};
use crate::events::{Actor, AuditLog, Event, Target};
use crate::offload::Offload;
use crate::store::SigningKeyStore;

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
/// generation): [`SigningKeys`] runs it through its [`Offload`] port.
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

/// The signing-keys use cases, wired to their collaborators.
pub struct SigningKeys<'a, S, O, A> {
    pub store: &'a S,
    /// Needed to open and generate keys; the command line's `list`, `activate` and `retire` work
    /// without it.
    pub master_key: Option<&'a Arc<MasterKey>>,
    pub clock: &'a dyn Clock,
    pub cache: &'a KeyCache,
    /// Where RSA key generation runs.
    pub offload: &'a O,
    pub audit: &'a A,
}

impl<S: SigningKeyStore, O: Offload, A: AuditLog> SigningKeys<'_, S, O, A> {
    /// The keys to sign with: this node's set if read less than [`KEYS_FRESH_FOR`] ago, else read
    /// afresh (generating the organisation's first key if it has none).
    pub async fn current(&self) -> Result<KeySet, CoreError> {
        if let Ok(current) = self.cache.current.read()
            && let Some((read_at, keys)) = current.as_ref()
            && read_at.elapsed() < KEYS_FRESH_FOR
        {
            return Ok(keys.clone());
        }
        let keys = self.published().await?;
        if let Ok(mut current) = self.cache.current.write() {
            // Each node switches on its own, within KEYS_FRESH_FOR of `activate`: say so, so that an
            // operator can see every node has.
            if let Some((_, before)) = current.as_ref()
                && before.active.kid() != keys.active.kid()
            {
                tracing::info!(
                    kid = keys.active.kid(),
                    previous = before.active.kid(),
                    "SAML signing key switched"
                );
            }
            *current = Some((Instant::now(), keys.clone()));
        }
        Ok(keys)
    }

    /// The published keys as stored now (metadata and key listings read afresh, so a staged key
    /// is published at once), generating the first key if there is none. Two nodes racing to
    /// generate it: one insert wins, the other reads the winner's key.
    pub async fn published(&self) -> Result<KeySet, CoreError> {
        for _ in 0..2 {
            let stored = self.store.list_signing_keys().await?;
            let with = |status| stored.iter().find(|k| k.status == status);
            if let Some(active) = with(KeyStatus::Active) {
                let next = with(KeyStatus::Next).map(|k| self.open_cached(k)).transpose()?;
                let previous = with(KeyStatus::Previous).map(|k| self.open_cached(k)).transpose()?;
                return Ok(KeySet { active: self.open_cached(active)?, next, previous });
            }
            self.generate(KeyStatus::Active).await?;
        }
        Err(CoreError::Crypto("no active signing key after generating one".to_owned()))
    }

    /// The kid of the key that signs now (`None` before the first key exists). A read, no
    /// generation.
    pub async fn active_kid(&self) -> Result<Option<String>, CoreError> {
        let keys = self.store.list_signing_keys().await?;
        Ok(keys.into_iter().find(|k| k.status == KeyStatus::Active).map(|k| k.kid))
    }

    /// Every stored key, newest first, retired ones included.
    pub async fn list(&self) -> Result<Vec<StoredSigningKey>, CoreError> {
        Ok(self.store.list_signing_keys().await?)
    }

    /// Generates the next key and publishes it without signing with it. `None` when a next key is
    /// already staged.
    pub async fn stage(&self) -> Result<Option<String>, CoreError> {
        let kid = self.generate(KeyStatus::Next).await?;
        if let Some(kid) = &kid {
            self.record("system.signing_key.stage", "Stage the next SAML signing key", kid).await;
        }
        Ok(kid)
    }

    /// Rollover: the next key signs from now on, the active one becomes the previous one. `None`
    /// when no key is staged.
    pub async fn activate(&self) -> Result<Option<String>, CoreError> {
        if !self.store.promote_next_signing_key().await? {
            return Ok(None);
        }
        let kid = self.active_kid().await?.unwrap_or_default();
        self.record("system.signing_key.activate", "Activate the next SAML signing key", &kid).await;
        Ok(Some(kid))
    }

    /// Stops publishing the key the last rollover replaced. `None` when there is none.
    pub async fn retire(&self) -> Result<Option<String>, CoreError> {
        let keys = self.store.list_signing_keys().await?;
        let Some(kid) = keys.into_iter().find(|k| k.status == KeyStatus::Previous).map(|k| k.kid) else {
            return Ok(None);
        };
        if !self.store.retire_previous_signing_key().await? {
            return Ok(None);
        }
        self.record("system.signing_key.retire", "Retire the previous SAML signing key", &kid).await;
        Ok(Some(kid))
    }

    fn master_key(&self) -> Result<&Arc<MasterKey>, CoreError> {
        self.master_key
            .ok_or_else(|| CoreError::Crypto("the master key is needed to open or make keys".to_owned()))
    }

    async fn record(&self, event_type: &str, message: &str, kid: &str) {
        let event = Event::new(event_type, message, "SUCCESS", Actor::system(), self.clock.now())
            .target(Target::new(kid, "Key", kid));
        self.audit.record(event).await;
    }

    fn open_cached(&self, stored: &StoredSigningKey) -> Result<Arc<SigningKey>, CoreError> {
        if let Ok(cache) = self.cache.opened.read()
            && let Some(key) = cache.get(&stored.kid)
        {
            return Ok(key.clone());
        }
        let key = Arc::new(open(self.master_key()?, stored)?);
        if let Ok(mut cache) = self.cache.opened.write() {
            cache.insert(stored.kid.clone(), key.clone());
        }
        Ok(key)
    }

    /// Generates and stores a key with `status`; `None` when a key with that status exists (another
    /// node was first, or a next key is already staged).
    async fn generate(&self, status: KeyStatus) -> Result<Option<String>, CoreError> {
        let master_key = Arc::clone(self.master_key()?);
        let now = self.clock.now();
        let (stored, key) = self
            .offload
            .run(move || generate(&master_key, status, now))
            .await
            .ok_or_else(|| CoreError::Crypto("the key generation task did not finish".to_owned()))??;
        match self.store.insert_signing_key(&stored).await {
            Ok(()) => {
                if let Ok(mut cache) = self.cache.opened.write() {
                    cache.insert(stored.kid.clone(), Arc::new(key));
                }
                tracing::info!(kid = %stored.kid, status = status.as_str(), "generated a SAML signing key");
                Ok(Some(stored.kid))
            }
            Err(StoreError::Conflict(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
