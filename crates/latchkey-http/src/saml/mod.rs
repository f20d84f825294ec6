//! The SAML 2.0 IdP over HTTP: public metadata, single sign-on ([`sso`]) and Single Logout
//! ([`slo`]).
//!
//! Who may sign on to which app is the core's sign-on service's decision; SAML's part is the
//! protocol: inbound messages are decoded by the core's hardened decoder, this layer applies the
//! app's SAML policy (known SP, registered ACS, signatures, replay) and never posts anything to an
//! SP it could not identify. Signing keys come from the core's signing-keys service (one set for the
//! organisation, cached per node for a few seconds; metadata reads them afresh).

mod slo;
mod sso;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use latchkey_core::CoreError;
use latchkey_core::apps::{App, SamlApp};
use latchkey_core::store::AppStore;

use crate::error::ApiError;
use crate::extract::PathParams;
use crate::state::AppState;
use crate::web::{self, BrowserError};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/app/{external_key}/sso/saml/metadata", get(public_metadata))
        .merge(sso::routes())
        .merge(slo::routes())
}

/// `GET /app/{externalKey}/sso/saml/metadata`: the app's IdP metadata with every published
/// signing certificate, on the base the browser used.
async fn public_metadata(
    State(state): State<AppState>,
    PathParams(external_key): PathParams<String>,
) -> Result<Response, ApiError> {
    let app = match state.store.find_app(&external_key).await? {
        Some(app) if app.external_key == external_key => app,
        _ => return Err(CoreError::NotFound(format!("{external_key} (App)")).into()),
    };
    let Some(saml) = app.saml() else {
        return Err(CoreError::NotFound(format!("{external_key} (App)")).into());
    };
    // Read afresh (not the signing path's short cache): a staged key is published at once.
    let keys = state.signing_keys().published().await?;
    let document = latchkey_core::saml::metadata::app_metadata(saml, &state.base(), keys.published_certs())
        .map_err(|e| CoreError::validation("settings.signOn", e.to_string()))?;
    Ok(([(CONTENT_TYPE, "application/xml; charset=utf-8")], document).into_response())
}

/// A message from an app's SP, decoded, with how its signature fared against the app's
/// certificates (the caller's policy decides whether an unsigned one is acceptable).
struct Received {
    pub decoded: latchkey_core::saml::inbound::DecodedMessage,
    pub relay_state: Option<String>,
    pub signature: SignatureCheck,
}

/// How a message's signature fared against the app's certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SignatureCheck {
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
fn receive_redirect(app: SamlApp<'_>, query: &str) -> Result<Received, String> {
    use latchkey_core::saml::inbound;
    let message =
        inbound::decode_redirect(query, &inbound::InboundLimits::default()).map_err(|e| e.to_string())?;
    let signature = match &message.signature {
        None => SignatureCheck::Unsigned,
        Some(sig) => match sig.check_algorithm() {
            Err(refused) => SignatureCheck::Refused(refused.to_string()),
            Ok(()) => check_signature(&app.settings.sp_certificates(), |cert| {
                inbound::verify_redirect_signature(sig, cert)
            }),
        },
    };
    Ok(Received { decoded: message.decoded, relay_state: message.relay_state, signature })
}

/// Decodes the first of `fields` an HTTP-POST form carries and checks its enveloped signature
/// against the app's certificates; RelayState is held to 80 bytes.
fn receive_post(app: SamlApp<'_>, form: &[(String, String)], fields: &[&str]) -> Result<Received, String> {
    use latchkey_core::saml::inbound;
    let get = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let value = fields
        .iter()
        .find_map(|f| get(f))
        .ok_or_else(|| format!("the form carries no {}", fields.join(" or ")))?;
    let decoded =
        inbound::decode_post(value, &inbound::InboundLimits::default()).map_err(|e| e.to_string())?;
    let signature = if decoded.has_enveloped_signature {
        check_signature(&app.settings.sp_certificates(), |cert| decoded.verify_enveloped_signature(cert))
    } else {
        SignatureCheck::Unsigned
    };
    let relay_state = get("RelayState").map(str::to_owned);
    if relay_state.as_deref().is_some_and(|r| inbound::check_relay_state(r).is_err()) {
        return Err("RelayState is longer than 80 bytes".to_owned());
    }
    Ok(Received { decoded, relay_state, signature })
}

/// The app a refused message was addressed to, as far as it is known.
#[derive(Debug, Clone, Copy)]
enum RefusedFor<'a> {
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
fn refusal(
    state: &AppState,
    refused_for: RefusedFor<'_>,
    kind: BrowserError,
    status: StatusCode,
    detail: Option<&str>,
) -> Response {
    let request_id = crate::request_id::current();
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
    web::error_page_with_detail(state, &axum::http::HeaderMap::new(), kind, status, detail)
}
