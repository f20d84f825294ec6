//! Primary authentication (`/api/v1/authn`): the transaction, the factors it verifies, and the
//! one-time session token it ends with.
//!
//! A transaction is addressed by a bearer `stateToken` (stored as a digest) with a sliding expiry;
//! its state lives in the database so any node can continue it. A `sessionToken` is single-use
//! across nodes (redeemed by a conditional update) and lives five minutes (Okta, OKTA-109907).
//! The state machine itself is in [`machine`].

pub mod machine;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;

/// The only factor type implemented: RFC 6238 TOTP.
pub const TOTP: &str = "token:software:totp";

/// How long a state token lives after its last use.
pub const STATE_TOKEN_SECONDS: i64 = 10 * 60;
/// Hard limit on a transaction's life however often it is used.
pub const TRANSACTION_MAX_SECONDS: i64 = 60 * 60;
/// Okta: session tokens are one-time and expire after five minutes.
pub const SESSION_TOKEN_SECONDS: i64 = 5 * 60;

/// Okta's transaction statuses that Latchkey produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthnStatus {
    Success,
    PasswordWarn,
    PasswordExpired,
    PasswordReset,
    LockedOut,
    MfaEnroll,
    MfaEnrollActivate,
    MfaRequired,
    MfaChallenge,
}

impl AuthnStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthnStatus::Success => "SUCCESS",
            AuthnStatus::PasswordWarn => "PASSWORD_WARN",
            AuthnStatus::PasswordExpired => "PASSWORD_EXPIRED",
            AuthnStatus::PasswordReset => "PASSWORD_RESET",
            AuthnStatus::LockedOut => "LOCKED_OUT",
            AuthnStatus::MfaEnroll => "MFA_ENROLL",
            AuthnStatus::MfaEnrollActivate => "MFA_ENROLL_ACTIVATE",
            AuthnStatus::MfaRequired => "MFA_REQUIRED",
            AuthnStatus::MfaChallenge => "MFA_CHALLENGE",
        }
    }
}

/// TOTP providers: the factor is the same, the authenticator app differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Provider {
    /// Okta Verify.
    Okta,
    /// Google Authenticator.
    Google,
}

impl Provider {
    pub const ALL: [Provider; 2] = [Provider::Okta, Provider::Google];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Okta => "OKTA",
            Provider::Google => "GOOGLE",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == text)
    }

    pub fn vendor_name(self) -> &'static str {
        match self {
            Provider::Okta => "OKTA",
            Provider::Google => "GOOGLE",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactorStatus {
    PendingActivation,
    Active,
}

impl FactorStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FactorStatus::PendingActivation => "PENDING_ACTIVATION",
            FactorStatus::Active => "ACTIVE",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "PENDING_ACTIVATION" => Some(FactorStatus::PendingActivation),
            "ACTIVE" => Some(FactorStatus::Active),
            _ => None,
        }
    }
}

/// A user's TOTP factor. `sealed_secret` is the base32 shared secret sealed under the master key
/// with the factor id as context; `last_step` is the newest time step accepted (replay guard).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Factor {
    pub id: String,
    pub user_id: String,
    pub provider: Provider,
    pub status: FactorStatus,
    pub sealed_secret: String,
    pub last_step: i64,
    /// Digest of the one-time token in the QR-code link, while the factor awaits activation.
    pub qr_digest: Option<String>,
    pub created: Timestamp,
    pub last_updated: Timestamp,
}

/// A transaction's state between calls (stored as JSON; the state token's digest is its key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transaction {
    pub user_id: String,
    pub status: AuthnStatus,
    /// The factor being activated (MFA_ENROLL_ACTIVATE) or challenged (MFA_CHALLENGE).
    pub factor_id: Option<String>,
    pub factor_result: Option<String>,
    pub multi_optional_factor_enroll: bool,
    pub warn_before_password_expired: bool,
    pub mfa_verified: bool,
    pub enrolled_now: bool,
    pub warn_skipped: bool,
    pub enroll_skipped: bool,
    /// Digest of the device to remember once the transaction succeeds (`rememberDevice=true`).
    pub remember_device: Option<String>,
    pub password_verified_at: Option<i64>,
    pub factor_verified_at: Option<i64>,
    pub amr: Vec<String>,
    pub relay_state: Option<String>,
    pub created: i64,
}

impl Transaction {
    /// A fresh transaction for `user_id` in `status`, nothing verified yet.
    pub fn start(user_id: &str, status: AuthnStatus, relay_state: Option<String>, now: Timestamp) -> Self {
        Transaction {
            user_id: user_id.to_owned(),
            status,
            factor_id: None,
            factor_result: None,
            multi_optional_factor_enroll: false,
            warn_before_password_expired: false,
            mfa_verified: false,
            enrolled_now: false,
            warn_skipped: false,
            enroll_skipped: false,
            remember_device: None,
            password_verified_at: None,
            factor_verified_at: None,
            amr: Vec::new(),
            relay_state,
            created: now.millis(),
        }
    }
}

/// A transaction as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTransaction {
    pub digest: String,
    pub tx: Transaction,
    pub expires_at: Timestamp,
    pub version: i64,
}

/// A session token as stored: who, how they authenticated, and until when it may be redeemed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionToken {
    pub digest: String,
    pub user_id: String,
    pub amr: Vec<String>,
    pub password_verified_at: Option<Timestamp>,
    pub factor_verified_at: Option<Timestamp>,
    pub created: Timestamp,
    pub expires_at: Timestamp,
}
