//! The errors the domain can report, and the storage error every adapter maps its driver errors to.
//!
//! These say *what* went wrong in domain terms; `latchkey-http` owns the single mapping onto Okta's
//! error envelope and status codes. Nothing here carries driver types or SQL text.

use std::fmt;

/// A validation failure on one field, rendered by the API as `"field: message"` (Okta's `errorCauses`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// What a storage adapter may report. Adapters map every driver error onto one of these.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// A uniqueness rule was hit; the string names the rule (e.g. `login`).
    #[error("conflict on {0}")]
    Conflict(String),
    /// A write refers to a row that no longer exists (deleted meanwhile, by another request); the
    /// string names what is gone (`group`, `user`, `app`). Not every foreign-key failure: only
    /// one the adapter has pinned to a row it saw go.
    #[error("{0} no longer exists")]
    Gone(String),
    /// The row changed between read and write (optimistic concurrency); the caller may retry.
    #[error("concurrent modification")]
    Stale,
    /// The database could not be reached or answered with an operational error.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be decoded into domain values.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// A domain-level failure of a use case.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CoreError {
    /// The named resource does not exist (`what` is e.g. `00u123 (User)`).
    #[error("not found: {0}")]
    NotFound(String),
    /// Input broke a rule; `field` names the first offending field, `causes` lists them all.
    #[error("validation failed: {field}")]
    Validation { field: String, causes: Vec<FieldError> },
    /// A credentials change was refused (wrong old password, policy not met).
    #[error("credentials update failed")]
    CredentialsUpdate { causes: Vec<FieldError> },
    /// Okta 403 E0000080 (authn password change/reset): the new password breaks the policy.
    #[error("password requirements not met")]
    PasswordRequirements { causes: Vec<FieldError> },
    /// The operation is not allowed in the user's current lifecycle status.
    #[error("operation not allowed in current status")]
    InvalidStatus,
    /// Activation of a user that is already active.
    #[error("user already active")]
    AlreadyActive,
    /// The search or filter expression could not be understood.
    #[error("invalid search criteria: {0}")]
    InvalidQuery(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Password hashing failed, or too many hashes are already queued.
    #[error("password hashing unavailable")]
    Hashing,
    /// Okta 401 E0000004: the same answer for unknown users, wrong passwords and refused users.
    #[error("authentication failed")]
    AuthenticationFailed,
    /// Okta 401 E0000011: unknown, expired or finished state token.
    #[error("invalid state token")]
    InvalidStateToken,
    /// Okta 403 E0000079: the operation does not apply to the transaction's current state.
    #[error("operation not allowed in the current authentication state")]
    WrongState,
    /// Okta 403 E0000068: wrong one-time passcode.
    #[error("invalid passcode")]
    InvalidPasscode,
    /// Okta 403 E0000069: the user was locked by failed verifications.
    #[error("user locked")]
    UserLocked,
    /// Key material could not be generated, sealed or opened (wrong master key, corrupt row).
    #[error("cryptographic failure: {0}")]
    Crypto(String),
    /// Okta 403 E0000006: the operation is not permitted on this object (the built-in `Everyone`
    /// group); the text says why and is logged, not returned.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Okta E0000060: the operation does not apply to this object (adding a member to `Everyone`).
    #[error("unsupported operation")]
    UnsupportedOperation,
    /// Okta 403 E0000046: a user who has an app through a group cannot be unassigned from it.
    #[error("the user has the app through a group")]
    AssignedThroughGroup,
    /// Okta 403 E0000056: an app must be deactivated before it is deleted.
    #[error("app is active")]
    AppActive,
    /// Okta 429 E0000047: too many requests in the window; `reset` is when the window ends.
    #[error("rate limited")]
    RateLimited { limit: u32, reset: crate::Timestamp },
}

impl CoreError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        CoreError::Validation { causes: vec![FieldError::new(field.clone(), message)], field }
    }

    pub fn from_causes(causes: Vec<FieldError>) -> Result<(), Self> {
        match causes.first() {
            None => Ok(()),
            Some(first) => Err(CoreError::Validation { field: first.field.clone(), causes }),
        }
    }
}
