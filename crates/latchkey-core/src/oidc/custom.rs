//! The `default` custom authorization server's own scopes and claims (Okta's
//! `/api/v1/authorizationServers/default/scopes` and `/claims`).
//!
//! A custom claim's value is an expression in the same language as SAML attribute statements and
//! group rules (`crate::expr`), or, for `valueType: "GROUPS"`, a group filter like a SAML GROUP
//! statement's; both are parsed when the claim is saved, so one Latchkey cannot evaluate is
//! refused then. A claim is added to the access token (`RESOURCE`) or the id_token (`IDENTITY`)
//! when the grant includes one of its `conditions.scopes` (or always, when it names none).

use serde::{Deserialize, Serialize};

use crate::apps::GroupFilter;
use crate::clock::Timestamp;
use crate::error::CoreError;
use crate::expr::{Expression, Subject};
use crate::groups::GroupRef;

use super::STANDARD_SCOPES;

/// A scope the default server knows beyond OpenID Connect's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomScope {
    /// `scp…`
    pub id: String,
    pub name: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
    /// `ALL_CLIENTS` (listed in discovery) or `NO_CLIENTS`.
    pub metadata_publish: String,
    /// Granted to a client credentials request that names no scope.
    pub default: bool,
    pub created: Timestamp,
    pub last_updated: Timestamp,
}

/// Which token a custom claim goes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClaimType {
    /// The access token.
    Resource,
    /// The id_token.
    Identity,
}

/// How a custom claim's value is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ValueType {
    /// An expression over the user (`user.department`).
    Expression,
    /// The names of the user's groups that pass a filter.
    Groups,
}

/// A custom claim of the default server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomClaim {
    /// `ocl…`
    pub id: String,
    pub name: String,
    pub claim_type: ClaimType,
    pub value_type: ValueType,
    pub value: String,
    /// For `GROUPS`: `STARTS_WITH`, `EQUALS`, `CONTAINS` or `REGEX`.
    pub group_filter_type: Option<String>,
    /// The scopes whose grant adds the claim; empty: every grant.
    pub scopes: Vec<String>,
    pub always_include_in_token: bool,
    pub active: bool,
    pub created: Timestamp,
    pub last_updated: Timestamp,
}

/// Claims a custom claim may not replace: the ones the tokens' meaning rests on.
const RESERVED_CLAIMS: [&str; 20] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "azp",
    "at_hash",
    "c_hash",
    "cid",
    "uid",
    "scp",
    "sid",
    "idp",
    "ver",
];

const MAX_NAME: usize = 100;

impl CustomScope {
    /// Checks a scope as an admin sent it.
    pub fn validate(&self) -> Result<(), CoreError> {
        let valid_char = |c: char| c.is_ascii_alphanumeric() || "._:/-".contains(c);
        if self.name.is_empty() || self.name.len() > MAX_NAME || !self.name.chars().all(valid_char) {
            return Err(CoreError::validation(
                "name",
                "a scope name is 1 to 100 letters, digits and . _ : / -",
            ));
        }
        if STANDARD_SCOPES.contains(&self.name.as_str()) {
            return Err(CoreError::validation("name", "is a system scope"));
        }
        if self.metadata_publish != "ALL_CLIENTS" && self.metadata_publish != "NO_CLIENTS" {
            return Err(CoreError::validation("metadataPublish", "must be ALL_CLIENTS or NO_CLIENTS"));
        }
        Ok(())
    }
}

impl CustomClaim {
    /// Checks a claim as an admin sent it: its name, and that its value can be evaluated.
    pub fn validate(&self) -> Result<(), CoreError> {
        let valid_char = |c: char| c.is_ascii_alphanumeric() || "._:-".contains(c);
        if self.name.is_empty() || self.name.len() > MAX_NAME || !self.name.chars().all(valid_char) {
            return Err(CoreError::validation(
                "name",
                "a claim name is 1 to 100 letters, digits and . _ : -",
            ));
        }
        if RESERVED_CLAIMS.contains(&self.name.as_str()) {
            return Err(CoreError::validation("name", "is a reserved claim"));
        }
        match self.value_type {
            ValueType::Expression => {
                Expression::parse(&self.value).map_err(|e| CoreError::validation("value", e.to_string()))?;
            }
            ValueType::Groups => {
                let filter_type = self.group_filter_type.as_deref().ok_or_else(|| {
                    CoreError::validation("group_filter_type", "a GROUPS claim needs a group_filter_type")
                })?;
                GroupFilter::new(filter_type, &self.value).map_err(|e| CoreError::validation("value", e))?;
            }
        }
        Ok(())
    }

    /// Whether a grant of `scopes` carries this claim into a token of `claim_type`.
    pub fn applies(&self, claim_type: ClaimType, scopes: &[String]) -> bool {
        self.active
            && self.claim_type == claim_type
            && (self.scopes.is_empty() || self.scopes.iter().any(|s| scopes.contains(s)))
    }

    /// The claim's value for a user who belongs to `groups`; `None` when it has none (Okta leaves
    /// such claims out).
    pub fn value_for(&self, subject: &Subject<'_>, groups: &[GroupRef]) -> Option<serde_json::Value> {
        match self.value_type {
            ValueType::Expression => {
                Expression::parse(&self.value).ok()?.evaluate(subject).map(serde_json::Value::String)
            }
            ValueType::Groups => {
                let filter = GroupFilter::new(self.group_filter_type.as_deref()?, &self.value).ok()?;
                let names: Vec<serde_json::Value> = groups
                    .iter()
                    .filter(|g| filter.matches(&g.name))
                    .map(|g| serde_json::Value::String(g.name.clone()))
                    .collect();
                Some(serde_json::Value::Array(names))
            }
        }
    }

    /// Whether making the value needs the user's groups.
    pub fn needs_groups(&self) -> bool {
        self.value_type == ValueType::Groups || Expression::parse(&self.value).is_ok_and(|e| e.uses_groups())
    }
}
