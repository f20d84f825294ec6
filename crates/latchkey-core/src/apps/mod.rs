//! Applications (Okta's Apps API) and their user assignments. An app's sign-on mode ([`SignOn`])
//! carries the protocol's settings: today SAML 2.0 (`signOnMode: "SAML_2_0"`).
//!
//! An app's `settings.signOn` is kept exactly in Okta's JSON field names ([`SamlSignOn`]), so what
//! an admin stored is what the API returns; [`SamlSignOn::validate`] enforces what Latchkey can
//! honour (RSA-SHA256 only, HTTPS-or-loopback ACS URLs, expressions it can evaluate) and refuses the
//! rest with a named field instead of dropping it. Only users assigned to an app ever get an
//! assertion for it.

pub mod oidc;
pub mod query;
pub mod sso;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::clock::Timestamp;
use crate::error::{CoreError, FieldError};
use crate::expr::{Expression, Subject};
use crate::groups::GroupRef;
pub use oidc::{OIDC_APP_NAME, OPENID_CONNECT, OidcSignOn};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppStatus {
    Active,
    Inactive,
}

impl AppStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AppStatus::Active => "ACTIVE",
            AppStatus::Inactive => "INACTIVE",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ACTIVE" => Some(AppStatus::Active),
            "INACTIVE" => Some(AppStatus::Inactive),
            _ => None,
        }
    }
}

/// An app instance (Okta's Application object).
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    /// `0oa…`
    pub id: String,
    /// Okta's generated app name (`{org}_{label}_1`), used in the embed and SSO URLs.
    pub name: String,
    pub label: String,
    pub status: AppStatus,
    /// `exk…`: names the app in its SSO and metadata URLs and its default IdP entity id.
    pub external_key: String,
    /// `aln…`: the embed link's id.
    pub link_id: String,
    /// How the app signs its users on, with that protocol's settings.
    pub sign_on: SignOn,
    /// `visibility` as the admin sent it (`autoSubmitToolbar`, `hide{iOS,web}`).
    pub visibility: Map<String, Value>,
    pub created: Timestamp,
    pub last_updated: Timestamp,
}

/// Okta's `signOnMode` of a SAML 2.0 app.
pub const SAML_2_0: &str = "SAML_2_0";

/// What a participant record names an OpenID Connect subject's format (the `sub` claim, RFC 7519 §4.1.2).
pub const OIDC_SUBJECT_FORMAT: &str = "urn:ietf:params:oauth:jwt-claim:sub";

/// How an app signs its users on: Okta's `signOnMode`, with that mode's `settings.signOn`. Every
/// protocol takes its settings from here; the sign-on decisions (may this user use the app, with
/// which subject and attributes) are the same for all (`crate::signon`).
#[derive(Debug, Clone, PartialEq)]
pub enum SignOn {
    /// `SAML_2_0`
    Saml2(SamlSignOn),
    /// `OPENID_CONNECT`
    Oidc(OidcSignOn),
}

impl SignOn {
    /// Okta's `signOnMode`.
    pub fn mode(&self) -> &'static str {
        match self {
            SignOn::Saml2(_) => SAML_2_0,
            SignOn::Oidc(_) => OPENID_CONNECT,
        }
    }

    /// Parses a SAML app's `settings.signOn` as an admin sent it (an OpenID Connect app's settings
    /// are read by [`OidcSignOn::from_api`]).
    pub fn from_json(mode: &str, settings: &Value) -> Result<Self, CoreError> {
        match mode {
            SAML_2_0 => Ok(SignOn::Saml2(SamlSignOn::from_json(settings)?)),
            _ => Err(CoreError::validation("signOnMode", "must be SAML_2_0 or OPENID_CONNECT")),
        }
    }

    /// Reads settings as stored (`settings` is what [`Self::settings_json`] wrote).
    pub fn from_stored(mode: &str, settings: &str) -> Result<Self, String> {
        match mode {
            SAML_2_0 => serde_json::from_str(settings).map(SignOn::Saml2).map_err(|e| e.to_string()),
            OPENID_CONNECT => serde_json::from_str(settings).map(SignOn::Oidc).map_err(|e| e.to_string()),
            other => Err(format!("unknown sign-on mode {other:?}")),
        }
    }

    /// The settings as stored and as the API shows them (Okta's field names).
    pub fn settings_json(&self) -> Result<String, serde_json::Error> {
        match self {
            SignOn::Saml2(saml) => serde_json::to_string(saml),
            SignOn::Oidc(oidc) => serde_json::to_string(oidc),
        }
    }

    /// The subject a protocol names the user by (a SAML NameID from the app's template; an OpenID
    /// Connect `sub`, the user id, as Okta's), if the user's profile yields one.
    pub fn subject_for(&self, subject: &Subject<'_>) -> Option<String> {
        match self {
            SignOn::Saml2(saml) => saml.name_id_for(subject),
            SignOn::Oidc(_) => Some(subject.user.id.clone()),
        }
    }

    /// Whether telling the app about a user needs the user's groups (a group claim, or an
    /// expression that asks about membership).
    pub fn needs_groups(&self) -> bool {
        match self {
            SignOn::Saml2(saml) => saml.needs_groups(),
            // Claims are made when tokens are issued, from the user as they are then.
            SignOn::Oidc(_) => false,
        }
    }

    /// The subject's format (a SAML NameID format URN).
    pub fn subject_format(&self) -> &str {
        match self {
            SignOn::Saml2(saml) => &saml.subject_name_id_format,
            SignOn::Oidc(_) => OIDC_SUBJECT_FORMAT,
        }
    }

    /// The attributes (claims) the app receives about a user, who belongs to `groups`.
    pub fn attributes_for(&self, subject: &Subject<'_>, groups: &[GroupRef]) -> Vec<EvaluatedAttribute> {
        match self {
            SignOn::Saml2(saml) => saml.attributes_for(subject, groups),
            SignOn::Oidc(_) => Vec::new(),
        }
    }
}

impl App {
    pub fn is_active(&self) -> bool {
        self.status == AppStatus::Active
    }

    /// The app seen through its SAML settings, if it is a SAML app.
    pub fn saml(&self) -> Option<SamlApp<'_>> {
        match &self.sign_on {
            SignOn::Saml2(settings) => Some(SamlApp { app: self, settings }),
            SignOn::Oidc(_) => None,
        }
    }

    /// The app's OpenID Connect settings, if it is an OpenID Connect app.
    pub fn oidc(&self) -> Option<&OidcSignOn> {
        match &self.sign_on {
            SignOn::Oidc(settings) => Some(settings),
            SignOn::Saml2(_) => None,
        }
    }

    /// Okta's `name`: generated per SAML app, `oidc_client` for every OpenID Connect app. (The
    /// store keeps `name` unique, so an OpenID Connect app's stored name is `oidc_client_{id}`.)
    pub fn okta_name(&self) -> &str {
        match &self.sign_on {
            SignOn::Saml2(_) => &self.name,
            SignOn::Oidc(_) => OIDC_APP_NAME,
        }
    }

    /// The embed link's path (Okta: `/home/{appName}/{appId}/{linkId}`), which starts a sign-on.
    pub fn embed_path(&self) -> String {
        format!("/home/{}/{}/{}", self.okta_name(), self.id, self.link_id)
    }
}

/// A SAML app with its SAML settings at hand (what the SAML endpoints work with). Derefs to the
/// app for its id, name and label.
#[derive(Debug, Clone, Copy)]
pub struct SamlApp<'a> {
    pub app: &'a App,
    pub settings: &'a SamlSignOn,
}

impl std::ops::Deref for SamlApp<'_> {
    type Target = App;

    fn deref(&self) -> &App {
        self.app
    }
}

impl SamlApp<'_> {
    /// The IdP entity id (Issuer) for this app: `idpIssuer` with `${org.externalKey}` filled in.
    pub fn idp_issuer(&self) -> String {
        self.settings.idp_issuer.replace("${org.externalKey}", &self.app.external_key)
    }

    /// `/app/{appName}/{externalKey}/sso/saml`
    pub fn sso_path(&self) -> String {
        format!("/app/{}/{}/sso/saml", self.app.name, self.app.external_key)
    }

    /// `/app/{appName}/{externalKey}/slo/saml`
    pub fn slo_path(&self) -> String {
        format!("/app/{}/{}/slo/saml", self.app.name, self.app.external_key)
    }

    /// Whether the app's metadata lists our SingleLogoutService: only where its SP has a use for it.
    /// An app with SLO enabled sends its LogoutRequests there; an app that only takes part in SLO
    /// (`participateSlo`) answers our LogoutRequests there, and SPs take that address from the
    /// metadata. Any other app would find a LogoutRequest refused.
    pub fn offers_single_logout(&self) -> bool {
        self.settings.slo.as_ref().is_some_and(|slo| slo.enabled) || self.settings.participates_in_slo()
    }
}

impl SamlSignOn {
    /// Is `issuer` the SP of this app (its audience, or the SP issuer named for SLO)?
    pub fn is_sp(&self, issuer: &str) -> bool {
        issuer == self.audience
            || self.sp_issuer.as_deref() == Some(issuer)
            || self.slo.as_ref().and_then(|s| s.issuer.as_deref()) == Some(issuer)
    }

    /// The registered ACS URL equal to `url`, if any (exact match only: saml-profiles §4.1.4.1).
    pub fn acs_by_url(&self, url: &str) -> Option<&str> {
        if self.sso_acs_url == url {
            return Some(&self.sso_acs_url);
        }
        if self.allow_multiple_acs_endpoints {
            return self.acs_endpoints.iter().find(|e| e.url == url).map(|e| e.url.as_str());
        }
        None
    }

    pub fn acs_by_index(&self, index: u16) -> Option<&str> {
        if !self.allow_multiple_acs_endpoints {
            return None;
        }
        self.acs_endpoints.iter().find(|e| e.index == u32::from(index)).map(|e| e.url.as_str())
    }

    /// The NameID for the user, from `subjectNameIdTemplate`.
    pub fn name_id_for(&self, subject: &Subject<'_>) -> Option<String> {
        Expression::parse_template(&self.subject_name_id_template)
            .ok()?
            .evaluate(subject)
            .filter(|v| !v.is_empty())
    }

    /// Whether the user's groups are needed: a GROUP statement, or an expression about membership.
    pub fn needs_groups(&self) -> bool {
        let uses_groups = |text: &str| Expression::parse(text).is_ok_and(|e| e.uses_groups());
        Expression::parse_template(&self.subject_name_id_template).is_ok_and(|e| e.uses_groups())
            || self.attribute_statements.iter().any(|statement| match statement.group_filter() {
                Some(_) => true,
                None => statement.values.iter().any(|v| uses_groups(v)),
            })
    }

    /// The attribute statements evaluated for a user who belongs to `groups`; attributes whose
    /// values are all absent are omitted (Okta leaves out null attributes), and so is a group
    /// claim when none of the user's groups passes its filter.
    pub fn attributes_for(&self, subject: &Subject<'_>, groups: &[GroupRef]) -> Vec<EvaluatedAttribute> {
        self.attribute_statements
            .iter()
            .filter_map(|statement| {
                let values: Vec<String> = match statement.group_filter() {
                    Some(filter) => {
                        groups.iter().filter(|g| filter.matches(&g.name)).map(|g| g.name.clone()).collect()
                    }
                    None => statement
                        .values
                        .iter()
                        .filter_map(|v| Expression::parse(v).ok()?.evaluate(subject))
                        .collect(),
                };
                (!values.is_empty()).then(|| EvaluatedAttribute {
                    name: statement.name.clone(),
                    name_format: statement.namespace.clone(),
                    values,
                })
            })
            .collect()
    }

    /// Does this app take part in Single Logout initiated elsewhere?
    pub fn participates_in_slo(&self) -> bool {
        self.participate_slo.as_ref().is_some_and(|p| p.enabled && p.logout_request_url.is_some())
    }

    /// The SP's certificates (DER), for request signatures.
    pub fn sp_certificates(&self) -> Vec<Vec<u8>> {
        use base64::Engine;
        let Some(cert) = &self.sp_certificate else { return Vec::new() };
        cert.x5c
            .iter()
            .filter_map(|b64| {
                let compact: String = b64.chars().filter(|c| !c.is_whitespace()).collect();
                base64::engine::general_purpose::STANDARD.decode(compact).ok()
            })
            .collect()
    }

    /// `settings.signOn` as Okta renders it: `spIssuer` echoes the SLO issuer when only that is set.
    pub fn to_api_json(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        if let (Some(object), None) = (value.as_object_mut(), &self.sp_issuer)
            && let Some(issuer) = self.slo.as_ref().and_then(|s| s.issuer.clone())
        {
            object.insert("spIssuer".into(), Value::String(issuer));
        }
        value
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvaluatedAttribute {
    pub name: String,
    pub name_format: String,
    pub values: Vec<String>,
}

pub const NAME_ID_UNSPECIFIED: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified";
pub const NAME_ID_EMAIL: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";
pub const NAME_ID_X509: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:x509SubjectName";
pub const NAME_ID_PERSISTENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent";
pub const NAME_ID_TRANSIENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient";
const NAME_ID_FORMATS: [&str; 5] =
    [NAME_ID_UNSPECIFIED, NAME_ID_EMAIL, NAME_ID_X509, NAME_ID_PERSISTENT, NAME_ID_TRANSIENT];

const ATTRIBUTE_NAME_FORMATS: [&str; 3] = [
    "urn:oasis:names:tc:SAML:2.0:attrname-format:basic",
    "urn:oasis:names:tc:SAML:2.0:attrname-format:uri",
    "urn:oasis:names:tc:SAML:2.0:attrname-format:unspecified",
];

pub const DEFAULT_IDP_ISSUER: &str = "http://www.okta.com/${org.externalKey}";
pub const DEFAULT_AUTHN_CONTEXT: &str = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport";
/// Okta's default assertion lifetime.
pub const DEFAULT_ASSERTION_LIFETIME_SECONDS: u32 = 300;

/// `settings.signOn` of a SAML app, in Okta's field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SamlSignOn {
    #[serde(default)]
    pub default_relay_state: Option<String>,
    pub sso_acs_url: String,
    #[serde(default)]
    pub recipient: String,
    #[serde(default)]
    pub destination: String,
    pub audience: String,
    #[serde(default = "default_idp_issuer")]
    pub idp_issuer: String,
    #[serde(default = "default_name_id_template")]
    pub subject_name_id_template: String,
    #[serde(default = "default_name_id_format")]
    pub subject_name_id_format: String,
    #[serde(default = "yes")]
    pub response_signed: bool,
    #[serde(default = "yes")]
    pub assertion_signed: bool,
    #[serde(default = "default_signature_algorithm")]
    pub signature_algorithm: String,
    #[serde(default = "default_digest_algorithm")]
    pub digest_algorithm: String,
    #[serde(default = "yes")]
    pub honor_force_authn: bool,
    #[serde(default = "default_authn_context")]
    pub authn_context_class_ref: String,
    #[serde(default)]
    pub request_compressed: bool,
    #[serde(default)]
    pub allow_multiple_acs_endpoints: bool,
    #[serde(default)]
    pub acs_endpoints: Vec<AcsEndpoint>,
    #[serde(default)]
    pub attribute_statements: Vec<AttributeStatement>,
    #[serde(default)]
    pub saml_assertion_lifetime_seconds: Option<u32>,
    #[serde(default)]
    pub slo: Option<Slo>,
    #[serde(default)]
    pub participate_slo: Option<ParticipateSlo>,
    #[serde(default)]
    pub sp_certificate: Option<SpCertificate>,
    #[serde(default)]
    pub sp_issuer: Option<String>,
    /// Okta's "Signed Requests": AuthnRequests must carry a valid signature by `spCertificate`.
    #[serde(default)]
    pub saml_signed_request_enabled: bool,
}

fn yes() -> bool {
    true
}
fn default_idp_issuer() -> String {
    DEFAULT_IDP_ISSUER.to_owned()
}
fn default_name_id_template() -> String {
    "${user.userName}".to_owned()
}
fn default_name_id_format() -> String {
    NAME_ID_UNSPECIFIED.to_owned()
}
fn default_signature_algorithm() -> String {
    "RSA_SHA256".to_owned()
}
fn default_digest_algorithm() -> String {
    "SHA256".to_owned()
}
fn default_authn_context() -> String {
    DEFAULT_AUTHN_CONTEXT.to_owned()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AcsEndpoint {
    pub url: String,
    pub index: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AttributeStatement {
    #[serde(rename = "type", default = "expression_type")]
    pub kind: String,
    pub name: String,
    #[serde(default = "default_attribute_namespace")]
    pub namespace: String,
    #[serde(default)]
    pub values: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_value: Option<String>,
}

impl AttributeStatement {
    /// The filter of a GROUP statement (`None` for an EXPRESSION statement, or one that does not
    /// parse: validation refuses those when the app is saved).
    pub fn group_filter(&self) -> Option<GroupFilter> {
        if self.kind != "GROUP" {
            return None;
        }
        GroupFilter::new(self.filter_type.as_deref()?, self.filter_value.as_deref()?).ok()
    }
}

/// Which of a user's groups a GROUP statement names (Okta's `filterType` and `filterValue`).
#[derive(Debug, Clone)]
pub enum GroupFilter {
    StartsWith(String),
    Equals(String),
    Contains(String),
    /// Matches the whole group name.
    Regex(regex::Regex),
}

/// The longest `filterValue` accepted.
const MAX_FILTER_VALUE: usize = 1024;

impl GroupFilter {
    /// Parses a filter; a REGEX is compiled here, so a pattern that does not compile is refused
    /// when the app is saved. Compiled patterns are kept (the same few recur on every sign-on).
    pub fn new(filter_type: &str, value: &str) -> Result<Self, String> {
        if value.chars().count() > MAX_FILTER_VALUE {
            return Err(format!("filterValue is limited to {MAX_FILTER_VALUE} characters"));
        }
        Ok(match filter_type {
            "STARTS_WITH" => GroupFilter::StartsWith(value.to_lowercase()),
            "EQUALS" => GroupFilter::Equals(value.to_lowercase()),
            "CONTAINS" => GroupFilter::Contains(value.to_lowercase()),
            "REGEX" => GroupFilter::Regex(compiled_regex(value)?),
            other => {
                return Err(format!("filterType {other:?} is not STARTS_WITH, EQUALS, CONTAINS or REGEX"));
            }
        })
    }

    /// Whether the group named `name` passes. STARTS_WITH, EQUALS and CONTAINS ignore case, as Okta's
    /// do; REGEX must match the whole name. Linear in the name's length whatever the pattern (the
    /// engine has no backtracking).
    pub fn matches(&self, name: &str) -> bool {
        match self {
            GroupFilter::StartsWith(prefix) => name.to_lowercase().starts_with(prefix.as_str()),
            GroupFilter::Equals(value) => name.to_lowercase() == *value,
            GroupFilter::Contains(part) => name.to_lowercase().contains(part.as_str()),
            GroupFilter::Regex(regex) => regex.is_match(name),
        }
    }
}

/// `pattern` compiled to match whole names, from a small process-wide cache.
fn compiled_regex(pattern: &str) -> Result<regex::Regex, String> {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex};
    static CACHE: LazyLock<Mutex<HashMap<String, regex::Regex>>> = LazyLock::new(Mutex::default);
    const MAX_CACHED: usize = 1024;
    if let Ok(cache) = CACHE.lock()
        && let Some(regex) = cache.get(pattern)
    {
        return Ok(regex.clone());
    }
    let build = |text: &str| regex::RegexBuilder::new(text).size_limit(1 << 20).nest_limit(64).build();
    // The pattern must stand on its own before it is anchored: `a)|(?:b` compiles only inside
    // the wrapper, where it would match prefixes and suffixes (Okta's whole-name match refuses it).
    build(pattern).map_err(|e| format!("filterValue is not a regular expression Latchkey can use: {e}"))?;
    let regex = build(&format!("^(?:{pattern})$"))
        .map_err(|e| format!("filterValue is not a regular expression Latchkey can use: {e}"))?;
    if let Ok(mut cache) = CACHE.lock() {
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(pattern.to_owned(), regex.clone());
    }
    Ok(regex)
}

fn expression_type() -> String {
    "EXPRESSION".to_owned()
}
fn default_attribute_namespace() -> String {
    "urn:oasis:names:tc:SAML:2.0:attrname-format:unspecified".to_owned()
}

/// The SP's own Single Logout endpoint (where our LogoutResponse to its LogoutRequest goes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Slo {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default, alias = "spIssuer")]
    pub issuer: Option<String>,
    #[serde(default)]
    pub logout_url: Option<String>,
}

/// Whether the SP is told when a session it took part in ends elsewhere (front-channel).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ParticipateSlo {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub logout_request_url: Option<String>,
    #[serde(default)]
    pub session_index_required: bool,
    #[serde(default = "redirect_binding")]
    pub binding_type: String,
}

fn redirect_binding() -> String {
    "REDIRECT".to_owned()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SpCertificate {
    #[serde(default)]
    pub x5c: Vec<String>,
}

/// Okta fields Latchkey accepts only in their "off" form (null, false, empty); anything else is
/// refused rather than silently ignored.
const OFF_ONLY_FIELDS: [&str; 8] = [
    "assertionEncryption",
    "inlineHooks",
    "configuredAttributeStatements",
    "ssoAcsUrlOverride",
    "recipientOverride",
    "destinationOverride",
    "audienceOverride",
    "honorForceAuthnOverride",
];

fn is_off(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => true,
        Value::String(s) => s.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.values().all(is_off),
        Value::Number(_) | Value::Bool(true) => false,
    }
}

impl SamlSignOn {
    /// Parses `settings.signOn` as an admin sent it: null fields take their defaults, fields
    /// Latchkey cannot honour are refused by name.
    pub fn from_json(value: &Value) -> Result<Self, CoreError> {
        let Value::Object(map) = value else {
            return Err(CoreError::validation("settings.signOn", "must be an object"));
        };
        let mut causes = Vec::new();
        let mut kept = Map::new();
        for (name, field) in map {
            if OFF_ONLY_FIELDS.contains(&name.as_str()) {
                if !is_off(field) {
                    causes.push(FieldError::new(
                        format!("settings.signOn.{name}"),
                        "is not supported by Latchkey (only an empty or disabled value is accepted)",
                    ));
                }
            } else if !field.is_null() {
                kept.insert(name.clone(), field.clone());
            }
        }
        CoreError::from_causes(causes)?;
        let parsed: SamlSignOn = serde_json::from_value(Value::Object(kept))
            .map_err(|e| CoreError::validation("settings.signOn", e.to_string()))?;
        parsed.validate()?;
        Ok(parsed.with_defaults())
    }

    /// Okta fills `recipient` and `destination` from the ACS URL when left empty.
    fn with_defaults(mut self) -> Self {
        if self.recipient.is_empty() {
            self.recipient = self.sso_acs_url.clone();
        }
        if self.destination.is_empty() {
            self.destination = self.sso_acs_url.clone();
        }
        self
    }

    /// Every rule Latchkey enforces, all causes at once.
    pub fn validate(&self) -> Result<(), CoreError> {
        let mut causes = Vec::new();
        let mut check = |ok: bool, field: &str, message: &str| {
            if !ok {
                causes.push(FieldError::new(format!("settings.signOn.{field}"), message));
            }
        };
        check(
            is_endpoint_url(&self.sso_acs_url),
            "ssoAcsUrl",
            "must be an absolute https URL (http only on loopback)",
        );
        for (field, value) in [("recipient", &self.recipient), ("destination", &self.destination)] {
            check(
                value.is_empty() || is_endpoint_url(value),
                field,
                "must be an absolute https URL (http only on loopback)",
            );
        }
        check(
            !self.audience.trim().is_empty() && self.audience.len() <= 1024,
            "audience",
            "is required (the SP entity id)",
        );
        check(
            !self.idp_issuer.trim().is_empty() && self.idp_issuer.len() <= 1024,
            "idpIssuer",
            "is required",
        );
        if let Err(e) = Expression::parse_template(&self.subject_name_id_template) {
            check(
                false,
                "subjectNameIdTemplate",
                &format!("must be ${{expression}}, such as ${{user.email}}: {e}"),
            );
        }
        check(
            NAME_ID_FORMATS.contains(&self.subject_name_id_format.as_str()),
            "subjectNameIdFormat",
            "is not a SAML NameID format",
        );
        check(
            self.assertion_signed,
            "assertionSigned",
            "must be true: Latchkey always signs the assertion (SPs that want signed assertions refuse \
             a signature on the Response alone); responseSigned adds a signature on the Response",
        );
        check(
            self.signature_algorithm == "RSA_SHA256",
            "signatureAlgorithm",
            "only RSA_SHA256 is supported (SHA-1 is refused)",
        );
        check(
            self.digest_algorithm == "SHA256",
            "digestAlgorithm",
            "only SHA256 is supported (SHA-1 is refused)",
        );
        check(
            self.authn_context_class_ref.starts_with("urn:") && self.authn_context_class_ref.len() <= 256,
            "authnContextClassRef",
            "must be a URN",
        );
        check(self.acs_endpoints.len() <= 100, "acsEndpoints", "at most 100 endpoints");
        let mut indexes = std::collections::HashSet::new();
        for endpoint in &self.acs_endpoints {
            check(
                is_endpoint_url(&endpoint.url),
                "acsEndpoints",
                "every url must be an absolute https URL (http only on loopback)",
            );
            check(endpoint.index <= u32::from(u16::MAX), "acsEndpoints", "index must be at most 65535");
            check(indexes.insert(endpoint.index), "acsEndpoints", "indexes must be unique");
        }
        check(
            self.allow_multiple_acs_endpoints || self.acs_endpoints.is_empty(),
            "acsEndpoints",
            "are used only with allowMultipleAcsEndpoints",
        );
        check(self.attribute_statements.len() <= 100, "attributeStatements", "at most 100 statements");
        for (i, statement) in self.attribute_statements.iter().enumerate() {
            let field = format!("attributeStatements[{i}]");
            check(
                !statement.name.is_empty() && statement.name.len() <= 512,
                &field,
                "every statement needs a name",
            );
            check(
                ATTRIBUTE_NAME_FORMATS.contains(&statement.namespace.as_str()),
                &field,
                "namespace must be an attrname-format URN",
            );
            match statement.kind.as_str() {
                "EXPRESSION" => {
                    for (j, value) in statement.values.iter().enumerate() {
                        if let Err(e) = Expression::parse(value) {
                            check(false, &format!("{field}.values[{j}]"), &e.to_string());
                        }
                    }
                    check(
                        statement.filter_type.is_none() && statement.filter_value.is_none(),
                        &field,
                        "filterType and filterValue belong to GROUP statements",
                    );
                }
                "GROUP" => {
                    check(statement.values.is_empty(), &field, "a GROUP statement takes no values");
                    match (statement.filter_type.as_deref(), statement.filter_value.as_deref()) {
                        (Some(filter_type), Some(value)) => {
                            if let Err(e) = GroupFilter::new(filter_type, value) {
                                check(false, &field, &e);
                            }
                        }
                        _ => check(false, &field, "a GROUP statement needs filterType and filterValue"),
                    }
                }
                _ => check(false, &field, "type must be EXPRESSION or GROUP"),
            }
        }
        if let Some(seconds) = self.saml_assertion_lifetime_seconds {
            check(
                (60..=86_400).contains(&seconds),
                "samlAssertionLifetimeSeconds",
                "must be between 60 and 86400",
            );
        }
        if let Some(relay) = &self.default_relay_state {
            check(relay.len() <= 80, "defaultRelayState", "at most 80 bytes (SAML bindings §3.4.3)");
        }
        let slo_enabled = self.slo.as_ref().is_some_and(|s| s.enabled);
        if let Some(slo) = self.slo.as_ref().filter(|s| s.enabled) {
            check(
                slo.logout_url.as_deref().is_some_and(is_endpoint_url),
                "slo.logoutUrl",
                "an absolute https URL is required when SLO is enabled",
            );
            check(
                slo.issuer.as_deref().is_some_and(|i| !i.is_empty()),
                "slo.issuer",
                "the SP issuer is required when SLO is enabled",
            );
        }
        if let Some(participate) = self.participate_slo.as_ref().filter(|p| p.enabled) {
            check(
                participate.logout_request_url.as_deref().is_some_and(is_endpoint_url),
                "participateSlo.logoutRequestUrl",
                "an absolute https URL is required when participateSlo is enabled",
            );
            check(
                participate.binding_type == "REDIRECT",
                "participateSlo.bindingType",
                "only REDIRECT is supported",
            );
        }
        let participates = self.participate_slo.as_ref().is_some_and(|p| p.enabled);
        let needs_cert = slo_enabled || participates || self.saml_signed_request_enabled;
        let certs = self.sp_certificate.as_ref().map_or(0, |c| c.x5c.len());
        check(
            !needs_cert || certs > 0,
            "spCertificate",
            "is required with slo, participateSlo or samlSignedRequestEnabled (SP messages must be verified)",
        );
        check(certs <= 4, "spCertificate", "at most 4 certificates");
        if let Some(cert) = &self.sp_certificate {
            use base64::Engine;
            for b64 in &cert.x5c {
                let compact: String = b64.chars().filter(|c| !c.is_whitespace()).collect();
                let decoded = base64::engine::general_purpose::STANDARD.decode(compact);
                check(
                    decoded.is_ok_and(|der| der.len() > 64 && der.len() < 16_384),
                    "spCertificate.x5c",
                    "must be base64 DER certificates",
                );
            }
        }
        CoreError::from_causes(causes)
    }
}

/// An absolute URL an assertion or logout message may be sent to: https, or http on loopback
/// (development and tests), no credentials, no fragment.
pub fn is_endpoint_url(text: &str) -> bool {
    if text.len() > 2048 || text.chars().any(|c| c.is_control() || c.is_whitespace() || c == '\\') {
        return false;
    }
    let Some((scheme, rest)) = text.split_once("://") else { return false };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') || text.contains('#') {
        return false;
    }
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    match scheme {
        "https" => true,
        "http" => matches!(host, "localhost" | "127.0.0.1" | "[::1]") || host.ends_with(".localhost"),
        _ => false,
    }
}

/// A user's assignment to an app (`/api/v1/apps/{id}/users`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppUser {
    pub app_id: String,
    pub user_id: String,
    pub scope: String,
    /// The app-specific username (`credentials.userName`); defaults to the user's login.
    pub user_name: Option<String>,
    pub created: Timestamp,
    pub last_updated: Timestamp,
}

/// The generated app name Okta derives from the label (`{org}_{label}_{n}`).
pub fn app_name_for(label: &str, n: u32) -> String {
    let mut slug: String =
        label.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    slug.truncate(40);
    let slug = slug.trim_matches('_');
    let slug = if slug.is_empty() { "app" } else { slug };
    format!("latchkey_{slug}_{n}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn minimal() -> Value {
        json!({"ssoAcsUrl": "https://sp.example.com/acs", "audience": "https://sp.example.com"})
    }

    #[test]
    fn minimal_sign_on_takes_okta_defaults() {
        let s = SamlSignOn::from_json(&minimal()).unwrap();
        assert_eq!(s.recipient, "https://sp.example.com/acs");
        assert_eq!(s.destination, "https://sp.example.com/acs");
        assert!(s.assertion_signed && s.response_signed);
        assert_eq!(s.idp_issuer, DEFAULT_IDP_ISSUER);
    }

    #[test]
    fn refuses_sha1_and_unsupported_fields_by_name() {
        let mut v = minimal();
        v["signatureAlgorithm"] = json!("RSA_SHA1");
        v["assertionEncryption"] = json!({"enabled": true});
        let err = SamlSignOn::from_json(&v).unwrap_err();
        assert!(
            matches!(err, CoreError::Validation { ref field, .. } if field == "settings.signOn.assertionEncryption")
        );
        let mut v = minimal();
        v["signatureAlgorithm"] = json!("RSA_SHA1");
        let CoreError::Validation { causes, .. } = SamlSignOn::from_json(&v).unwrap_err() else { panic!() };
        assert_eq!(causes[0].field, "settings.signOn.signatureAlgorithm");
        let mut v = minimal();
        v["surprise"] = json!(1);
        assert!(SamlSignOn::from_json(&v).is_err());
    }

    #[test]
    fn endpoint_urls_are_https_or_loopback() {
        assert!(is_endpoint_url("https://sp.example.com/acs?x=1"));
        assert!(is_endpoint_url("http://127.0.0.1:8080/acs"));
        assert!(!is_endpoint_url("http://sp.example.com/acs"));
        assert!(!is_endpoint_url("https://user@sp.example.com/acs"));
        assert!(!is_endpoint_url("javascript:alert(1)"));
        assert!(!is_endpoint_url("https://sp.example.com/a#frag"));
    }

    #[test]
    fn a_regex_group_filter_matches_whole_names_and_cannot_break_out_of_its_anchors() {
        let filter = GroupFilter::new("REGEX", "Eng.*").unwrap();
        assert!(filter.matches("Engineering") && !filter.matches("Staff Engineering"));
        for escape in ["Eng)|(?:zzz", "zzz)|(?:.*team", ".*)|(?:zzz"] {
            let refused = GroupFilter::new("REGEX", escape).unwrap_err();
            assert!(!refused.contains("^(?:"), "the message shows the admin's pattern: {refused}");
        }
    }

    #[test]
    fn acs_lookup_is_exact() {
        let mut v = minimal();
        v["allowMultipleAcsEndpoints"] = json!(true);
        v["acsEndpoints"] = json!([{"url": "https://sp.example.com/acs2", "index": 2}]);
        let app = App {
            id: "0oa1".into(),
            name: "n".into(),
            label: "l".into(),
            status: AppStatus::Active,
            external_key: "exk1".into(),
            link_id: "aln1".into(),
            sign_on: SignOn::Saml2(SamlSignOn::from_json(&v).unwrap()),
            visibility: Map::new(),
            created: Timestamp(0),
            last_updated: Timestamp(0),
        };
        let saml = app.saml().unwrap();
        assert_eq!(
            saml.settings.acs_by_url("https://sp.example.com/acs2"),
            Some("https://sp.example.com/acs2")
        );
        assert_eq!(saml.settings.acs_by_url("https://sp.example.com/acs2/"), None);
        assert_eq!(saml.settings.acs_by_index(2), Some("https://sp.example.com/acs2"));
        assert_eq!(saml.idp_issuer(), "http://www.okta.com/exk1");
    }
}
