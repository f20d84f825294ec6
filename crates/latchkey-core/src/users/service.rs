//! User use cases: create, read, search, update, lifecycle, delete, password changes.
//!
//! Every write is a read-modify-write guarded by the user's `version`; on a concurrent change the
//! use case re-reads and re-applies (bounded), so two nodes never lose each other's updates. Password
//! rules (complexity, history, minimum age) come from the default PASSWORD policy at the time of the
//! call, so a policy change takes effect at once on every node.

use serde_json::{Map, Value};

use crate::clock::{Clock, Timestamp};
use crate::error::{CoreError, FieldError, StoreError};
use crate::ids::{IdKind, Secret, new_id, random_alphanumeric};
use crate::password::{self, PasswordHashing};
use crate::policy::PasswordPolicy;
use crate::store::{PolicyStore, UserStore};
use crate::tokens::{OneTimeToken, TokenPurpose};
use crate::users::profile::Profile;
use crate::users::query::UserQuery;
use crate::users::{Lifecycle, User, UserStatus, transition};

/// How many times a write is re-applied after losing a race before giving up. Every round has a
/// winner, so this bounds the concurrent writers to one user that all succeed, not the latency.
const MAX_ATTEMPTS: usize = 64;

/// The most users one page may hold (Okta's cap for `/api/v1/users`).
pub const MAX_PAGE: u32 = 200;

/// The collaborators every use case needs.
pub struct Users<'a, S, H> {
    pub store: &'a S,
    pub hasher: &'a H,
    pub clock: &'a dyn Clock,
}

pub struct NewUser {
    pub profile: Map<String, Value>,
    pub password: Option<String>,
    pub activate: bool,
    /// `nextLogin=changePassword`: the user must change the password at first sign-in.
    pub expire_password: bool,
}

/// A profile change: Okta's POST merges, PUT replaces.
pub enum ProfileChange {
    None,
    Merge(Map<String, Value>),
    Replace(Map<String, Value>),
}

#[derive(Debug, Clone, Copy, Default)]
pub struct LifecycleOptions {
    /// `sendEmail=false` asks for the token in the response instead of an email.
    pub return_token: bool,
    /// `expire_password?tempPassword=true` sets and returns a temporary password.
    pub temp_password: bool,
}

#[derive(Debug)]
pub struct LifecycleOutcome {
    pub user: User,
    pub token: Option<Secret>,
    pub temp_password: Option<String>,
}

impl<S: UserStore + PolicyStore, H: PasswordHashing> Users<'_, S, H> {
    pub async fn create(&self, new: NewUser) -> Result<User, CoreError> {
        let profile = Profile::new(new.profile)?;
        let policy = self.store.password_policy().await?;
        let password_hash = match &new.password {
            None => None,
            Some(pw) => {
                check_password(&policy, pw, &profile, "password")?;
                Some(self.hash(pw.clone()).await?)
            }
        };
        let now = self.clock.now();
        let status = match (new.activate, password_hash.is_some(), new.expire_password) {
            (false, _, _) => UserStatus::Staged,
            (true, false, _) => UserStatus::Provisioned,
            (true, true, false) => UserStatus::Active,
            (true, true, true) => UserStatus::PasswordExpired,
        };
        let user = User {
            id: new_id(IdKind::User),
            status,
            created: now,
            activated: new.activate.then_some(now),
            status_changed: new.activate.then_some(now),
            last_login: None,
            last_updated: now,
            password_changed: password_hash.as_ref().map(|_| now),
            profile,
            password_hash,
            password_history: Vec::new(),
            failed_attempts: 0,
            locked_at: None,
            version: 1,
        };
        self.store.insert_user(&user).await.map_err(login_conflict)?;
        Ok(user)
    }

    pub async fn get(&self, id_or_login: &str) -> Result<User, CoreError> {
        self.store.find_user(id_or_login).await?.ok_or_else(|| not_found(id_or_login))
    }

    /// One page of users; `limit` is clamped to 1..=200.
    pub async fn list(
        &self,
        query: &UserQuery,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<User>, CoreError> {
        Ok(self.store.list_users(query, after, limit.clamp(1, MAX_PAGE)).await?)
    }

    /// Updates the profile and/or sets a new password as an administrator (no old password needed;
    /// complexity and history still apply). Setting a password ends PASSWORD_EXPIRED and RECOVERY.
    pub async fn update(
        &self,
        id: &str,
        change: ProfileChange,
        password: Option<String>,
    ) -> Result<User, CoreError> {
        let policy = self.store.password_policy().await?;
        let new_hash = match &password {
            Some(pw) => Some(self.hash(pw.clone()).await?),
            None => None,
        };
        self.modify(id, |user, now| {
            user.profile = match &change {
                ProfileChange::None => user.profile.clone(),
                ProfileChange::Merge(changes) => user.profile.merged(changes.clone())?,
                ProfileChange::Replace(all) => Profile::new(all.clone())?,
            };
            if let (Some(pw), Some(hash)) = (&password, &new_hash) {
                check_password(&policy, pw, &user.profile, "password")?;
                Ok(Some(PendingPassword { plain: pw.clone(), hash: hash.clone() }))
            } else {
                let _ = now;
                Ok(None)
            }
        })
        .await
        .map(|(user, _)| user)
    }

    pub async fn lifecycle(
        &self,
        id: &str,
        op: Lifecycle,
        options: LifecycleOptions,
    ) -> Result<LifecycleOutcome, CoreError> {
        let policy = self.store.password_policy().await?;
        let temp_password =
            (op == Lifecycle::ExpirePassword && options.temp_password).then(temporary_password);
        let temp_hash = match &temp_password {
            Some(pw) => Some(self.hash(pw.clone()).await?),
            None => None,
        };
        for _ in 0..MAX_ATTEMPTS {
            let mut user = self.get(id).await?;
            let expected = user.version;
            let now = self.clock.now();
            let next = transition(user.status, op, user.password_hash.is_some())?;
            if next != user.status {
                user.status = next;
                user.status_changed = Some(now);
            }
            if op == Lifecycle::Activate && user.activated.is_none() {
                user.activated = Some(now);
            }
            if op == Lifecycle::Unlock {
                user.failed_attempts = 0;
                user.locked_at = None;
            }
            if let Some(hash) = &temp_hash {
                set_password(&mut user, hash.clone(), &policy, now);
            }
            let issued = match op {
                Lifecycle::Activate | Lifecycle::Reactivate => {
                    Some(OneTimeToken::issue(&user.id, TokenPurpose::Activation, now))
                }
                Lifecycle::ResetPassword => Some(OneTimeToken::issue(&user.id, TokenPurpose::Recovery, now)),
                _ => None,
            };
            user.last_updated = now;
            user.version = expected + 1;
            match self.store.update_user(&user, expected, issued.as_ref().map(|(t, _)| t)).await {
                Ok(()) => {
                    let token = issued.map(|(_, secret)| secret).filter(|_| options.return_token);
                    return Ok(LifecycleOutcome { user, token, temp_password });
                }
                Err(StoreError::Stale) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Stale.into())
    }

    /// Okta: deleting a user that is not DEPROVISIONED deactivates it; deleting a DEPROVISIONED user
    /// removes it for good.
    pub async fn delete(&self, id: &str) -> Result<(), CoreError> {
        let user = self.get(id).await?;
        if user.status == UserStatus::Deprovisioned {
            if self.store.delete_user(&user.id).await? {
                return Ok(());
            }
            return Err(not_found(id));
        }
        self.lifecycle(&user.id, Lifecycle::Deactivate, LifecycleOptions::default()).await.map(|_| ())
    }

    /// The user changes their own password, proving the old one. Okta answers 403 E0000014 with the
    /// cause for a wrong old password or a new one that breaks the policy.
    pub async fn change_password(&self, id: &str, old: &str, new: &str) -> Result<User, CoreError> {
        let user = self.get(id).await?;
        if !matches!(user.status, UserStatus::Active | UserStatus::PasswordExpired) {
            return Err(CoreError::InvalidStatus);
        }
        let old_ok = match &user.password_hash {
            Some(hash) => self.hasher.verify(old.to_owned(), hash.clone()).await.ok_or(CoreError::Hashing)?,
            None => false,
        };
        if !old_ok {
            return Err(CoreError::CredentialsUpdate {
                causes: vec![FieldError::new("oldPassword", "The credentials provided were incorrect.")],
            });
        }
        let policy = self.store.password_policy().await?;
        let now = self.clock.now();
        if let Some(changed) = user.password_changed {
            let min_age_ms = i64::from(policy.age.min_age_minutes) * 60_000;
            if user.status == UserStatus::Active && now.millis() - changed.millis() < min_age_ms {
                return Err(CoreError::CredentialsUpdate {
                    causes: vec![FieldError::new("password", "Password has been changed too recently")],
                });
            }
        }
        let hash = self.hash(new.to_owned()).await?;
        let result = self
            .modify(id, |user, _| {
                check_password(&policy, new, &user.profile, "newPassword")?;
                Ok(Some(PendingPassword { plain: new.to_owned(), hash: hash.clone() }))
            })
            .await;
        match result {
            Ok((user, _)) => Ok(user),
            // Policy failures on a self-service change are "update of credentials failed" in Okta.
            Err(CoreError::Validation { causes, .. }) => Err(CoreError::CredentialsUpdate { causes }),
            Err(e) => Err(e),
        }
    }

    /// Applies `edit` to the freshest copy of the user and writes it under the version guard.
    pub async fn apply<F>(&self, id: &str, edit: F) -> Result<User, CoreError>
    where
        F: Fn(&mut User, Timestamp) -> Result<(), CoreError>,
    {
        self.modify(id, |user, now| edit(user, now).map(|()| None)).await.map(|(user, _)| user)
    }

    /// Finishes activation from an activation token: sets the first password (policy applies) and
    /// makes a PROVISIONED user ACTIVE.
    pub async fn complete_activation(&self, id: &str, password: &str) -> Result<User, CoreError> {
        let policy = self.store.password_policy().await?;
        let hash = self.hash(password.to_owned()).await?;
        self.modify(id, |user, now| {
            check_password(&policy, password, &user.profile, "newPassword")?;
            if user.status == UserStatus::Provisioned {
                user.status = UserStatus::Active;
                user.status_changed = Some(now);
            }
            Ok(Some(PendingPassword { plain: password.to_owned(), hash: hash.clone() }))
        })
        .await
        .map(|(user, _)| user)
    }

    /// Re-reads, applies `edit`, checks password history for a pending password, and writes with the
    /// version guard; retries on a lost race.
    async fn modify<F>(&self, id: &str, edit: F) -> Result<(User, Timestamp), CoreError>
    where
        F: Fn(&mut User, Timestamp) -> Result<Option<PendingPassword>, CoreError>,
    {
        let policy = self.store.password_policy().await?;
        for _ in 0..MAX_ATTEMPTS {
            let mut user = self.get(id).await?;
            let expected = user.version;
            let now = self.clock.now();
            if let Some(pending) = edit(&mut user, now)? {
                self.check_history(&user, &pending.plain, &policy).await?;
                set_password(&mut user, pending.hash, &policy, now);
                if matches!(user.status, UserStatus::PasswordExpired | UserStatus::Recovery) {
                    user.status = UserStatus::Active;
                    user.status_changed = Some(now);
                }
            }
            user.last_updated = now;
            user.version = expected + 1;
            match self.store.update_user(&user, expected, None).await {
                Ok(()) => return Ok((user, now)),
                Err(StoreError::Stale) => continue,
                Err(e) => return Err(login_conflict(e)),
            }
        }
        Err(StoreError::Stale.into())
    }

    /// Okta's `historyCount`: the new password may not equal the current one or the ones before it.
    async fn check_history(
        &self,
        user: &User,
        plain: &str,
        policy: &PasswordPolicy,
    ) -> Result<(), CoreError> {
        let count = policy.age.history_count as usize;
        if count == 0 {
            return Ok(());
        }
        let recent = user.password_hash.iter().chain(user.password_history.iter()).take(count);
        for hash in recent {
            if self.hasher.verify(plain.to_owned(), hash.clone()).await.ok_or(CoreError::Hashing)? {
                return Err(CoreError::validation("password", "Password has been used too recently"));
            }
        }
        Ok(())
    }

    async fn hash(&self, password: String) -> Result<String, CoreError> {
        self.hasher.hash(password).await.ok_or(CoreError::Hashing)
    }
}

struct PendingPassword {
    plain: String,
    hash: String,
}

fn set_password(user: &mut User, hash: String, policy: &PasswordPolicy, now: Timestamp) {
    if let Some(previous) = user.password_hash.replace(hash) {
        user.password_history.insert(0, previous);
    }
    user.password_history.truncate(policy.age.history_count.saturating_sub(1) as usize);
    user.password_changed = Some(now);
}

fn check_password(
    policy: &PasswordPolicy,
    password: &str,
    profile: &Profile,
    field: &str,
) -> Result<(), CoreError> {
    let excluded: Vec<&str> =
        policy.complexity.exclude_attributes.iter().filter_map(|name| profile.get(name)).collect();
    password::check_complexity(&policy.complexity, password, profile.login(), &excluded, field)
        .map_err(|cause| CoreError::Validation { field: field.to_owned(), causes: vec![cause] })
}

fn temporary_password() -> String {
    // Mixed classes guarantee any sane complexity policy; 12 random alphanumerics carry ~71 bits.
    format!("{}aZ9", random_alphanumeric(12))
}

fn not_found(id: &str) -> CoreError {
    CoreError::NotFound(format!("{id} (User)"))
}

fn login_conflict(e: StoreError) -> CoreError {
    match e {
        StoreError::Conflict(_) => CoreError::validation(
            "login",
            "An object with this field already exists in the current organization",
        ),
        other => other.into(),
    }
}
