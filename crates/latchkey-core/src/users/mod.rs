//! Users: the record, its lifecycle state machine and profile rules (Okta's default user schema).
//!
//! Invariants: `login` is unique case-insensitively (the store enforces it on `login_key`); a user's
//! `status` only changes through [`transition`]; `version` increases on every write so concurrent
//! updates from several nodes are detected rather than lost.

pub mod profile;
pub mod query;
pub mod service;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::error::CoreError;

/// Okta's user statuses (all accepted by the strict Python SDK enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UserStatus {
    Staged,
    Provisioned,
    Active,
    Recovery,
    LockedOut,
    PasswordExpired,
    Suspended,
    Deprovisioned,
}

impl UserStatus {
    pub const ALL: [UserStatus; 8] = [
        UserStatus::Staged,
        UserStatus::Provisioned,
        UserStatus::Active,
        UserStatus::Recovery,
        UserStatus::LockedOut,
        UserStatus::PasswordExpired,
        UserStatus::Suspended,
        UserStatus::Deprovisioned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Staged => "STAGED",
            UserStatus::Provisioned => "PROVISIONED",
            UserStatus::Active => "ACTIVE",
            UserStatus::Recovery => "RECOVERY",
            UserStatus::LockedOut => "LOCKED_OUT",
            UserStatus::PasswordExpired => "PASSWORD_EXPIRED",
            UserStatus::Suspended => "SUSPENDED",
            UserStatus::Deprovisioned => "DEPROVISIONED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A user as stored. `profile` holds Okta profile attributes (validated by [`profile`]).
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: String,
    pub status: UserStatus,
    pub created: Timestamp,
    pub activated: Option<Timestamp>,
    pub status_changed: Option<Timestamp>,
    pub last_login: Option<Timestamp>,
    pub last_updated: Timestamp,
    pub password_changed: Option<Timestamp>,
    pub profile: profile::Profile,
    /// argon2id PHC string; `None` for users created without a password.
    pub password_hash: Option<String>,
    /// Previous password hashes, newest first (for the policy's `historyCount`).
    pub password_history: Vec<String>,
    /// Consecutive failed sign-ins, reset on success or unlock.
    pub failed_attempts: u32,
    /// When the lockout policy locked the user (for `autoUnlockMinutes`).
    pub locked_at: Option<Timestamp>,
    pub version: i64,
}

impl User {
    pub fn login(&self) -> &str {
        self.profile.login()
    }

    /// Only ACTIVE users (and those whose password expired, who are mid-change) hold sessions.
    pub fn may_have_sessions(&self) -> bool {
        matches!(self.status, UserStatus::Active | UserStatus::PasswordExpired)
    }
}

/// The lifecycle operations of `/api/v1/users/{id}/lifecycle/*` plus deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Activate,
    Reactivate,
    Deactivate,
    Suspend,
    Unsuspend,
    Unlock,
    ExpirePassword,
    ResetPassword,
}

impl Lifecycle {
    pub fn parse(path_segment: &str) -> Option<Self> {
        Some(match path_segment {
            "activate" => Lifecycle::Activate,
            "reactivate" => Lifecycle::Reactivate,
            "deactivate" => Lifecycle::Deactivate,
            "suspend" => Lifecycle::Suspend,
            "unsuspend" => Lifecycle::Unsuspend,
            "unlock" => Lifecycle::Unlock,
            "expire_password" => Lifecycle::ExpirePassword,
            "reset_password" => Lifecycle::ResetPassword,
            _ => return None,
        })
    }
}

/// The status a lifecycle operation leads to from `from`, or why it is refused.
/// Okta: activation only from STAGED/DEPROVISIONED (403 E0000016 when already active), suspend only
/// from ACTIVE, unsuspend only from SUSPENDED, unlock only from LOCKED_OUT, reactivate only from
/// PROVISIONED; deprovisioned users can only be activated or deleted.
pub fn transition(from: UserStatus, op: Lifecycle, has_password: bool) -> Result<UserStatus, CoreError> {
    use UserStatus as S;
    let after_activation = if has_password { S::Active } else { S::Provisioned };
    match (op, from) {
        (Lifecycle::Activate, S::Staged | S::Deprovisioned) => Ok(after_activation),
        (Lifecycle::Activate, S::Provisioned) => Err(CoreError::InvalidStatus),
        (Lifecycle::Activate, _) => Err(CoreError::AlreadyActive),
        (Lifecycle::Reactivate, S::Provisioned) => Ok(S::Provisioned),
        (Lifecycle::Deactivate, S::Deprovisioned) => Err(CoreError::InvalidStatus),
        (Lifecycle::Deactivate, _) => Ok(S::Deprovisioned),
        (Lifecycle::Suspend, S::Active) => Ok(S::Suspended),
        (Lifecycle::Unsuspend, S::Suspended) => Ok(S::Active),
        (Lifecycle::Unlock, S::LockedOut) => Ok(S::Active),
        (Lifecycle::ExpirePassword, S::Active | S::PasswordExpired | S::LockedOut | S::Recovery) => {
            Ok(S::PasswordExpired)
        }
        (Lifecycle::ResetPassword, S::Active | S::PasswordExpired | S::LockedOut | S::Recovery) => {
            Ok(S::Recovery)
        }
        _ => Err(CoreError::InvalidStatus),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use UserStatus as S;

    #[test]
    fn status_names_round_trip() {
        for s in UserStatus::ALL {
            assert_eq!(UserStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(UserStatus::parse("active"), None);
    }

    #[test]
    fn lifecycle_rules() {
        assert_eq!(transition(S::Staged, Lifecycle::Activate, true), Ok(S::Active));
        assert_eq!(transition(S::Staged, Lifecycle::Activate, false), Ok(S::Provisioned));
        assert_eq!(transition(S::Active, Lifecycle::Activate, true), Err(CoreError::AlreadyActive));
        assert_eq!(transition(S::Active, Lifecycle::Suspend, true), Ok(S::Suspended));
        assert_eq!(transition(S::Staged, Lifecycle::Suspend, true), Err(CoreError::InvalidStatus));
        assert_eq!(transition(S::Suspended, Lifecycle::Unsuspend, true), Ok(S::Active));
        assert_eq!(transition(S::Active, Lifecycle::Unlock, true), Err(CoreError::InvalidStatus));
        assert_eq!(transition(S::LockedOut, Lifecycle::Unlock, true), Ok(S::Active));
        assert_eq!(transition(S::Deprovisioned, Lifecycle::Deactivate, true), Err(CoreError::InvalidStatus));
        assert_eq!(transition(S::Active, Lifecycle::ResetPassword, true), Ok(S::Recovery));
        assert_eq!(transition(S::Staged, Lifecycle::ExpirePassword, true), Err(CoreError::InvalidStatus));
    }
}
