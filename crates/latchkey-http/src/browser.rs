//! `/login/sessionCookieRedirect`: a session token becomes the browser's `sid` cookie under the
//! session-token rule (docs/shared-browser.md), and the browser goes on to `redirectUrl`, which
//! must be the IdP itself or a trusted origin with scope REDIRECT (never an open redirect).
//! Failures a browser sees are templated pages, not JSON.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use latchkey_core::sessions::BrowserRequest;

use crate::error::ApiError;
use crate::extract::{ClientIp, QueryParams};
use crate::state::AppState;
use crate::web::{self, BrowserError, Form};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/login/sessionCookieRedirect", get(cookie_redirect_get).post(cookie_redirect_post))
        .layer(axum::middleware::map_response(no_referrer))
}

/// Its answers send no `Referer` onward: the URL that reached it holds a session token.
async fn no_referrer(mut response: Response) -> Response {
    response.headers_mut().insert("referrer-policy", axum::http::HeaderValue::from_static("no-referrer"));
    response
}

async fn cookie_redirect_get(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    params: QueryParams,
) -> Response {
    cookie_redirect(&state, &headers, params.get("token"), params.get("redirectUrl"), ip.as_deref()).await
}

async fn cookie_redirect_post(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    cookie_redirect(&state, &headers, form.get("token"), form.get("redirectUrl"), ip.as_deref()).await
}

async fn cookie_redirect(
    state: &AppState,
    headers: &HeaderMap,
    token: Option<&str>,
    redirect_url: Option<&str>,
    ip: Option<&str>,
) -> Response {
    let bad_redirect = || web::error_page(state, headers, BrowserError::BadRedirect, StatusCode::BAD_REQUEST);
    let Some(target) = redirect_url.filter(|u| !u.is_empty()) else { return bad_redirect() };
    match web::redirects::is_allowed_redirect(state, target).await {
        Ok(true) => {}
        Ok(false) => return bad_redirect(),
        Err(e) => return ApiError::from(e).into_page(state, headers),
    }
    let cookie = web::cookie_value(headers, web::cookies::SID);
    let request = BrowserRequest {
        cookie: cookie.as_deref(),
        // The token is what this endpoint is for: a missing or empty one is an invalid token (under
        // `token` precedence it ends the browser's session rather than letting it through).
        session_token: Some(token.unwrap_or_default()),
        precedence: state.config.session_token_precedence,
        persistent: false,
        client_ip: ip,
    };
    let browser = match state.sessions().browser(&request).await {
        Ok(browser) => browser,
        Err(e) => return ApiError::from(e).into_page(state, headers),
    };
    let to =
        if browser.current.is_some() { target.to_owned() } else { web::sign_in_url(state, Some(target)) };
    let mut response = web::redirect(&to);
    web::cookies::apply(state, &mut response, &browser);
    response
}
