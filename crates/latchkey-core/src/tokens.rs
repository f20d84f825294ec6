//! Admin API tokens (Okta's SSWS tokens) and the one-time tokens issued by user lifecycle operations.
//!
//! Both are bearer secrets: the plaintext is shown once and only its digest is stored
//! ([`crate::ids::secret_digest`]). One-time tokens carry a purpose and an expiry; a new token of a
//! purpose replaces the user's previous one.

use crate::clock::Timestamp;
use crate::ids::{IdKind, Secret, new_id};

/// An admin API token as stored. `digest` is the hex SHA-256 of the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: String,
    pub name: String,
    pub digest: String,
    pub created: Timestamp,
}

impl ApiToken {
    /// A fresh token and the secret to show to the operator, once.
    pub fn issue(name: &str, now: Timestamp) -> (Self, Secret) {
        let secret = Secret::generate();
        let token = ApiToken {
            id: new_id(IdKind::ApiToken),
            name: name.to_owned(),
            digest: secret.digest(),
            created: now,
        };
        (token, secret)
    }
}

/// Why a one-time token was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    /// `lifecycle/activate`: redeemed by `/api/v1/authn` `{token}` (7 days, Okta's default).
    Activation,
    /// `lifecycle/reset_password`: redeemed through the recovery flow (1 hour, Okta's default).
    Recovery,
}

impl TokenPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenPurpose::Activation => "activation",
            TokenPurpose::Recovery => "recovery",
        }
    }

    pub fn lifetime_seconds(self) -> i64 {
        match self {
            TokenPurpose::Activation => 7 * 24 * 3600,
            TokenPurpose::Recovery => 3600,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneTimeToken {
    pub digest: String,
    pub user_id: String,
    pub purpose: TokenPurpose,
    pub created: Timestamp,
    pub expires_at: Timestamp,
}

impl OneTimeToken {
    pub fn issue(user_id: &str, purpose: TokenPurpose, now: Timestamp) -> (Self, Secret) {
        let secret = Secret::generate();
        let token = OneTimeToken {
            digest: secret.digest(),
            user_id: user_id.to_owned(),
            purpose,
            created: now,
            expires_at: now.plus_seconds(purpose.lifetime_seconds()),
        };
        (token, secret)
    }
}
