//! Sign-on: one use case for every protocol. Whatever the entry point (a SAML embed link or SSO
//! URL today; an OIDC `authorize` next), a protocol checks its own request, names the app and
//! hands [`service::SignOn::sign_on`] the browser's cookie and session token with an encoder for its
//! answer. The service resolves the browser's session under the session-token rule
//! ([`crate::sessions::service::Sessions::browser`]), checks that the authentication is recent enough,
//! and decides whether the session's user may use the app: the app is active, the user may still
//! have sessions and is assigned to it, directly or through a group. It then fixes what the app
//! is told (the subject and the attributes), records the session's participant record (what a
//! logout must tell the app later), has the protocol encode the [`Grant`] (a signed SAML
//! Response; an id_token next) and writes the audit event. The protocol gets one answer back:
//! granted with its encoded answer, sign-in required, or refused, with the cookie change.
//!
//! Invariant: nothing is granted to an inactive app, an unassigned user or a user who may no
//! longer have sessions, and every grant and every refusal of an assigned check is in the system
//! log (`user.authentication.sso`).

pub mod service;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use crate::apps::{App, EvaluatedAttribute};
use crate::clock::Timestamp;
use crate::error::CoreError;
use crate::sessions::{BrowserRequest, BrowserSession, Session};

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
    /// How the user authenticated in this session (RFC 8176 values: `pwd`, `otp`, `mfa`).
    pub amr: Vec<String>,
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
#[derive(Clone, Copy)]
pub struct SignOnRequest<'r> {
    pub app: &'r App,
    /// The browser's cookie and session token, under the session-token rule.
    pub browser: BrowserRequest<'r>,
    /// A subject format the requester asked for (SAML NameIDPolicy), already checked to be one
    /// the app can produce; `None` for the app's own.
    pub subject_format: Option<&'r str>,
    pub reauthentication: Reauthentication,
}

/// How recent the user's authentication must be for a sign-on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reauthentication {
    /// Any live session will do.
    NotRequired,
    /// Only a session token presented with this request (SAML ForceAuthn, on the request itself:
    /// nothing older than the request can answer it).
    WithRequest,
    /// Only an authentication after this instant (a ForceAuthn request that waited for the
    /// sign-in page).
    After(Timestamp),
}

impl Reauthentication {
    fn met_by(self, session: &Session, browser: &BrowserSession) -> bool {
        match self {
            Reauthentication::NotRequired => true,
            Reauthentication::WithRequest => browser.from_token(),
            Reauthentication::After(instant) => session.authenticated_at() > instant,
        }
    }
}

/// A protocol's encoding of a grant (a signed SAML Response, an id_token). It runs inside the
/// sign-on, after the participant record is written and before the success is logged, so the
/// system log never shows a sign-on whose answer could not be written.
pub trait GrantEncoder {
    type Answer;
    fn encode(&self, grant: &Grant) -> impl Future<Output = Result<Self::Answer, CoreError>> + Send;
}

/// The outcome of a sign-on.
#[derive(Debug)]
pub enum Decision<T> {
    /// The encoded grant.
    Granted(T),
    /// The browser has no session (or none recent enough): the user must sign in first.
    SignInRequired,
    Refused(Refusal),
}

/// A sign-on's answer, and what the browser's cookie must become whatever the decision.
pub struct SignedOn<T> {
    pub decision: Decision<T>,
    pub browser: BrowserSession,
}

/// Whether the app can be signed on to at all; checked before a browser's session token is spent
/// on it, and again by the sign-on itself.
pub fn check_app(app: &App) -> Result<(), Refusal> {
    if app.is_active() { Ok(()) } else { Err(Refusal::AppInactive) }
}
