//! `/api/v1/logs` (Okta's System Log API, LogEvent shape).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::header::LINK;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use latchkey_core::Timestamp;
use latchkey_core::events::{Event, LogQuery, parse_filter};
use latchkey_core::store::EventStore;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::extract::{Admin, QueryParams};
use crate::state::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/logs", get(list))
}

fn timestamp(params: &QueryParams, name: &'static str) -> Result<Option<Timestamp>, ApiError> {
    params
        .get(name)
        .map(|text| {
            Timestamp::parse_iso(text)
                .ok_or(ApiError::InvalidParameter { name, message: "must be an ISO 8601 date-time".into() })
        })
        .transpose()
}

async fn list(
    _admin: Admin,
    State(state): State<AppState>,
    params: QueryParams,
) -> Result<Response, ApiError> {
    let limit = params.limit(100, 1000)?;
    if params.get("sortOrder").is_some_and(|o| o != "ASCENDING") {
        return Err(ApiError::InvalidParameter {
            name: "sortOrder",
            message: "only ASCENDING is supported".into(),
        });
    }
    let filter = match params.get("filter") {
        None => Vec::new(),
        Some(text) => {
            parse_filter(text).map_err(|message| ApiError::InvalidParameter { name: "filter", message })?
        }
    };
    let after = match params.get("after").filter(|a| !a.is_empty()) {
        None => None,
        Some(text) => Some(text.parse::<i64>().map_err(|_| ApiError::InvalidParameter {
            name: "after",
            message: "is not a cursor from a previous page".into(),
        })?),
    };
    let query = LogQuery {
        // Okta's default window is the last seven days.
        since: timestamp(&params, "since")?.or_else(|| Some(state.clock.now().plus_seconds(-7 * 86_400))),
        until: timestamp(&params, "until")?,
        filter,
        after,
        limit: limit + 1,
    };
    let mut events = state.store.list_events(&query).await?;
    let more = events.len() > limit as usize;
    events.truncate(limit as usize);
    let mut headers = HeaderMap::new();
    if let (true, Some((cursor, _))) = (more, events.last()) {
        let mut next = state.link(&format!("/api/v1/logs?limit={limit}&after={cursor}"));
        for name in ["since", "until", "filter"] {
            if let Some(value) = params.get(name) {
                next.push_str(&format!("&{name}={}", utf8_percent_encode(value, NON_ALPHANUMERIC)));
            }
        }
        if let Ok(value) = HeaderValue::from_str(&format!("<{next}>; rel=\"next\"")) {
            headers.append(LINK, value);
        }
    }
    let body: Vec<Value> = events.iter().map(|(_, e)| render(e)).collect();
    Ok((headers, Json(Value::Array(body))).into_response())
}

fn render(event: &Event) -> Value {
    let party = |id: &str, kind: &str, alt: &str, name: &str| json!({"id": id, "type": kind, "alternateId": alt, "displayName": name, "detailEntry": null});
    json!({
        "uuid": event.id,
        "published": event.published.to_iso(),
        "eventType": event.event_type,
        "version": "0",
        "severity": event.severity,
        "legacyEventType": null,
        "displayMessage": event.display_message,
        "actor": party(&event.actor.id, &event.actor.kind, &event.actor.alternate_id, &event.actor.display_name),
        "client": {"ipAddress": event.client_ip, "userAgent": null, "zone": "null", "device": null, "id": null, "geographicalContext": null},
        "outcome": {"result": event.outcome, "reason": event.reason},
        "target": event.targets.iter().map(|t| party(&t.id, &t.kind, &t.alternate_id, &t.display_name)).collect::<Vec<_>>(),
        "transaction": {"type": "WEB", "id": event.request_id, "detail": {}},
        "debugContext": {"debugData": {}},
        "authenticationContext": {"externalSessionId": event.session_id, "authenticationStep": 0},
        "securityContext": {},
        "request": {"ipChain": []},
    })
}
