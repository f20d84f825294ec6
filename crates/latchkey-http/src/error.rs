//! The one place failures become HTTP responses: Okta's error envelope
//! `{errorCode, errorSummary, errorLink, errorId, errorCauses}` with Okta's status codes.
//!
//! Internal details (storage messages, hashing failures) are logged against the `errorId` and never
//! returned; clients see only the code, the summary and field-level causes.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use latchkey_core::ids::{IdKind, new_id};
use latchkey_core::{Clock, CoreError, FieldError, StoreError, SystemClock};
use serde_json::json;

/// Everything a handler can fail with.
#[derive(Debug)]
pub enum ApiError {
    Core(CoreError),
    /// The body is not JSON, or not the expected shape (Okta E0000003).
    MalformedBody(String),
    BodyTooLarge(usize),
    /// A query string that cannot be used at all (Okta E0000001).
    MalformedQuery(String),
    /// Missing, malformed or unknown admin token (Okta E0000011).
    InvalidToken,
    /// The request took longer than the server allows (a slow upload, usually).
    Timeout,
    /// The request's `Host` is not the public URL or a custom domain.
    UnknownHost,
    /// A browser call from an origin that is not trusted for CORS (Okta 403 E0000006).
    UntrustedOrigin,
    /// A handler panicked (never expected; logged with the errorId).
    Internal,
    /// A query parameter is invalid (Okta E0000001 on that parameter).
    InvalidParameter {
        name: &'static str,
        message: String,
    },
    RouteNotFound(String),
    MethodNotAllowed,
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        ApiError::Core(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Core(CoreError::Store(e))
    }
}

/// An error as Okta reports it, before it is written as JSON or as a page.
struct Envelope {
    status: StatusCode,
    code: &'static str,
    summary: String,
    causes: Vec<String>,
    error_id: String,
    rate_headers: Option<(u32, i64)>,
}

impl ApiError {
    /// The one mapping from failures to statuses, codes and messages (internal details are logged
    /// here against the errorId, never returned).
    fn envelope(self) -> Envelope {
        let error_id = new_id(IdKind::ErrorId);
        let causes = |list: Vec<String>| list;
        let rate_headers = match &self {
            ApiError::Core(CoreError::RateLimited { limit, reset }) => Some((*limit, reset.epoch_seconds())),
            // Okta's concurrent-limit answer: limit and remaining 0, reset an estimate.
            ApiError::Core(CoreError::Hashing) => Some((0, SystemClock.now().epoch_seconds() + 1)),
            _ => None,
        };
        let (status, code, summary, causes): (StatusCode, &'static str, String, Vec<String>) = match self {
            ApiError::Core(CoreError::NotFound(what)) => {
                (StatusCode::NOT_FOUND, "E0000007", format!("Not found: Resource not found: {what}"), vec![])
            }
            ApiError::Core(CoreError::Validation { field, causes: list }) => (
                StatusCode::BAD_REQUEST,
                "E0000001",
                format!("Api validation failed: {field}"),
                list.iter().map(FieldError::to_string).collect(),
            ),
            ApiError::Core(CoreError::CredentialsUpdate { causes: list }) => (
                StatusCode::FORBIDDEN,
                "E0000014",
                "Update of credentials failed".to_owned(),
                list.iter().map(FieldError::to_string).collect(),
            ),
            ApiError::Core(CoreError::PasswordRequirements { causes: list }) => (
                StatusCode::FORBIDDEN,
                "E0000080",
                "The password does not meet the complexity requirements of the current password policy."
                    .to_owned(),
                list.iter().map(FieldError::to_string).collect(),
            ),
            ApiError::Core(CoreError::InvalidStatus) => (
                StatusCode::FORBIDDEN,
                "E0000038",
                "This operation is not allowed in the user's current status.".to_owned(),
                vec![],
            ),
            ApiError::Core(CoreError::AlreadyActive) => (
                StatusCode::FORBIDDEN,
                "E0000016",
                "Activation failed because the user is already active".to_owned(),
                vec![],
            ),
            ApiError::Core(CoreError::InvalidQuery(why)) => (
                StatusCode::BAD_REQUEST,
                "E0000031",
                "Invalid search criteria.".to_owned(),
                causes(vec![why]),
            ),
            ApiError::Core(CoreError::Store(StoreError::Corrupt(detail))) => {
                tracing::error!(error_id, detail, "stored data could not be decoded");
                (StatusCode::INTERNAL_SERVER_ERROR, "E0000009", "Internal Server Error".to_owned(), vec![])
            }
            ApiError::Core(CoreError::AuthenticationFailed) => {
                (StatusCode::UNAUTHORIZED, "E0000004", "Authentication failed".to_owned(), vec![])
            }
            ApiError::Core(CoreError::InvalidStateToken) => {
                (StatusCode::UNAUTHORIZED, "E0000011", "Invalid token provided".to_owned(), vec![])
            }
            ApiError::Core(CoreError::WrongState) => {
                let text = "This operation is not allowed in the current authentication state.";
                (StatusCode::FORBIDDEN, "E0000079", text.to_owned(), vec![text.to_owned()])
            }
            ApiError::Core(CoreError::InvalidPasscode) => (
                StatusCode::FORBIDDEN,
                "E0000068",
                "Invalid Passcode/Answer".to_owned(),
                vec!["Your passcode doesn't match our records. Please try again.".to_owned()],
            ),
            ApiError::Core(CoreError::Crypto(detail)) => {
                tracing::error!(error_id, detail, "key material unusable");
                (StatusCode::INTERNAL_SERVER_ERROR, "E0000009", "Internal Server Error".to_owned(), vec![])
            }
            ApiError::Core(CoreError::Forbidden(why)) => {
                tracing::info!(error_id, why, "operation not permitted");
                (
                    StatusCode::FORBIDDEN,
                    "E0000006",
                    "You do not have permission to perform the requested action".to_owned(),
                    vec![],
                )
            }
            ApiError::Core(CoreError::UnsupportedOperation) => {
                (StatusCode::BAD_REQUEST, "E0000060", "Unsupported operation.".to_owned(), vec![])
            }
            ApiError::Core(CoreError::AssignedThroughGroup) => (
                StatusCode::FORBIDDEN,
                "E0000046",
                "Deactivate application for user forbidden.".to_owned(),
                causes(vec![
                    "The application cannot be unassigned from the user while their group memberships grant them access"
                        .to_owned(),
                ]),
            ),
            ApiError::Core(CoreError::AppActive) => {
                (StatusCode::FORBIDDEN, "E0000056", "Delete application forbidden.".to_owned(), vec![])
            }
            ApiError::Core(CoreError::UserLocked) => {
                (StatusCode::FORBIDDEN, "E0000069", "User Locked".to_owned(), vec![])
            }
            ApiError::Core(CoreError::RateLimited { .. } | CoreError::Hashing) => (
                StatusCode::TOO_MANY_REQUESTS,
                "E0000047",
                "API call exceeded rate limit due to too many requests.".to_owned(),
                vec![],
            ),
            // A use case that knows the ids maps this itself; anything else is as plainly gone.
            ApiError::Core(CoreError::Store(StoreError::Gone(what))) => (
                StatusCode::NOT_FOUND,
                "E0000007",
                format!("Not found: Resource not found: {what}"),
                vec![],
            ),
            ApiError::Core(e @ CoreError::Store(_)) => {
                tracing::warn!(error_id, error = %e, "service unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "E0000009",
                    "The service is temporarily unavailable. Please try again.".to_owned(),
                    vec![],
                )
            }
            ApiError::MalformedBody(why) => (
                StatusCode::BAD_REQUEST,
                "E0000003",
                "The request body was not well-formed.".to_owned(),
                causes(vec![why]),
            ),
            ApiError::BodyTooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "E0000003",
                "The request body was not well-formed.".to_owned(),
                causes(vec![format!("The request body is larger than {limit} bytes.")]),
            ),
            ApiError::MalformedQuery(why) => (
                StatusCode::BAD_REQUEST,
                "E0000001",
                "Api validation failed: query".to_owned(),
                causes(vec![why]),
            ),
            ApiError::InvalidToken => {
                (StatusCode::UNAUTHORIZED, "E0000011", "Invalid token provided".to_owned(), vec![])
            }
            ApiError::InvalidParameter { name, message } => (
                StatusCode::BAD_REQUEST,
                "E0000001",
                format!("Api validation failed: {name}"),
                causes(vec![format!("{name}: {message}")]),
            ),
            ApiError::RouteNotFound(path) => (
                StatusCode::NOT_FOUND,
                "E0000007",
                format!("Not found: Resource not found: {path} (Resource)"),
                vec![],
            ),
            ApiError::Timeout => (
                StatusCode::REQUEST_TIMEOUT,
                "E0000009",
                "The request took too long and was abandoned.".to_owned(),
                vec![],
            ),
            ApiError::UnknownHost => (
                StatusCode::MISDIRECTED_REQUEST,
                "E0000007",
                "Not found: Resource not found: host (Host)".to_owned(),
                causes(vec![
                    "This host is not the public URL or a custom domain of this organisation.".to_owned(),
                ]),
            ),
            ApiError::UntrustedOrigin => (
                StatusCode::FORBIDDEN,
                "E0000006",
                "You do not have permission to perform the requested action".to_owned(),
                causes(vec!["The request's Origin is not a trusted origin with the CORS scope.".to_owned()]),
            ),
            ApiError::Internal => {
                tracing::error!(error_id, "request handler panicked");
                (StatusCode::INTERNAL_SERVER_ERROR, "E0000009", "Internal Server Error".to_owned(), vec![])
            }
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "E0000022",
                "The endpoint does not support the provided HTTP method".to_owned(),
                vec![],
            ),
        };
        Envelope { status, code, summary, causes, error_id, rate_headers }
    }

    /// The failure as a browser page (hosted pages, browser endpoints): the same status as the
    /// API answer, a page chosen by it, and the request id instead of JSON.
    pub(crate) fn into_page(
        self,
        state: &crate::state::AppState,
        headers: &axum::http::HeaderMap,
    ) -> Response {
        use crate::web::BrowserError;
        let Envelope { status, code, error_id, .. } = self.envelope();
        let kind = match status {
            StatusCode::NOT_FOUND => BrowserError::NotFound,
            StatusCode::TOO_MANY_REQUESTS => BrowserError::Throttled,
            s if s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT => BrowserError::Unavailable,
            _ => BrowserError::Generic,
        };
        tracing::debug!(error_id, code, status = status.as_u16(), "browser error page");
        crate::web::error_page(state, headers, kind, status)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let Envelope { status, code, summary, causes, error_id, rate_headers } = self.envelope();
        let causes: Vec<_> = causes.into_iter().map(|c| json!({ "errorSummary": c })).collect();
        let body = json!({
            "errorCode": code,
            "errorSummary": summary,
            "errorLink": code,
            "errorId": error_id,
            "errorCauses": causes,
        });
        let mut response = (status, Json(body)).into_response();
        if let Some((limit, reset)) = rate_headers {
            let headers = response.headers_mut();
            headers.insert("x-rate-limit-limit", HeaderValue::from(limit));
            headers.insert("x-rate-limit-remaining", HeaderValue::from(0));
            headers.insert("x-rate-limit-reset", HeaderValue::from(reset));
        }
        response
    }
}

/// Unknown routes: Okta's JSON envelope for API paths, the templated page for the browser paths
/// (`/login/…`, `/app/…`, `/home/…`, `/demo/…`), where a person reads the answer.
pub(crate) async fn not_found_fallback(
    axum::extract::State(state): axum::extract::State<crate::state::AppState>,
    headers: axum::http::HeaderMap,
    uri: Uri,
) -> Response {
    let error = ApiError::RouteNotFound(uri.path().chars().take(200).collect());
    let path = uri.path();
    if ["/login/", "/app/", "/home/", "/demo/"].iter().any(|prefix| path.starts_with(prefix)) {
        error.into_page(&state, &headers)
    } else {
        error.into_response()
    }
}

pub(crate) async fn method_not_allowed_fallback() -> ApiError {
    ApiError::MethodNotAllowed
}

pub(crate) fn panic_response(_payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::Internal.into_response()
}
