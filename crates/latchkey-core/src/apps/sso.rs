//! The state a SAML single sign-on and Single Logout keep between browser round trips: pending
//! SP-initiated requests waiting for a sign-in, and logout walks across the apps a session
//! visited. All of it lives in the database so any node can continue
//! a flow another node started.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::signon::Participant;

/// An SP-initiated AuthnRequest accepted and waiting for the user to sign in (or re-authenticate).
/// Looked up by the digest of a random resume id carried in the sign-in page's `fromURI`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSso {
    pub id_digest: String,
    pub app_id: String,
    /// The AuthnRequest's ID, answered as `InResponseTo`.
    pub request_id: String,
    /// The ACS URL resolved from the request against the registered ones.
    pub acs_url: String,
    pub relay_state: Option<String>,
    /// ForceAuthn: only a session authenticated after `created` may answer.
    pub force_authn: bool,
    pub name_id_format: Option<String>,
    pub created: Timestamp,
    pub expires_at: Timestamp,
}

/// A front-channel logout in progress: the apps still to be told, and whom to answer at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutWalk {
    pub id_digest: String,
    /// The app whose LogoutRequest started the walk (answered with a LogoutResponse at the end).
    pub initiator_app_id: Option<String>,
    pub initiator_request_id: Option<String>,
    pub initiator_relay_state: Option<String>,
    /// Where an IdP-initiated walk (`/login/signout`) ends.
    pub return_to: Option<String>,
    /// Apps not yet told, in order.
    pub remaining: Vec<Participant>,
    /// The ID of the LogoutRequest we sent and await a LogoutResponse for.
    pub awaiting_request_id: Option<String>,
    /// The app that LogoutRequest went to. A LogoutResponse that cannot be accepted lets the walk go
    /// on without that app (`partial`) only when it arrives at that app's logout URL. `None` in
    /// walks stored before this field existed.
    #[serde(default)]
    pub awaiting_app_id: Option<String>,
    /// Some app did not confirm its logout (the initiator is answered `PartialLogout`).
    #[serde(default)]
    pub partial: bool,
    pub expires_at: Timestamp,
}

impl LogoutWalk {
    /// Whether the walk waits for a LogoutResponse from `app_id` (a LogoutRequest went there and
    /// was not answered yet).
    pub fn awaits(&self, app_id: &str) -> bool {
        self.awaiting_request_id.is_some() && self.awaiting_app_id.as_deref() == Some(app_id)
    }
}
