//! The settings of an OpenID Connect app (`signOnMode: "OPENID_CONNECT"`): Okta's
//! `settings.oauthClient` (snake_case, as Okta spells it) and `credentials.oauthClient`, and the
//! app's client secrets.
//!
//! Secrets are bearer secrets: the plaintext is shown once, when it is made, and only its digest
//! is stored ([`crate::ids::secret_digest`]); a client's secret is checked against every ACTIVE
//! secret in constant time. Validation refuses what Latchkey would not honour, by field name:
//! redirect URIs that are not absolute `https` (or loopback `http`, or a native app's private
//! scheme) or that carry a fragment (RFC 6749 §3.1.2), grant and response types the app type may
//! not use, and a `private_key_jwt` client without keys.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use crate::clock::Timestamp;
use crate::error::CoreError;
use crate::ids::{Secret, secret_digest};

/// Okta's `signOnMode` of an OpenID Connect app.
pub const OPENID_CONNECT: &str = "OPENID_CONNECT";
/// Okta's `name` of every OpenID Connect app.
pub const OIDC_APP_NAME: &str = "oidc_client";

/// How a client proves who it is at the token endpoint (RFC 7591 §2 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    /// A public client (browser and native apps): no secret, PKCE instead.
    None,
    /// A JWT signed with one of the app's registered keys (RFC 7523 §2.2).
    PrivateKeyJwt,
}

impl ClientAuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuthMethod::ClientSecretBasic => "client_secret_basic",
            ClientAuthMethod::ClientSecretPost => "client_secret_post",
            ClientAuthMethod::None => "none",
            ClientAuthMethod::PrivateKeyJwt => "private_key_jwt",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Self::ClientSecretBasic, Self::ClientSecretPost, Self::None, Self::PrivateKeyJwt]
            .into_iter()
            .find(|m| m.as_str() == text)
    }

    /// Whether the client holds a secret.
    pub fn uses_secret(self) -> bool {
        matches!(self, ClientAuthMethod::ClientSecretBasic | ClientAuthMethod::ClientSecretPost)
    }
}

/// `settings.oauthClient.refresh_token`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshTokenSettings {
    /// `ROTATE` (a new refresh token on every use) or `STATIC`.
    pub rotation_type: String,
    /// Seconds a rotated token is still accepted (Okta: 0 to 60, default 30).
    #[serde(default = "default_leeway")]
    pub leeway: u32,
}

fn default_leeway() -> u32 {
    30
}

/// `settings.oauthClient`, in Okta's field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OauthClientSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tos_uri: Option<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    #[serde(default = "default_response_types")]
    pub response_types: Vec<String>,
    #[serde(default = "default_grant_types")]
    pub grant_types: Vec<String>,
    #[serde(default = "default_application_type")]
    pub application_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiate_login_uri: Option<String>,
    /// `REQUIRED` or `TRUSTED` (Okta's default); Latchkey shows no consent screen, so `REQUIRED`
    /// is refused rather than ignored.
    #[serde(default = "default_consent_method")]
    pub consent_method: String,
    #[serde(default = "default_issuer_mode")]
    pub issuer_mode: String,
    #[serde(default = "default_wildcard_redirect")]
    pub wildcard_redirect: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<RefreshTokenSettings>,
    /// The client's public keys for `private_key_jwt` (a JWK Set, RFC 7517 §5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Value>,
    /// DPoP-bound access tokens (RFC 9449): Okta's SDKs send `false`; Latchkey issues bearer
    /// tokens only, so `true` is refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dpop_bound_access_tokens: bool,
    /// Okta's IdP-initiated login setting; only `{"mode": "DISABLED"}` (the dashboard tile uses
    /// `initiate_login_uri`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_initiated_login: Option<Value>,
    /// OIDC Back-Channel Logout 1.0 §2.2 (not an Okta field: Latchkey's addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backchannel_logout_uri: Option<String>,
}

fn default_response_types() -> Vec<String> {
    vec!["code".to_owned()]
}
fn default_grant_types() -> Vec<String> {
    vec!["authorization_code".to_owned()]
}
fn default_application_type() -> String {
    "web".to_owned()
}
fn default_consent_method() -> String {
    "TRUSTED".to_owned()
}
fn default_issuer_mode() -> String {
    "ORG_URL".to_owned()
}
fn default_wildcard_redirect() -> String {
    "DISABLED".to_owned()
}

/// Whether a client secret may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SecretStatus {
    Active,
    Inactive,
}

impl SecretStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SecretStatus::Active => "ACTIVE",
            SecretStatus::Inactive => "INACTIVE",
        }
    }
}

/// A client secret as stored: its digest and a short public hash that names it in listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientSecret {
    /// `ocs…`
    pub id: String,
    pub digest: String,
    /// Okta's `secret_hash`: base64url of the first 16 bytes of the secret's SHA-256, which lets an
    /// admin tell secrets apart without the secret.
    pub secret_hash: String,
    pub status: SecretStatus,
    pub created: Timestamp,
    pub last_updated: Timestamp,
}

/// An app can hold two secrets at once (Okta's limit), so a client can move to a new one.
pub const MAX_CLIENT_SECRETS: usize = 2;

impl ClientSecret {
    /// An ACTIVE secret an admin chose (Okta lets one be given when an app or a secret is made,
    /// which eases moving a client): 14 to 100 visible ASCII characters, stored as a digest.
    pub fn supplied(plaintext: &str, now: Timestamp) -> Result<Self, CoreError> {
        let visible = plaintext.bytes().all(|b| b.is_ascii_graphic());
        if !(14..=100).contains(&plaintext.len()) || !visible {
            return Err(CoreError::validation(
                "client_secret",
                "a client secret is 14 to 100 visible ASCII characters",
            ));
        }
        Ok(Self::stored(plaintext, now))
    }

    fn stored(plaintext: &str, now: Timestamp) -> Self {
        use base64::Engine;
        use sha2::{Digest, Sha256};
        let hash = Sha256::digest(plaintext.as_bytes());
        ClientSecret {
            id: crate::ids::new_id(crate::ids::IdKind::ClientSecret),
            digest: secret_digest(plaintext),
            secret_hash: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&hash[..16]),
            status: SecretStatus::Active,
            created: now,
            last_updated: now,
        }
    }

    /// A new ACTIVE secret, and the plaintext to show once.
    pub fn issue(now: Timestamp) -> (Self, Secret) {
        let secret = Secret::generate();
        (Self::stored(secret.expose(), now), secret)
    }
}

/// An OpenID Connect app's sign-on settings, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OidcSignOn {
    pub client: OauthClientSettings,
    pub token_endpoint_auth_method: ClientAuthMethod,
    /// PKCE even for a confidential client (always required for browser and native apps).
    pub pkce_required: bool,
    #[serde(default)]
    pub secrets: Vec<ClientSecret>,
}

/// Okta `settings.oauthClient` fields accepted only when null, false or empty.
const OFF_ONLY_FIELDS: [&str; 6] = [
    "jwks_uri",
    "frontchannel_logout_uri",
    "frontchannel_logout_session_required",
    "participate_slo",
    "sector_identifier_uri",
    "tos_uri_override",
];

fn is_off(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(_) => false,
    }
}

const GRANT_TYPES: [&str; 4] = ["authorization_code", "implicit", "refresh_token", "client_credentials"];
const RESPONSE_TYPES: [&str; 3] = ["code", "token", "id_token"];
const APPLICATION_TYPES: [&str; 4] = ["web", "native", "browser", "service"];
const MAX_URIS: usize = 100;
const MAX_URI_LEN: usize = 2048;

impl OidcSignOn {
    /// Reads `settings.oauthClient` and `credentials.oauthClient` as an admin sent them; `secrets`
    /// are the app's current secrets (none for a new app: the caller issues the first).
    pub fn from_api(
        settings: &Value,
        credentials: Option<&Value>,
        secrets: Vec<ClientSecret>,
    ) -> Result<Self, CoreError> {
        // Okta fields Latchkey accepts only in their "off" form (what Okta returns for an app that
        // does not use them); anything else is refused rather than silently ignored.
        let mut settings = settings.clone();
        if let Some(object) = settings.as_object_mut() {
            for name in OFF_ONLY_FIELDS {
                match object.get(name) {
                    None => {}
                    Some(value) if is_off(value) => {
                        object.remove(name);
                    }
                    Some(_) => {
                        return Err(CoreError::validation(
                            format!("settings.oauthClient.{name}"),
                            "is not supported (only its empty or false form)",
                        ));
                    }
                }
            }
        }
        let client: OauthClientSettings = serde_json::from_value(settings).map_err(|e| {
            CoreError::validation("settings.oauthClient", format!("is not an oauthClient object: {e}"))
        })?;
        let credentials = match credentials {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(c)) => c.clone(),
            Some(_) => return Err(CoreError::validation("credentials.oauthClient", "must be an object")),
        };
        for name in credentials.keys() {
            if ![
                "client_id",
                "client_secret",
                "token_endpoint_auth_method",
                "autoKeyRotation",
                "pkce_required",
            ]
            .contains(&name.as_str())
            {
                return Err(CoreError::validation(
                    format!("credentials.oauthClient.{}", name.chars().take(60).collect::<String>()),
                    "is not supported",
                ));
            }
        }
        let public = matches!(client.application_type.as_str(), "browser" | "native");
        let method = match credentials.get("token_endpoint_auth_method") {
            None | Some(Value::Null) => {
                if client.application_type == "browser" {
                    ClientAuthMethod::None
                } else {
                    ClientAuthMethod::ClientSecretBasic
                }
            }
            Some(Value::String(text)) => ClientAuthMethod::parse(text).ok_or_else(|| {
                CoreError::validation(
                    "credentials.oauthClient.token_endpoint_auth_method",
                    "must be client_secret_basic, client_secret_post, private_key_jwt or none",
                )
            })?,
            Some(_) => {
                return Err(CoreError::validation(
                    "credentials.oauthClient.token_endpoint_auth_method",
                    "must be a string",
                ));
            }
        };
        let pkce_required = match credentials.get("pkce_required") {
            None | Some(Value::Null) => public,
            Some(Value::Bool(b)) => *b || public,
            Some(_) => {
                return Err(CoreError::validation(
                    "credentials.oauthClient.pkce_required",
                    "must be a boolean",
                ));
            }
        };
        let sign_on = OidcSignOn { client, token_endpoint_auth_method: method, pkce_required, secrets };
        sign_on.validate()?;
        Ok(sign_on)
    }

    fn validate(&self) -> Result<(), CoreError> {
        let c = &self.client;
        let field = |name: &str| format!("settings.oauthClient.{name}");
        if !APPLICATION_TYPES.contains(&c.application_type.as_str()) {
            return Err(CoreError::validation(
                field("application_type"),
                "must be web, native, browser or service",
            ));
        }
        if let Some(bad) = c.grant_types.iter().find(|g| !GRANT_TYPES.contains(&g.as_str())) {
            return Err(CoreError::validation(
                field("grant_types"),
                format!("{bad:?} is not a supported grant type"),
            ));
        }
        if let Some(bad) = c.response_types.iter().find(|r| !RESPONSE_TYPES.contains(&r.as_str())) {
            return Err(CoreError::validation(
                field("response_types"),
                format!("{bad:?} is not a supported response type"),
            ));
        }
        if c.grant_types.is_empty() {
            return Err(CoreError::validation(field("grant_types"), "must name at least one grant type"));
        }
        let service = c.application_type == "service";
        if service && c.grant_types.iter().any(|g| g != "client_credentials") {
            return Err(CoreError::validation(
                field("grant_types"),
                "a service app may only use client_credentials",
            ));
        }
        if matches!(c.application_type.as_str(), "browser" | "native")
            && self.allows_grant("client_credentials")
        {
            return Err(CoreError::validation(
                field("grant_types"),
                "a public client (browser or native app) cannot use client_credentials",
            ));
        }
        // Okta's service apps say `response_types: ["token"]`: what client_credentials answers.
        let implicit_types = c.response_types.iter().any(|r| r == "id_token")
            || (c.response_types.iter().any(|r| r == "token") && !service);
        if self.allows_grant("implicit") != implicit_types {
            return Err(CoreError::validation(
                field("response_types"),
                "token and id_token go with the implicit grant type, and the implicit grant type needs one of them",
            ));
        }
        if self.allows_grant("authorization_code") != c.response_types.iter().any(|r| r == "code") {
            return Err(CoreError::validation(
                field("response_types"),
                "code goes with the authorization_code grant type, and that grant type needs it",
            ));
        }
        if self.allows_grant("refresh_token") && !self.allows_grant("authorization_code") {
            return Err(CoreError::validation(
                field("grant_types"),
                "refresh_token needs authorization_code",
            ));
        }
        let public = matches!(c.application_type.as_str(), "browser" | "native");
        match (c.application_type.as_str(), self.token_endpoint_auth_method) {
            ("browser", m) if m != ClientAuthMethod::None => {
                return Err(CoreError::validation(
                    "credentials.oauthClient.token_endpoint_auth_method",
                    "a browser app is a public client: none",
                ));
            }
            ("service" | "web", ClientAuthMethod::None) => {
                return Err(CoreError::validation(
                    "credentials.oauthClient.token_endpoint_auth_method",
                    "web and service apps must authenticate (client_secret_basic, client_secret_post or private_key_jwt)",
                ));
            }
            _ => {}
        }
        if public && !self.pkce_required {
            return Err(CoreError::validation(
                "credentials.oauthClient.pkce_required",
                "browser and native apps need PKCE",
            ));
        }
        let redirecting = self.allows_grant("authorization_code") || self.allows_grant("implicit");
        if redirecting && c.redirect_uris.is_empty() {
            return Err(CoreError::validation(field("redirect_uris"), "at least one is required"));
        }
        let native = c.application_type == "native";
        for (name, uris) in
            [("redirect_uris", &c.redirect_uris), ("post_logout_redirect_uris", &c.post_logout_redirect_uris)]
        {
            if uris.len() > MAX_URIS {
                return Err(CoreError::validation(field(name), format!("at most {MAX_URIS}")));
            }
            for uri in uris {
                check_redirect_uri(uri, native).map_err(|why| CoreError::validation(field(name), &why))?;
            }
        }
        for (name, uri) in [
            ("initiate_login_uri", &c.initiate_login_uri),
            ("backchannel_logout_uri", &c.backchannel_logout_uri),
            ("client_uri", &c.client_uri),
            ("logo_uri", &c.logo_uri),
            ("policy_uri", &c.policy_uri),
            ("tos_uri", &c.tos_uri),
        ] {
            if let Some(uri) = uri.as_deref().filter(|u| !u.is_empty()) {
                check_redirect_uri(uri, false).map_err(|why| CoreError::validation(field(name), &why))?;
            }
        }
        if c.consent_method != "TRUSTED" {
            return Err(CoreError::validation(
                field("consent_method"),
                "only TRUSTED is supported (Latchkey shows no consent screen)",
            ));
        }
        if c.issuer_mode != "ORG_URL" && c.issuer_mode != "DYNAMIC" {
            return Err(CoreError::validation(field("issuer_mode"), "must be ORG_URL or DYNAMIC"));
        }
        if c.dpop_bound_access_tokens {
            return Err(CoreError::validation(field("dpop_bound_access_tokens"), "DPoP is not supported"));
        }
        if let Some(login) = &c.idp_initiated_login
            && login.get("mode").and_then(Value::as_str).is_some_and(|m| m != "DISABLED")
        {
            return Err(CoreError::validation(
                field("idp_initiated_login"),
                "only mode DISABLED is supported",
            ));
        }
        if c.wildcard_redirect != "DISABLED" {
            return Err(CoreError::validation(field("wildcard_redirect"), "only DISABLED is supported"));
        }
        if let Some(refresh) = &c.refresh_token {
            if refresh.rotation_type != "ROTATE" && refresh.rotation_type != "STATIC" {
                return Err(CoreError::validation(
                    field("refresh_token.rotation_type"),
                    "must be ROTATE or STATIC",
                ));
            }
            if refresh.leeway > 60 {
                return Err(CoreError::validation(field("refresh_token.leeway"), "must be 0 to 60 seconds"));
            }
        }
        if self.token_endpoint_auth_method == ClientAuthMethod::PrivateKeyJwt {
            let has_keys = c
                .jwks
                .as_ref()
                .and_then(|j| j.get("keys"))
                .and_then(Value::as_array)
                .is_some_and(|keys| !keys.is_empty());
            if !has_keys {
                return Err(CoreError::validation(
                    field("jwks"),
                    "private_key_jwt needs the client's public keys",
                ));
            }
        }
        Ok(())
    }

    pub fn allows_grant(&self, grant_type: &str) -> bool {
        self.client.grant_types.iter().any(|g| g == grant_type)
    }

    pub fn allows_response_type(&self, response_type: &str) -> bool {
        self.client.response_types.iter().any(|r| r == response_type)
    }

    /// The registered redirect URI equal to `uri` (exact match: RFC 6749 §3.1.2.3, OAuth 2.0
    /// Security BCP §4.1.3). Loopback URIs of native apps may differ in port (RFC 8252 §7.3).
    pub fn redirect_uri(&self, uri: &str) -> Option<&str> {
        registered(&self.client.redirect_uris, uri, self.client.application_type == "native")
    }

    pub fn post_logout_redirect_uri(&self, uri: &str) -> Option<&str> {
        registered(&self.client.post_logout_redirect_uris, uri, false)
    }

    /// Whether a client must send a PKCE challenge.
    pub fn requires_pkce(&self) -> bool {
        self.pkce_required
    }

    /// Whether `presented` is one of the app's ACTIVE secrets (constant time for each).
    pub fn secret_matches(&self, presented: &str) -> bool {
        let digest = secret_digest(presented);
        let mut matched = false;
        for secret in self.secrets.iter().filter(|s| s.status == SecretStatus::Active) {
            matched |= bool::from(secret.digest.as_bytes().ct_eq(digest.as_bytes()));
        }
        matched
    }

    /// `settings.oauthClient` as the API shows it.
    pub fn settings_json(&self) -> Value {
        serde_json::to_value(&self.client).unwrap_or(Value::Null)
    }
}

fn registered<'a>(uris: &'a [String], uri: &str, loopback_any_port: bool) -> Option<&'a str> {
    if let Some(exact) = uris.iter().find(|u| *u == uri) {
        return Some(exact);
    }
    if !loopback_any_port {
        return None;
    }
    let without_port = |u: &str| -> Option<String> {
        let parsed = url::Url::parse(u).ok()?;
        if parsed.scheme() != "http" || !matches!(parsed.host_str(), Some("127.0.0.1") | Some("[::1]")) {
            return None;
        }
        let mut parsed = parsed;
        parsed.set_port(None).ok()?;
        Some(parsed.to_string())
    };
    let wanted = without_port(uri)?;
    uris.iter().find(|u| without_port(u).as_deref() == Some(wanted.as_str())).map(String::as_str)
}

/// A redirect URI Latchkey will send codes and tokens to: absolute, no fragment (RFC 6749
/// §3.1.2), `https`, or `http` on a loopback host, or (native apps) a private-use scheme with a
/// dot in it (RFC 8252 §7.1).
fn check_redirect_uri(uri: &str, native: bool) -> Result<(), String> {
    if uri.len() > MAX_URI_LEN {
        return Err(format!("URIs are limited to {MAX_URI_LEN} characters"));
    }
    let parsed = url::Url::parse(uri).map_err(|_| format!("{uri:?} is not an absolute URI"))?;
    if parsed.fragment().is_some() {
        return Err(format!("{uri:?} has a fragment"));
    }
    let loopback = matches!(parsed.host_str(), Some("localhost") | Some("127.0.0.1") | Some("[::1]"));
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        scheme if native && scheme.contains('.') => Ok(()),
        _ => Err(format!("{uri:?} must use https (http only on a loopback host)")),
    }
}
