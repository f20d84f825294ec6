//! The SAML 2.0 IdP over HTTP: signing keys, metadata, single sign-on ([`sso`]) and Single Logout
//! ([`slo`]).
//!
//! Signing keys come from the core's signing-keys service (one set for the organisation, cached
//! per node for a few seconds; metadata reads them afresh). Inbound messages are decoded
//! by the core's hardened decoder; this layer applies the app's policy (known SP, registered ACS,
//! signatures, replay) and never posts anything to an SP it could not identify.

mod slo;
mod sso;

use axum::Router;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use latchkey_core::CoreError;
use latchkey_core::apps::App;
use latchkey_core::saml::metadata::{BindingUrls, IdpMetadata, idp_metadata};
use latchkey_core::signing_keys::KeyStatus;
use latchkey_core::store::AppStore;

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
    let keys = state.signing_keys().published().await?;
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
    let signing_keys = state.signing_keys();
    signing_keys.current().await?;
    let keys = signing_keys.list().await?;
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
