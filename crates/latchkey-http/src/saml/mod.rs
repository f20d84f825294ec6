//! The SAML 2.0 IdP over HTTP: signing keys, metadata, single sign-on ([`sso`]) and Single Logout
//! ([`slo`]).
//!
//! Signing keys are organisation-wide and live in the database (sealed under the master key), so
//! every node signs with the same key and a rollover is seen by every node on its next response;
//! opened keys are cached per kid (a kid's material never changes). Inbound messages are decoded
//! by the core's hardened decoder; this layer applies the app's policy (known SP, registered ACS,
//! signatures, replay) and never posts anything to an SP it could not identify.

mod slo;
mod sso;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use latchkey_core::apps::{self, App, KeyStatus, StoredSigningKey};
use latchkey_core::saml::SigningKey;
use latchkey_core::saml::metadata::{BindingUrls, IdpMetadata, idp_metadata};
use latchkey_core::store::{AppStore, SamlStore};
use latchkey_core::{CoreError, StoreError};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Admin, PathParams, QueryParams};
use crate::pages::BrowserError;

pub(crate) use slo::start_signout_walk;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/app/{external_key}/sso/saml/metadata", get(public_metadata))
        .route("/api/v1/apps/{id}/sso/saml/metadata", get(admin_metadata))
        .route("/api/v1/apps/{id}/credentials/keys", get(list_keys))
        .merge(sso::routes())
        .merge(slo::routes())
}

/// Opened signing keys by kid, and the current pair for a few seconds.
#[derive(Default)]
pub struct KeyCache(
    RwLock<HashMap<String, Arc<SigningKey>>>,
    RwLock<Option<(std::time::Instant, SigningKeys)>>,
);

/// How long a node keeps using the key pair it read. A rollover's switch reaches every node within
/// this time; SPs hold both certificates from the metadata by then (announce first, switch later),
/// so a response signed by the previous key in that window is still accepted.
const KEYS_FRESH_FOR: std::time::Duration = std::time::Duration::from_secs(5);

/// The key that signs now, the one announced next, and the one the last rollover replaced.
#[derive(Clone)]
pub(crate) struct SigningKeys {
    pub active: Arc<SigningKey>,
    pub next: Option<Arc<SigningKey>>,
    pub previous: Option<Arc<SigningKey>>,
}

impl SigningKeys {
    /// Certificates for metadata: the next key first, then the active one, then the previous one.
    pub(crate) fn published_certs(&self) -> Vec<Vec<u8>> {
        let mut certs = Vec::with_capacity(3);
        if let Some(next) = &self.next {
            certs.push(next.cert_der().to_vec());
        }
        certs.push(self.active.cert_der().to_vec());
        if let Some(previous) = &self.previous {
            certs.push(previous.cert_der().to_vec());
        }
        certs
    }

    /// The certificate of the published key (next, active or previous) named `kid`.
    pub(crate) fn published_cert(&self, kid: &str) -> Option<Vec<u8>> {
        [self.next.as_ref(), Some(&self.active), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|key| key.kid() == kid)
            .map(|key| key.cert_der().to_vec())
    }
}

fn open_cached(state: &AppState, stored: &StoredSigningKey) -> Result<Arc<SigningKey>, ApiError> {
    if let Ok(cache) = state.signing_key_cache.0.read()
        && let Some(key) = cache.get(&stored.kid)
    {
        return Ok(key.clone());
    }
    let key = Arc::new(apps::keys::open(&state.master_key, stored)?);
    if let Ok(mut cache) = state.signing_key_cache.0.write() {
        cache.insert(stored.kid.clone(), key.clone());
    }
    Ok(key)
}

/// The current signing keys, generating the first one if the organisation has none yet (two
/// nodes racing: one insert wins, the other reads the winner's key).
pub(crate) async fn signing_keys(state: &AppState) -> Result<SigningKeys, ApiError> {
    if let Ok(current) = state.signing_key_cache.1.read()
        && let Some((read_at, keys)) = current.as_ref()
        && read_at.elapsed() < KEYS_FRESH_FOR
    {
        return Ok(keys.clone());
    }
    let keys = read_signing_keys(state).await?;
    if let Ok(mut current) = state.signing_key_cache.1.write() {
        // Each node switches on its own, within KEYS_FRESH_FOR of `signing-key activate`: say so,
        // so that an operator can see every node has.
        if let Some((_, before)) = current.as_ref()
            && before.active.kid() != keys.active.kid()
        {
            tracing::info!(
                kid = keys.active.kid(),
                previous = before.active.kid(),
                "SAML signing key switched"
            );
        }
        *current = Some((std::time::Instant::now(), keys.clone()));
    }
    Ok(keys)
}

async fn read_signing_keys(state: &AppState) -> Result<SigningKeys, ApiError> {
    for _ in 0..2 {
        let stored = state.store.list_signing_keys().await?;
        let active = stored.iter().find(|k| k.status == KeyStatus::Active);
        let next = stored.iter().find(|k| k.status == KeyStatus::Next);
        let previous = stored.iter().find(|k| k.status == KeyStatus::Previous);
        if let Some(active) = active {
            let next = next.map(|k| open_cached(state, k)).transpose()?;
            let previous = previous.map(|k| open_cached(state, k)).transpose()?;
            return Ok(SigningKeys { active: open_cached(state, active)?, next, previous });
        }
        generate_key(state, KeyStatus::Active).await?;
    }
    Err(CoreError::Crypto("no active signing key after generating one".to_owned()).into())
}

/// Makes sure the organisation has an active signing key (generating it on the first start) and
/// returns its kid.
pub async fn ensure_signing_key(state: &AppState) -> Result<String, String> {
    match signing_keys(state).await {
        Ok(keys) => Ok(keys.active.kid().to_owned()),
        Err(e) => Err(format!("cannot prepare the SAML signing key: {e:?}")),
    }
}

/// Generates and stores a key with `status`; a conflict (another node was first) is not an error.
async fn generate_key(state: &AppState, status: KeyStatus) -> Result<Option<String>, ApiError> {
    let master_key = state.master_key.clone();
    let now = state.clock.now();
    let generated = tokio::task::spawn_blocking(move || {
        apps::keys::generate(&master_key, status, now, "Latchkey SAML signing")
    })
    .await
    .map_err(|e| CoreError::Crypto(format!("key generation task: {e}")))??;
    let (stored, key) = generated;
    match state.store.insert_signing_key(&stored).await {
        Ok(()) => {
            if let Ok(mut cache) = state.signing_key_cache.0.write() {
                cache.insert(stored.kid.clone(), Arc::new(key));
            }
            tracing::info!(kid = %stored.kid, status = status.as_str(), "generated a SAML signing key");
            Ok(Some(stored.kid))
        }
        Err(StoreError::Conflict(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The kid of the key that signs now (`None` before the first key exists).
pub(crate) async fn active_kid(state: &AppState) -> Result<Option<String>, ApiError> {
    let keys = state.store.list_signing_keys().await?;
    Ok(keys.into_iter().find(|k| k.status == KeyStatus::Active).map(|k| k.kid))
}

/// `/app/{appName}/{externalKey}/sso/saml` on the base the browser used.
pub(crate) fn sso_url(state: &AppState, app: &App) -> String {
    state.link(&format!("/app/{}/{}/sso/saml", app.name, app.external_key))
}

pub(crate) fn slo_url(state: &AppState, app: &App) -> String {
    state.link(&format!("/app/{}/{}/slo/saml", app.name, app.external_key))
}

/// Whether the app's metadata lists our SingleLogoutService: only where its SP has a use for it.
/// An app with SLO enabled sends its LogoutRequests there; an app that only takes part in SLO
/// (`participateSlo`) answers our LogoutRequests there, and SPs take that address from the
/// metadata. Any other app would find a LogoutRequest refused (`slo::logout_request`).
fn offers_single_logout(app: &App) -> bool {
    app.sign_on.slo.as_ref().is_some_and(|slo| slo.enabled) || app.participates_in_slo()
}

/// The app's metadata with every published signing certificate, or with only the one named `kid`
/// (Okta's admin preview `?kid=`); a kid that names no published key is not found.
async fn metadata_response(state: &AppState, app: &App, kid: Option<&str>) -> Result<Response, ApiError> {
    // Read afresh (not the signing path's short cache): a staged key is published at once.
    let keys = read_signing_keys(state).await?;
    let signing_certs = match kid {
        None => keys.published_certs(),
        Some(kid) => match keys.published_cert(kid) {
            Some(cert) => vec![cert],
            None => {
                // The kid comes from the query and is echoed back: bounded.
                let kid: String = kid.chars().take(64).collect();
                return Err(CoreError::NotFound(format!("{kid} (Key)")).into());
            }
        },
    };
    let sso = sso_url(state, app);
    let slo = slo_url(state, app);
    let document = idp_metadata(&IdpMetadata {
        entity_id: app.idp_issuer(),
        sso: BindingUrls { redirect: sso.clone(), post: sso },
        slo: offers_single_logout(app).then(|| BindingUrls { redirect: slo.clone(), post: slo }),
        signing_certs,
        name_id_formats: vec![app.sign_on.subject_name_id_format.clone()],
        want_authn_requests_signed: app.sign_on.saml_signed_request_enabled,
    })
    .map_err(|e| CoreError::validation("settings.signOn", e.to_string()))?;
    let mut response = document.into_response();
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/xml; charset=utf-8"));
    Ok(response)
}

async fn public_metadata(
    State(state): State<AppState>,
    PathParams(external_key): PathParams<String>,
) -> Result<Response, ApiError> {
    match state.store.find_app(&external_key).await? {
        Some(app) if app.external_key == external_key => metadata_response(&state, &app, None).await,
        _ => Err(CoreError::NotFound(format!("{external_key} (App)")).into()),
    }
}

async fn admin_metadata(
    _admin: Admin,
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
    query: QueryParams,
) -> Result<Response, ApiError> {
    let app = crate::apps::find_app(&state, &id).await?;
    metadata_response(&state, &app, query.get("kid")).await
}

/// `GET /api/v1/apps/{id}/credentials/keys`: the published signing certificates, as Okta lists
/// app keys (JWK-like objects with `x5c`).
async fn list_keys(
    _admin: Admin,
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    use base64::Engine;
    // The keys are the organisation's, the same for every app; the app only has to exist.
    crate::apps::find_app(&state, &id).await?;
    signing_keys(&state).await?;
    let keys = state.store.list_signing_keys().await?;
    let listed: Vec<serde_json::Value> = keys
        .iter()
        .filter(|k| k.status != KeyStatus::Retired)
        .map(|k| {
            serde_json::json!({
                "kid": k.kid,
                "kty": "RSA",
                "use": "sig",
                "status": k.status.as_str(),
                "created": k.created.to_iso(),
                "lastUpdated": k.created.to_iso(),
                "x5c": [base64::engine::general_purpose::STANDARD.encode(&k.certificate_der)],
            })
        })
        .collect();
    Ok(axum::Json(serde_json::Value::Array(listed)))
}

/// A message from an app's SP, decoded, with how its signature fared against the app's
/// certificates (the caller's policy decides whether an unsigned one is acceptable).
pub(crate) struct Received {
    pub decoded: latchkey_core::saml::inbound::DecodedMessage,
    pub relay_state: Option<String>,
    pub signature: SignatureCheck,
}

/// How a message's signature fared against the app's certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SignatureCheck {
    Unsigned,
    Verified,
    /// Signed, but not acceptable; the detail for the refusal page says why.
    Refused(String),
}

/// The refusal detail when the signature is simply not the one of any registered certificate.
const NOT_VERIFIED_BY_CERTIFICATE: &str = "the signature does not verify with the app's certificate";

/// Tries each of the app's certificates. Only a key mismatch depends on the certificate tried;
/// any other failure (algorithm, structure, digest) is the message's own and reported as such, so
/// an SP signing with SHA-1 is not told that its key is wrong.
fn check_signature(
    certs: &[Vec<u8>],
    verify: impl Fn(&[u8]) -> Result<(), latchkey_core::saml::inbound::InboundError>,
) -> SignatureCheck {
    use latchkey_core::saml::inbound::InboundError;
    if certs.is_empty() {
        return SignatureCheck::Refused(
            "the request is signed but the app has no certificate to verify it".into(),
        );
    }
    let mut refusal = None;
    for cert in certs {
        match verify(cert) {
            Ok(()) => return SignatureCheck::Verified,
            Err(InboundError::BadSignature | InboundError::BadCertificate) => {}
            Err(other) => {
                refusal.get_or_insert_with(|| other.to_string());
            }
        }
    }
    SignatureCheck::Refused(refusal.unwrap_or_else(|| NOT_VERIFIED_BY_CERTIFICATE.to_owned()))
}

/// Decodes an HTTP-Redirect query and checks its binding signature (over the raw query) against
/// the app's certificates. The error is a detail for the refusal page.
pub(crate) fn receive_redirect(app: &App, query: &str) -> Result<Received, String> {
    use latchkey_core::saml::inbound;
    let message =
        inbound::decode_redirect(query, &inbound::InboundLimits::default()).map_err(|e| e.to_string())?;
    let signature = match &message.signature {
        None => SignatureCheck::Unsigned,
        Some(sig) => match sig.check_algorithm() {
            Err(refused) => SignatureCheck::Refused(refused.to_string()),
            Ok(()) => {
                check_signature(&app.sp_certificates(), |cert| inbound::verify_redirect_signature(sig, cert))
            }
        },
    };
    Ok(Received { decoded: message.decoded, relay_state: message.relay_state, signature })
}

/// Decodes the first of `fields` an HTTP-POST form carries and checks its enveloped signature
/// against the app's certificates; RelayState is held to 80 bytes.
pub(crate) fn receive_post(
    app: &App,
    form: &[(String, String)],
    fields: &[&str],
) -> Result<Received, String> {
    use latchkey_core::saml::inbound;
    let get = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let value = fields
        .iter()
        .find_map(|f| get(f))
        .ok_or_else(|| format!("the form carries no {}", fields.join(" or ")))?;
    let decoded =
        inbound::decode_post(value, &inbound::InboundLimits::default()).map_err(|e| e.to_string())?;
    let signature = if decoded.has_enveloped_signature {
        check_signature(&app.sp_certificates(), |cert| decoded.verify_enveloped_signature(cert))
    } else {
        SignatureCheck::Unsigned
    };
    let relay_state = get("RelayState").map(str::to_owned);
    if relay_state.as_deref().is_some_and(|r| inbound::check_relay_state(r).is_err()) {
        return Err("RelayState is longer than 80 bytes".to_owned());
    }
    Ok(Received { decoded, relay_state, signature })
}

/// An HTML page that posts `field` to `action` in the browser (HTTP-POST binding). The page's
/// only script is allowed by a per-response nonce; the form may only go to the ACS's origin.
pub(crate) fn auto_post(
    action: &str,
    field: latchkey_core::saml::MessageParam,
    value: &str,
    relay_state: Option<&str>,
) -> Response {
    let nonce = latchkey_core::ids::random_alphanumeric(24);
    let html = latchkey_core::saml::logout::post_form_html(action, field, value, relay_state, Some(&nonce));
    let form_origin = latchkey_core::origins::origin_of_url(action).unwrap_or_else(|| "'none'".to_owned());
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; form-action {form_origin}; frame-ancestors 'none'; base-uri 'none'"
    );
    let mut response = (StatusCode::OK, html).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(value) = HeaderValue::from_str(&csp) {
        headers.insert(CONTENT_SECURITY_POLICY, value);
    }
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    response
}

/// The app a refused message was addressed to, as far as it is known.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RefusedFor<'a> {
    App(&'a App),
    /// No usable app matched: the key the URL named (an external key, or an app id for the embed
    /// link), as the browser sent it.
    Key(&'a str),
}

/// The browser-facing refusal of a SAML message that cannot be answered to an SP (unknown app,
/// unverifiable request, unregistered ACS): a page for the user with the request id, never a post.
/// The page tells the user to quote that id; the warning logged here carries the same id, the app
/// and the reason, so support can find out why (README "Errors": details are logged against the
/// id, never returned). Nothing from the message itself is logged.
pub(crate) fn refusal(
    state: &AppState,
    refused_for: RefusedFor<'_>,
    kind: BrowserError,
    status: StatusCode,
    detail: Option<&str>,
) -> Response {
    let request_id = crate::middleware::current_request_id();
    let (app_id, key) = match refused_for {
        RefusedFor::App(app) => (app.id.as_str(), app.external_key.as_str()),
        RefusedFor::Key(key) => ("", key),
    };
    // The key came from the URL: bounded, and Debug-formatted so it cannot forge log lines.
    let external_key: String = key.chars().take(64).collect();
    tracing::warn!(
        request_id,
        app_id,
        external_key = ?external_key,
        page = ?kind,
        status = status.as_u16(),
        reason = detail.unwrap_or_else(|| kind.reason()),
        "SAML message refused"
    );
    crate::pages::error_response_with_detail(state, &axum::http::HeaderMap::new(), kind, status, detail)
}
