//! Per-request middleware: the `X-Okta-Request-Id` header on every response, an access log line
//! (method, route template, status, latency; never query strings, which may carry tokens), and
//! request metrics labelled by route template. The request id is also available to handlers
//! (`crate::request_id`) so browser error pages can show it. And the custom-domain check: every
//! request runs under the public base its `Host` names, or is refused.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::http::header::HOST;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use latchkey_core::ids::random_alphanumeric;
use tracing::Instrument as _;

use crate::error::ApiError;
use crate::hosts;
use crate::state::AppState;

pub(crate) async fn observe(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = random_alphanumeric(27);
    let method = req.method().clone();
    // Everything logged while handling the request (errors included) carries its id.
    let span = tracing::info_span!("request", request_id = %request_id);
    let api = req.uri().path().starts_with("/api/");
    let mut response = crate::request_id::scope(request_id.clone(), next.run(req).instrument(span)).await;
    // API answers carry identities and tokens: never cached by browsers or proxies (as Okta does).
    if api && !response.headers().contains_key(axum::http::header::CACHE_CONTROL) {
        let headers = response.headers_mut();
        headers.insert(axum::http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-store"));
        headers.insert(axum::http::header::PRAGMA, HeaderValue::from_static("no-cache"));
        headers.insert(axum::http::header::EXPIRES, HeaderValue::from_static("0"));
    }
    let route = response.extensions().get::<RouteLabel>().map_or("unmatched", |r| r.0.as_str()).to_owned();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-okta-request-id", value);
    }
    // No answer is to be sniffed into another type (a JSON error echoing input rendered as HTML).
    response
        .headers_mut()
        .entry(axum::http::header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    // Debug level: an access log line per request costs a third of the throughput of a cheap
    // endpoint; operators who want it set LATCHKEY_LOG=info,latchkey_http=debug.
    tracing::debug!(request_id, %method, route, status, latency_us = elapsed.as_micros() as u64, "request");
    let labels = [("method", method.to_string()), ("route", route), ("status", status.to_string())];
    metrics::counter!("latchkey_http_requests_total", &labels).increment(1);
    metrics::histogram!("latchkey_http_request_duration_seconds", &labels[..2]).record(elapsed.as_secs_f64());
    response
}

/// The matched route template, carried out of the router on the response (outer middleware runs
/// before routing, so it cannot read [`MatchedPath`] from the request).
#[derive(Clone)]
struct RouteLabel(String);

/// Installed with `route_layer`, so it runs after routing and sees the matched template.
pub(crate) async fn label_route(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let mut response = next.run(req).await;
    if let Some(route) = route {
        response.extensions_mut().insert(RouteLabel(route));
    }
    response
}

/// How long one request may take, body upload included.
const REQUEST_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// Refuses a declared body over the limit before reading it, and bounds a request's total time
/// (a client trickling a body cannot hold a worker).
pub(crate) async fn guard(
    axum::extract::State(state): axum::extract::State<crate::state::AppState>,
    req: Request,
    next: Next,
) -> Response {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let limit = state.config.body_limit;
    if declared.is_some_and(|length| length > limit as u64) {
        let path = req.uri().path();
        if path.starts_with("/api/") {
            return axum::response::IntoResponse::into_response(crate::error::ApiError::BodyTooLarge(limit));
        }
        // The OAuth endpoints a client calls answer in the OAuth error shape (RFC 6749 §5.2);
        // `authorize` and `logout` are browser paths like the rest.
        if path.starts_with("/oauth2/") && !path.ends_with("/authorize") && !path.ends_with("/logout") {
            let body = serde_json::json!({
                "error": "invalid_request",
                "error_description": format!("The request body is larger than {limit} bytes."),
            });
            return axum::response::IntoResponse::into_response((
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                axum::Json(body),
            ));
        }
        // A browser posted it (a sign-in form, a SAML message): it gets a page, not JSON.
        let detail = format!("the form sent is larger than {limit} bytes");
        return crate::web::error_page_with_detail(
            &state,
            req.headers(),
            crate::web::BrowserError::Generic,
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            Some(&detail),
        );
    }
    match tokio::time::timeout(REQUEST_DEADLINE, next.run(req)).await {
        Ok(response) => response,
        Err(_) => axum::response::IntoResponse::into_response(crate::error::ApiError::Timeout),
    }
}

/// Custom domains: requests for a `Host` the organisation does not serve are refused (421), and
/// the rest run under the public base they were addressed to (see `crate::hosts`).
pub(crate) async fn route_host(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // Probes and scrapers address the node itself (by IP), not the organisation's public name.
    let operational = matches!(req.uri().path(), "/healthz" | "/readyz" | "/metrics");
    if req.headers().get_all(HOST).iter().count() > 1 {
        return ApiError::InvalidParameter { name: "Host", message: "must be sent once".into() }
            .into_response();
    }
    // An absolute-form request target names the host itself and overrides `Host` (RFC 9112 §3.2.2).
    let host = match req.uri().authority() {
        Some(authority) => Some(authority.as_str().to_owned()),
        None => req.headers().get(HOST).and_then(|h| h.to_str().ok()).map(str::to_owned),
    };
    let Some(host) = host.filter(|_| !operational) else {
        let mut response = next.run(req).await;
        strict_transport(&state, &state.config.public_url, &mut response);
        return response;
    };
    let bases = std::iter::once(&state.config.public_url).chain(&state.config.custom_domains);
    match hosts::base_for_host(bases, &host) {
        Some(base) => {
            let base = base.to_owned();
            let mut response = hosts::under_base(base.clone(), next.run(req)).await;
            strict_transport(&state, &base, &mut response);
            response
        }
        None => ApiError::UnknownHost.into_response(),
    }
}

/// HSTS (RFC 6797) on every answer given under an `https` base, never under plain `http` (§7.2:
/// a browser ignores it there, and a test set-up on http must not pin a name to https).
fn strict_transport(state: &AppState, base: &str, response: &mut Response) {
    if let Some(value) = &state.config.strict_transport_security
        && base.starts_with("https://")
    {
        response.headers_mut().insert(axum::http::header::STRICT_TRANSPORT_SECURITY, value.clone());
    }
}
