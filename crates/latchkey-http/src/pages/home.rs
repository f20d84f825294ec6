//! The signed-in user's pages: the dashboard of apps, the sessions page (sign out the others) and
//! the sign-out form.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use latchkey_core::sessions::EndReason;
use minijinja::{Value, context};
use serde::Serialize;

use crate::error::ApiError;
use crate::extract::{ClientIp, QueryParams};
use crate::state::AppState;
use crate::web::csrf;
use crate::web::page::ser;
use crate::web::{self, BrowserError, Form, Ui, see_other};

use super::{HOME, SESSIONS_PAGE};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route(HOME, get(dashboard))
        .route(SESSIONS_PAGE, get(sessions_page))
        .route("/app/UserHome/sessions/end-others", post(end_other_sessions))
        .route("/login/signout", post(sign_out))
}

/// An app on the dashboard (`GET /api/v1/users/{id}/appLinks` semantics).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AppTile {
    pub label: String,
    /// The app's embed link (`/home/{appName}/{appId}/{linkId}`).
    pub link_url: String,
    pub app_name: String,
}

/// The apps assigned to the user, in dashboard order.
async fn app_tiles(state: &AppState, user_id: &str) -> Result<Vec<AppTile>, ApiError> {
    let apps = state.sign_on().app_links(user_id).await?;
    Ok(apps
        .iter()
        .filter(|(app, _)| {
            app.visibility.get("hide").and_then(|h| h.get("web")).and_then(serde_json::Value::as_bool)
                != Some(true)
        })
        .map(|(app, _)| AppTile {
            label: app.label.clone(),
            link_url: state.link(&app.embed_path()),
            app_name: app.name.clone(),
        })
        .collect())
}

fn user_context(user: &latchkey_core::users::User) -> Value {
    let name = format!(
        "{} {}",
        user.profile.get("firstName").unwrap_or_default(),
        user.profile.get("lastName").unwrap_or_default()
    );
    let name = name.trim();
    context! { name => if name.is_empty() { user.login() } else { name }, login => user.login() }
}

async fn dashboard(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let ui = Ui::new(&state, &headers);
    let (_, user, _) = match web::browser_session(&state, &headers).await {
        Ok(Some(found)) => found,
        Ok(None) => return see_other(&web::sign_in_url(&state, Some(HOME))),
        Err(e) => return ApiError::from(e).into_page(&state, &headers),
    };
    let tiles = match app_tiles(&state, &user.id).await {
        Ok(tiles) => tiles,
        Err(e) => return e.into_page(&state, &headers),
    };
    #[derive(Serialize)]
    struct Tile {
        label: String,
        link_url: String,
        app_name: String,
        initial: String,
    }
    let tiles: Vec<Tile> = tiles
        .into_iter()
        .map(|t| Tile {
            initial: t.label.chars().next().map(|c| c.to_uppercase().collect()).unwrap_or_default(),
            label: t.label,
            link_url: t.link_url,
            app_name: t.app_name,
        })
        .collect();
    let page = context! { user => user_context(&user), tiles => ser(tiles), active => "home" };
    ui.render(&state, StatusCode::OK, "dashboard.html", page)
}

/// `2026-01-02T03:04:05.000Z` → `2026-01-02 03:04 UTC`.
fn when(t: latchkey_core::Timestamp) -> String {
    let iso = t.to_iso();
    format!("{} UTC", iso.get(..16).unwrap_or(&iso).replace('T', " "))
}

async fn sessions_page(State(state): State<AppState>, headers: HeaderMap, params: QueryParams) -> Response {
    let ui = Ui::new(&state, &headers);
    let (current, user, _) = match web::browser_session(&state, &headers).await {
        Ok(Some(found)) => found,
        Ok(None) => return see_other(&web::sign_in_url(&state, Some(SESSIONS_PAGE))),
        Err(e) => return ApiError::from(e).into_page(&state, &headers),
    };
    let sessions = match state.sessions().list_for_user(&user.id).await {
        Ok(list) => list,
        Err(e) => return ApiError::from(e).into_page(&state, &headers),
    };
    #[derive(Serialize)]
    struct Row {
        id: String,
        current: bool,
        persistent: bool,
        created: String,
        created_text: String,
        last_activity: String,
        last_activity_text: String,
        ends_at: String,
        ends_at_text: String,
        amr: Vec<String>,
    }
    let mut rows: Vec<Row> = sessions
        .iter()
        .map(|s| Row {
            id: s.id.clone(),
            current: s.id == current.id,
            persistent: s.persistent,
            created: s.created.to_iso(),
            created_text: when(s.created),
            last_activity: s.last_activity.to_iso(),
            last_activity_text: when(s.last_activity),
            ends_at: s.ends_at().to_iso(),
            ends_at_text: when(s.ends_at()),
            amr: s.amr.clone(),
        })
        .collect();
    rows.sort_by_key(|r| !r.current);
    let others = rows.iter().filter(|r| !r.current).count();
    let notice = params
        .get("ended")
        .and_then(|n| n.parse::<u32>().ok())
        .map(|n| ui.text("sessions.ended").replace("{count}", &n.to_string()));
    let page =
        context! { user => user_context(&user), sessions => ser(rows), others, notice, active => "sessions" };
    ui.render(&state, StatusCode::OK, "sessions.html", page)
}

/// Ends every session of the user except this browser's (system log: `user.session.end`, LOGOUT).
async fn end_other_sessions(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ui = Ui::new(&state, &headers);
    if !csrf::check(&state, &headers, Form::parse(&body).get("_csrf")) {
        return web::error_page(&state, &headers, BrowserError::Csrf, StatusCode::FORBIDDEN);
    }
    let (current, user, _) = match web::browser_session(&state, &headers).await {
        Ok(Some(found)) => found,
        Ok(None) => return see_other(&web::sign_in_url(&state, Some(SESSIONS_PAGE))),
        Err(e) => return ApiError::from(e).into_page(&state, &headers),
    };
    let reason = EndReason::Logout;
    let ended = match state.sessions().end_all(&user.id, Some(&current.id), reason, None, ip.as_deref()).await
    {
        Ok(ended) => ended,
        Err(e) => return ApiError::from(e).into_page(&state, &headers),
    };
    ui.finish(&state, see_other(&state.link(&format!("{SESSIONS_PAGE}?ended={}", ended.len()))))
}

/// `POST /login/signout`: the dashboard's sign-out button, CSRF-checked, continuing at
/// `GET /login/signout` (Okta's endpoint), which ends the session and goes to the sign-in page.
async fn sign_out(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let ui = Ui::new(&state, &headers);
    let form = Form::parse(&body);
    let Some(proof) = form.get("_csrf").filter(|token| csrf::check(&state, &headers, Some(token))) else {
        return web::error_page(&state, &headers, BrowserError::Csrf, StatusCode::FORBIDDEN);
    };
    // The GET carries the form's CSRF token on, which proves it comes from this form when
    // `signout_requires_same_site` asks for proof (see `saml::slo::signout`).
    let encode = |text: &str| url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    let mut query = Vec::new();
    if state.config.signout_requires_same_site {
        query.push(format!("_csrf={}", encode(proof)));
    }
    if let Some(from) = form.get("fromURI").filter(|f| !f.is_empty()) {
        query.push(format!("fromURI={}", encode(from)));
    }
    let next = if query.is_empty() {
        "/login/signout".to_owned()
    } else {
        format!("/login/signout?{}", query.join("&"))
    };
    // `GET /login/signout` ends the session and walks the apps taking part in Single Logout. This
    // page goes there by a refresh, not by redirecting the POST: browsers apply the page's
    // `form-action 'self'` to every redirect that follows a form post, so the walk's first hop to
    // an SP would be blocked.
    let page = context! {
        title => ui.text("signout.title"),
        heading => ui.text("signout.title"),
        message => ui.text("signout.message"),
        refresh => next.clone(),
        back_href => next,
        back_label => ui.text("signout.continue"),
    };
    ui.render(&state, StatusCode::OK, "message.html", page)
}
