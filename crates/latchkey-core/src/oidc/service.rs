//! The OAuth use cases over the stores: the sign-on core's encoders (a code for the code flow,
//! tokens at once for the implicit flow), client authentication (secret, assertion, public), the
//! grants (`authorization_code`, `refresh_token` with rotation, `client_credentials`), the claims
//! (standard scopes and the default server's custom claims), userinfo, introspection,
//! revocation, and the `id_token_hint` of a logout.

use serde_json::{Map, Value, json};

use super::authorize::{AuthorizeRequest, pkce_matches};
use super::custom::{ClaimType, CustomClaim};
use super::jwt;
use super::{
    AuthorizationCode, CODE_LIFETIME_SECS, ErrorCode, IssuedToken, OAuthError, REFRESH_IDLE_SECS, Redeemed,
    Revocation, Server, TOKEN_LIFETIME_SECS, TokenKind, access_token_jti, family_of_jti,
};
use crate::apps::oidc::ClientAuthMethod;
use crate::apps::{App, OidcSignOn};
use crate::clock::{Clock, Timestamp};
use crate::error::CoreError;
use crate::events::{Actor, AuditLog, Event, Target};
use crate::expr::Subject;
use crate::ids::{Secret, random_alphanumeric, secret_digest};
use crate::offload::Offload;
use crate::signing_keys::service::SigningKeys;
use crate::signon::{Grant, GrantEncoder};
use crate::store::{AppStore, GroupStore, OAuthStore, SignOnStore, SigningKeyStore, UserStore};
use crate::users::User;

/// The sign-on core's encoder for the code flow: the grant becomes a one-time authorization code.
pub struct CodeIssuer<'a, S> {
    pub store: &'a S,
    pub clock: &'a dyn Clock,
    pub app: &'a App,
    pub request: &'a AuthorizeRequest,
}

impl<S: OAuthStore> GrantEncoder for CodeIssuer<'_, S> {
    type Answer = String;

    async fn encode(&self, grant: &Grant) -> Result<String, CoreError> {
        let code = Secret::generate();
        let record = AuthorizationCode {
            app_id: self.app.id.clone(),
            server: self.request.server,
            user_id: grant.user_id.clone(),
            session_id: grant.session_id.clone(),
            redirect_uri: self.request.redirect_uri.clone(),
            scopes: self.request.scopes.clone(),
            nonce: self.request.nonce.clone(),
            code_challenge: self.request.code_challenge.clone(),
            auth_time: grant.authn_instant,
            amr: grant.amr.clone(),
            expires_at: self.clock.now().plus_seconds(CODE_LIFETIME_SECS),
        };
        self.store.insert_code(&code.digest(), &record).await?;
        Ok(code.expose().to_owned())
    }
}

/// How a client presented itself at the token endpoint.
#[derive(Debug, Clone)]
pub enum ClientCredentials {
    /// HTTP Basic (RFC 6749 §2.3.1).
    Basic { client_id: String, secret: String },
    /// `client_id` and `client_secret` in the form.
    Post { client_id: String, secret: String },
    /// `client_id` only: a public client.
    Public { client_id: String },
    /// `client_assertion` (RFC 7523 §2.2); the client id is the assertion's `sub`.
    Assertion { client_id: String, assertion: String },
}

impl ClientCredentials {
    pub fn client_id(&self) -> &str {
        match self {
            ClientCredentials::Basic { client_id, .. }
            | ClientCredentials::Post { client_id, .. }
            | ClientCredentials::Public { client_id }
            | ClientCredentials::Assertion { client_id, .. } => client_id,
        }
    }
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Debug, Clone, PartialEq)]
pub struct Tokens {
    pub access_token: String,
    pub id_token: Option<String>,
    pub refresh_token: Option<String>,
    pub scope: String,
    pub expires_in: i64,
}

/// What tokens are issued for: one grant, as the code or the refresh token carried it.
struct TokenGrant {
    server: Server,
    family: String,
    /// Issued for an authorization code (whose digest is `family`): written only if the code was
    /// not replayed meanwhile.
    from_code: bool,
    session_id: Option<String>,
    scopes: Vec<String>,
    nonce: Option<String>,
    auth_time: Timestamp,
    amr: Vec<String>,
}

/// Whether an issue makes a refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NewRefresh {
    /// A new one when `offline_access` was granted (a code exchange).
    New,
    /// A new one, replacing the rotated token.
    Rotated,
    /// None: the client keeps its (static) refresh token.
    Keep,
}

#[derive(Debug, Clone, Copy)]
struct Issue {
    refresh_token: NewRefresh,
    /// `false` for an implicit `response_type=id_token`: no access token, so no `at_hash`.
    access_token: bool,
}

impl Issue {
    fn all() -> Self {
        Issue { refresh_token: NewRefresh::New, access_token: true }
    }
}

/// The sign-on core's encoder for the implicit flow (OpenID Connect Core §3.2): the grant becomes
/// tokens at once, returned in the redirect's fragment (or a form post). Only for apps that allow
/// the `implicit` grant type; never a refresh token.
pub struct ImplicitIssuer<'a, S, O, A> {
    pub oauth: &'a OAuth<'a, S, O, A>,
    pub app: &'a App,
    pub request: &'a AuthorizeRequest,
}

impl<S, O, A> GrantEncoder for ImplicitIssuer<'_, S, O, A>
where
    S: OAuthStore + UserStore + GroupStore + SigningKeyStore + SignOnStore + AppStore,
    O: Offload,
    A: AuditLog,
{
    type Answer = Result<Tokens, OAuthError>;

    async fn encode(&self, grant: &Grant) -> Result<Self::Answer, CoreError> {
        let user = match self.oauth.active_user(&grant.user_id).await {
            Ok(user) => user,
            Err(error) => return Ok(Err(error)),
        };
        let wants = |t: &str| self.request.response_types.iter().any(|r| r == t);
        self.oauth
            .store
            .record_session_client(&grant.session_id, &self.app.id, self.request.server, &user.id)
            .await?;
        let token_grant = TokenGrant {
            server: self.request.server,
            family: format!("implicit.{}", random_alphanumeric(32)),
            from_code: false,
            session_id: Some(grant.session_id.clone()),
            scopes: self.request.scopes.clone(),
            nonce: self.request.nonce.clone(),
            auth_time: grant.authn_instant,
            amr: grant.amr.clone(),
        };
        let issue = Issue { refresh_token: NewRefresh::Keep, access_token: wants("token") };
        let mut tokens = match self.oauth.issue(self.app, &user, &token_grant, issue).await {
            Ok(tokens) => tokens,
            Err(error) => return Ok(Err(error)),
        };
        if !wants("id_token") {
            tokens.id_token = None;
        }
        self.oauth.log_issue(self.app, &user, "implicit").await;
        Ok(Ok(tokens))
    }
}

/// A token presented to introspection or revocation.
enum Presented {
    Access(AccessToken),
    Refresh(IssuedToken),
}

/// An access token we signed, read back from its claims (they are not stored).
struct AccessToken {
    jti: String,
    /// Its family's reference (from the `jti`).
    family: String,
    client_id: String,
    /// `None` for a client's own token (client credentials).
    user_id: Option<String>,
    scopes: Vec<String>,
    issued_at: Timestamp,
    expires_at: Timestamp,
    claims: Map<String, Value>,
}

impl AccessToken {
    /// The token if its signature was checked, `issuer` issued it, it is an access token (its
    /// `jti` names a family) and it has not expired at `now`.
    fn from_claims(claims: Map<String, Value>, issuer: &str, now: Timestamp) -> Option<Self> {
        let text = |name: &str| claims.get(name).and_then(Value::as_str);
        let seconds = |name: &str| claims.get(name).and_then(Value::as_i64);
        if text("iss") != Some(issuer) {
            return None;
        }
        let expires = seconds("exp").filter(|exp| *exp > now.epoch_seconds())?;
        let issued = seconds("iat")?;
        let jti = text("jti")?;
        let family = family_of_jti(jti)?.to_owned();
        let scopes = claims
            .get("scp")
            .and_then(Value::as_array)?
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        Some(AccessToken {
            jti: jti.to_owned(),
            family,
            client_id: text("cid")?.to_owned(),
            user_id: text("uid").map(str::to_owned),
            scopes,
            // `iat` has whole seconds: a user change within that second counts as before the
            // token (a password changed, then a sign-in in the same second keeps its token).
            issued_at: Timestamp::from_millis(issued.saturating_mul(1000).saturating_add(999)),
            expires_at: Timestamp::from_millis(expires.saturating_mul(1000)),
            claims,
        })
    }
}

/// The OAuth use cases, wired to their collaborators. `org_url` is the URL the request came to
/// (a custom domain has its own issuer).
pub struct OAuth<'a, S, O, A> {
    pub store: &'a S,
    pub keys: &'a SigningKeys<'a, S, O, A>,
    pub clock: &'a dyn Clock,
    pub audit: &'a A,
    pub org_url: &'a str,
    /// Okta's `idp` claim: the org's id.
    pub org_id: &'a str,
}

fn invalid_grant(description: &str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidGrant, description)
}

fn invalid_request(description: &str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidRequest, description)
}

fn unauthorized_grant() -> OAuthError {
    OAuthError::new(
        ErrorCode::UnauthorizedClient,
        "The client is not authorized to use the provided grant type.",
    )
}

fn invalid_client() -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClient, "Client authentication failed.")
}

impl<S, O, A> OAuth<'_, S, O, A>
where
    S: OAuthStore + UserStore + GroupStore + SigningKeyStore + SignOnStore + AppStore,
    O: Offload,
    A: AuditLog,
{
    /// Checks that `presented` authenticates `app` as its registered method says (RFC 6749 §2.3;
    /// RFC 7523 §3 for assertions): a secret (in the header or the form), a signed assertion, or
    /// nothing for a public client. Any failure is the same `invalid_client`.
    pub async fn authenticate_client(
        &self,
        server: Server,
        app: &App,
        presented: &ClientCredentials,
    ) -> Result<(), OAuthError> {
        let Some(oidc) = app.oidc() else { return Err(invalid_client()) };
        if !app.is_active() {
            return Err(invalid_client());
        }
        let method = oidc.token_endpoint_auth_method;
        let ok = match (method, presented) {
            // Either way of sending the secret proves the same thing; relying-party libraries use
            // Basic at one endpoint and the form at another (Authlib revokes with Basic).
            (
                ClientAuthMethod::ClientSecretBasic | ClientAuthMethod::ClientSecretPost,
                ClientCredentials::Basic { secret, .. } | ClientCredentials::Post { secret, .. },
            ) => oidc.secret_matches(secret),
            (ClientAuthMethod::None, ClientCredentials::Public { .. }) => true,
            (ClientAuthMethod::PrivateKeyJwt, ClientCredentials::Assertion { assertion, .. }) => {
                self.client_assertion_valid(server, app, oidc, assertion).await
            }
            _ => false,
        };
        if ok { Ok(()) } else { Err(invalid_client()) }
    }

    /// RFC 7523 §3: `iss` and `sub` are the client, `aud` names our token endpoint, not expired,
    /// signed by one of the client's registered RSA keys, and its `jti` unseen.
    async fn client_assertion_valid(
        &self,
        server: Server,
        app: &App,
        oidc: &OidcSignOn,
        assertion: &str,
    ) -> bool {
        let Ok((header, claims, signature)) = jwt::split(assertion) else { return false };
        if header.get("alg").and_then(Value::as_str) != Some("RS256") {
            return false;
        }
        let kid = header.get("kid").and_then(Value::as_str);
        let keys = oidc.client.jwks.as_ref().and_then(|j| j.get("keys")).and_then(Value::as_array);
        let verified = keys.into_iter().flatten().any(|jwk| {
            let kid_matches = kid.is_none_or(|kid| jwk.get("kid").and_then(Value::as_str) == Some(kid));
            kid_matches
                && jwt::rsa_public_key_of_jwk(jwk)
                    .is_some_and(|der| jwt::verify_rs256(&der, assertion, &signature).is_ok())
        });
        if !verified {
            return false;
        }
        let text = |name: &str| claims.get(name).and_then(Value::as_str);
        let token_url = format!("{}{}/token", self.org_url, server.endpoint_base());
        let audience_ok = match claims.get("aud") {
            Some(Value::String(aud)) => *aud == token_url,
            Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(token_url.as_str())),
            _ => false,
        };
        let now = self.clock.now().epoch_seconds();
        let exp = claims.get("exp").and_then(Value::as_i64);
        let fresh = exp.is_some_and(|exp| exp > now && exp <= now + 3600);
        let Some(jti) = text("jti") else { return false };
        if text("iss") != Some(app.id.as_str())
            || text("sub") != Some(app.id.as_str())
            || !audience_ok
            || !fresh
        {
            return false;
        }
        let expires = Timestamp::from_millis(exp.unwrap_or(now).saturating_mul(1000));
        self.store.remember_assertion(&app.id, jti, expires).await.unwrap_or(false)
    }

    /// The `authorization_code` grant (RFC 6749 §4.1.3): the code is spent once; a second
    /// presentation revokes what the first issued. The client was authenticated before.
    pub async fn redeem_code(
        &self,
        app: &App,
        server: Server,
        code: &str,
        redirect_uri: Option<&str>,
        code_verifier: Option<&str>,
    ) -> Result<Tokens, OAuthError> {
        let Some(oidc) = app.oidc() else { return Err(invalid_client()) };
        if !oidc.allows_grant("authorization_code") {
            return Err(unauthorized_grant());
        }
        let digest = secret_digest(code);
        let now = self.clock.now();
        let redeemed = self.store.redeem_code(&digest, now).await.map_err(server_error)?;
        let record = match redeemed {
            Redeemed::First(record) => record,
            Redeemed::Again(record) => {
                let revoked = self.revoke_family(&digest, now).await?;
                self.log_refusal(
                    app,
                    Some(&record.user_id),
                    "code replayed; the tokens it issued were revoked",
                )
                .await;
                tracing::warn!(app = %app.id, revoked, "an authorization code was presented twice");
                return Err(invalid_grant("The authorization code is invalid or has expired."));
            }
            Redeemed::Unknown => {
                return Err(invalid_grant("The authorization code is invalid or has expired."));
            }
        };
        // A code answers the client it was issued to, at the server that issued it.
        if record.app_id != app.id || record.server != server {
            return Err(invalid_grant("The authorization code is invalid or has expired."));
        }
        if redirect_uri != Some(record.redirect_uri.as_str()) {
            return Err(invalid_grant(
                "The 'redirect_uri' does not match the redirection URI used in the authorization request.",
            ));
        }
        match (&record.code_challenge, code_verifier) {
            (Some(challenge), Some(verifier)) if pkce_matches(challenge, verifier) => {}
            (Some(_), _) => return Err(invalid_grant("PKCE verification failed.")),
            (None, Some(_)) => {
                return Err(invalid_grant(
                    "PKCE verification failed: the authorization request had no code_challenge.",
                ));
            }
            (None, None) => {}
        }
        let user = self.session_user(Some(&record.session_id), &record.user_id).await?;
        let grant = TokenGrant {
            server,
            family: digest,
            from_code: true,
            session_id: Some(record.session_id.clone()),
            scopes: record.scopes.clone(),
            nonce: record.nonce.clone(),
            auth_time: record.auth_time,
            amr: record.amr.clone(),
        };
        let tokens = self.issue(app, &user, &grant, Issue::all()).await?;
        self.log_issue(app, &user, "authorization_code").await;
        Ok(tokens)
    }

    /// The `refresh_token` grant (RFC 6749 §6): a live refresh token of this client and server,
    /// whose user is still active and has not changed their password since. With rotation, the
    /// token is exchanged for a new one in one conditional update; a rotated token presented
    /// again after the app's leeway is a reuse (OAuth 2.0 Security BCP §4.14.2) and revokes its
    /// whole family. `scope` may only narrow the original grant.
    pub async fn refresh(
        &self,
        app: &App,
        server: Server,
        refresh_token: &str,
        scope: Option<&str>,
    ) -> Result<Tokens, OAuthError> {
        let Some(oidc) = app.oidc() else { return Err(invalid_client()) };
        if !oidc.allows_grant("refresh_token") {
            return Err(unauthorized_grant());
        }
        let invalid = || invalid_grant("The refresh token is invalid or expired.");
        let now = self.clock.now();
        let id = secret_digest(refresh_token);
        let stored = self.store.find_token(&id).await.map_err(server_error)?.ok_or_else(invalid)?;
        if stored.kind != TokenKind::Refresh || stored.app_id != app.id || stored.server != server {
            return Err(invalid());
        }
        let rotation = oidc.client.refresh_token.as_ref();
        let rotates = rotation.is_none_or(|r| r.rotation_type == "ROTATE");
        let leeway = i64::from(rotation.map_or(30, |r| r.leeway));
        if let Some(rotated_at) = stored.rotated_at {
            let within_leeway = now.millis() - rotated_at.millis() <= leeway * 1000;
            if !within_leeway && !stored.revoked {
                let revoked = self.revoke_family(&stored.family, now).await?;
                tracing::warn!(app = %app.id, revoked, "a rotated refresh token was used again; its family is revoked");
                self.log_refusal(
                    app,
                    stored.user_id.as_deref(),
                    "refresh token reused; its family was revoked",
                )
                .await;
                return Err(invalid());
            }
        }
        if !stored.is_live(now) {
            return Err(invalid());
        }
        let user_id = stored.user_id.as_deref().ok_or_else(invalid)?;
        let user = self.session_user(stored.session_id.as_deref(), user_id).await?;
        if ended_by_user_change(&user, stored.issued_at) {
            return Err(invalid_grant("The refresh token is invalid or expired."));
        }
        if !self.still_assigned(app, &user.id, stored.session_id.as_deref()).await? {
            self.log_refusal(app, Some(&user.id), "the user is no longer assigned to the app").await;
            return Err(invalid_grant("The user is not assigned to the client application."));
        }
        let scopes = match scope {
            None => stored.scopes.clone(),
            Some(text) => {
                let asked: Vec<String> =
                    text.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect();
                if asked.iter().any(|s| !stored.scopes.contains(s)) {
                    return Err(OAuthError::new(
                        ErrorCode::InvalidScope,
                        "The requested scope is not a subset of the original grant.",
                    ));
                }
                asked
            }
        };
        // Rotation: one request wins the token; within the leeway a retry gets a token too.
        if rotates
            && stored.rotated_at.is_none()
            && !self.store.mark_rotated(&id, now).await.map_err(server_error)?
        {
            return Err(invalid());
        }
        let grant = TokenGrant {
            server,
            family: stored.family.clone(),
            from_code: false,
            session_id: stored.session_id.clone(),
            scopes,
            nonce: None,
            auth_time: stored.auth_time.unwrap_or(stored.issued_at),
            amr: Vec::new(),
        };
        let issue = Issue {
            refresh_token: if rotates { NewRefresh::Rotated } else { NewRefresh::Keep },
            access_token: true,
        };
        let mut tokens = self.issue(app, &user, &grant, issue).await?;
        if !rotates {
            tokens.refresh_token = Some(refresh_token.to_owned());
        }
        self.log_issue(app, &user, "refresh_token").await;
        Ok(tokens)
    }

    /// Ends every token of `family`: its stored refresh tokens, and (by the family's revocation,
    /// kept as long as an access token issued now could live) its access tokens.
    async fn revoke_family(&self, family: &str, now: Timestamp) -> Result<u64, OAuthError> {
        let until = now.plus_seconds(TOKEN_LIFETIME_SECS);
        self.store.revoke_family(family, until).await.map_err(server_error)
    }

    /// Whether `user_id` may still use `app` (assigned directly or through a group; the sign-on
    /// core's rule, through the node's cache of the session's grants when it holds them).
    async fn still_assigned(
        &self,
        app: &App,
        user_id: &str,
        session_id: Option<&str>,
    ) -> Result<bool, OAuthError> {
        let grant = self.store.find_sso_grant(&app.id, user_id, session_id.unwrap_or_default()).await;
        Ok(grant.map_err(server_error)?.is_some())
    }

    async fn active_user(&self, user_id: &str) -> Result<User, OAuthError> {
        self.session_user(None, user_id).await
    }

    /// The user of a grant made in `session_id` (read through the node's session cache when it
    /// holds that session), if they may still have tokens.
    async fn session_user(&self, session_id: Option<&str>, user_id: &str) -> Result<User, OAuthError> {
        let found = match session_id {
            Some(session_id) => self.store.find_session_user(session_id, user_id).await,
            None => self.store.find_user(user_id).await,
        };
        match found.map_err(server_error)? {
            Some(user) if user.id == user_id && user.may_have_sessions() => Ok(user),
            _ => Err(invalid_grant("The user is not active.")),
        }
    }

    /// Signs the access token and, for `openid`, the id_token; with `offline_access` (and the
    /// grant type allowed) a refresh token, which is stored. The access token is not: its `jti`
    /// names its family, so what revokes the family revokes it too.
    async fn issue(
        &self,
        app: &App,
        user: &User,
        grant: &TokenGrant,
        issue: Issue,
    ) -> Result<Tokens, OAuthError> {
        let keys = self.keys.current().await.map_err(server_error)?;
        let now = self.clock.now();
        let issuer = grant.server.issuer(self.org_url);
        let expires = now.plus_seconds(TOKEN_LIFETIME_SECS);
        let jti = access_token_jti(&grant.family);
        let mut access = self.access_claims(grant.server, app, &jti, now, expires, &grant.scopes);
        access.insert("uid".into(), json!(user.id));
        access.insert("auth_time".into(), json!(grant.auth_time.epoch_seconds()));
        access.insert("sub".into(), json!(user.login()));
        let custom = self.custom_claims(grant.server, user, &grant.scopes).await?;
        for (claim_type, name, value) in &custom {
            if *claim_type == ClaimType::Resource {
                access.insert(name.clone(), value.clone());
            }
        }
        let access_token = if issue.access_token {
            jwt::sign(&access, &keys.active, None).map_err(|_| server_failure())?
        } else {
            String::new()
        };
        let id_token = if grant.scopes.iter().any(|s| s == "openid") {
            let mut claims = self.user_claims(user, &grant.scopes).await?;
            for (claim_type, name, value) in &custom {
                if *claim_type == ClaimType::Identity {
                    claims.insert(name.clone(), value.clone());
                }
            }
            claims.insert("sub".into(), json!(user.id));
            claims.insert("ver".into(), json!(1));
            claims.insert("iss".into(), json!(issuer));
            claims.insert("aud".into(), json!(app.id));
            claims.insert("iat".into(), json!(now.epoch_seconds()));
            claims.insert("exp".into(), json!(expires.epoch_seconds()));
            claims.insert("jti".into(), json!(format!("ID.{}", random_alphanumeric(43))));
            if !grant.amr.is_empty() {
                claims.insert("amr".into(), json!(grant.amr));
            }
            claims.insert("idp".into(), json!(self.org_id));
            if let Some(sid) = &grant.session_id {
                claims.insert("sid".into(), json!(sid));
            }
            claims.insert("auth_time".into(), json!(grant.auth_time.epoch_seconds()));
            if issue.access_token {
                claims.insert("at_hash".into(), json!(half_hash(&access_token)));
            }
            if let Some(nonce) = &grant.nonce {
                claims.insert("nonce".into(), json!(nonce));
            }
            Some(jwt::sign(&claims, &keys.active, None).map_err(|_| server_failure())?)
        } else {
            None
        };
        let wants_refresh = grant.scopes.iter().any(|s| s == "offline_access")
            && app.oidc().is_some_and(|o| o.allows_grant("refresh_token"));
        let mut refresh_token = None;
        if wants_refresh && issue.refresh_token != NewRefresh::Keep {
            let secret = Secret::generate();
            let stored = IssuedToken {
                id: secret.digest(),
                kind: TokenKind::Refresh,
                app_id: app.id.clone(),
                server: grant.server,
                user_id: Some(user.id.clone()),
                session_id: grant.session_id.clone(),
                family: grant.family.clone(),
                scopes: grant.scopes.clone(),
                issued_at: now,
                auth_time: Some(grant.auth_time),
                expires_at: now.plus_seconds(REFRESH_IDLE_SECS),
                rotated_at: None,
                revoked: false,
            };
            if grant.from_code {
                // The family is the code's digest: written only if no replay got there first. (An
                // access token alone needs no such check: a replay revokes its family whenever.)
                let written = self.store.insert_tokens_for_code(&grant.family, std::slice::from_ref(&stored));
                if !written.await.map_err(server_error)? {
                    tracing::warn!(app = %app.id, "an authorization code was replayed while it was being exchanged");
                    return Err(invalid_grant("The authorization code is invalid or has expired."));
                }
            } else {
                self.store.insert_token(&stored).await.map_err(server_error)?;
            }
            refresh_token = Some(secret.expose().to_owned());
        }
        Ok(Tokens {
            access_token,
            id_token,
            refresh_token,
            scope: grant.scopes.join(" "),
            expires_in: TOKEN_LIFETIME_SECS,
        })
    }

    /// Token introspection (RFC 7662 §2.2) for the client `app`: `active` only for a live token
    /// of this client and server whose user is still active; nothing else about other tokens.
    pub async fn introspect(
        &self,
        app: &App,
        server: Server,
        token: &str,
    ) -> Result<Map<String, Value>, OAuthError> {
        let inactive = || {
            let mut answer = Map::new();
            answer.insert("active".into(), json!(false));
            answer
        };
        let now = self.clock.now();
        let mut answer = Map::new();
        answer.insert("active".into(), json!(true));
        let user_id = match self.find_presented(server, token).await? {
            None => return Ok(inactive()),
            Some(Presented::Access(access)) => {
                if access.client_id != app.id || self.is_revoked(&access).await? {
                    return Ok(inactive());
                }
                answer.insert("scope".into(), json!(access.scopes.join(" ")));
                answer.insert("client_id".into(), json!(app.id));
                answer.insert("token_type".into(), json!("Bearer"));
                for name in ["exp", "iat", "iss", "aud", "jti"] {
                    if let Some(value) = access.claims.get(name) {
                        answer.insert(name.into(), value.clone());
                    }
                }
                access.user_id.map(|id| (id, access.issued_at))
            }
            Some(Presented::Refresh(stored)) => {
                if stored.app_id != app.id || !stored.is_live(now) || stored.rotated_at.is_some() {
                    return Ok(inactive());
                }
                answer.insert("scope".into(), json!(stored.scopes.join(" ")));
                answer.insert("client_id".into(), json!(app.id));
                answer.insert("token_type".into(), json!("refresh_token"));
                answer.insert("exp".into(), json!(stored.expires_at.epoch_seconds()));
                answer.insert("iat".into(), json!(stored.issued_at.epoch_seconds()));
                answer.insert("iss".into(), json!(server.issuer(self.org_url)));
                stored.user_id.map(|id| (id, stored.issued_at))
            }
        };
        if let Some((user_id, issued_at)) = user_id {
            if !self.still_assigned(app, &user_id, None).await? {
                return Ok(inactive());
            }
            match self.active_user(&user_id).await {
                Ok(user) if !ended_by_user_change(&user, issued_at) => {
                    answer.insert("username".into(), json!(user.login()));
                    answer.insert("sub".into(), json!(user.login()));
                    answer.insert("uid".into(), json!(user.id));
                }
                _ => return Ok(inactive()),
            }
        }
        Ok(answer)
    }

    /// Token revocation (RFC 7009 §2.1) by the client `app`: a refresh token takes its family
    /// (the access tokens of the same grant) with it. An unknown token, or another client's, is
    /// answered the same (§2.2: nothing to say about it).
    pub async fn revoke(&self, app: &App, server: Server, token: &str) -> Result<(), OAuthError> {
        let (kind, revoked) = match self.find_presented(server, token).await? {
            Some(Presented::Access(access)) if access.client_id == app.id => {
                let key = Revocation::Token(access.jti);
                self.store.revoke(&[key], access.expires_at).await.map_err(server_error)?;
                (TokenKind::Access, 1)
            }
            Some(Presented::Refresh(stored)) if stored.app_id == app.id => {
                (TokenKind::Refresh, self.revoke_family(&stored.family, self.clock.now()).await?)
            }
            _ => return Ok(()),
        };
        tracing::info!(app = %app.id, kind = kind.as_str(), revoked, "token revoked by its client");
        Ok(())
    }

    /// A token as presented: an unexpired access token (a JWT we signed for `server`) or a
    /// refresh token (found by its digest). `None` when it is neither.
    async fn find_presented(&self, server: Server, token: &str) -> Result<Option<Presented>, OAuthError> {
        if token.contains('.') {
            let keys = self.keys.current().await.map_err(server_error)?;
            let Ok(claims) = jwt::verify(token, &keys) else {
                tracing::warn!(
                    server = server.as_str(),
                    "a JWT presented to introspection or revocation is not ours (tampered, foreign or unknown key)"
                );
                return Ok(None);
            };
            return Ok(AccessToken::from_claims(
                claims,
                server.issuer(self.org_url).as_str(),
                self.clock.now(),
            )
            .map(Presented::Access));
        }
        let stored = self.store.find_token(&secret_digest(token)).await.map_err(server_error)?;
        Ok(stored.filter(|t| t.kind == TokenKind::Refresh && t.server == server).map(Presented::Refresh))
    }

    /// Whether the access token, or its family, was revoked.
    async fn is_revoked(&self, access: &AccessToken) -> Result<bool, OAuthError> {
        let keys = [Revocation::Token(access.jti.clone()), Revocation::Family(access.family.clone())];
        self.store.is_revoked(&keys).await.map_err(server_error)
    }

    /// An RP-initiated logout's `id_token_hint` (OpenID Connect RP-Initiated Logout 1.0 §2): an
    /// id_token we signed for `server` (expired ones too: a user may sign out long after), whose
    /// audience is the client that asks. Returns the client id and the session id it names.
    pub async fn logout_hint(
        &self,
        server: Server,
        id_token_hint: &str,
    ) -> Result<(String, Option<String>), OAuthError> {
        let invalid =
            || invalid_request("The 'id_token_hint' is not a valid ID token of this authorization server.");
        let keys = self.keys.current().await.map_err(server_error)?;
        let claims = jwt::verify(id_token_hint, &keys).map_err(|_| invalid())?;
        if claims.get("iss").and_then(Value::as_str) != Some(server.issuer(self.org_url).as_str()) {
            return Err(invalid());
        }
        let client = claims.get("aud").and_then(Value::as_str).ok_or_else(invalid)?;
        let sid = claims.get("sid").and_then(Value::as_str).map(str::to_owned);
        Ok((client.to_owned(), sid))
    }

    /// The claims every access token of `server` for `app` carries (Okta's JWT access token:
    /// RFC 9068 names, with `cid` and `scp`); the caller adds the subject.
    fn access_claims(
        &self,
        server: Server,
        app: &App,
        jti: &str,
        now: Timestamp,
        expires: Timestamp,
        scopes: &[String],
    ) -> Map<String, Value> {
        let mut access = Map::new();
        access.insert("ver".into(), json!(1));
        access.insert("jti".into(), json!(jti));
        access.insert("iss".into(), json!(server.issuer(self.org_url)));
        access.insert("aud".into(), json!(server.access_token_audience(self.org_url)));
        access.insert("iat".into(), json!(now.epoch_seconds()));
        access.insert("exp".into(), json!(expires.epoch_seconds()));
        access.insert("cid".into(), json!(app.id));
        access.insert("scp".into(), json!(scopes));
        access
    }

    /// The default server's custom claims a grant of `scopes` carries, with the user's values
    /// (claims without a value for this user are left out, as Okta does).
    async fn custom_claims(
        &self,
        server: Server,
        user: &User,
        scopes: &[String],
    ) -> Result<Vec<(ClaimType, String, Value)>, OAuthError> {
        if server != Server::Default {
            return Ok(Vec::new());
        }
        let claims = self.store.list_custom_claims().await.map_err(server_error)?;
        let wanted: Vec<&CustomClaim> = claims
            .iter()
            .filter(|c| c.applies(ClaimType::Resource, scopes) || c.applies(ClaimType::Identity, scopes))
            .collect();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let groups = if wanted.iter().any(|c| c.needs_groups()) {
            self.store.user_group_refs(&user.id).await.map_err(server_error)?
        } else {
            Vec::new()
        };
        let group_ids: Vec<String> = groups.iter().map(|g| g.id.clone()).collect();
        let subject = Subject { user, group_ids: Some(&group_ids) };
        Ok(wanted
            .into_iter()
            .filter_map(|c| Some((c.claim_type, c.name.clone(), c.value_for(&subject, &groups)?)))
            .collect())
    }

    /// The `client_credentials` grant (RFC 6749 §4.4): a service app's own access token from the
    /// default server, for custom scopes only (the app's default scopes when it names none).
    pub async fn client_credentials(
        &self,
        app: &App,
        server: Server,
        scope: Option<&str>,
    ) -> Result<Tokens, OAuthError> {
        let Some(oidc) = app.oidc() else { return Err(invalid_client()) };
        if !oidc.allows_grant("client_credentials") {
            return Err(unauthorized_grant());
        }
        if server != Server::Default {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                "The org authorization server issues client credentials tokens for no scope; use the default server.",
            ));
        }
        let custom = self.store.list_custom_scopes().await.map_err(server_error)?;
        let scopes: Vec<String> = match scope {
            Some(text) => {
                let mut asked: Vec<String> = Vec::new();
                for name in text.split(' ').filter(|s| !s.is_empty()) {
                    if !custom.iter().any(|c| c.name == name) {
                        let name: String = name.chars().take(60).collect();
                        return Err(OAuthError::new(
                            ErrorCode::InvalidScope,
                            format!("The scope '{name}' is not a custom scope of this authorization server."),
                        ));
                    }
                    if !asked.iter().any(|a| a == name) {
                        asked.push(name.to_owned());
                    }
                }
                asked
            }
            None => custom.iter().filter(|c| c.default).map(|c| c.name.clone()).collect(),
        };
        if scopes.is_empty() {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                "The client credentials request must name a scope.",
            ));
        }
        let keys = self.keys.current().await.map_err(server_error)?;
        let now = self.clock.now();
        let expires = now.plus_seconds(TOKEN_LIFETIME_SECS);
        // Its own family: revoked alone, by its jti.
        let jti = access_token_jti(&format!("cc.{}", random_alphanumeric(32)));
        let mut access = self.access_claims(server, app, &jti, now, expires, &scopes);
        access.insert("sub".into(), json!(app.id));
        let access_token = jwt::sign(&access, &keys.active, None).map_err(|_| server_failure())?;
        let event = Event::new(
            "app.oauth2.as.token.grant",
            "OAuth2 tokens issued (client_credentials)",
            "SUCCESS",
            Actor::system(),
            now,
        )
        .target(Target::new(&app.id, "AppInstance", &app.label));
        self.audit.record(event).await;
        Ok(Tokens {
            access_token,
            id_token: None,
            refresh_token: None,
            scope: scopes.join(" "),
            expires_in: TOKEN_LIFETIME_SECS,
        })
    }

    /// The claims the scopes grant (OpenID Connect Core §5.4), from the user's profile now.
    async fn user_claims(&self, user: &User, scopes: &[String]) -> Result<Map<String, Value>, OAuthError> {
        let has = |scope: &str| scopes.iter().any(|s| s == scope);
        let profile = &user.profile;
        let text = |name: &str| profile.get(name).filter(|v| !v.is_empty()).map(|v| json!(v));
        let mut claims = Map::new();
        let mut put = |name: &str, value: Option<Value>| {
            if let Some(value) = value {
                claims.insert(name.to_owned(), value);
            }
        };
        if has("profile") {
            let full = [profile.get("firstName"), profile.get("lastName")]
                .into_iter()
                .flatten()
                .filter(|v| !v.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            put("name", (!full.is_empty()).then(|| json!(full)));
            put("given_name", text("firstName"));
            put("family_name", text("lastName"));
            put("middle_name", text("middleName"));
            put("nickname", text("nickName"));
            put("preferred_username", Some(json!(user.login())));
            put("profile", text("profileUrl"));
            put("locale", text("locale"));
            put("zoneinfo", text("timezone"));
            put("updated_at", Some(json!(user.last_updated.epoch_seconds())));
        } else {
            put("preferred_username", Some(json!(user.login())));
        }
        if has("email") {
            put("email", text("email"));
            put("email_verified", profile.get("email").map(|_| json!(true)));
        }
        if has("phone") {
            put("phone_number", text("mobilePhone").or_else(|| text("primaryPhone")));
        }
        if has("address") {
            let mut address = Map::new();
            for (claim, field) in [
                ("street_address", "streetAddress"),
                ("locality", "city"),
                ("region", "state"),
                ("postal_code", "zipCode"),
                ("country", "countryCode"),
            ] {
                if let Some(value) = profile.get(field).filter(|v| !v.is_empty()) {
                    address.insert(claim.into(), json!(value));
                }
            }
            if !address.is_empty() {
                claims.insert("address".into(), Value::Object(address));
            }
        }
        if has("groups") {
            let groups = self.store.user_group_refs(&user.id).await.map_err(server_error)?;
            let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
            claims.insert("groups".into(), json!(names));
        }
        Ok(claims)
    }

    /// `userinfo` (OpenID Connect Core §5.3): the claims of the access token's user for its scopes,
    /// if the token is one of ours for `server`, live, not revoked, and its user active and
    /// unchanged since.
    pub async fn userinfo(
        &self,
        server: Server,
        access_token: &str,
    ) -> Result<Map<String, Value>, OAuthError> {
        let invalid = || OAuthError::new(ErrorCode::InvalidToken, "The access token is invalid.");
        let keys = self.keys.current().await.map_err(server_error)?;
        let claims = jwt::verify(access_token, &keys).map_err(|_| invalid())?;
        let access = AccessToken::from_claims(claims, server.issuer(self.org_url).as_str(), self.clock.now())
            .ok_or_else(invalid)?;
        if !access.scopes.iter().any(|s| s == "openid") || self.is_revoked(&access).await? {
            return Err(invalid());
        }
        let user_id = access.user_id.as_deref().ok_or_else(invalid)?;
        let user = self.active_user(user_id).await.map_err(|_| invalid())?;
        if ended_by_user_change(&user, access.issued_at) {
            return Err(invalid());
        }
        // The client must still be active, and the user still assigned to it.
        let app = self.store.find_app(&access.client_id).await.map_err(server_error)?;
        let Some(app) = app.filter(|a| a.id == access.client_id && a.is_active()) else {
            return Err(invalid());
        };
        if !self.still_assigned(&app, &user.id, None).await? {
            return Err(invalid());
        }
        let mut claims = self.user_claims(&user, &access.scopes).await?;
        for (claim_type, name, value) in self.custom_claims(server, &user, &access.scopes).await? {
            if claim_type == ClaimType::Identity {
                claims.insert(name, value);
            }
        }
        claims.insert("sub".into(), json!(user.id));
        Ok(claims)
    }

    async fn log_issue(&self, app: &App, user: &User, grant_type: &str) {
        let event = Event::new(
            "app.oauth2.as.token.grant",
            &format!("OAuth2 tokens issued ({grant_type})"),
            "SUCCESS",
            Actor::user(&user.id, user.login()),
            self.clock.now(),
        )
        .target(Target::new(&app.id, "AppInstance", &app.label));
        self.audit.record(event).await;
    }

    async fn log_refusal(&self, app: &App, user_id: Option<&str>, reason: &str) {
        let actor = match user_id {
            Some(id) => Actor::user(id, id),
            None => Actor::system(),
        };
        let event = Event::new(
            "app.oauth2.as.token.grant",
            "OAuth2 token request refused",
            "FAILURE",
            actor,
            self.clock.now(),
        )
        .target(Target::new(&app.id, "AppInstance", &app.label))
        .reason(reason);
        self.audit.record(event).await;
    }
}

/// Whether the user changed in a way that ends tokens issued at `issued_at`: their password, or
/// their status (suspended, deactivated, locked: a token issued before stays dead after unsuspend,
/// reactivation or unlock, as a revoked one would).
fn ended_by_user_change(user: &User, issued_at: Timestamp) -> bool {
    let after = |t: Option<Timestamp>| t.is_some_and(|t| t > issued_at);
    after(user.password_changed) || after(user.status_changed)
}

/// OpenID Connect Core §3.1.3.6 `at_hash`: base64url of the left half of the token's SHA-256.
fn half_hash(token: &str) -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(token.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16])
}

fn server_failure() -> OAuthError {
    OAuthError::new(ErrorCode::ServerError, "The server could not issue the tokens.")
}

fn server_error(error: impl Into<CoreError>) -> OAuthError {
    let error: CoreError = error.into();
    tracing::error!(%error, "OAuth request failed");
    server_failure()
}
