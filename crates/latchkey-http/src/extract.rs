//! Request extractors with Okta's error semantics: bounded JSON bodies (E0000003 when malformed,
//! 413 when too large), query parameters, the SSWS admin token (E0000011 when missing or wrong),
//! the client address, and the caller of a sign-in with its `DT` device cookie.

use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request};
use axum::http::header::{AUTHORIZATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use latchkey_core::authn::machine::ClientContext;
use latchkey_core::ids::{Secret, secret_digest};
use latchkey_core::store::ApiTokenStore;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON object body. Empty bodies read as `{}` (lifecycle calls send none; Okta accepts that).
pub(crate) struct JsonObject(pub Map<String, Value>);

impl FromRequest<AppState> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::BodyTooLarge(state.config.body_limit)
            } else {
                ApiError::MalformedBody("The request body could not be read.".to_owned())
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonObject(Map::new()));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            // A NUL cannot be stored (PostgreSQL text refuses it) and has no business in any field.
            Ok(Value::Object(map)) if has_nul(&map) => {
                Err(ApiError::MalformedBody("The request body contains a NUL character.".to_owned()))
            }
            Ok(Value::Object(map)) => Ok(JsonObject(map)),
            Ok(_) => Err(ApiError::MalformedBody("The request body must be a JSON object.".to_owned())),
            Err(e) => Err(ApiError::MalformedBody(json_problem(&e))),
        }
    }
}

fn has_nul(map: &Map<String, Value>) -> bool {
    fn value(v: &Value) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().any(value),
            Value::Object(map) => has_nul(map),
            _ => false,
        }
    }
    map.iter().any(|(k, v)| k.contains('\0') || value(v))
}

/// A client-safe description of a JSON parse failure (position and category, no echoed input).
fn json_problem(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Eof => "The JSON ends early",
        Category::Syntax if e.to_string().contains("recursion limit") => "The JSON is nested too deeply",
        Category::Syntax | Category::Data => "The JSON is invalid",
        Category::Io => "The JSON could not be read",
    };
    format!("{what} (line {}, column {}).", e.line(), e.column())
}

/// Path parameters; a segment that cannot be decoded (bad percent-encoding, invalid UTF-8) names
/// no resource, so it answers Okta's 404 rather than axum's plain-text 400.
pub(crate) struct PathParams<T>(pub T);

impl<T, S> FromRequestParts<S> for PathParams<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let decoded =
            percent_encoding::percent_decode_str(parts.uri.path()).decode_utf8_lossy().contains('\0');
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) if !decoded => Ok(PathParams(value)),
            _ => Err(ApiError::RouteNotFound(parts.uri.path().chars().take(200).collect())),
        }
    }
}

/// Decoded query parameters in order; later duplicates do not override earlier ones.
pub(crate) struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The page size `limit`: absent gives `default`; values are clamped to `1..=max` (Okta clamps).
    pub(crate) fn limit(&self, default: u32, max: u32) -> Result<u32, ApiError> {
        match self.get("limit") {
            None => Ok(default),
            // Zero is refused like any other non-positive value; above `max` is capped, as Okta does.
            Some(text) => text.parse::<u32>().ok().filter(|n| *n > 0).map(|n| n.min(max)).ok_or_else(|| {
                ApiError::InvalidParameter { name: "limit", message: "must be a positive integer".into() }
            }),
        }
    }

    /// `true`/`false` (Okta accepts only these spellings); absent gives `default`.
    pub(crate) fn flag(&self, name: &'static str, default: bool) -> Result<bool, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(_) => Err(ApiError::InvalidParameter { name, message: "must be true or false".to_owned() }),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let params: Vec<(String, String)> =
            url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        if let Some((name, _)) = params.iter().find(|(k, v)| k.contains('\0') || v.contains('\0')) {
            let name: String = name.chars().filter(|c| *c != '\0').take(40).collect();
            return Err(ApiError::MalformedQuery(format!(
                "The query parameter '{name}' contains a NUL character."
            )));
        }
        Ok(QueryParams(params))
    }
}

/// Proof that the request carries a valid admin API token (`Authorization: SSWS <token>`), and who
/// that is for the system log.
pub(crate) struct Admin {
    pub actor: latchkey_core::events::Actor,
    pub ip: Option<String>,
}

impl Admin {
    /// An event performed by this administrator on `target`.
    pub(crate) fn event(
        &self,
        state: &AppState,
        event_type: &str,
        message: &str,
        target: latchkey_core::events::Target,
    ) -> latchkey_core::events::Event {
        latchkey_core::events::Event::new(
            event_type,
            message,
            "SUCCESS",
            self.actor.clone(),
            state.clock.now(),
        )
        .target(target)
        .client(self.ip.as_deref())
    }
}

impl Admin {
    /// The administrator as the core's use cases log changes.
    pub(crate) fn changed_by(&self) -> latchkey_core::groups::service::ChangedBy<'_> {
        latchkey_core::groups::service::ChangedBy { actor: self.actor.clone(), client_ip: self.ip.as_deref() }
    }
}

/// The client's address, for the system log (`None` in-process, without a connection).
pub(crate) struct ClientIp(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Ok(ClientIp(peer_ip(parts)))
    }
}

/// The peer address of the connection (no forwarding headers are trusted).
pub(crate) fn peer_ip(parts: &Parts) -> Option<String> {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|axum::extract::ConnectInfo(addr)| addr.ip().to_string())
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header =
            parts.headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).ok_or(ApiError::InvalidToken)?;
        let secret = ssws_secret(header).ok_or(ApiError::InvalidToken)?;
        // The lookup compares digests, so response time does not depend on how much of a guess matched.
        match state.store.find_api_token(&secret_digest(secret)).await? {
            Some(token) => Ok(Admin {
                actor: latchkey_core::events::Actor::api_token(&token.id, &token.name),
                ip: peer_ip(parts),
            }),
            None => Err(ApiError::InvalidToken),
        }
    }
}

/// The token of `SSWS <token>`; PyPI `okta` 3.4.6 sends `SSWS<token>` without the space.
pub(crate) fn ssws_secret(header: &str) -> Option<&str> {
    let rest = header.strip_prefix("SSWS")?;
    let secret = rest.trim();
    (!secret.is_empty() && secret.len() <= 128 && !secret.contains(char::is_whitespace)).then_some(secret)
}

/// Okta's paging headers: `Link: <…>; rel="self"` and, when there is more, `rel="next"` with the
/// cursor, keeping the page size and the query parameter that selected the items.
pub(crate) fn page_links(
    state: &AppState,
    path: &str,
    limit: u32,
    query_params: &[(&str, &str)],
    after: Option<&str>,
    next_cursor: Option<String>,
) -> axum::http::HeaderMap {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    let page_url = |after: Option<&str>| {
        let mut url = state.link(&format!("{path}?limit={limit}"));
        for (name, value) in query_params {
            url.push_str(&format!("&{name}={}", utf8_percent_encode(value, NON_ALPHANUMERIC)));
        }
        if let Some(after) = after {
            url.push_str(&format!("&after={}", utf8_percent_encode(after, NON_ALPHANUMERIC)));
        }
        url
    };
    let mut headers = axum::http::HeaderMap::new();
    let link = axum::http::header::LINK;
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!("<{}>; rel=\"self\"", page_url(after))) {
        headers.append(link.clone(), v);
    }
    if let Some(cursor) = next_cursor
        && let Ok(v) =
            axum::http::HeaderValue::from_str(&format!("<{}>; rel=\"next\"", page_url(Some(&cursor))))
    {
        headers.append(link, v);
    }
    headers
}

/// Cuts a list read with one row more than the page (`limit + 1`) to the page, and returns the
/// cursor of the next page (the last kept item's id) when that extra row showed there is one.
pub(crate) fn cut_page<T>(items: &mut Vec<T>, limit: u32, id: impl Fn(&T) -> &str) -> Option<String> {
    let page = limit as usize;
    if items.len() <= page {
        return None;
    }
    items.truncate(page);
    items.last().map(|item| id(item).to_owned())
}

/// The `after` cursor of a paged list: absent or empty is none; a cursor is an id (short).
pub(crate) fn cursor(params: &QueryParams) -> Result<Option<&str>, ApiError> {
    let after = params.get("after").filter(|a| !a.is_empty());
    if after.is_some_and(|a| a.len() > 64) {
        return Err(ApiError::InvalidParameter { name: "after", message: "is not a valid cursor".into() });
    }
    Ok(after)
}

/// The `DT` device cookie: identifies a browser for "remember this device".
const DEVICE_COOKIE: &str = "DT";

/// The caller as the state machine needs it, plus whether a `DT` cookie must be set.
pub(crate) struct Caller {
    pub(crate) context: ClientContext,
    new_device: Option<String>,
    secure: bool,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "local".to_owned(), |ConnectInfo(addr)| addr.ip().to_string());
        let cookie = crate::web::cookie_value(&parts.headers, DEVICE_COOKIE).filter(|v| v.len() <= 64);
        let (device, new_device) = match cookie {
            Some(existing) => (Some(existing), None),
            None => {
                let fresh = Secret::generate().expose().to_owned();
                (Some(fresh.clone()), Some(fresh))
            }
        };
        let secure = crate::web::cookies::cookies_secure(state);
        Ok(Caller { context: ClientContext { ip, device }, new_device, secure })
    }
}

impl Caller {
    /// Okta honours `context.deviceToken` only from a trusted caller (one with an admin token).
    pub(crate) async fn trust_device_token(
        &mut self,
        parts_headers: &HeaderMap,
        body: &Map<String, Value>,
        state: &AppState,
    ) {
        let Some(token) = body.get("context").and_then(|c| c.get("deviceToken")).and_then(Value::as_str)
        else {
            return;
        };
        if token.is_empty() || token.len() > 32 {
            return;
        }
        let Some(secret) = parts_headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(ssws_secret)
        else {
            return;
        };
        let digest = latchkey_core::ids::secret_digest(secret);
        if let Ok(Some(_)) = state.store.find_api_token(&digest).await {
            self.context.device = Some(format!("trusted:{token}"));
            self.new_device = None;
        }
    }

    pub(crate) fn finish(&self, body: Value) -> Response {
        let mut response = Json(body).into_response();
        self.set_device_cookie(&mut response);
        response
    }

    /// Sets the `DT` cookie on `response` when this browser had none.
    pub(crate) fn set_device_cookie(&self, response: &mut Response) {
        if let Some(device) = &self.new_device {
            let secure = if self.secure { "; Secure" } else { "" };
            let cookie =
                format!("{DEVICE_COOKIE}={device}; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax{secure}");
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().append(SET_COOKIE, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ssws_secret;

    #[test]
    fn ssws_with_and_without_space() {
        assert_eq!(ssws_secret("SSWS abc"), Some("abc"));
        assert_eq!(ssws_secret("SSWSabc"), Some("abc"));
        assert_eq!(ssws_secret("Bearer abc"), None);
        assert_eq!(ssws_secret("SSWS "), None);
        assert_eq!(ssws_secret("SSWS a b"), None);
    }
}
