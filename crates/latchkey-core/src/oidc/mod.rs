//! OpenID Connect and OAuth 2.0, with Okta's two authorization servers: the org server (issuer =
//! the org URL, `/oauth2/v1/*`) and the `default` custom server (issuer `{org}/oauth2/default`,
//! `/oauth2/default/v1/*`, access tokens for `api://default`).
//!
//! A browser reaches `authorize`; the protocol checks the request ([`authorize`]) and hands the
//! sign-on core an encoder ([`service::CodeIssuer`]) that turns the core's grant into a one-time
//! authorization code, stored as a digest with everything the token endpoint must check again
//! (client, redirect URI, PKCE challenge, nonce, scopes). The token endpoint
//! ([`service::OAuth::redeem_code`]) spends the code once across every node (one conditional
//! update) and signs the tokens with the signing-keys service's active key. Claims are made then,
//! from the user as they are at that moment.
//!
//! Invariant: a code is redeemed at most once; a second presentation revokes the tokens the first
//! issued (RFC 6749 §4.1.2), and every refusal names an OAuth error (RFC 6749 §5.2).

pub mod authorize;
pub mod backchannel;
pub mod custom;
pub mod jwt;
pub mod service;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;

/// Which of Okta's authorization servers a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Server {
    /// The org authorization server: `/oauth2/v1/*`, issuer = the org URL.
    Org,
    /// The custom authorization server `default`: `/oauth2/default/v1/*`.
    Default,
}

/// The audience of the default server's access tokens (Okta's default).
pub const DEFAULT_AUDIENCE: &str = "api://default";

impl Server {
    pub fn as_str(self) -> &'static str {
        match self {
            Server::Org => "org",
            Server::Default => "default",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "org" => Some(Server::Org),
            "default" => Some(Server::Default),
            _ => None,
        }
    }

    /// The issuer for an org reached at `org_url` (no trailing slash).
    pub fn issuer(self, org_url: &str) -> String {
        match self {
            Server::Org => org_url.to_owned(),
            Server::Default => format!("{org_url}/oauth2/default"),
        }
    }

    /// Where its endpoints live, below the org URL.
    pub fn endpoint_base(self) -> &'static str {
        match self {
            Server::Org => "/oauth2/v1",
            Server::Default => "/oauth2/default/v1",
        }
    }

    /// The `aud` of its access tokens.
    pub fn access_token_audience(self, org_url: &str) -> String {
        match self {
            Server::Org => org_url.to_owned(),
            Server::Default => DEFAULT_AUDIENCE.to_owned(),
        }
    }

    /// The scopes it knows.
    pub fn scopes(self) -> &'static [&'static str] {
        STANDARD_SCOPES
    }
}

/// The OpenID Connect scopes (OpenID Connect Core §5.4, §11) and Okta's `groups`.
pub const STANDARD_SCOPES: &[&str] =
    &["openid", "profile", "email", "address", "phone", "groups", "offline_access"];

/// How long an authorization code may wait to be redeemed (Okta: 60 s).
pub const CODE_LIFETIME_SECS: i64 = 60;
/// How long access and id tokens live (Okta's default: one hour).
pub const TOKEN_LIFETIME_SECS: i64 = 3600;
/// How long a refresh token lives unused (Okta's default policy: 7 days idle; each rotation
/// starts a new one).
pub const REFRESH_IDLE_SECS: i64 = 7 * 24 * 3600;

/// An OAuth error code (RFC 6749 §4.1.2.1, §5.2; OpenID Connect Core §3.1.2.6; RFC 6750 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    InvalidScope,
    AccessDenied,
    LoginRequired,
    InvalidToken,
    ServerError,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::LoginRequired => "login_required",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::ServerError => "server_error",
        }
    }
}

/// An OAuth error with its description (never a secret, a code or a token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {description}", code.as_str())]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: String,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        OAuthError { code, description: description.into() }
    }
}

/// What an authorization code stands for, as stored (under the digest of the code).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationCode {
    pub app_id: String,
    pub server: Server,
    pub user_id: String,
    pub session_id: String,
    /// The redirect URI the code was sent to; the token request must name it again.
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub nonce: Option<String>,
    /// The PKCE S256 challenge (RFC 7636 §4.2).
    pub code_challenge: Option<String>,
    pub auth_time: Timestamp,
    pub amr: Vec<String>,
    pub expires_at: Timestamp,
}

/// An issued token as stored, for introspection, refresh and revocation: an access token under
/// its JWT `jti`, a refresh token under the digest of its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub id: String,
    pub kind: TokenKind,
    pub app_id: String,
    pub server: Server,
    /// `None` for a client's own token (client credentials).
    pub user_id: Option<String>,
    pub session_id: Option<String>,
    /// The grant the token descends from: the digest of its code, or a client credentials
    /// request's id. A replayed code or a reused refresh token revokes the whole family.
    pub family: String,
    pub scopes: Vec<String>,
    pub issued_at: Timestamp,
    /// When the user authenticated for the grant (carried into refreshed id_tokens).
    pub auth_time: Option<Timestamp>,
    pub expires_at: Timestamp,
    /// A refresh token exchanged for its successor, and when.
    pub rotated_at: Option<Timestamp>,
    pub revoked: bool,
}

impl IssuedToken {
    /// Whether the token may still be used at `now` (not revoked, not expired).
    pub fn is_live(&self, now: Timestamp) -> bool {
        !self.revoked && self.expires_at > now
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Access => "access_token",
            TokenKind::Refresh => "refresh_token",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "access_token" => Some(TokenKind::Access),
            "refresh_token" => Some(TokenKind::Refresh),
            _ => None,
        }
    }
}

/// What became of a presented authorization code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeemed {
    /// Spent now, by this request.
    First(AuthorizationCode),
    /// Spent before: a replay.
    Again(AuthorizationCode),
    /// Unknown or expired.
    Unknown,
}
