//! Operational endpoints: `/healthz` (the process answers), `/readyz` (the database answers),
//! `/metrics` (Prometheus text exposition).

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
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

async fn metrics(State(state): State<AppState>) -> Response {
    match &state.config.metrics {
        Some(render) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], render()).into_response(),
        None => (StatusCode::NOT_FOUND, ApiError::RouteNotFound("/metrics".into())).into_response(),
    }
}
