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

/// A refresh token as stored (under the digest of its secret), for refresh, introspection and
/// revocation. Access tokens are not stored.
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

/// What ends access tokens before their `exp`, since they are not stored: one token by its
/// `jti`, or every token of a grant family (RFC 7009 §2.1: revoking a refresh token may end the
/// access tokens of the same grant). Kept until the last token it can name has expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    Token(String),
    /// A family's reference ([`family_reference`]).
    Family(String),
}

impl Revocation {
    pub fn of_family(family: &str) -> Self {
        Revocation::Family(family_reference(family))
    }

    /// The stored key.
    pub fn key(&self) -> String {
        match self {
            Revocation::Token(jti) => format!("token:{jti}"),
            Revocation::Family(reference) => format!("family:{reference}"),
        }
    }
}

/// Hex digits of a family's reference at the start of its access tokens' `jti` (after `AT.`).
const FAMILY_REFERENCE_LEN: usize = 24;

/// A grant family's public reference: the first 96 bits of the SHA-256 of its id, so a token
/// names its family without showing the code digest the family is known by.
pub fn family_reference(family: &str) -> String {
    let mut digest = crate::ids::secret_digest(family);
    digest.truncate(FAMILY_REFERENCE_LEN);
    digest
}

/// A new access token `jti` for `family`: `AT.`, the family's reference, then 19 random
/// characters (43 after the prefix, as Okta's).
pub fn access_token_jti(family: &str) -> String {
    format!("AT.{}{}", family_reference(family), crate::ids::random_alphanumeric(19))
}

/// The family reference an access token's `jti` carries.
pub fn family_of_jti(jti: &str) -> Option<&str> {
    let reference = jti.strip_prefix("AT.")?.get(..FAMILY_REFERENCE_LEN)?;
    reference.bytes().all(|b| b.is_ascii_hexdigit()).then_some(reference)
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

#[cfg(test)]
mod tests {
    use super::{Revocation, access_token_jti, family_of_jti, family_reference};

    #[test]
    fn an_access_token_jti_names_its_family_and_nothing_else_does() {
        let jti = access_token_jti("code-digest");
        assert_eq!(jti.len(), 46, "AT. and 43 characters, as Okta's: {jti}");
        assert_eq!(family_of_jti(&jti), Some(family_reference("code-digest").as_str()));
        assert_ne!(access_token_jti("code-digest"), jti, "each token its own");
        assert_ne!(family_reference("other-digest"), family_reference("code-digest"));
        for foreign in ["ID.0123456789abcdef01234567xyz", "AT.short", "AT.0123456789abcdef0123456z", "AT."] {
            assert_eq!(family_of_jti(foreign), None, "{foreign}");
        }
        assert_eq!(
            Revocation::of_family("code-digest").key(),
            format!("family:{}", family_reference("code-digest"))
        );
        assert_eq!(Revocation::Token(jti.clone()).key(), format!("token:{jti}"));
    }
}
