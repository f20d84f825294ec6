//! Storage ports: what the domain needs from a database, sized to its use cases.
//!
//! Each method is atomic inside the adapter (one transaction). Adapters report failures only as
//! [`StoreError`]; the domain never sees a driver type. Methods return `Send` futures so the HTTP
//! layer can await them on a multi-threaded runtime.

use std::future::Future;

use crate::error::StoreError;
use crate::policy::PasswordPolicy;
use crate::tokens::{ApiToken, OneTimeToken};
use crate::users::User;
use crate::users::query::UserQuery;

pub type StoreResult<T> = Result<T, StoreError>;

pub trait UserStore: Send + Sync {
    /// Inserts a new user. `Conflict("login")` when the login is taken (case-insensitively).
    fn insert_user(&self, user: &User) -> impl Future<Output = StoreResult<()>> + Send;

    /// Finds a user by id, or else by login (case-insensitive).
    fn find_user(&self, id_or_login: &str) -> impl Future<Output = StoreResult<Option<User>>> + Send;

    /// Users matching `query`, ordered by id, strictly after the `after` id, at most `limit`.
    fn list_users(
        &self,
        query: &UserQuery,
        after: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<User>>> + Send;

    /// Replaces a user whose stored version is still `expected_version` (else `Stale`), and in the
    /// same transaction issues `token`, replacing the user's earlier token of the same purpose.
    fn update_user(
        &self,
        user: &User,
        expected_version: i64,
        token: Option<&OneTimeToken>,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Deletes a user and everything that belongs to it. `false` when it did not exist.
    fn delete_user(&self, id: &str) -> impl Future<Output = StoreResult<bool>> + Send;
}

pub trait ApiTokenStore: Send + Sync {
    fn insert_api_token(&self, token: &ApiToken) -> impl Future<Output = StoreResult<()>> + Send;

    /// The token whose secret has this digest.
    fn find_api_token(&self, digest: &str) -> impl Future<Output = StoreResult<Option<ApiToken>>> + Send;
}

pub trait PolicyStore: Send + Sync {
    /// The default PASSWORD policy's settings (Okta's defaults until an administrator changes them).
    fn password_policy(&self) -> impl Future<Output = StoreResult<PasswordPolicy>> + Send;
}

pub trait HealthStore: Send + Sync {
    /// A round trip to the database.
    fn ping(&self) -> impl Future<Output = StoreResult<()>> + Send;
}

/// Everything the application needs from storage.
pub trait Storage: UserStore + ApiTokenStore + PolicyStore + HealthStore {}

impl<T: UserStore + ApiTokenStore + PolicyStore + HealthStore> Storage for T {}
