//! Sign-on: one use case for every protocol. Whatever the entry point (a SAML embed link or SSO
//! URL today; an OIDC `authorize` next), the browser's session is resolved under the session-token
//! rule ([`crate::sessions::Sessions::browser`]) and this service decides whether the session's user
//! may use the app: the app is active, the user may still have sessions and is assigned to it,
//! directly or through a group. It
//! then fixes what the app is told (the subject and the attributes), records the session's
//! participant record (what a logout must tell the app later) and writes the audit event. The
//! answer is a [`Grant`] that a protocol encodes (a SAML Response, an id_token) and nothing else
//! decides; the encoding runs inside [`SignOn::grant`], before the event is logged.
//!
//! Invariant: nothing is granted to an inactive app, an unassigned user or a user who may no
//! longer have sessions, and every grant and every refusal of an assigned check is in the system
//! log (`user.authentication.sso`).

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use crate::apps::{App, AppUser, EvaluatedAttribute};
use crate::clock::{Clock, Timestamp};
use crate::error::CoreError;
use crate::events::{Actor, AuditLog, Event, Target};
use crate::expr::Subject;
use crate::ids::random_alphanumeric;
use crate::sessions::{BrowserRequest, BrowserSession, Session, Sessions};
use crate::store::{AppStore, AuthnStore, GroupStore, PolicyStore, SessionStore, SignOnStore, UserStore};
use crate::users::User;

/// An app a session's user was sent to, and what it was told: the subject and, for a logout, the
/// per-app session index that names this session to it (SAML's SessionIndex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    pub session_id: String,
    pub app_id: String,
    /// The subject the app knows the user by (a SAML NameID).
    pub name_id: String,
    pub name_id_format: String,
    pub session_index: String,
    pub created: Timestamp,
}

/// What one sign-on may tell one app about one user, decided; a protocol only encodes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub user_id: String,
    pub session_id: String,
    /// The subject the app knows the user by.
    pub subject: String,
    pub subject_format: String,
    /// Names this session to the app in a later logout.
    pub session_index: String,
    /// When the user last proved who they are in this session (SAML `AuthnInstant`).
    pub authn_instant: Timestamp,
    pub attributes: Vec<EvaluatedAttribute>,
}

/// Why a sign-on was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// An administrator turned the app off.
    AppInactive,
    /// The user may no longer have sessions (suspended, deactivated, locked out).
    UserNotActive,
    /// The user is not assigned to the app.
    NotAssigned,
    /// The user's profile yields no subject for the app (its NameID template names an empty
    /// attribute).
    NoSubject,
}

impl Refusal {
    /// The system log's `reason` for this refusal.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::AppInactive => "APP_INACTIVE",
            Refusal::UserNotActive => "USER_NOT_ACTIVE",
            Refusal::NotAssigned => "NOT_ASSIGNED",
            Refusal::NoSubject => "NO_SUBJECT",
        }
    }
}

/// What a protocol asks of a sign-on to one app.
#[derive(Debug, Clone, Copy)]
pub struct GrantRequest<'r> {
    pub app: &'r App,
    /// A subject format the requester asked for (SAML NameIDPolicy), already checked to be one
    /// the app can produce; `None` for the app's own.
    pub subject_format: Option<&'r str>,
    pub client_ip: Option<&'r str>,
}

/// Whether the app can be signed on to at all; checked before a browser's session token is spent
/// on it, and again by [`SignOn::grant`].
pub fn check_app(app: &App) -> Result<(), Refusal> {
    if app.is_active() { Ok(()) } else { Err(Refusal::AppInactive) }
}

/// The sign-on use cases, wired to their collaborators.
pub struct SignOn<'a, S, A> {
    pub store: &'a S,
    pub audit: &'a A,
    pub clock: &'a dyn Clock,
}

/// A fresh per-app session index: `_` and 40 random characters (an `xs:ID`-safe NCName, SAML core
/// §1.3.4, and unguessable, so an SP's logout cannot name another user's session).
fn new_session_index() -> String {
    format!("_{}", random_alphanumeric(40))
}

impl<S, A> SignOn<'_, S, A>
where
    S: SessionStore + AuthnStore + UserStore + PolicyStore + AppStore + SignOnStore + GroupStore,
    A: AuditLog,
{
    fn sessions(&self) -> Sessions<'_, S, A> {
        Sessions { store: self.store, clock: self.clock, audit: self.audit }
    }

    /// The browser's session under the session-token rule (see [`Sessions::browser`]).
    pub async fn browser(&self, request: &BrowserRequest<'_>) -> Result<BrowserSession, CoreError> {
        self.sessions().browser(request).await
    }

    /// Decides whether `user`, signed in with `session`, may use the app. On a grant it records the
    /// session's participant record, hands the grant to `encode` (the protocol's answer: a signed
    /// SAML Response, say) and then logs the success, so the system log never shows a sign-on
    /// whose answer could not be written, and the answer is ready before the log's commit is
    /// awaited. An assignment refusal is logged as a failure.
    pub async fn grant<T>(
        &self,
        session: &Session,
        user: &User,
        request: &GrantRequest<'_>,
        encode: impl FnOnce(&Grant) -> Result<T, CoreError>,
    ) -> Result<Result<T, Refusal>, CoreError> {
        let app = request.app;
        if let Err(refusal) = check_app(app) {
            return Ok(Err(refusal));
        }
        if !user.may_have_sessions() || session.user_id != user.id {
            return Ok(Err(Refusal::UserNotActive));
        }
        // One read decides the assignment and finds what this session already told the app.
        let Some(existing) = self.store.find_sso_grant(&app.id, &user.id, &session.id).await? else {
            self.record(app, user, Err(Refusal::NotAssigned), request.client_ip).await;
            return Ok(Err(Refusal::NotAssigned));
        };
        // The user's groups, when what the app is told depends on them (one read).
        let groups =
            if app.sign_on.needs_groups() { self.store.user_group_refs(&user.id).await? } else { Vec::new() };
        let group_ids: Vec<String> = groups.iter().map(|g| g.id.clone()).collect();
        let about = Subject { user, group_ids: Some(&group_ids) };
        let Some(subject) = app.sign_on.subject_for(&about) else {
            self.record(app, user, Err(Refusal::NoSubject), request.client_ip).await;
            return Ok(Err(Refusal::NoSubject));
        };
        let subject_format = request.subject_format.unwrap_or(app.sign_on.subject_format()).to_owned();
        let participant = match existing {
            Some(existing) => existing,
            None => {
                let new = Participant {
                    session_id: session.id.clone(),
                    app_id: app.id.clone(),
                    name_id: subject.clone(),
                    name_id_format: subject_format.clone(),
                    session_index: new_session_index(),
                    created: self.clock.now(),
                };
                // Another node may have answered the same session at the same moment: the record
                // kept is the one the app must be told.
                self.store.add_participant(&new).await?
            }
        };
        let grant = Grant {
            user_id: user.id.clone(),
            session_id: session.id.clone(),
            subject,
            subject_format,
            session_index: participant.session_index,
            authn_instant: session.authenticated_at(),
            attributes: app.sign_on.attributes_for(&about, &groups),
        };
        let answer = encode(&grant)?;
        self.record(app, user, Ok(()), request.client_ip).await;
        Ok(Ok(answer))
    }

    /// The apps the user may use, with the assignment, in dashboard order (Okta's appLinks).
    pub async fn app_links(&self, user_id: &str) -> Result<Vec<(App, AppUser)>, CoreError> {
        let mut apps = self.store.list_user_apps(user_id).await?;
        apps.retain(|(app, _)| app.is_active());
        Ok(apps)
    }

    async fn record(&self, app: &App, user: &User, outcome: Result<(), Refusal>, client_ip: Option<&str>) {
        let (result, reason) = match outcome {
            Ok(()) => ("SUCCESS", None),
            Err(refusal) => ("FAILURE", Some(refusal.as_str())),
        };
        let mut event = Event::new(
            "user.authentication.sso",
            &format!("User single sign on to app {}", app.label),
            result,
            Actor::user(&user.id, user.login()),
            self.clock.now(),
        )
        .target(Target::new(&app.id, "AppInstance", &app.label))
        .client(client_ip);
        if let Some(reason) = reason {
            event = event.reason(reason);
        }
        self.audit.record(event).await;
    }
}
