//! Session use cases: redeeming a session token, the `sid` cookie lookup with its idle
//! bookkeeping, ending sessions, and the session-token rule.

use super::{ByCookie, EndReason, RuleOutcome, Session, Started, TokenPrecedence};
use crate::authn::SessionToken;
use crate::clock::{Clock, Timestamp};
use crate::error::CoreError;
use crate::ids::{IdKind, Secret, new_id, secret_digest};
use crate::policy::SignOnRule;
use crate::store::{AuthnStore, SessionStore, UserStore};

/// Session use cases.
pub struct Sessions<'a, S> {
    pub store: &'a S,
    pub clock: &'a dyn Clock,
}

/// Activity slides the idle expiry at most this often (one write a minute per session at most).
const TOUCH_EVERY_MS: i64 = 60_000;

impl<S: SessionStore + AuthnStore + UserStore> Sessions<'_, S> {
    /// Redeems a session token (single use across nodes) into a new session. `None` when the token
    /// is unknown, used or expired.
    pub async fn redeem(
        &self,
        session_token: &str,
        rule: &SignOnRule,
        persistent: bool,
    ) -> Result<Option<Started>, CoreError> {
        if session_token.is_empty() || session_token.len() > 128 {
            return Ok(None);
        }
        let now = self.clock.now();
        let Some(token) = self.store.consume_session_token(&secret_digest(session_token), now).await? else {
            return Ok(None);
        };
        // A token issued before the user was suspended or deactivated is worth nothing now.
        let user = self.store.find_user(&token.user_id).await?;
        if !user.is_some_and(|u| u.may_have_sessions()) {
            return Ok(None);
        }
        Ok(Some(self.start(&token, rule, persistent, now).await?))
    }

    async fn start(
        &self,
        token: &SessionToken,
        rule: &SignOnRule,
        persistent: bool,
        now: Timestamp,
    ) -> Result<Started, CoreError> {
        let cookie = Secret::generate();
        let lifetime = rule.max_session_lifetime_minutes;
        let session = Session {
            id: new_id(IdKind::Session),
            cookie_digest: cookie.digest(),
            user_id: token.user_id.clone(),
            amr: token.amr.clone(),
            created: now,
            expires_at: now.plus_seconds(i64::from(rule.max_session_idle_minutes) * 60),
            lifetime_ends_at: (lifetime > 0).then(|| now.plus_seconds(i64::from(lifetime) * 60)),
            last_activity: now,
            password_verified_at: token.password_verified_at,
            factor_verified_at: token.factor_verified_at,
            persistent: persistent && rule.use_persistent_cookie,
        };
        self.store.insert_session(&session).await?;
        Ok(Started { session, cookie })
    }

    pub async fn by_id(&self, id: &str) -> Result<Session, CoreError> {
        let now = self.clock.now();
        self.store.find_session(id, now).await?.ok_or_else(|| CoreError::NotFound(format!("{id} (Session)")))
    }

    /// The live session behind a `sid` cookie value, and its user, if any.
    /// A session of a user who may no longer sign in (suspended, deactivated, locked out, ...) is
    /// ended here (reason USER_NOT_ACTIVE), should one have survived the change of status; the
    /// caller logs that end.
    pub async fn by_cookie(&self, cookie: &str) -> Result<ByCookie, CoreError> {
        if cookie.is_empty() || cookie.len() > 128 {
            return Ok(ByCookie::None);
        }
        let found = self.store.find_session_by_cookie(&secret_digest(cookie), self.clock.now()).await?;
        match found {
            Some((session, user)) if !user.may_have_sessions() => {
                // Only the call that ended it reports the end (another may have been first).
                if self.end(&session.id, EndReason::UserNotActive).await? {
                    Ok(ByCookie::EndedNotActive(session, user))
                } else {
                    Ok(ByCookie::None)
                }
            }
            Some((session, user)) => Ok(ByCookie::Live(session, user)),
            None => Ok(ByCookie::None),
        }
    }

    /// Activity slides the idle expiry, but not on every request: once a tenth of the idle time
    /// (at most a minute) has passed since the last slide, so a read usually stays a read and the
    /// session never ends more than that much before its idle timeout.
    pub fn needs_touch(&self, session: &Session) -> bool {
        let since = self.clock.now().millis() - session.last_activity.millis();
        let idle = session.expires_at.millis() - session.last_activity.millis();
        since >= TOUCH_EVERY_MS.min(idle / 10)
    }

    /// Slides a session's idle expiry after activity.
    pub async fn touch(&self, session: &mut Session, rule: &SignOnRule) -> Result<(), CoreError> {
        let now = self.clock.now();
        let expires_at = now.plus_seconds(i64::from(rule.max_session_idle_minutes) * 60);
        if self.store.touch_session(&session.id, expires_at, now).await? {
            session.expires_at = expires_at;
            session.last_activity = now;
        }
        Ok(())
    }

    /// `lifecycle/refresh`: slides the idle expiry now.
    pub async fn refresh(&self, id: &str, rule: &SignOnRule) -> Result<Session, CoreError> {
        let now = self.clock.now();
        let expires_at = now.plus_seconds(i64::from(rule.max_session_idle_minutes) * 60);
        if !self.store.touch_session(id, expires_at, now).await? {
            return Err(CoreError::NotFound(format!("{id} (Session)")));
        }
        self.by_id(id).await
    }

    pub async fn end(&self, id: &str, reason: EndReason) -> Result<bool, CoreError> {
        Ok(self.store.end_session(id, reason, self.clock.now()).await?)
    }

    /// The user's live sessions, newest first (the end user's "your sessions" page).
    pub async fn list_for_user(&self, user_id: &str) -> Result<Vec<Session>, CoreError> {
        let mut sessions = self.store.list_user_sessions(user_id, self.clock.now()).await?;
        sessions.sort_by_key(|s| std::cmp::Reverse(s.created));
        Ok(sessions)
    }

    pub async fn end_all(
        &self,
        user_id: &str,
        keep: Option<&str>,
        reason: EndReason,
    ) -> Result<Vec<String>, CoreError> {
        Ok(self.store.end_user_sessions(user_id, keep, reason, self.clock.now()).await?)
    }
}

impl<S: SessionStore + AuthnStore + UserStore> Sessions<'_, S> {
    /// Applies the session-token rule to a browser request: `existing` is the live session its
    /// cookie names, `token` the `sessionToken` it presented (`None`: none; an empty one is
    /// presented and invalid). Ending a replaced session is a database write, so every node
    /// refuses the old cookie on its next request.
    pub async fn apply_token_rule(
        &self,
        existing: Option<Session>,
        token: Option<&str>,
        precedence: TokenPrecedence,
        rule: &SignOnRule,
    ) -> Result<RuleOutcome, CoreError> {
        self.apply_token_rule_persistent(existing, token, precedence, rule, false).await
    }

    /// [`Self::apply_token_rule`] where the user asked to stay signed in ("keep me signed in" on the
    /// hosted page): the new session is persistent if the sign-on rule allows persistent cookies.
    pub async fn apply_token_rule_persistent(
        &self,
        existing: Option<Session>,
        token: Option<&str>,
        precedence: TokenPrecedence,
        rule: &SignOnRule,
        persistent: bool,
    ) -> Result<RuleOutcome, CoreError> {
        let Some(token) = token else {
            return Ok(RuleOutcome { session: existing, new_cookie: None, ended: None, clear_cookie: false });
        };
        if let (TokenPrecedence::Cookie, Some(session)) = (precedence, &existing) {
            return Ok(RuleOutcome {
                session: Some(session.clone()),
                new_cookie: None,
                ended: None,
                clear_cookie: false,
            });
        }
        let started = self.redeem(token, rule, persistent).await?;
        let reason = if started.is_some() {
            EndReason::ReplacedBySessionToken
        } else {
            EndReason::InvalidSessionToken
        };
        let mut ended = None;
        if let Some(old) = existing
            && self.end(&old.id, reason).await?
        {
            ended = Some((old.id, reason));
        }
        Ok(match started {
            Some(Started { session, cookie }) => {
                RuleOutcome { session: Some(session), new_cookie: Some(cookie), ended, clear_cookie: false }
            }
            None => RuleOutcome { session: None, new_cookie: None, ended, clear_cookie: true },
        })
    }
}
