//! The back-channel logout worker: sends the logout tokens the core's
//! [`BackChannel`](latchkey_core::oidc::backchannel::BackChannel) makes, over HTTP(S), once a
//! second. The notices themselves are durable (written by the database when a session ends), so
//! a node that stops loses none: another node, or this one after a restart, sends them.

use std::time::Duration;

use axum::body::Bytes;
use http_body_util::Full;
use hyper::Request;
use hyper::header::CONTENT_TYPE;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use latchkey_core::CoreError;
use latchkey_core::oidc::backchannel::{BackChannel, Delivered, LogoutDelivery};

use crate::state::AppState;

/// How long an app may take to answer a logout token.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the worker looks for due notices.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// Posts logout tokens with hyper: `https` with the Mozilla roots, `http` for loopback apps in
/// development (the app's URI was checked when it was saved). Redirects are not followed.
pub struct HttpDelivery {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl HttpDelivery {
    pub fn new() -> Result<Self, String> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
        Ok(HttpDelivery { client: Client::builder(TokioExecutor::new()).build(connector) })
    }
}

impl LogoutDelivery for HttpDelivery {
    async fn post(&self, uri: &str, logout_token: &str) -> Result<(), String> {
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("logout_token", logout_token)
            .finish();
        let request = Request::post(uri)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("bad request: {e}"))?;
        let response = tokio::time::timeout(DELIVERY_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| "the app did not answer in time".to_owned())?
            .map_err(|e| format!("could not reach the app: {e}"))?;
        let status = response.status();
        if status.is_success() { Ok(()) } else { Err(format!("the app answered {status}")) }
    }
}

/// One pass: sends the notices that are due through `delivery`.
pub async fn deliver_due(state: &AppState, delivery: &impl LogoutDelivery) -> Result<Delivered, CoreError> {
    let keys = state.signing_keys();
    let back_channel = BackChannel {
        store: &state.store,
        keys: &keys,
        clock: state.clock.as_ref(),
        audit: state.audit(),
        delivery,
        org_url: &state.config.public_url,
    };
    back_channel.deliver_due().await
}

/// Starts the worker; it runs until the process ends.
pub fn spawn_worker(state: AppState) -> Result<tokio::task::JoinHandle<()>, String> {
    let delivery = HttpDelivery::new()?;
    Ok(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(POLL_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Err(e) = deliver_due(&state, &delivery).await {
                tracing::warn!(error = %e, "back-channel logout pass failed");
            }
        }
    }))
}
