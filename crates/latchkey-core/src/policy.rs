//! Organisation policies the domain enforces. This scope: the default PASSWORD policy.
//!
//! The shape mirrors Okta's `settings.password` object (complexity, age, lockout) so the Policies API
//! can serialise it unchanged; defaults are Okta's defaults for a new Classic org.

use serde::{Deserialize, Serialize};

/// `settings.password` of the default PASSWORD policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct PasswordPolicy {
    pub complexity: Complexity,
    pub age: PasswordAge,
    pub lockout: Lockout,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Complexity {
    pub min_length: u32,
    pub min_lower_case: u32,
    pub min_upper_case: u32,
    pub min_number: u32,
    pub min_symbol: u32,
    pub exclude_username: bool,
    /// Profile attributes the password must not contain (Okta allows `firstName`, `lastName`).
    pub exclude_attributes: Vec<String>,
}

impl Default for Complexity {
    fn default() -> Self {
        Self {
            min_length: 8,
            min_lower_case: 1,
            min_upper_case: 1,
            min_number: 1,
            min_symbol: 0,
            exclude_username: true,
            exclude_attributes: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PasswordAge {
    /// 0 = passwords never expire.
    pub max_age_days: u32,
    pub expire_warn_days: u32,
    pub min_age_minutes: u32,
    /// How many previous passwords (the current one included) may not be reused.
    pub history_count: u32,
}

impl Default for PasswordAge {
    fn default() -> Self {
        Self { max_age_days: 0, expire_warn_days: 0, min_age_minutes: 0, history_count: 4 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Lockout {
    /// 0 = no lockout.
    pub max_attempts: u32,
    /// 0 = only an administrator unlocks.
    pub auto_unlock_minutes: u32,
    pub show_lockout_failures: bool,
}

impl Default for Lockout {
    fn default() -> Self {
        Self { max_attempts: 10, auto_unlock_minutes: 0, show_lockout_failures: false }
    }
}

/// Enrollment setting of one factor in the MFA_ENROLL policy (`settings.factors.<key>.enroll.self`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Enrollment {
    Required,
    Optional,
    NotAllowed,
}

/// The default MFA_ENROLL policy: Okta Verify TOTP (`okta_otp`) and Google Authenticator
/// (`google_otp`). Okta's default leaves both optional.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MfaEnrollPolicy {
    pub okta_otp: Enrollment,
    pub google_otp: Enrollment,
}

impl Default for MfaEnrollPolicy {
    fn default() -> Self {
        Self { okta_otp: Enrollment::Optional, google_otp: Enrollment::Optional }
    }
}

/// When a second factor is asked for, once a user has one (`actions.signon.factorPromptMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FactorPromptMode {
    /// Every sign-in.
    Always,
    /// Unless this device was remembered within `factor_lifetime_minutes`.
    Device,
    /// Once per session; every primary authentication starts a new session, so like `Always` there.
    Session,
}

/// The default OKTA_SIGN_ON policy's default rule (`actions.signon`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SignOnRule {
    pub require_factor: bool,
    pub factor_prompt_mode: FactorPromptMode,
    pub remember_device_by_default: bool,
    pub factor_lifetime_minutes: u32,
    pub max_session_idle_minutes: u32,
    /// 0 = no absolute limit (Okta's default).
    pub max_session_lifetime_minutes: u32,
    pub use_persistent_cookie: bool,
}

impl Default for SignOnRule {
    fn default() -> Self {
        Self {
            require_factor: false,
            factor_prompt_mode: FactorPromptMode::Always,
            remember_device_by_default: false,
            factor_lifetime_minutes: 15,
            max_session_idle_minutes: 120,
            max_session_lifetime_minutes: 0,
            use_persistent_cookie: false,
        }
    }
}

/// The three default policies this organisation has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    Password,
    MfaEnroll,
    SignOn,
}

impl PolicyKind {
    pub const ALL: [PolicyKind; 3] = [PolicyKind::Password, PolicyKind::MfaEnroll, PolicyKind::SignOn];

    /// Okta's policy `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::Password => "PASSWORD",
            PolicyKind::MfaEnroll => "MFA_ENROLL",
            PolicyKind::SignOn => "OKTA_SIGN_ON",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// The settings of a new organisation, as stored JSON.
    pub fn default_settings(self) -> String {
        let value = match self {
            PolicyKind::Password => serde_json::to_value(PasswordPolicy::default()),
            PolicyKind::MfaEnroll => serde_json::to_value(MfaEnrollPolicy::default()),
            PolicyKind::SignOn => serde_json::to_value(SignOnRule::default()),
        };
        value.map(|v| v.to_string()).unwrap_or_default()
    }
}

/// A stored policy row: identity, settings as JSON, and the version guarding updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRow {
    pub id: String,
    /// The id of the policy's one (default) rule.
    pub rule_id: String,
    pub kind: PolicyKind,
    pub settings: String,
    pub created: crate::Timestamp,
    pub last_updated: crate::Timestamp,
    pub version: i64,
}

/// The policies in force, typed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policies {
    pub password: PasswordPolicy,
    pub mfa_enroll: MfaEnrollPolicy,
    pub sign_on: SignOnRule,
}

impl Policies {
    /// Parses stored rows; a missing row means that policy's defaults.
    pub fn from_rows(rows: &[PolicyRow]) -> Result<Self, serde_json::Error> {
        let mut policies = Policies::default();
        for row in rows {
            match row.kind {
                PolicyKind::Password => policies.password = serde_json::from_str(&row.settings)?,
                PolicyKind::MfaEnroll => policies.mfa_enroll = serde_json::from_str(&row.settings)?,
                PolicyKind::SignOn => policies.sign_on = serde_json::from_str(&row.settings)?,
            }
        }
        Ok(policies)
    }
}

/// The default row of each policy kind for a new organisation (fresh ids; the store keeps the first
/// rows written, so nodes racing at start-up agree).
pub fn default_rows(now: crate::Timestamp) -> Vec<PolicyRow> {
    use crate::ids::{IdKind, new_id};
    PolicyKind::ALL
        .iter()
        .map(|kind| PolicyRow {
            id: new_id(IdKind::Policy),
            rule_id: new_id(IdKind::PolicyRule),
            kind: *kind,
            settings: kind.default_settings(),
            created: now,
            last_updated: now,
            version: 1,
        })
        .collect()
}
