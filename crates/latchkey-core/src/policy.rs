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
