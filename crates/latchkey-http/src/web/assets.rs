//! The static assets every page shares: the style sheet (replaceable for branding) and the logo of
//! app tiles.

use axum::Router;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::state::AppState;

pub(crate) const STYLE_SHEET: &str = "/login/static/latchkey.css";

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route(STYLE_SHEET, get(style)).route(APP_TILE_LOGO, get(app_tile_logo))
}

/// The logo every app link names (`logoUrl`): apps have no logos of their own yet.
pub(crate) const APP_TILE_LOGO: &str = "/login/static/app-tile.svg";

async fn app_tile_logo() -> Response {
    const SVG: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 64 64\" width=\"64\" height=\"64\">\
<rect width=\"64\" height=\"64\" rx=\"12\" fill=\"#1f4e79\"/><rect x=\"16\" y=\"16\" width=\"32\" height=\"32\" rx=\"4\" \
fill=\"none\" stroke=\"#fff\" stroke-width=\"4\"/></svg>";
    let mut response = SVG.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("image/svg+xml"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400"));
    response
}

async fn style(State(state): State<AppState>) -> Response {
    let mut response = state.pages.style.clone().into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    response
}
