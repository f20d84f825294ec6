//! Okta's JSON shapes of the core's objects (User, Application, Group), for every API router
//! that returns them: absolute `_links` built from the public URL the request came to.

use latchkey_core::CoreError;
use latchkey_core::apps::{App, SignOn};
use latchkey_core::groups::{Group, GroupStats};
use latchkey_core::users::{User, UserStatus};
use serde_json::{Map, Value, json};

use crate::state::AppState;

/// Okta's id for the default user type; every user here has it.
pub(crate) const DEFAULT_USER_TYPE: &str = "oty1latchkeydefault0";

fn iso(t: Option<latchkey_core::Timestamp>) -> Value {
    t.map_or(Value::Null, |t| Value::String(t.to_iso()))
}

pub(crate) fn credentials(user: &User) -> Value {
    let mut credentials = Map::new();
    if user.password_hash.is_some() {
        credentials.insert("password".into(), json!({}));
    }
    credentials.insert("provider".into(), json!({"type": "OKTA", "name": "OKTA"}));
    Value::Object(credentials)
}

/// Okta's `User` object with absolute `_links` for the operations the current status allows.
pub(crate) fn user(state: &AppState, user: &User) -> Value {
    let base = state.link(&format!("/api/v1/users/{}", user.id));
    let post = |path: &str| json!({"href": format!("{base}{path}"), "hints": {"allow": ["POST"]}});
    let mut links = Map::new();
    links.insert("self".into(), json!({"href": base}));
    let ops: &[(&str, &str)] = match user.status {
        UserStatus::Staged => &[("activate", "/lifecycle/activate"), ("deactivate", "/lifecycle/deactivate")],
        UserStatus::Provisioned => {
            &[("reactivate", "/lifecycle/reactivate"), ("deactivate", "/lifecycle/deactivate")]
        }
        UserStatus::Active => &[
            ("suspend", "/lifecycle/suspend"),
            ("resetPassword", "/lifecycle/reset_password"),
            ("expirePassword", "/lifecycle/expire_password"),
            ("changePassword", "/credentials/change_password"),
            ("deactivate", "/lifecycle/deactivate"),
        ],
        UserStatus::PasswordExpired | UserStatus::Recovery => &[
            ("resetPassword", "/lifecycle/reset_password"),
            ("expirePassword", "/lifecycle/expire_password"),
            ("deactivate", "/lifecycle/deactivate"),
        ],
        UserStatus::LockedOut => &[
            ("unlock", "/lifecycle/unlock"),
            ("resetPassword", "/lifecycle/reset_password"),
            ("deactivate", "/lifecycle/deactivate"),
        ],
        UserStatus::Suspended => {
            &[("unsuspend", "/lifecycle/unsuspend"), ("deactivate", "/lifecycle/deactivate")]
        }
        UserStatus::Deprovisioned => &[("activate", "/lifecycle/activate")],
    };
    for (name, path) in ops {
        links.insert((*name).into(), post(path));
    }
    json!({
        "id": user.id,
        "status": user.status.as_str(),
        "created": user.created.to_iso(),
        "activated": iso(user.activated),
        "statusChanged": iso(user.status_changed),
        "lastLogin": iso(user.last_login),
        "lastUpdated": user.last_updated.to_iso(),
        "passwordChanged": iso(user.password_changed),
        "transitioningToStatus": null,
        "type": {"id": DEFAULT_USER_TYPE},
        "profile": user.profile.as_map(),
        "credentials": credentials(user),
        "_links": links,
    })
}

/// The embed link that starts a sign-on (Okta: `/home/{appName}/{appId}/{linkId}`).
fn embed_link(state: &AppState, app: &App) -> String {
    state.link(&app.embed_path())
}

/// The app in Okta's shape for its sign-on mode (`SamlApplication`, `OpenIdConnectApplication`).
pub(crate) async fn app(state: &AppState, app: &App) -> Result<Value, CoreError> {
    let link_name = format!("{}_link", app.okta_name());
    let mut visibility = app.visibility.clone();
    visibility.entry("autoSubmitToolbar").or_insert(json!(false));
    visibility.entry("hide").or_insert(json!({"iOS": false, "web": false}));
    visibility.insert("appLinks".into(), json!({ link_name.clone(): true }));
    let kid = state.signing_keys().active_kid().await?;
    let (credentials, settings, links) = protocol_parts(state, app, kid, &link_name);
    Ok(json!({
        "id": app.id,
        "name": app.okta_name(),
        "label": app.label,
        "status": app.status.as_str(),
        "created": app.created.to_iso(),
        "lastUpdated": app.last_updated.to_iso(),
        "accessibility": {"selfService": false, "errorRedirectUrl": null, "loginRedirectUrl": null},
        "visibility": visibility,
        "features": [],
        "signOnMode": app.sign_on.mode(),
        "credentials": credentials,
        "settings": settings,
        "_links": links,
    }))
}

/// `credentials`, `settings` and `_links` for the app's sign-on mode.
fn protocol_parts(
    state: &AppState,
    app: &App,
    kid: Option<String>,
    link_name: &str,
) -> (Value, Value, Value) {
    let base = state.link(&format!("/api/v1/apps/{}", app.id));
    let (lifecycle_name, lifecycle_op) =
        if app.is_active() { ("deactivate", "deactivate") } else { ("activate", "activate") };
    let mut credentials = json!({
        "userNameTemplate": {"template": "${source.login}", "type": "BUILT_IN"},
        "signing": {"kid": kid},
    });
    let mut settings = json!({
        "app": {},
        "notifications": {"vpn": {"network": {"connection": "DISABLED"}, "message": null, "helpUrl": null}},
    });
    let mut links = json!({
        "appLinks": [{"name": link_name, "href": embed_link(state, app), "type": "text/html"}],
        "users": {"href": format!("{base}/users")},
        lifecycle_name: {"href": format!("{base}/lifecycle/{lifecycle_op}")},
        "groups": {"href": format!("{base}/groups")},
        "logo": [],
    });
    match &app.sign_on {
        SignOn::Saml2(saml) => {
            settings["signOn"] = saml.to_api_json();
            links["metadata"] =
                json!({"href": format!("{base}/sso/saml/metadata"), "type": "application/xml"});
        }
        SignOn::Oidc(oidc) => {
            credentials["oauthClient"] = json!({
                "autoKeyRotation": true,
                "client_id": app.id,
                "token_endpoint_auth_method": oidc.token_endpoint_auth_method.as_str(),
                "pkce_required": oidc.pkce_required,
            });
            settings["oauthClient"] = oidc.settings_json();
            links["clientSecrets"] = json!({"href": format!("{base}/credentials/secrets")});
        }
    }
    (credentials, settings, links)
}

/// The Group object. `stats` adds `_embedded.stats` (`expand=stats`; Okta's SDKs spell its last
/// field `hasAdminPrivlege`).
pub(crate) fn group(state: &AppState, group: &Group, stats: Option<GroupStats>) -> Value {
    let base = state.link(&format!("/api/v1/groups/{}", group.id));
    let logo = state.link(crate::web::assets::APP_TILE_LOGO);
    let mut body = json!({
        "id": group.id,
        "created": group.created.to_iso(),
        "lastUpdated": group.last_updated.to_iso(),
        "lastMembershipUpdated": group.last_membership_updated.to_iso(),
        "objectClass": ["okta:user_group"],
        "type": group.kind.as_str(),
        "profile": {"name": group.name, "description": group.description},
        "_links": {
            "logo": [
                {"name": "medium", "href": logo, "type": "image/svg+xml"},
                {"name": "large", "href": logo, "type": "image/svg+xml"},
            ],
            "users": {"href": format!("{base}/users")},
            "apps": {"href": format!("{base}/apps")},
        },
    });
    if let (Some(stats), Some(object)) = (stats, body.as_object_mut()) {
        object.insert(
            "_embedded".into(),
            json!({"stats": {
                "usersCount": stats.users,
                "appsCount": stats.apps,
                "groupPushMappingsCount": 0,
                "hasAdminPrivlege": false,
            }}),
        );
    }
    body
}
