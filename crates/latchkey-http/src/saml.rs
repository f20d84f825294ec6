//! SAML 2.0 IdP endpoints: signing keys, metadata, SSO and Single Logout.

use latchkey_core::apps::KeyStatus;
use latchkey_core::store::SamlStore;

use crate::AppState;
use crate::error::ApiError;

/// The kid of the key that signs now (`None` before the first key exists).
pub(crate) async fn active_kid(state: &AppState) -> Result<Option<String>, ApiError> {
    let keys = state.store.list_signing_keys().await?;
    Ok(keys.into_iter().find(|k| k.status == KeyStatus::Active).map(|k| k.kid))
}
