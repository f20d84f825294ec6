//! The `/api/v1/authn` state machine (Okta's Authentication API, Classic: its transaction states and their
//! order).
//!
//! Order of checks after the password is verified, as Okta does it: a second factor for users who
//! have one and whose sign-on rule requires it (MFA_REQUIRED, before anything else), then an
//! expired password (PASSWORD_EXPIRED), then the warning period when the client asked for it
//! (PASSWORD_WARN), then enrollment the MFA_ENROLL policy requires (MFA_ENROLL), then SUCCESS with
//! a one-time session token.
//!
//! Defences: every primary authentication does one real argon2id verification, against a dummy
//! hash for unknown users, so unknown users, wrong passwords and locked users cost the same and get
//! the same 401 E0000004. Failures count toward the lockout policy in the database (so every node
//! sees them); per-username and per-IP windows throttle guessing before any hashing happens.

use crate::authn::{
    AuthnStatus, Factor, FactorStatus, Provider, SESSION_TOKEN_SECONDS, STATE_TOKEN_SECONDS, SessionToken,
    StoredTransaction, TRANSACTION_MAX_SECONDS, Transaction,
};
use crate::clock::{Clock, Timestamp};
use crate::crypto::MasterKey;
use crate::error::{CoreError, StoreError};
use crate::events::{Actor, Event};
use crate::ids::{IdKind, Secret, new_id, secret_digest};
use crate::password::{MAX_PASSWORD_LEN, PasswordHashing};
use crate::policy::{Enrollment, FactorPromptMode, Policies};
use crate::sessions::EndReason;
use crate::store::{
    AuthnStore, EventStore, FactorStore, PolicyStore, RateLimitStore, SessionStore, UserStore,
};
use crate::tokens::TokenPurpose;
use crate::totp;
use crate::users::service::Users;
use crate::users::{User, UserStatus};

/// What is left of a caller's primary-authentication budget in the current window (the tighter of
/// the per-username and per-address windows), for Okta's `X-Rate-Limit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateQuota {
    pub limit: u32,
    pub remaining: u32,
    pub reset: Timestamp,
}

/// Per-second request budgets for primary authentication (Okta: 4 per second per username).
#[derive(Debug, Clone, Copy)]
pub struct AuthnLimits {
    pub per_username: u32,
    pub per_ip: u32,
}

impl Default for AuthnLimits {
    fn default() -> Self {
        Self { per_username: 4, per_ip: 20 }
    }
}

/// Who is asking: the client address (for throttling) and, when known, a device identifier (the
/// `DT` cookie, or `context.deviceToken` from a trusted caller) for "remember this device".
#[derive(Debug, Clone, Default)]
pub struct ClientContext {
    pub ip: String,
    pub device: Option<String>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct AuthnOptions {
    pub multi_optional_factor_enroll: bool,
    pub warn_before_password_expired: bool,
}

/// A factor as a transaction shows it.
#[derive(Debug, Clone)]
pub struct FactorView {
    /// `None` for factors not set up yet (MFA_ENROLL lists them by type and provider).
    pub id: Option<String>,
    pub provider: Provider,
    pub status: &'static str,
    pub enrollment: Option<Enrollment>,
}

/// What a TOTP enrollment shows once: the shared secret and the QR-code link token.
#[derive(Debug, Clone)]
pub struct Activation {
    pub shared_secret: String,
    pub qr_token: String,
}

/// Everything the HTTP layer needs to render a transaction.
#[derive(Debug, Clone)]
pub struct AuthnView {
    pub status: AuthnStatus,
    pub state_token: Option<String>,
    pub session_token: Option<String>,
    pub expires_at: Option<Timestamp>,
    pub user: Option<User>,
    pub factors: Vec<FactorView>,
    pub factor: Option<FactorView>,
    pub activation: Option<Activation>,
    pub factor_result: Option<String>,
    pub can_skip: bool,
    pub password_expire_days: Option<i64>,
    pub relay_state: Option<String>,
    pub policies: Policies,
}

/// The collaborators of the state machine.
pub struct Authn<'a, S, H> {
    pub store: &'a S,
    pub hasher: &'a H,
    pub clock: &'a dyn Clock,
    pub master_key: &'a MasterKey,
    /// A PHC string with the production parameters that no password matches: verified against
    /// when the user is unknown, so the work is the same.
    pub dummy_hash: &'a str,
    pub limits: AuthnLimits,
}

impl<S, H> Authn<'_, S, H>
where
    S: UserStore + PolicyStore + AuthnStore + FactorStore + RateLimitStore + EventStore + SessionStore,
    H: PasswordHashing,
{
    fn users(&self) -> Users<'_, S, H> {
        Users { store: self.store, hasher: self.hasher, clock: self.clock }
    }

    async fn policies(&self) -> Result<Policies, CoreError> {
        self.store.policies().await
    }

    /// Counts the request against the username's and the address's windows; refuses over budget.
    /// Records in `quota` what is left of the tighter window (Okta's `X-Rate-Limit-*` headers).
    async fn throttle(
        &self,
        username: &str,
        ip: &str,
        quota: &mut Option<RateQuota>,
    ) -> Result<(), CoreError> {
        let now = self.clock.now();
        let window = Timestamp(now.millis() - now.millis().rem_euclid(1000));
        let reset = window.plus_seconds(1);
        let buckets = [
            (format!("authn:user:{}", username.to_lowercase()), self.limits.per_username),
            (format!("authn:ip:{ip}"), self.limits.per_ip),
        ];
        for (bucket, limit) in buckets {
            if limit == 0 {
                continue;
            }
            // Long usernames are hashed so a bucket key stays small.
            let key = if bucket.len() > 200 { secret_digest(&bucket) } else { bucket };
            let count = self.store.hit(&key, window).await?;
            let remaining = u32::try_from((i64::from(limit) - count).max(0)).unwrap_or(0);
            if quota.is_none_or(|q| remaining < q.remaining) {
                *quota = Some(RateQuota { limit, remaining, reset });
            }
            if count > i64::from(limit) {
                return Err(CoreError::RateLimited { limit, reset });
            }
        }
        Ok(())
    }

    async fn audit(&self, event: Event, client: &ClientContext) -> Result<(), CoreError> {
        Ok(self.store.insert_event(&event.client(Some(&client.ip))).await?)
    }

    /// `POST /api/v1/authn` with `username` and `password`; the outcome goes to the system log
    /// (`user.authentication.verify`), except throttled requests, which would let a flood write it.
    pub async fn primary(
        &self,
        username: &str,
        password: &str,
        options: AuthnOptions,
        relay_state: Option<String>,
        client: &ClientContext,
    ) -> (Result<AuthnView, CoreError>, Option<RateQuota>) {
        let mut quota = None;
        let result =
            self.primary_unlogged(username, password, options, relay_state, client, &mut quota).await;
        (self.log_primary(username, result, client).await, quota)
    }

    /// Writes a primary authentication's outcome to the system log; a request that was throttled
    /// or could not run is not logged.
    async fn log_primary(
        &self,
        username: &str,
        result: Result<AuthnView, CoreError>,
        client: &ClientContext,
    ) -> Result<AuthnView, CoreError> {
        let now = self.clock.now();
        let verify = "user.authentication.verify";
        let event = match &result {
            Ok(view) if view.status == AuthnStatus::LockedOut => {
                Event::new(verify, "Verify user identity", "FAILURE", Actor::unknown(username), now)
                    .reason("LOCKED_OUT")
            }
            Ok(view) => Event::new(verify, "Verify user identity", "SUCCESS", actor_of(view), now)
                .reason(view.status.as_str()),
            Err(CoreError::AuthenticationFailed) => {
                Event::new(verify, "Verify user identity", "FAILURE", Actor::unknown(username), now)
                    .reason("INVALID_CREDENTIALS")
            }
            Err(_) => return result,
        };
        self.audit(event, client).await?;
        result
    }

    async fn primary_unlogged(
        &self,
        username: &str,
        password: &str,
        options: AuthnOptions,
        relay_state: Option<String>,
        client: &ClientContext,
        quota: &mut Option<RateQuota>,
    ) -> Result<AuthnView, CoreError> {
        let username = username.trim();
        self.throttle(username, &client.ip, quota).await?;
        let found = if username.is_empty() || username.len() > 256 {
            None
        } else {
            self.store.find_user(username).await?
        };
        // Always one real verification, whatever is known about the user.
        let hash = found
            .as_ref()
            .and_then(|u| u.password_hash.clone())
            .unwrap_or_else(|| self.dummy_hash.to_owned());
        let candidate: String = password.chars().take(MAX_PASSWORD_LEN + 1).collect();
        let matches = self.hasher.verify(candidate, hash).await.ok_or(CoreError::Hashing)?;
        let matches = matches && password.chars().count() <= MAX_PASSWORD_LEN;
        let Some(user) = found else { return Err(CoreError::AuthenticationFailed) };
        if user.password_hash.is_none() {
            return Err(CoreError::AuthenticationFailed);
        }
        let policies = self.policies().await?;
        let user = self.unlock_if_due(user, &policies).await?;
        if user.status == UserStatus::LockedOut {
            return self.locked_out(&policies);
        }
        if !matches {
            let user = self.record_failure(&user.id, &policies).await?;
            if user.status == UserStatus::LockedOut {
                return self.locked_out(&policies);
            }
            return Err(CoreError::AuthenticationFailed);
        }
        if !matches!(user.status, UserStatus::Active | UserStatus::PasswordExpired) {
            return Err(CoreError::AuthenticationFailed);
        }
        let now = self.clock.now();
        self.store.record_sign_in(&user.id, now).await?;
        let mut tx = Transaction::start(&user.id, AuthnStatus::Success, relay_state, now);
        tx.multi_optional_factor_enroll = options.multi_optional_factor_enroll;
        tx.warn_before_password_expired = options.warn_before_password_expired;
        tx.password_verified_at = Some(now.millis());
        tx.amr = vec!["pwd".to_owned()];
        let remembered = match &client.device {
            Some(device) if policies.sign_on.factor_prompt_mode == FactorPromptMode::Device => {
                self.store.is_device_remembered(&user.id, &secret_digest(device), now).await?
            }
            _ => false,
        };
        if remembered {
            tx.mfa_verified = true;
        }
        self.advance(None, tx, user, policies).await
    }

    /// `POST /api/v1/authn` with an activation `token`: a PROVISIONED user sets a first password.
    pub async fn activation(
        &self,
        token: &str,
        relay_state: Option<String>,
        client: &ClientContext,
    ) -> (Result<AuthnView, CoreError>, Option<RateQuota>) {
        let mut quota = None;
        let result = self.activation_with(token, relay_state, client, &mut quota).await;
        (result, quota)
    }

    async fn activation_with(
        &self,
        token: &str,
        relay_state: Option<String>,
        client: &ClientContext,
        quota: &mut Option<RateQuota>,
    ) -> Result<AuthnView, CoreError> {
        // Per token, not one bucket for the whole organisation (which anyone could exhaust).
        self.throttle(&format!("activation:{}", &secret_digest(token)[..16]), &client.ip, quota).await?;
        let now = self.clock.now();
        let Some(record) =
            self.store.consume_one_time_token(&secret_digest(token), TokenPurpose::Activation, now).await?
        else {
            return Err(CoreError::AuthenticationFailed);
        };
        let user = self.users().get(&record.user_id).await?;
        if user.status != UserStatus::Provisioned {
            return Err(CoreError::AuthenticationFailed);
        }
        let policies = self.policies().await?;
        let tx = Transaction::start(&user.id, AuthnStatus::PasswordReset, relay_state, now);
        self.persist(tx, user, policies, Vec::new()).await
    }

    /// The transaction's current state (`/api/v1/authn/introspect`, or `/api/v1/authn` with a
    /// `stateToken`); using a state token extends its life.
    pub async fn current(&self, state_token: &str) -> Result<AuthnView, CoreError> {
        let (stored, user, policies) = self.load(state_token).await?;
        let tx = stored.tx.clone();
        let factors = self.store.list_factors(&user.id).await?;
        // A factor awaiting activation shows its secret and a fresh QR-code link again.
        let activation = match (tx.status, tx.factor_id.as_deref()) {
            (AuthnStatus::MfaEnrollActivate, Some(id)) => match factors.iter().find(|f| f.id == id) {
                Some(factor) => {
                    let secret = self.open_secret(factor)?;
                    let qr = Secret::generate();
                    self.store.set_factor_qr(&factor.id, &qr.digest()).await?;
                    Some(Activation { shared_secret: secret, qr_token: qr.expose().to_owned() })
                }
                None => None,
            },
            _ => None,
        };
        self.save(state_token, Some(stored), tx, user, policies, factors, activation).await
    }

    /// `POST /api/v1/authn/factors`: start enrolling a TOTP factor (MFA_ENROLL → MFA_ENROLL_ACTIVATE).
    pub async fn enroll(
        &self,
        state_token: &str,
        factor_type: &str,
        provider: &str,
    ) -> Result<AuthnView, CoreError> {
        let (stored, user, policies) = self.load(state_token).await?;
        if stored.tx.status != AuthnStatus::MfaEnroll {
            return Err(CoreError::WrongState);
        }
        if factor_type != super::TOTP {
            return Err(CoreError::validation(
                "factorType",
                format!("'{factor_type}' is not an enrollable factor type"),
            ));
        }
        let Some(provider) = Provider::parse(provider) else {
            return Err(CoreError::validation(
                "provider",
                format!("'{provider}' is not a provider of {}", super::TOTP),
            ));
        };
        if enrollment_of(&policies, provider) == Enrollment::NotAllowed {
            return Err(CoreError::validation(
                "provider",
                "The factor is not allowed by the enrollment policy",
            ));
        }
        let now = self.clock.now();
        let secret = totp::generate_secret();
        let qr = Secret::generate();
        let id = new_id(match provider {
            Provider::Okta => IdKind::OktaTotp,
            Provider::Google => IdKind::GoogleTotp,
        });
        let sealed_secret = self.master_key.seal(&id, secret.as_bytes()).map_err(|_| CoreError::Hashing)?;
        let factor = Factor {
            id: id.clone(),
            user_id: user.id.clone(),
            provider,
            status: FactorStatus::PendingActivation,
            sealed_secret,
            last_step: 0,
            qr_digest: Some(qr.digest()),
            created: now,
            last_updated: now,
        };
        self.store.put_pending_factor(&factor).await.map_err(|e| match e {
            StoreError::Conflict(_) => CoreError::validation("factorType", "The factor is already enrolled"),
            other => other.into(),
        })?;
        let mut tx = stored.tx.clone();
        tx.status = AuthnStatus::MfaEnrollActivate;
        tx.factor_id = Some(id);
        let factors = self.store.list_factors(&user.id).await?;
        let activation = Activation { shared_secret: secret, qr_token: qr.expose().to_owned() };
        self.save(state_token, Some(stored), tx, user, policies, factors, Some(activation)).await
    }

    /// `POST /api/v1/authn/factors/{id}/lifecycle/activate` with the first code from the app.
    pub async fn activate(
        &self,
        state_token: &str,
        factor_id: &str,
        passcode: &str,
    ) -> Result<AuthnView, CoreError> {
        let (stored, user, policies) = self.load(state_token).await?;
        if stored.tx.status != AuthnStatus::MfaEnrollActivate
            || stored.tx.factor_id.as_deref() != Some(factor_id)
        {
            return Err(CoreError::WrongState);
        }
        let factors = self.store.list_factors(&user.id).await?;
        let factor = factors.iter().find(|f| f.id == factor_id).ok_or(CoreError::WrongState)?;
        let now = self.clock.now();
        let Some(step) = self.matching_step(factor, passcode, now)? else {
            self.record_failure(&user.id, &policies).await?;
            return Err(CoreError::InvalidPasscode);
        };
        if !self.store.activate_factor(factor_id, step, now).await? {
            return Err(CoreError::WrongState);
        }
        let mut tx = stored.tx.clone();
        tx.factor_id = None;
        tx.mfa_verified = true;
        tx.enrolled_now = true;
        tx.enroll_skipped = false;
        tx.factor_verified_at = Some(now.millis());
        add_amr(&mut tx, &["otp", "mfa"]);
        if user.failed_attempts > 0 {
            self.store.record_sign_in(&user.id, now).await?;
        }
        self.advance(Some((state_token, stored)), tx, user, policies).await
    }

    /// `POST /api/v1/authn/factors/{id}/verify[?rememberDevice=true]`: without a passcode, a TOTP
    /// factor is challenged (MFA_CHALLENGE); with one, it is checked. A code already used in its
    /// window answers MFA_CHALLENGE with `factorResult: PASSCODE_REPLAYED`. Checks are logged
    /// (`user.authentication.auth_via_mfa`).
    pub async fn verify(
        &self,
        state_token: &str,
        factor_id: &str,
        passcode: Option<&str>,
        remember_device: Option<bool>,
        client: &ClientContext,
    ) -> (Result<AuthnView, CoreError>, Option<RateQuota>) {
        let mut quota = None;
        let result =
            self.verify_unlogged(state_token, factor_id, passcode, remember_device, client, &mut quota).await;
        (self.log_verify(factor_id, passcode, result, client).await, quota)
    }

    /// Writes a passcode check's outcome to the system log; a challenge without a passcode, a
    /// throttled request or one that could not run is not logged.
    async fn log_verify(
        &self,
        factor_id: &str,
        passcode: Option<&str>,
        result: Result<AuthnView, CoreError>,
        client: &ClientContext,
    ) -> Result<AuthnView, CoreError> {
        if passcode.is_none_or(str::is_empty) {
            return result;
        }
        let now = self.clock.now();
        let mfa = "user.authentication.auth_via_mfa";
        let message = "Authentication of user via MFA";
        let event = match &result {
            Ok(view) => {
                let actor = actor_of(view);
                match view.factor_result.as_deref() {
                    Some("PASSCODE_REPLAYED") => {
                        Event::new(mfa, message, "FAILURE", actor, now).reason("PASSCODE_REPLAYED")
                    }
                    _ => Event::new(mfa, message, "SUCCESS", actor, now),
                }
            }
            Err(CoreError::InvalidPasscode) => {
                Event::new(mfa, message, "FAILURE", Actor::unknown(factor_id), now).reason("INVALID_PASSCODE")
            }
            Err(CoreError::UserLocked) => {
                Event::new(mfa, message, "FAILURE", Actor::unknown(factor_id), now).reason("LOCKED_OUT")
            }
            Err(_) => return result,
        };
        self.audit(event.target(crate::events::Target::new(factor_id, "Factor", super::TOTP)), client)
            .await?;
        result
    }

    async fn verify_unlogged(
        &self,
        state_token: &str,
        factor_id: &str,
        passcode: Option<&str>,
        remember_device: Option<bool>,
        client: &ClientContext,
        quota: &mut Option<RateQuota>,
    ) -> Result<AuthnView, CoreError> {
        let (stored, user, policies) = self.load(state_token).await?;
        if !matches!(stored.tx.status, AuthnStatus::MfaRequired | AuthnStatus::MfaChallenge) {
            return Err(CoreError::WrongState);
        }
        if passcode.is_some_and(|p| !p.is_empty()) {
            // Codes are guessable (one in a million, three valid at a time): throttle per user even
            // where the lockout policy is off.
            self.throttle(&format!("mfa:{}", user.id), &client.ip, quota).await?;
        }
        let factors = self.store.list_factors(&user.id).await?;
        let Some(factor) = factors.iter().find(|f| f.id == factor_id && f.status == FactorStatus::Active)
        else {
            return Err(CoreError::NotFound(format!("{factor_id} (UserFactor)")));
        };
        let mut tx = stored.tx.clone();
        let Some(passcode) = passcode.filter(|p| !p.is_empty()) else {
            tx.status = AuthnStatus::MfaChallenge;
            tx.factor_id = Some(factor.id.clone());
            tx.factor_result = Some("WAITING".to_owned());
            return self.save(state_token, Some(stored), tx, user, policies, factors, None).await;
        };
        let now = self.clock.now();
        let Some(step) = self.matching_step(factor, passcode, now)? else {
            let user = self.record_failure(&user.id, &policies).await?;
            if user.status == UserStatus::LockedOut {
                self.store.delete_transaction(&stored.digest).await?;
                return Err(CoreError::UserLocked);
            }
            return Err(CoreError::InvalidPasscode);
        };
        if !self.store.record_totp_step(&factor.id, step).await? {
            tx.status = AuthnStatus::MfaChallenge;
            tx.factor_id = Some(factor.id.clone());
            tx.factor_result = Some("PASSCODE_REPLAYED".to_owned());
            return self.save(state_token, Some(stored), tx, user, policies, factors, None).await;
        }
        tx.mfa_verified = true;
        tx.factor_id = None;
        tx.factor_result = None;
        tx.factor_verified_at = Some(now.millis());
        add_amr(&mut tx, &["otp", "mfa"]);
        let remember = remember_device.unwrap_or(policies.sign_on.remember_device_by_default);
        if remember && policies.sign_on.factor_prompt_mode == FactorPromptMode::Device {
            tx.remember_device = client.device.as_deref().map(secret_digest);
        }
        if user.failed_attempts > 0 {
            self.store.record_sign_in(&user.id, now).await?;
        }
        self.advance(Some((state_token, stored)), tx, user, policies).await
    }

    /// `POST /api/v1/authn/previous`: back from activation to the enrollment list, or from a
    /// challenge to the factor list.
    pub async fn previous(&self, state_token: &str) -> Result<AuthnView, CoreError> {
        let (stored, user, policies) = self.load(state_token).await?;
        let mut tx = stored.tx.clone();
        match tx.status {
            AuthnStatus::MfaEnrollActivate => {
                if let Some(id) = tx.factor_id.take() {
                    self.store.delete_factor(&user.id, &id).await?;
                }
                tx.status = AuthnStatus::MfaEnroll;
            }
            AuthnStatus::MfaChallenge => {
                tx.factor_id = None;
                tx.factor_result = None;
                tx.status = AuthnStatus::MfaRequired;
            }
            _ => return Err(CoreError::WrongState),
        }
        let factors = self.store.list_factors(&user.id).await?;
        self.save(state_token, Some(stored), tx, user, policies, factors, None).await
    }

    /// `POST /api/v1/authn/skip`: past the password warning, or past optional enrollment.
    pub async fn skip(&self, state_token: &str) -> Result<AuthnView, CoreError> {
        let (stored, user, policies) = self.load(state_token).await?;
        let mut tx = stored.tx.clone();
        match tx.status {
            AuthnStatus::PasswordWarn => tx.warn_skipped = true,
            AuthnStatus::MfaEnroll => {
                let factors = self.store.list_factors(&user.id).await?;
                if !can_skip_enrollment(&tx, &policies, &factors) {
                    return Err(CoreError::WrongState);
                }
                tx.enroll_skipped = true;
            }
            _ => return Err(CoreError::WrongState),
        }
        self.advance(Some((state_token, stored)), tx, user, policies).await
    }

    /// `POST /api/v1/authn/cancel`: ends the transaction; returns its relay state.
    pub async fn cancel(&self, state_token: &str) -> Result<Option<String>, CoreError> {
        let now = self.clock.now();
        let stored = self
            .store
            .find_transaction(&secret_digest(state_token), now)
            .await?
            .ok_or(CoreError::InvalidStateToken)?;
        if let (AuthnStatus::MfaEnrollActivate, Some(id)) = (stored.tx.status, &stored.tx.factor_id) {
            self.store.delete_factor(&stored.tx.user_id, id).await?;
        }
        self.store.delete_transaction(&stored.digest).await?;
        Ok(stored.tx.relay_state)
    }

    /// `POST /api/v1/authn/credentials/change_password` in PASSWORD_EXPIRED or PASSWORD_WARN.
    pub async fn change_password(
        &self,
        state_token: &str,
        old: &str,
        new: &str,
    ) -> Result<AuthnView, CoreError> {
        let (stored, user, policies) = self.load(state_token).await?;
        if !matches!(stored.tx.status, AuthnStatus::PasswordExpired | AuthnStatus::PasswordWarn) {
            return Err(CoreError::WrongState);
        }
        let user = match self.users().change_password(&user.id, old, new).await {
            // Okta's authn answers a policy failure with E0000080, a wrong old password with E0000014.
            Err(CoreError::CredentialsUpdate { causes })
                if causes.iter().all(|c| c.field != "oldPassword") =>
            {
                return Err(CoreError::PasswordRequirements { causes });
            }
            other => other?,
        };
        let mut tx = stored.tx.clone();
        tx.warn_skipped = true;
        tx.password_verified_at = Some(self.clock.now().millis());
        self.advance(Some((state_token, stored)), tx, user, policies).await
    }

    /// `POST /api/v1/authn/credentials/reset_password` in PASSWORD_RESET (activation).
    pub async fn reset_password(&self, state_token: &str, new: &str) -> Result<AuthnView, CoreError> {
        let (stored, user, policies) = self.load(state_token).await?;
        if stored.tx.status != AuthnStatus::PasswordReset {
            return Err(CoreError::WrongState);
        }
        let user = match self.users().complete_activation(&user.id, new).await {
            Ok(user) => user,
            Err(CoreError::Validation { causes, .. }) => {
                return Err(CoreError::PasswordRequirements { causes });
            }
            Err(e) => return Err(e),
        };
        let mut tx = stored.tx.clone();
        tx.password_verified_at = Some(self.clock.now().millis());
        add_amr(&mut tx, &["pwd"]);
        self.advance(Some((state_token, stored)), tx, user, policies).await
    }

    /// The live transaction, its user (who must still be allowed to sign in) and the policies.
    async fn load(&self, state_token: &str) -> Result<(StoredTransaction, User, Policies), CoreError> {
        if state_token.is_empty() || state_token.len() > 128 {
            return Err(CoreError::InvalidStateToken);
        }
        let now = self.clock.now();
        let stored = self
            .store
            .find_transaction(&secret_digest(state_token), now)
            .await?
            .ok_or(CoreError::InvalidStateToken)?;
        let user = self.store.find_user(&stored.tx.user_id).await?.ok_or(CoreError::InvalidStateToken)?;
        let allowed = match stored.tx.status {
            AuthnStatus::PasswordReset => user.status == UserStatus::Provisioned,
            _ => matches!(user.status, UserStatus::Active | UserStatus::PasswordExpired),
        };
        if !allowed {
            self.store.delete_transaction(&stored.digest).await?;
            return Err(CoreError::InvalidStateToken);
        }
        Ok((stored, user, self.policies().await?))
    }

    /// Decides the next state and either finishes (SUCCESS) or stores the transaction.
    async fn advance(
        &self,
        existing: Option<(&str, StoredTransaction)>,
        mut tx: Transaction,
        user: User,
        policies: Policies,
    ) -> Result<AuthnView, CoreError> {
        let factors = self.store.list_factors(&user.id).await?;
        let now = self.clock.now();
        let active: Vec<&Factor> = factors.iter().filter(|f| f.status == FactorStatus::Active).collect();
        let status = if !tx.mfa_verified && !active.is_empty() && policies.sign_on.require_factor {
            AuthnStatus::MfaRequired
        } else if password_expired(&user, &policies, now) {
            AuthnStatus::PasswordExpired
        } else if tx.warn_before_password_expired
            && !tx.warn_skipped
            && days_to_expiry(&user, &policies, now).is_some()
        {
            AuthnStatus::PasswordWarn
        } else if enrollment_required(&policies, &factors)
            || optional_enrollment_offered(&tx, &policies, &factors)
        {
            AuthnStatus::MfaEnroll
        } else {
            AuthnStatus::Success
        };
        tx.status = status;
        tx.factor_result = None;
        if status != AuthnStatus::Success {
            return match existing {
                Some((token, stored)) => {
                    self.save(token, Some(stored), tx, user, policies, factors, None).await
                }
                None => self.persist(tx, user, policies, factors).await,
            };
        }
        if let Some((_, stored)) = &existing
            && !self.store.finish_transaction(&stored.digest, stored.version).await?
        {
            // A concurrent request with the same state token got here first.
            return Err(CoreError::InvalidStateToken);
        }
        if let Some(device) = &tx.remember_device {
            let lifetime = i64::from(policies.sign_on.factor_lifetime_minutes.max(1)) * 60;
            self.store.remember_device(&user.id, device, now.plus_seconds(lifetime)).await?;
        }
        let secret = Secret::generate();
        let token = SessionToken {
            digest: secret.digest(),
            user_id: user.id.clone(),
            amr: tx.amr.clone(),
            password_verified_at: tx.password_verified_at.map(Timestamp),
            factor_verified_at: tx.factor_verified_at.map(Timestamp),
            created: now,
            expires_at: now.plus_seconds(SESSION_TOKEN_SECONDS),
        };
        self.store.insert_session_token(&token).await?;
        Ok(AuthnView {
            status,
            state_token: None,
            session_token: Some(secret.expose().to_owned()),
            expires_at: Some(token.expires_at),
            user: Some(user),
            factors: Vec::new(),
            factor: None,
            activation: None,
            factor_result: None,
            can_skip: false,
            password_expire_days: None,
            relay_state: tx.relay_state,
            policies,
        })
    }

    /// Stores a new transaction under a fresh state token.
    async fn persist(
        &self,
        tx: Transaction,
        user: User,
        policies: Policies,
        factors: Vec<Factor>,
    ) -> Result<AuthnView, CoreError> {
        let now = self.clock.now();
        let secret = Secret::generate();
        let stored = StoredTransaction {
            digest: secret.digest(),
            expires_at: now.plus_seconds(STATE_TOKEN_SECONDS),
            tx,
            version: 1,
        };
        self.store.insert_transaction(&stored).await?;
        Ok(self.view(secret.expose(), &stored, user, policies, &factors, None, now))
    }

    /// Writes the transaction's new state (sliding its expiry) and renders it.
    #[expect(clippy::too_many_arguments, reason = "the state machine's one write path")]
    async fn save(
        &self,
        state_token: &str,
        previous: Option<StoredTransaction>,
        tx: Transaction,
        user: User,
        policies: Policies,
        factors: Vec<Factor>,
        activation: Option<Activation>,
    ) -> Result<AuthnView, CoreError> {
        let now = self.clock.now();
        let Some(previous) = previous else { return self.persist(tx, user, policies, factors).await };
        let hard_limit = Timestamp(tx.created).plus_seconds(TRANSACTION_MAX_SECONDS);
        let stored = StoredTransaction {
            digest: previous.digest.clone(),
            expires_at: now.plus_seconds(STATE_TOKEN_SECONDS).min(hard_limit),
            tx,
            version: previous.version + 1,
        };
        match self.store.update_transaction(&stored, previous.version).await {
            Ok(()) => {}
            // Another request moved this transaction on first; the client must re-read it.
            Err(StoreError::Stale) => return Err(CoreError::WrongState),
            Err(e) => return Err(e.into()),
        }
        Ok(self.view(state_token, &stored, user, policies, &factors, activation, now))
    }

    #[expect(clippy::too_many_arguments, reason = "assembles one response from its parts")]
    fn view(
        &self,
        state_token: &str,
        stored: &StoredTransaction,
        user: User,
        policies: Policies,
        factors: &[Factor],
        activation: Option<Activation>,
        now: Timestamp,
    ) -> AuthnView {
        let tx = &stored.tx;
        let show = |f: &Factor| FactorView {
            id: Some(f.id.clone()),
            provider: f.provider,
            status: f.status.as_str(),
            enrollment: None,
        };
        let (list, single) = match tx.status {
            AuthnStatus::MfaRequired => {
                (factors.iter().filter(|f| f.status == FactorStatus::Active).map(show).collect(), None)
            }
            AuthnStatus::MfaEnroll => (enrollment_catalog(&policies, factors), None),
            AuthnStatus::MfaEnrollActivate | AuthnStatus::MfaChallenge => {
                let current =
                    tx.factor_id.as_deref().and_then(|id| factors.iter().find(|f| f.id == id)).map(show);
                (Vec::new(), current)
            }
            _ => (Vec::new(), None),
        };
        AuthnView {
            status: tx.status,
            state_token: Some(state_token.to_owned()),
            session_token: None,
            expires_at: Some(stored.expires_at),
            factors: list,
            factor: single,
            activation,
            factor_result: tx.factor_result.clone(),
            can_skip: match tx.status {
                AuthnStatus::PasswordWarn => true,
                AuthnStatus::MfaEnroll => can_skip_enrollment(tx, &policies, factors),
                _ => false,
            },
            password_expire_days: days_to_expiry(&user, &policies, now),
            relay_state: tx.relay_state.clone(),
            user: Some(user),
            policies,
        }
    }

    fn locked_out(&self, policies: &Policies) -> Result<AuthnView, CoreError> {
        if !policies.password.lockout.show_lockout_failures {
            return Err(CoreError::AuthenticationFailed);
        }
        Ok(AuthnView {
            status: AuthnStatus::LockedOut,
            state_token: None,
            session_token: None,
            expires_at: None,
            user: None,
            factors: Vec::new(),
            factor: None,
            activation: None,
            factor_result: None,
            can_skip: false,
            password_expire_days: None,
            relay_state: None,
            policies: policies.clone(),
        })
    }

    /// A LOCKED_OUT user whose `autoUnlockMinutes` have passed becomes ACTIVE again.
    async fn unlock_if_due(&self, user: User, policies: &Policies) -> Result<User, CoreError> {
        let minutes = policies.password.lockout.auto_unlock_minutes;
        let due = user.status == UserStatus::LockedOut
            && minutes > 0
            && user.locked_at.is_some_and(|at| at.plus_seconds(i64::from(minutes) * 60) <= self.clock.now());
        if !due {
            return Ok(user);
        }
        self.users()
            .apply(&user.id, |u, now| {
                if u.status == UserStatus::LockedOut {
                    u.status = UserStatus::Active;
                    u.status_changed = Some(now);
                    u.failed_attempts = 0;
                    u.locked_at = None;
                }
                Ok(())
            })
            .await
    }

    /// Counts a failed password or passcode; locks the user at the policy's `maxAttempts` (and
    /// logs `user.account.lock` the moment it happens). Atomic in the store, so failures on
    /// several nodes at once are all counted.
    async fn record_failure(&self, user_id: &str, policies: &Policies) -> Result<User, CoreError> {
        let now = self.clock.now();
        let max = policies.password.lockout.max_attempts;
        let user = self
            .store
            .record_failed_sign_in(user_id, max, now)
            .await?
            .ok_or_else(|| CoreError::NotFound(format!("{user_id} (User)")))?;
        if user.status == UserStatus::LockedOut && user.locked_at == Some(now) {
            let event = Event::new(
                "user.account.lock",
                "Max sign in attempts exceeded",
                "SUCCESS",
                Actor::system(),
                now,
            )
            .target(crate::events::Target::new(&user.id, "User", user.login()))
            .reason("MAX_ATTEMPTS");
            self.store.insert_event(&event).await?;
            // A locked-out user may have no sessions (as when suspended): end them now, so that
            // they are not alive again after an unlock that came before anyone used them.
            let reason = EndReason::UserNotActive;
            for session_id in self.store.end_user_sessions(&user.id, None, reason, now).await? {
                let ended = Event::session_end(&session_id, user.login(), reason, Actor::system(), now);
                self.store.insert_event(&ended).await?;
            }
        }
        Ok(user)
    }

    /// The factor's base32 shared secret, unsealed.
    fn open_secret(&self, factor: &Factor) -> Result<String, CoreError> {
        let bytes = self
            .master_key
            .open(&factor.id, &factor.sealed_secret)
            .map_err(|_| CoreError::Store(StoreError::Corrupt("factor secret does not open".into())))?;
        String::from_utf8(bytes)
            .map_err(|_| CoreError::Store(StoreError::Corrupt("factor secret is not text".into())))
    }

    fn matching_step(
        &self,
        factor: &Factor,
        passcode: &str,
        now: Timestamp,
    ) -> Result<Option<i64>, CoreError> {
        let secret = totp::base32_decode(&self.open_secret(factor)?)
            .ok_or_else(|| CoreError::Store(StoreError::Corrupt("factor secret is not base32".into())))?;
        Ok(totp::matching_step(&secret, passcode.trim(), now.epoch_seconds()))
    }

    /// The plaintext TOTP secret of a pending factor reached through its QR-code token, and the
    /// user's login (the QR-code image's label).
    pub async fn qr_secret(
        &self,
        user_id: &str,
        factor_id: &str,
        qr_token: &str,
    ) -> Result<(String, String), CoreError> {
        let not_found = || CoreError::NotFound(format!("{factor_id} (UserFactor)"));
        let factor = self.store.find_factor_by_qr(&secret_digest(qr_token)).await?.ok_or_else(not_found)?;
        if factor.id != factor_id
            || factor.user_id != user_id
            || factor.status != FactorStatus::PendingActivation
        {
            return Err(not_found());
        }
        let secret = self.open_secret(&factor)?;
        let user = self.users().get(user_id).await?;
        Ok((secret, user.login().to_owned()))
    }
}

/// The system-log actor of a transaction: its user.
fn actor_of(view: &AuthnView) -> Actor {
    match &view.user {
        Some(user) => Actor::user(&user.id, user.login()),
        None => Actor::unknown(""),
    }
}

fn add_amr(tx: &mut Transaction, methods: &[&str]) {
    for method in methods {
        if !tx.amr.iter().any(|m| m == method) {
            tx.amr.push((*method).to_owned());
        }
    }
}

fn enrollment_of(policies: &Policies, provider: Provider) -> Enrollment {
    match provider {
        Provider::Okta => policies.mfa_enroll.okta_otp,
        Provider::Google => policies.mfa_enroll.google_otp,
    }
}

fn is_active(factors: &[Factor], provider: Provider) -> bool {
    factors.iter().any(|f| f.provider == provider && f.status == FactorStatus::Active)
}

/// Enrollment is forced when a REQUIRED factor is missing, or when the sign-on rule requires a
/// second factor and the user has none yet.
fn enrollment_required(policies: &Policies, factors: &[Factor]) -> bool {
    let missing_required = Provider::ALL
        .iter()
        .any(|p| enrollment_of(policies, *p) == Enrollment::Required && !is_active(factors, *p));
    let none_active = !Provider::ALL.iter().any(|p| is_active(factors, *p));
    let any_allowed = Provider::ALL.iter().any(|p| enrollment_of(policies, *p) != Enrollment::NotAllowed);
    missing_required || (policies.sign_on.require_factor && none_active && any_allowed)
}

/// With `multiOptionalFactorEnroll`, after enrolling one factor the user is offered the others.
fn optional_enrollment_offered(tx: &Transaction, policies: &Policies, factors: &[Factor]) -> bool {
    tx.multi_optional_factor_enroll
        && tx.enrolled_now
        && !tx.enroll_skipped
        && Provider::ALL
            .iter()
            .any(|p| enrollment_of(policies, *p) == Enrollment::Optional && !is_active(factors, *p))
}

fn can_skip_enrollment(tx: &Transaction, policies: &Policies, factors: &[Factor]) -> bool {
    !enrollment_required(policies, factors) && optional_enrollment_offered(tx, policies, factors)
}

/// MFA_ENROLL's `factors`: every allowed provider, set up or not.
fn enrollment_catalog(policies: &Policies, factors: &[Factor]) -> Vec<FactorView> {
    Provider::ALL
        .iter()
        .filter(|p| enrollment_of(policies, **p) != Enrollment::NotAllowed)
        .map(|p| FactorView {
            id: None,
            provider: *p,
            status: if is_active(factors, *p) { "ACTIVE" } else { "NOT_SETUP" },
            enrollment: Some(enrollment_of(policies, *p)),
        })
        .collect()
}

fn expiry(user: &User, policies: &Policies) -> Option<Timestamp> {
    let days = policies.password.age.max_age_days;
    if days == 0 {
        return None;
    }
    user.password_changed.map(|changed| changed.plus_seconds(i64::from(days) * 86_400))
}

fn password_expired(user: &User, policies: &Policies, now: Timestamp) -> bool {
    user.status == UserStatus::PasswordExpired || expiry(user, policies).is_some_and(|at| at <= now)
}

/// Whole days until the password expires, when inside the policy's warning period.
fn days_to_expiry(user: &User, policies: &Policies, now: Timestamp) -> Option<i64> {
    let warn = i64::from(policies.password.age.expire_warn_days);
    let at = expiry(user, policies)?;
    let remaining_ms = at.millis() - now.millis();
    if warn == 0 || remaining_ms <= 0 || remaining_ms > warn * 86_400_000 {
        return None;
    }
    Some((remaining_ms + 86_399_999) / 86_400_000)
}
