//! `/api/v1/apps/{id}/credentials/secrets*`: an OpenID Connect app's client secrets (Okta's
//! client secret management: list, add, read, activate, deactivate, delete).
//!
//! A secret is shown once, in the answer that creates it (generated, or given by the admin as Okta
//! allows); afterwards only its id, status and
//! `secret_hash` are. An app has at most two secrets, always at least one active while it
//! authenticates with one, and only an inactive secret can be deleted (as in Okta). Every change
//! is an app update, so every node's cached app (and the secrets in it) is evicted at once.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use latchkey_core::CoreError;
use latchkey_core::apps::oidc::{ClientSecret, MAX_CLIENT_SECRETS, SecretStatus};
use latchkey_core::apps::{App, SignOn};
use latchkey_core::events::Target;
use latchkey_core::store::AppStore;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::extract::{Admin, PathParams};
use crate::state::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/apps/{id}/credentials/secrets", get(list).post(create))
        .route("/api/v1/apps/{id}/credentials/secrets/{secret_id}", get(read).delete(remove))
        .route("/api/v1/apps/{id}/credentials/secrets/{secret_id}/lifecycle/{operation}", post(lifecycle))
}

/// The OpenID Connect app `id`; any other app has no client secrets (404, as a missing app).
async fn oidc_app(state: &AppState, id: &str) -> Result<App, ApiError> {
    match state.store.find_app(id).await? {
        Some(app) if app.id == id && app.oidc().is_some() => Ok(app),
        _ => Err(CoreError::NotFound(format!("{id} (App)")).into()),
    }
}

fn secrets_mut(app: &mut App) -> Result<&mut Vec<ClientSecret>, ApiError> {
    let id = app.id.clone();
    match &mut app.sign_on {
        SignOn::Oidc(oidc) => Ok(&mut oidc.secrets),
        SignOn::Saml2(_) => Err(CoreError::NotFound(format!("{id} (App)")).into()),
    }
}

fn render(state: &AppState, app: &App, secret: &ClientSecret, plaintext: Option<&str>) -> Value {
    let base = state.link(&format!("/api/v1/apps/{}/credentials/secrets/{}", app.id, secret.id));
    let (op, name) = match secret.status {
        SecretStatus::Active => ("deactivate", "deactivate"),
        SecretStatus::Inactive => ("activate", "activate"),
    };
    let mut links = json!({
        name: {"href": format!("{base}/lifecycle/{op}"), "hints": {"allow": ["POST"]}},
    });
    if secret.status == SecretStatus::Inactive {
        links["delete"] = json!({"href": base, "hints": {"allow": ["DELETE"]}});
    }
    let mut body = json!({
        "id": secret.id,
        "status": secret.status.as_str(),
        "secret_hash": secret.secret_hash,
        "created": secret.created.to_iso(),
        "lastUpdated": secret.last_updated.to_iso(),
        "_links": links,
    });
    if let Some(plaintext) = plaintext {
        body["client_secret"] = json!(plaintext);
    }
    body
}

fn find<'a>(app: &'a App, secret_id: &str) -> Result<&'a ClientSecret, ApiError> {
    app.oidc()
        .and_then(|oidc| oidc.secrets.iter().find(|s| s.id == secret_id))
        .ok_or_else(|| CoreError::NotFound(format!("{secret_id} (Client secret)")).into())
}

async fn save(
    state: &AppState,
    admin: &Admin,
    app: &mut App,
    event: &str,
    message: &str,
) -> Result<(), ApiError> {
    app.last_updated = state.clock.now();
    if !state.store.update_app(app).await? {
        return Err(CoreError::NotFound(format!("{} (App)", app.id)).into());
    }
    let target = Target::new(&app.id, "AppInstance", &app.label);
    state.log(admin.event(state, event, message, target)).await;
    Ok(())
}

async fn list(
    _admin: Admin,
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<Json<Value>, ApiError> {
    let app = oidc_app(&state, &id).await?;
    let secrets = app.oidc().map(|o| o.secrets.as_slice()).unwrap_or_default();
    Ok(Json(Value::Array(secrets.iter().map(|s| render(&state, &app, s, None)).collect())))
}

async fn read(
    _admin: Admin,
    State(state): State<AppState>,
    PathParams((id, secret_id)): PathParams<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let app = oidc_app(&state, &id).await?;
    let secret = find(&app, &secret_id)?;
    Ok(Json(render(&state, &app, secret, None)))
}

/// Adds a secret: generated, or the one the admin gives (`client_secret`, 14 to 100 visible
/// characters, as Okta takes), shown in this answer only.
async fn create(
    admin: Admin,
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let supplied = if body.is_empty() {
        None
    } else {
        let parsed: Value = serde_json::from_slice(&body)
            .map_err(|_| ApiError::MalformedBody("The body is not JSON.".into()))?;
        parsed.get("client_secret").and_then(Value::as_str).map(str::to_owned)
    };
    let mut app = oidc_app(&state, &id).await?;
    if secrets_mut(&mut app)?.len() >= MAX_CLIENT_SECRETS {
        return Err(CoreError::validation(
            "client_secret",
            format!("an app has at most {MAX_CLIENT_SECRETS} client secrets; delete an inactive one first"),
        )
        .into());
    }
    let now = state.clock.now();
    let (stored, plaintext) = match supplied {
        // Okta lets an admin give the secret (moving a client keeps its secret).
        Some(text) => (ClientSecret::supplied(&text, now)?, text),
        None => {
            let (stored, secret) = ClientSecret::issue(now);
            (stored, secret.expose().to_owned())
        }
    };
    secrets_mut(&mut app)?.push(stored.clone());
    save(&state, &admin, &mut app, "application.lifecycle.update", "Add a client secret").await?;
    Ok((StatusCode::CREATED, Json(render(&state, &app, &stored, Some(&plaintext)))))
}

async fn lifecycle(
    admin: Admin,
    State(state): State<AppState>,
    PathParams((id, secret_id, operation)): PathParams<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let status = match operation.as_str() {
        "activate" => SecretStatus::Active,
        "deactivate" => SecretStatus::Inactive,
        _ => return Err(CoreError::NotFound(format!("{operation} (Operation)")).into()),
    };
    let mut app = oidc_app(&state, &id).await?;
    find(&app, &secret_id)?;
    let now = state.clock.now();
    let secrets = secrets_mut(&mut app)?;
    let others_active = secrets.iter().any(|s| s.id != secret_id && s.status == SecretStatus::Active);
    if status == SecretStatus::Inactive && !others_active {
        return Err(CoreError::validation(
            "status",
            "the app's only active client secret cannot be deactivated",
        )
        .into());
    }
    if let Some(secret) = secrets.iter_mut().find(|s| s.id == secret_id)
        && secret.status != status
    {
        secret.status = status;
        secret.last_updated = now;
    }
    save(&state, &admin, &mut app, "application.lifecycle.update", "Change a client secret's status").await?;
    let secret = find(&app, &secret_id)?;
    Ok(Json(render(&state, &app, secret, None)))
}

async fn remove(
    admin: Admin,
    State(state): State<AppState>,
    PathParams((id, secret_id)): PathParams<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let mut app = oidc_app(&state, &id).await?;
    if find(&app, &secret_id)?.status == SecretStatus::Active {
        return Err(CoreError::validation(
            "status",
            "an active client secret cannot be deleted; deactivate it first",
        )
        .into());
    }
    secrets_mut(&mut app)?.retain(|s| s.id != secret_id);
    save(&state, &admin, &mut app, "application.lifecycle.update", "Delete a client secret").await?;
    Ok(StatusCode::NO_CONTENT)
}
