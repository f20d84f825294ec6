//! Groups (Okta's Groups API): groups of users, the rules that fill them from the user profile,
//! and apps assigned to groups.
//!
//! Invariants: group names are unique without regard to case; the built-in `Everyone` group holds
//! every user and can be neither renamed, deleted nor edited as to membership; a membership records
//! where it came from (an administrator, or a rule), so deactivating or deleting a rule removes
//! exactly the memberships it made and leaves a user an administrator added; a user may use an app
//! assigned to any group they belong to (the sign-on core asks the store in one read).

pub mod query;
pub mod service;

use serde_json::{Map, Value};

use crate::clock::Timestamp;

/// The built-in group every user belongs to.
pub const EVERYONE: &str = "Everyone";

/// Okta's group `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupType {
    /// Made and managed here (`OKTA_GROUP`).
    Okta,
    /// `Everyone` (`BUILT_IN`).
    BuiltIn,
}

impl GroupType {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupType::Okta => "OKTA_GROUP",
            GroupType::BuiltIn => "BUILT_IN",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "OKTA_GROUP" => Some(GroupType::Okta),
            "BUILT_IN" => Some(GroupType::BuiltIn),
            _ => None,
        }
    }
}

/// A group (`00g…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: String,
    pub kind: GroupType,
    pub name: String,
    pub description: Option<String>,
    pub created: Timestamp,
    pub last_updated: Timestamp,
    pub last_membership_updated: Timestamp,
}

impl Group {
    pub fn is_built_in(&self) -> bool {
        self.kind == GroupType::BuiltIn
    }
}

/// A group as a sign-on sees it: what `isMemberOfGroup` and a SAML group claim read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRef {
    pub id: String,
    pub name: String,
}

/// How many users and apps a group has (`expand=stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupStats {
    pub users: u64,
    pub apps: u64,
}

/// Who made a membership: an administrator (`None`) or a group rule.
pub type MembershipSource<'a> = Option<&'a str>;

/// Okta's group rule `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleStatus {
    Active,
    Inactive,
    /// A group the rule fills was deleted: the rule applies to no one, cannot be activated or
    /// deactivated, and becomes INACTIVE when it is saved again with existing groups (as Okta).
    Invalid,
}

impl RuleStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleStatus::Active => "ACTIVE",
            RuleStatus::Inactive => "INACTIVE",
            RuleStatus::Invalid => "INVALID",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ACTIVE" => Some(RuleStatus::Active),
            "INACTIVE" => Some(RuleStatus::Inactive),
            "INVALID" => Some(RuleStatus::Invalid),
            _ => None,
        }
    }
}

/// A group rule (`0pr…`): users whose profile satisfies `expression` are put in `group_ids`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRule {
    pub id: String,
    pub name: String,
    pub status: RuleStatus,
    /// In Okta's expression language (`crate::expr`), checked to be a condition when saved.
    pub expression: String,
    pub group_ids: Vec<String>,
    /// Users the rule never applies to (`conditions.people.users.exclude`).
    pub excluded_users: Vec<String>,
    pub created: Timestamp,
    pub last_updated: Timestamp,
}

/// An app assigned to a group (Okta's ApplicationGroupAssignment).
#[derive(Debug, Clone, PartialEq)]
pub struct AppGroup {
    pub app_id: String,
    pub group_id: String,
    pub priority: u32,
    /// The assignment's app profile, kept as the admin sent it.
    pub profile: Map<String, Value>,
    pub created: Timestamp,
    pub last_updated: Timestamp,
}

/// A group name as Okta compares them: without regard to case.
pub fn name_key(name: &str) -> String {
    name.to_lowercase()
}
