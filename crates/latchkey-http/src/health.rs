//! Operational endpoints: `/healthz` (the process answers), `/readyz` (the database answers),
//! `/metrics` (Prometheus text exposition). Metrics tell sign-in activity apart by route and
//! status, so they are not public: a scraper on the node's own machine (a loopback peer) may read
//! them, any other only with the configured bearer token (`metrics_token`).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use latchkey_core::crypto::constant_time_eq;
use latchkey_core::ids::secret_digest;
use latchkey_core::store::HealthStore;

use crate::error::ApiError;
use crate::state::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

async fn healthz() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], "{\"status\":\"ok\"}")
}

async fn readyz(State(state): State<AppState>) -> Response {
    match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => {
            ([(header::CONTENT_TYPE, "application/json")], "{\"status\":\"ready\"}").into_response()
        }
        Ok(Err(e)) => ApiError::from(e).into_response(),
        Err(_) => {
            ApiError::from(latchkey_core::StoreError::Unavailable("ping timed out".into())).into_response()
        }
    }
}

async fn metrics(State(state): State<AppState>, request: Request) -> Response {
    let Some(render) = &state.config.metrics else {
        return (StatusCode::NOT_FOUND, ApiError::RouteNotFound("/metrics".into())).into_response();
    };
    if !may_read_metrics(&state, &request) {
        let mut refused = ApiError::InvalidToken.into_response();
        refused.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return refused;
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], render()).into_response()
}

/// With a `metrics_token`: the request carries it (`Authorization: Bearer …`, compared in
/// constant time). Without one: the peer is on this machine.
fn may_read_metrics(state: &AppState, request: &Request) -> bool {
    match &state.config.metrics_token {
        Some(expected) => request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|presented| {
                constant_time_eq(secret_digest(presented).as_bytes(), secret_digest(expected).as_bytes())
            }),
        None => request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .is_some_and(|ConnectInfo(peer)| peer.ip().is_loopback()),
    }
}
