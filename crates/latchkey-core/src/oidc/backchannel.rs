//! OpenID Connect Back-Channel Logout 1.0: when a Latchkey session ends, for whatever reason
//! (sign-out, replaced by a session token, revoked by an admin, lockout, deactivation, expiry),
//! every app that received tokens in it and registered a `backchannel_logout_uri` is sent a signed
//! logout token naming the session (`sid`), so the app ends its own session at once. On a shared
//! browser this is what signs the previous person out of the app itself.
//!
//! The notices are written by the database in the transaction that ends the session (a trigger
//! on `sessions`), so none is lost to a crash; [`BackChannel::deliver_due`] sends what is due,
//! each notice leased by one conditional update so that one node sends it, retried with back-off
//! and given up (and logged) after [`RETRY_AFTER_SECS`] is exhausted.

use serde_json::{Map, json};

use super::{Server, jwt};
use crate::apps::App;
use crate::clock::{Clock, Timestamp};
use crate::error::CoreError;
use crate::events::{Actor, AuditLog, Event, Target};
use crate::ids::random_alphanumeric;
use crate::offload::Offload;
use crate::signing_keys::service::SigningKeys;
use crate::store::{AppStore, OAuthStore, SigningKeyStore};

/// One logout token owed to one app for one ended session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutNotice {
    pub session_id: String,
    pub app_id: String,
    /// The authorization server that issued the app's tokens (its issuer signs the notice).
    pub server: Server,
    pub user_id: Option<String>,
    pub created: Timestamp,
    pub attempts: i64,
}

/// Seconds to wait after each failed attempt; the notice is given up after the last.
pub const RETRY_AFTER_SECS: [i64; 8] = [5, 30, 120, 600, 1800, 3600, 7200, 14400];
/// How many notices one pass sends.
const BATCH: u32 = 50;
/// The logout event's name (OIDC Back-Channel Logout 1.0 §2.4).
const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// How long a logout token is valid (it is sent at once; a little slack for slow apps).
const TOKEN_LIFETIME_SECS: i64 = 120;

/// Sends a logout token to an app (OIDC Back-Channel Logout 1.0 §2.5: a form POST; any 2xx
/// answer is success).
pub trait LogoutDelivery: Send + Sync {
    fn post(&self, uri: &str, logout_token: &str) -> impl Future<Output = Result<(), String>> + Send;
}

/// The back-channel logout use case, wired to its collaborators.
pub struct BackChannel<'a, S, O, A, D> {
    pub store: &'a S,
    pub keys: &'a SigningKeys<'a, S, O, A>,
    pub clock: &'a dyn Clock,
    pub audit: &'a A,
    pub delivery: &'a D,
    /// The org URL the issuers are named by.
    pub org_url: &'a str,
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub sent: usize,
    pub failed: usize,
    pub given_up: usize,
}

impl<S, O, A, D> BackChannel<'_, S, O, A, D>
where
    S: OAuthStore + AppStore + SigningKeyStore,
    O: Offload,
    A: AuditLog,
    D: LogoutDelivery,
{
    /// Sends every notice that is due (up to a batch), each leased first so no other node sends it.
    pub async fn deliver_due(&self) -> Result<Delivered, CoreError> {
        let now = self.clock.now();
        let mut done = Delivered::default();
        for notice in self.store.due_logout_notices(now, BATCH).await? {
            let wait = usize::try_from(notice.attempts).ok().and_then(|n| RETRY_AFTER_SECS.get(n)).copied();
            let Some(wait) = wait else {
                self.give_up(&notice, "no attempts left").await?;
                done.given_up += 1;
                continue;
            };
            if !self.store.lease_logout_notice(&notice, now.plus_seconds(wait)).await? {
                continue; // another node took it
            }
            let app = self.store.find_app(&notice.app_id).await?.filter(|a| a.id == notice.app_id);
            let uri =
                app.as_ref().and_then(|a| a.oidc()).and_then(|o| o.client.backchannel_logout_uri.clone());
            let (Some(app), Some(uri)) = (app, uri) else {
                // The app is gone or no longer wants notices.
                self.store.delete_logout_notice(&notice).await?;
                continue;
            };
            let token = self.logout_token(&app, &notice).await?;
            match self.delivery.post(&uri, &token).await {
                Ok(()) => {
                    self.store.delete_logout_notice(&notice).await?;
                    tracing::info!(app = %app.id, session = %notice.session_id, "back-channel logout delivered");
                    done.sent += 1;
                }
                Err(why) => {
                    tracing::warn!(app = %app.id, attempt = notice.attempts + 1, reason = %why, "back-channel logout failed; will retry");
                    done.failed += 1;
                }
            }
        }
        Ok(done)
    }

    /// The logout token (OIDC Back-Channel Logout 1.0 §2.4), signed with the active key.
    async fn logout_token(&self, app: &App, notice: &LogoutNotice) -> Result<String, CoreError> {
        let keys = self.keys.current().await?;
        let now = self.clock.now();
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(notice.server.issuer(self.org_url)));
        claims.insert("aud".into(), json!(app.id));
        claims.insert("iat".into(), json!(now.epoch_seconds()));
        claims.insert("exp".into(), json!(now.plus_seconds(TOKEN_LIFETIME_SECS).epoch_seconds()));
        claims.insert("jti".into(), json!(random_alphanumeric(32)));
        claims.insert("events".into(), json!({EVENT: {}}));
        claims.insert("sid".into(), json!(notice.session_id));
        if let Some(user_id) = &notice.user_id {
            claims.insert("sub".into(), json!(user_id));
        }
        jwt::sign(&claims, &keys.active, Some("logout+jwt")).map_err(|e| CoreError::Crypto(e.to_string()))
    }

    async fn give_up(&self, notice: &LogoutNotice, why: &str) -> Result<(), CoreError> {
        self.store.delete_logout_notice(notice).await?;
        tracing::error!(app = %notice.app_id, session = %notice.session_id, "back-channel logout given up");
        let event = Event::new(
            "app.oauth2.backchannel_logout",
            "Back-channel logout could not be delivered",
            "FAILURE",
            Actor::system(),
            self.clock.now(),
        )
        .target(Target::new(&notice.app_id, "AppInstance", &notice.app_id))
        .target(Target::new(&notice.session_id, "Session", &notice.session_id))
        .reason(why);
        self.audit.record(event).await;
        Ok(())
    }
}
