//! Browser sessions: created from a one-time session token, addressed by a public id and by the
//! `sid` cookie (an opaque secret stored only as a digest), ended explicitly or by time.
//!
//! Expiry follows the default sign-on rule: an idle timeout that activity slides (coarsely: at
//! most one write a minute, so checking a session is a read) and an optional absolute lifetime.
//! Ending a session is a database write that every node sees on its next read; an ended session
//! is kept (with its reason) only until it would have expired, for the system log's sake.

pub mod service;

use crate::clock::Timestamp;
use crate::ids::Secret;
use crate::users::User;

/// Why a session ended (shown in the system log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Logout,
    ReplacedBySessionToken,
    InvalidSessionToken,
    AdminRevoke,
    UserSessionsRevoked,
    /// The user was suspended, deactivated or otherwise may no longer sign in.
    UserNotActive,
    Expired,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Logout => "LOGOUT",
            EndReason::ReplacedBySessionToken => "REPLACED_BY_SESSION_TOKEN",
            EndReason::InvalidSessionToken => "INVALID_SESSION_TOKEN",
            EndReason::AdminRevoke => "ADMIN_REVOKE",
            EndReason::UserSessionsRevoked => "USER_SESSIONS_REVOKED",
            EndReason::UserNotActive => "USER_NOT_ACTIVE",
            EndReason::Expired => "EXPIRED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    pub cookie_digest: String,
    pub user_id: String,
    pub amr: Vec<String>,
    pub created: Timestamp,
    /// When the idle timeout ends; activity moves it.
    pub expires_at: Timestamp,
    /// When the absolute lifetime ends, if the rule sets one.
    pub lifetime_ends_at: Option<Timestamp>,
    pub last_activity: Timestamp,
    pub password_verified_at: Option<Timestamp>,
    pub factor_verified_at: Option<Timestamp>,
    pub persistent: bool,
}

impl Session {
    /// When the user last proved who they are in this session: the password check, or the
    /// session's start for sessions made without one.
    pub fn authenticated_at(&self) -> Timestamp {
        self.password_verified_at.unwrap_or(self.created)
    }

    /// When the session will end if nothing else happens.
    pub fn ends_at(&self) -> Timestamp {
        match self.lifetime_ends_at {
            Some(limit) if limit < self.expires_at => limit,
            _ => self.expires_at,
        }
    }
}

/// What a `sid` cookie leads to.
#[derive(Debug)]
pub enum ByCookie {
    /// A live session and its user.
    Live(Session, User),
    /// The session's user may no longer have sessions: this lookup ended it just now.
    EndedNotActive(Session, User),
    /// No live session.
    None,
}

/// A new session, its user, and the cookie secret to set, once.
pub struct Started {
    pub session: Session,
    pub user: User,
    pub cookie: Secret,
}

/// Which wins when a browser brings both a session cookie and a `sessionToken`
/// (`session_token_precedence`; docs/shared-browser.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPrecedence {
    /// A valid token always wins; any token, valid or not, ends the existing session.
    Token,
    /// Okta Classic: an existing session wins and the token is left unused.
    Cookie,
}

/// What a browser brought to an endpoint that signs it on.
#[derive(Debug, Clone, Copy)]
pub struct BrowserRequest<'r> {
    /// The `sid` cookie's value.
    pub cookie: Option<&'r str>,
    /// The `sessionToken` it presented (`None`: none; an empty one is presented, and invalid).
    pub session_token: Option<&'r str>,
    pub precedence: TokenPrecedence,
    /// The user asked to stay signed in (honoured only if the sign-on rule allows it).
    pub persistent: bool,
    pub client_ip: Option<&'r str>,
}

/// The browser's session after the session-token rule, and what its cookie must become.
pub struct BrowserSession {
    /// The session the flow continues with, and its user (`None`: not signed in; go to sign-in).
    pub current: Option<(Session, User)>,
    pub cookie: CookieChange,
}

impl BrowserSession {
    /// Whether the session was created from a token presented with this request: a fresh
    /// authentication (it satisfies a SAML ForceAuthn, for one).
    pub fn from_token(&self) -> bool {
        matches!(self.cookie, CookieChange::Set(_))
    }
}

/// What happens to the browser's `sid` cookie.
pub enum CookieChange {
    Keep,
    /// Set it to the secret of the session created from the token (`BrowserSession::current`).
    Set(Secret),
    /// It names no live session any more.
    Clear,
}
