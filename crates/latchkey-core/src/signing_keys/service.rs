//! The signing-keys use cases over the store: the current set (cached per node), the published
//! keys, and the rollover (`stage`, `activate`, `retire`), each written to the system log.

use std::sync::Arc;
use std::time::Instant;

use super::{KEYS_FRESH_FOR, KeyCache, KeySet, KeyStatus, SigningKey, StoredSigningKey, generate, open};
use crate::clock::Clock;
use crate::crypto::MasterKey;
use crate::error::{CoreError, StoreError};
use crate::events::{Actor, AuditLog, Event, Target};
use crate::offload::Offload;
use crate::store::SigningKeyStore;

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
