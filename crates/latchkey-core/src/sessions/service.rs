//! Session use cases: redeeming a session token, the `sid` cookie lookup with its idle
//! bookkeeping, ending sessions, and the session-token rule; each writes its system-log event
//! (`user.session.start`, `user.session.end` with the reason).

use super::{
    BrowserRequest, BrowserSession, ByCookie, CookieChange, EndReason, Session, Started, TokenPrecedence,
};
use crate::authn::SessionToken;
use crate::clock::{Clock, Timestamp};
use crate::error::CoreError;
use crate::events::{Actor, AuditLog, Event};
use crate::ids::{IdKind, Secret, new_id, secret_digest};
use crate::policy::SignOnRule;
use crate::store::{AuthnStore, PolicyStore, SessionStore, UserStore};
use crate::users::User;

/// Session use cases.
pub struct Sessions<'a, S, A> {
    pub store: &'a S,
    pub clock: &'a dyn Clock,
    pub audit: &'a A,
}

/// Activity slides the idle expiry at most this often (one write a minute per session at most).
const TOUCH_EVERY_MS: i64 = 60_000;

/// Cookie values and session tokens are 43 characters; anything much longer is not ours.
const MAX_SECRET_LEN: usize = 128;

impl<S: SessionStore + AuthnStore + UserStore + PolicyStore, A: AuditLog> Sessions<'_, S, A> {
    /// Redeems a session token (single use across nodes) into a new session. `None` when the token
    /// is unknown, used or expired, or its user may no longer have sessions.
    pub async fn redeem(
        &self,
        session_token: &str,
        rule: &SignOnRule,
        persistent: bool,
    ) -> Result<Option<Started>, CoreError> {
        if session_token.is_empty() || session_token.len() > MAX_SECRET_LEN {
            return Ok(None);
        }
        let now = self.clock.now();
        let Some(token) = self.store.consume_session_token(&secret_digest(session_token), now).await? else {
            return Ok(None);
        };
        // A token issued before the user was suspended or deactivated is worth nothing now.
        let Some(user) = self.store.find_user(&token.user_id).await?.filter(User::may_have_sessions) else {
            return Ok(None);
        };
        Ok(Some(self.start(&token, user, rule, persistent, now).await?))
    }

    /// [`Self::redeem`] under the organisation's sign-on rule, with its system-log event:
    /// `user.session.start`, a success or (for a token that is no good) a failure.
    pub async fn start_from_token(
        &self,
        session_token: &str,
        persistent: bool,
        client_ip: Option<&str>,
    ) -> Result<Option<Started>, CoreError> {
        let rule = self.store.policies().await?.sign_on;
        let started = self.redeem(session_token, &rule, persistent).await?;
        self.record_start(started.as_ref(), client_ip).await;
        Ok(started)
    }

    async fn record_start(&self, started: Option<&Started>, client_ip: Option<&str>) {
        let now = self.clock.now();
        let event = match started {
            Some(started) => Event::session_start(&started.session, started.user.login(), now),
            None => Event::session_refused(now),
        };
        self.audit.record(event.client(client_ip)).await;
    }

    async fn start(
        &self,
        token: &SessionToken,
        user: User,
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
        Ok(Started { session, user, cookie })
    }

    pub async fn by_id(&self, id: &str) -> Result<Session, CoreError> {
        let now = self.clock.now();
        self.store.find_session(id, now).await?.ok_or_else(|| CoreError::NotFound(format!("{id} (Session)")))
    }

    /// The live session behind a `sid` cookie value, and its user, if any.
    /// A session of a user who may no longer sign in (suspended, deactivated, locked out, ...) is
    /// ended here (reason USER_NOT_ACTIVE), should one have survived the change of status.
    pub async fn by_cookie(&self, cookie: &str) -> Result<ByCookie, CoreError> {
        if cookie.is_empty() || cookie.len() > MAX_SECRET_LEN {
            return Ok(ByCookie::None);
        }
        let found = self.store.find_session_by_cookie(&secret_digest(cookie), self.clock.now()).await?;
        match found {
            Some((session, user)) if !user.may_have_sessions() => {
                // Only the call that ended it reports the end (another may have been first).
                if self.store.end_session(&session.id, EndReason::UserNotActive, self.clock.now()).await? {
                    self.record_end(
                        &session.id,
                        user.login(),
                        EndReason::UserNotActive,
                        Actor::user(&user.id, user.login()),
                        None,
                    )
                    .await;
                    Ok(ByCookie::EndedNotActive(session, user))
                } else {
                    Ok(ByCookie::None)
                }
            }
            Some((session, user)) => Ok(ByCookie::Live(session, user)),
            None => Ok(ByCookie::None),
        }
    }

    /// The live session a browser's `sid` cookie names, with its user; activity slides its idle
    /// expiry. One database read, plus a write at most once a minute.
    pub async fn for_cookie(&self, cookie: Option<&str>) -> Result<Option<(Session, User)>, CoreError> {
        let Some(cookie) = cookie else { return Ok(None) };
        let ByCookie::Live(mut session, user) = self.by_cookie(cookie).await? else { return Ok(None) };
        if self.needs_touch(&session) {
            let rule = self.store.policies().await?.sign_on;
            self.touch(&mut session, &rule).await?;
        }
        Ok(Some((session, user)))
    }

    /// The id of the live session a `sid` cookie names, if any (no idle bookkeeping).
    pub async fn id_for_cookie(&self, cookie: Option<&str>) -> Result<Option<String>, CoreError> {
        let Some(cookie) = cookie else { return Ok(None) };
        Ok(match self.by_cookie(cookie).await? {
            ByCookie::Live(session, _) => Some(session.id),
            ByCookie::EndedNotActive(..) | ByCookie::None => None,
        })
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
    pub async fn refresh(&self, id: &str) -> Result<Session, CoreError> {
        let rule = self.store.policies().await?.sign_on;
        let now = self.clock.now();
        let expires_at = now.plus_seconds(i64::from(rule.max_session_idle_minutes) * 60);
        if !self.store.touch_session(id, expires_at, now).await? {
            return Err(CoreError::NotFound(format!("{id} (Session)")));
        }
        self.by_id(id).await
    }

    /// Ends a live session, logging `user.session.end` with `reason` (`by`: who ended it, when not
    /// its user). `false` when it was not live (another request ended it first: that one logged).
    pub async fn end(
        &self,
        session: &Session,
        reason: EndReason,
        by: Option<Actor>,
        client_ip: Option<&str>,
    ) -> Result<bool, CoreError> {
        if !self.store.end_session(&session.id, reason, self.clock.now()).await? {
            return Ok(false);
        }
        let login = self.login_of(&session.user_id).await;
        let actor = by.unwrap_or_else(|| Actor::user(&session.user_id, &login));
        self.record_end(&session.id, &login, reason, actor, client_ip).await;
        Ok(true)
    }

    /// The user's live sessions, newest first (the end user's "your sessions" page).
    pub async fn list_for_user(&self, user_id: &str) -> Result<Vec<Session>, CoreError> {
        let mut sessions = self.store.list_user_sessions(user_id, self.clock.now()).await?;
        sessions.sort_by_key(|s| std::cmp::Reverse(s.created));
        Ok(sessions)
    }

    /// Ends every live session of a user except `keep`, logging each end; returns their ids.
    pub async fn end_all(
        &self,
        user_id: &str,
        keep: Option<&str>,
        reason: EndReason,
        by: Option<Actor>,
        client_ip: Option<&str>,
    ) -> Result<Vec<String>, CoreError> {
        let ended = self.store.end_user_sessions(user_id, keep, reason, self.clock.now()).await?;
        if !ended.is_empty() {
            let login = self.login_of(user_id).await;
            let actor = by.unwrap_or_else(|| Actor::user(user_id, &login));
            for id in &ended {
                self.record_end(id, &login, reason, actor.clone(), client_ip).await;
            }
        }
        Ok(ended)
    }

    /// The session-token rule for a browser request: its cookie's live session, unless a
    /// `sessionToken` came with it. Under [`TokenPrecedence::Token`] any token ends that session
    /// (a database write, so every node refuses the old cookie on its next request) and a valid
    /// one replaces it; under [`TokenPrecedence::Cookie`] (Okta Classic) a live session wins and
    /// the token is left unused.
    pub async fn browser(&self, request: &BrowserRequest<'_>) -> Result<BrowserSession, CoreError> {
        let existing = self.for_cookie(request.cookie).await?;
        let Some(token) = request.session_token else {
            return Ok(BrowserSession { current: existing, cookie: CookieChange::Keep });
        };
        if request.precedence == TokenPrecedence::Cookie && existing.is_some() {
            return Ok(BrowserSession { current: existing, cookie: CookieChange::Keep });
        }
        let rule = self.store.policies().await?.sign_on;
        let started = self.redeem(token, &rule, request.persistent).await?;
        // The old session's end is logged before the new one's start, as they happened.
        if let Some((old, _)) = &existing {
            let reason = if started.is_some() {
                EndReason::ReplacedBySessionToken
            } else {
                EndReason::InvalidSessionToken
            };
            self.end(old, reason, None, request.client_ip).await?;
        }
        self.record_start(started.as_ref(), request.client_ip).await;
        Ok(match started {
            Some(Started { session, user, cookie }) => {
                BrowserSession { current: Some((session, user)), cookie: CookieChange::Set(cookie) }
            }
            None => BrowserSession { current: None, cookie: CookieChange::Clear },
        })
    }

    async fn login_of(&self, user_id: &str) -> String {
        match self.store.find_user(user_id).await {
            Ok(Some(user)) => user.login().to_owned(),
            _ => String::new(),
        }
    }

    async fn record_end(
        &self,
        session_id: &str,
        login: &str,
        reason: EndReason,
        actor: Actor,
        client_ip: Option<&str>,
    ) {
        let event = Event::session_end(session_id, login, reason, actor, self.clock.now()).client(client_ip);
        self.audit.record(event).await;
    }
}
