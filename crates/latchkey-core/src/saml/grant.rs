//! A sign-on [`Grant`] encoded as a signed SAML Response for one of the app's registered ACS URLs.
//!
//! Every decision was made before (the grant: may this user use the app, with which subject and
//! attributes; the caller: which registered ACS, in response to which request); this module only
//! applies the app's SAML settings to it: Issuer, Audience, Destination and Recipient, the
//! assertion's lifetime, the authentication context, and which elements are signed.
//! [`SamlResponse`] is the sign-on service's encoder for SAML: it signs with the organisation's
//! active key.

use super::response::{Attribute, ResponseParams, build_response};
use super::{SamlError, SigningKey, new_saml_id};
use crate::Timestamp;
use crate::apps::{DEFAULT_ASSERTION_LIFETIME_SECONDS, SamlApp};
use crate::error::CoreError;
use crate::events::AuditLog;
use crate::offload::Offload;
use crate::signing_keys::service::SigningKeys;
use crate::signon::{Grant, GrantEncoder};
use crate::store::SigningKeyStore;

/// `NotBefore` backdating: node-saml and samlify accept no clock skew by default, so an SP whose
/// clock runs a little behind ours would refuse a Response valid from "now".
const NOT_BEFORE_BACKDATE_SECS: i64 = 60;

/// Where and to what a Response answers.
#[derive(Debug, Clone, Copy)]
pub struct Recipient<'r> {
    /// A registered ACS URL of the app (the caller resolved it).
    pub acs_url: &'r str,
    /// The AuthnRequest ID for SP-initiated sign-ons.
    pub in_response_to: Option<&'r str>,
}

/// The signed `<samlp:Response>` carrying `grant` to `to`, issued `now`.
pub fn encode_grant(
    grant: &Grant,
    app: SamlApp<'_>,
    to: Recipient<'_>,
    now: Timestamp,
    key: &SigningKey,
) -> Result<String, SamlError> {
    let settings = app.settings;
    let lifetime =
        i64::from(settings.saml_assertion_lifetime_seconds.unwrap_or(DEFAULT_ASSERTION_LIFETIME_SECONDS));
    // Okta's `destination`/`recipient` settings name the default ACS; a request for another
    // registered ACS gets that ACS in both (SPs compare them with the URL they received on).
    let (destination, recipient) = if to.acs_url == settings.sso_acs_url {
        (settings.destination.clone(), settings.recipient.clone())
    } else {
        (to.acs_url.to_owned(), to.acs_url.to_owned())
    };
    let params = ResponseParams {
        response_id: new_saml_id(),
        assertion_id: new_saml_id(),
        issue_instant: now,
        issuer: app.idp_issuer(),
        destination,
        recipient,
        audience: settings.audience.clone(),
        in_response_to: to.in_response_to.map(str::to_owned),
        name_id: grant.subject.clone(),
        name_id_format: grant.subject_format.clone(),
        session_index: grant.session_index.clone(),
        authn_instant: grant.authn_instant,
        session_not_on_or_after: None,
        not_before: now.plus_seconds(-NOT_BEFORE_BACKDATE_SECS),
        not_on_or_after: now.plus_seconds(lifetime),
        authn_context_class_ref: settings.authn_context_class_ref.clone(),
        attributes: grant
            .attributes
            .iter()
            .map(|a| Attribute {
                name: a.name.clone(),
                name_format: a.name_format.clone(),
                values: a.values.clone(),
            })
            .collect(),
        sign_response: settings.response_signed,
        // Always, whatever an app stored before `assertionSigned: false` was refused: SPs that
        // want a signed assertion refuse one covered only by the Response's signature.
        sign_assertion: true,
    };
    build_response(&params, key)
}

/// A sign-on's answer as a signed SAML Response to `to`, for [`crate::signon::service::SignOn::sign_on`].
pub struct SamlResponse<'a, S, O, A> {
    pub app: SamlApp<'a>,
    pub to: Recipient<'a>,
    pub keys: &'a SigningKeys<'a, S, O, A>,
}

impl<S, O, A> GrantEncoder for SamlResponse<'_, S, O, A>
where
    S: SigningKeyStore + Sync,
    O: Offload + Sync,
    A: AuditLog + Sync,
{
    type Answer = String;

    async fn encode(&self, grant: &Grant) -> Result<String, CoreError> {
        let keys = self.keys.current().await?;
        encode_grant(grant, self.app, self.to, self.keys.clock.now(), &keys.active)
            // Only user data can make a response unbuildable (a character XML cannot carry).
            .map_err(|e| CoreError::validation("profile", e.to_string()))
    }
}
