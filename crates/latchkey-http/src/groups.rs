//! `/api/v1/groups*` (Okta's Groups API: groups, members, the apps assigned to a group, group
//! rules) and `GET /api/v1/users/{id}/groups`, in Okta's shapes and status codes. The decisions
//! (the built-in `Everyone` group, unique names, rules and the memberships they make) are the
//! core's (`latchkey_core::groups::service`); this module maps JSON in and out.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use latchkey_core::CoreError;
use latchkey_core::groups::query::GroupQuery;
use latchkey_core::groups::service::{GroupInput, RuleInput};
use latchkey_core::groups::{Group, GroupRule};
use latchkey_core::store::GroupStore;
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::extract::{Admin, JsonObject, PathParams, QueryParams, cursor, page_links};
use crate::shapes;
use crate::state::AppState;

/// Okta's documented page size for groups (and its largest).
const GROUPS_PAGE: u32 = 10_000;
/// Okta's default for `q`, which is not paged.
const QUERY_PAGE: u32 = 300;
const MEMBERS_PAGE: u32 = 1000;
const MAX_MEMBERS_PAGE: u32 = 10_000;
const RULES_PAGE: u32 = 50;
const MAX_RULES_PAGE: u32 = 200;
const APPS_PAGE: u32 = 20;
const MAX_APPS_PAGE: u32 = 200;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/groups", get(list).post(create))
        .route("/api/v1/groups/rules", get(list_rules).post(create_rule))
        .route("/api/v1/groups/rules/{id}", get(read_rule).put(replace_rule).delete(delete_rule))
        .route("/api/v1/groups/rules/{id}/lifecycle/{operation}", post(rule_lifecycle))
        .route("/api/v1/groups/{id}", get(read).put(replace).delete(remove))
        .route("/api/v1/groups/{id}/users", get(list_members))
        .route("/api/v1/groups/{id}/users/{user_id}", put(add_member).delete(remove_member))
        .route("/api/v1/groups/{id}/apps", get(list_apps))
        .route("/api/v1/users/{id}/groups", get(user_groups))
}

/// `expand=stats`, or nothing; other expansions are refused by name.
fn wants_stats(params: &QueryParams) -> Result<bool, ApiError> {
    match params.get("expand") {
        None | Some("") => Ok(false),
        Some("stats") => Ok(true),
        Some(_) => {
            Err(ApiError::InvalidParameter { name: "expand", message: "only stats is supported".into() })
        }
    }
}

async fn render_with(state: &AppState, group: &Group, stats: bool) -> Result<Value, ApiError> {
    let stats = if stats { Some(state.store.group_stats(&group.id).await?) } else { None };
    Ok(shapes::group(state, group, stats))
}

/// `profile` of a create or replace: `name` required, `description` optional; nothing else.
fn group_input(body: &Map<String, Value>) -> Result<GroupInput, ApiError> {
    for name in body.keys() {
        if ![
            "profile",
            "id",
            "created",
            "lastUpdated",
            "lastMembershipUpdated",
            "objectClass",
            "type",
            "_links",
            "_embedded",
        ]
        .contains(&name.as_str())
        {
            return Err(ApiError::MalformedBody(format!("Unknown field '{}' in the group.", truncate(name))));
        }
    }
    let Some(Value::Object(profile)) = body.get("profile") else {
        return Err(CoreError::validation("profile", "is required").into());
    };
    for name in profile.keys() {
        if name != "name" && name != "description" {
            return Err(CoreError::validation(
                format!("profile.{}", truncate(name)),
                "is not a property of the group profile",
            )
            .into());
        }
    }
    let name = match profile.get("name") {
        Some(Value::String(name)) => name.clone(),
        _ => return Err(CoreError::validation("name", "is required").into()),
    };
    let description = match profile.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) => Some(d.clone()),
        Some(_) => return Err(ApiError::MalformedBody("profile.description must be a string.".into())),
    };
    Ok(GroupInput { name, description })
}

fn truncate(text: &str) -> String {
    text.chars().take(60).collect()
}

async fn list(
    _admin: Admin,
    State(state): State<AppState>,
    params: QueryParams,
) -> Result<Response, ApiError> {
    let stats = wants_stats(&params)?;
    if params.get("filter").is_some() && params.get("search").is_some() {
        return Err(ApiError::Core(CoreError::InvalidQuery(
            "Can't specify a search query and filter in the same request.".into(),
        )));
    }
    let q = params.get("q");
    let limit = params.limit(if q.is_some() { QUERY_PAGE } else { GROUPS_PAGE }, GROUPS_PAGE)?;
    let after = cursor(&params)?;
    let mut query = GroupQuery { after: after.map(str::to_owned), limit: limit + 1, ..GroupQuery::default() };
    if let Some(q) = q {
        query = query.with_prefix(q)?;
    }
    for name in ["filter", "search"] {
        if let Some(text) = params.get(name) {
            query = query.with_condition(text)?;
        }
    }
    let mut groups = state.groups().list(&query).await?;
    let next = crate::extract::cut_page(&mut groups, limit, |g| &g.id);
    let mut body = Vec::with_capacity(groups.len());
    for group in &groups {
        body.push(render_with(&state, group, stats).await?);
    }
    let kept: Vec<(&str, &str)> = ["q", "filter", "search", "expand"]
        .into_iter()
        .filter_map(|name| params.get(name).map(|value| (name, value)))
        .collect();
    let headers = page_links(&state, "/api/v1/groups", limit, &kept, after, next);
    Ok((headers, Json(Value::Array(body))).into_response())
}

async fn create(
    admin: Admin,
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let group = state.groups().create(group_input(&body)?, &admin.changed_by()).await?;
    Ok(Json(shapes::group(&state, &group, None)))
}

async fn read(
    _admin: Admin,
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
    params: QueryParams,
) -> Result<Json<Value>, ApiError> {
    let group = state.groups().get(&id).await?;
    Ok(Json(render_with(&state, &group, wants_stats(&params)?).await?))
}

async fn replace(
    admin: Admin,
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let input = group_input(&body)?;
    let group = state.groups().update(&id, input, &admin.changed_by()).await?;
    Ok(Json(shapes::group(&state, &group, None)))
}

async fn remove(
    admin: Admin,
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    // Rules it makes INVALID take back what they gave: as many memberships as a deactivation.
    to_completion(async move { state.groups().delete(&id, &admin.changed_by()).await }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Runs a use case that may change the memberships of every user (a rule activated, deactivated
/// or deleted, a group deleted) in a task of its own that the request waits for. A request cut
/// short (the client gone, the request deadline) stops waiting but does not stop the work, which
/// would leave it half done: a rule ACTIVE with half of its memberships written.
async fn to_completion<F>(work: F) -> Result<(), ApiError>
where
    F: Future<Output = Result<(), CoreError>> + Send + 'static,
{
    match tokio::spawn(work).await {
        Ok(done) => Ok(done?),
        Err(e) => {
            tracing::error!(error = %e, "a group change did not run to completion");
            Err(ApiError::Internal)
        }
    }
}

async fn list_members(
    _admin: Admin,
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
    params: QueryParams,
) -> Result<Response, ApiError> {
    let group = state.groups().get(&id).await?;
    let limit = params.limit(MEMBERS_PAGE, MAX_MEMBERS_PAGE)?;
    let after = cursor(&params)?;
    let mut users = state.store.list_members(&group.id, after, limit + 1).await?;
    let next = crate::extract::cut_page(&mut users, limit, |u| &u.id);
    let body: Vec<Value> = users.iter().map(|user| shapes::user(&state, user)).collect();
    let headers = page_links(&state, &format!("/api/v1/groups/{}/users", group.id), limit, &[], after, next);
    Ok((headers, Json(Value::Array(body))).into_response())
}

async fn add_member(
    admin: Admin,
    State(state): State<AppState>,
    PathParams((id, user_id)): PathParams<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.groups().add_member(&id, &user_id, &admin.changed_by()).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_member(
    admin: Admin,
    State(state): State<AppState>,
    PathParams((id, user_id)): PathParams<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.groups().remove_member(&id, &user_id, &admin.changed_by()).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_apps(
    _admin: Admin,
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
    params: QueryParams,
) -> Result<Response, ApiError> {
    let group = state.groups().get(&id).await?;
    let limit = params.limit(APPS_PAGE, MAX_APPS_PAGE)?;
    let after = cursor(&params)?;
    let mut apps = state.store.list_group_apps(&group.id, after, limit + 1).await?;
    let next = crate::extract::cut_page(&mut apps, limit, |a| &a.id);
    let mut body = Vec::with_capacity(apps.len());
    for app in &apps {
        body.push(shapes::app(&state, app).await?);
    }
    let headers = page_links(&state, &format!("/api/v1/groups/{}/apps", group.id), limit, &[], after, next);
    Ok((headers, Json(Value::Array(body))).into_response())
}

async fn user_groups(
    _admin: Admin,
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<Json<Value>, ApiError> {
    let user = state.users().get(&id).await?;
    let groups = state.store.list_user_groups(&user.id).await?;
    Ok(Json(Value::Array(groups.iter().map(|g| shapes::group(&state, g, None)).collect())))
}

// ------------------------------------------------------------------------------------------------
// Rules

/// The GroupRule object. `allGroupsValid` is false when a group it fills was deleted since.
async fn render_rule(state: &AppState, rule: &GroupRule) -> Result<Value, ApiError> {
    let mut all_valid = true;
    for id in &rule.group_ids {
        all_valid &= state.store.find_group(id).await?.is_some();
    }
    Ok(json!({
        "type": "group_rule",
        "id": rule.id,
        "status": rule.status.as_str(),
        "name": rule.name,
        "created": rule.created.to_iso(),
        "lastUpdated": rule.last_updated.to_iso(),
        "conditions": {
            "people": {"users": {"exclude": rule.excluded_users}, "groups": {"exclude": []}},
            "expression": {"value": rule.expression, "type": "urn:okta:expression:1.0"},
        },
        "actions": {"assignUserToGroups": {"groupIds": rule.group_ids}},
        "allGroupsValid": all_valid,
    }))
}

fn strings(value: Option<&Value>, field: &'static str) -> Result<Vec<String>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) if items.len() <= 1000 => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| ApiError::MalformedBody(format!("{field} must be a list of strings.")))
            })
            .collect(),
        Some(_) => Err(ApiError::MalformedBody(format!("{field} must be a list of strings."))),
    }
}

/// A rule body of a create (`creating`) or replace. Read-only fields a client echoes back are
/// accepted; anything else is refused by name, as in a group body. `status` changes only through
/// the lifecycle operations: a create naming another status than INACTIVE is refused.
fn rule_input(body: &Map<String, Value>, creating: bool) -> Result<RuleInput, ApiError> {
    for name in body.keys() {
        if ![
            "type",
            "id",
            "name",
            "status",
            "created",
            "lastUpdated",
            "conditions",
            "actions",
            "allGroupsValid",
            "_links",
        ]
        .contains(&name.as_str())
        {
            return Err(ApiError::MalformedBody(format!("Unknown field '{}' in the rule.", truncate(name))));
        }
    }
    if creating
        && let Some(status) = body.get("status").filter(|s| !s.is_null())
        && status != "INACTIVE"
    {
        return Err(CoreError::validation(
            "status",
            "a rule is created INACTIVE: activate it with POST /api/v1/groups/rules/{id}/lifecycle/activate",
        )
        .into());
    }
    if let Some(kind) = body.get("type").filter(|t| !t.is_null())
        && kind != "group_rule"
    {
        return Err(CoreError::validation("type", "must be group_rule").into());
    }
    let name = match body.get("name") {
        Some(Value::String(name)) => name.clone(),
        _ => String::new(),
    };
    let conditions = body.get("conditions").filter(|c| !c.is_null());
    if conditions.is_some_and(|c| !c.is_object()) {
        return Err(ApiError::MalformedBody("conditions must be an object.".into()));
    }
    let expression = match conditions.and_then(|c| c.pointer("/expression/value")) {
        None | Some(Value::Null) => "",
        Some(Value::String(text)) => text,
        Some(_) => {
            return Err(ApiError::MalformedBody(
                "conditions.expression.value must be a string (an expression).".into(),
            ));
        }
    };
    if let Some(kind) = conditions.and_then(|c| c.pointer("/expression/type")).filter(|t| !t.is_null())
        && kind != "urn:okta:expression:1.0"
    {
        return Err(
            CoreError::validation("conditions.expression.type", "must be urn:okta:expression:1.0").into()
        );
    }
    let excluded = strings(
        conditions.and_then(|c| c.pointer("/people/users/exclude")),
        "conditions.people.users.exclude",
    )?;
    let excluded_groups = strings(
        conditions.and_then(|c| c.pointer("/people/groups/exclude")),
        "conditions.people.groups.exclude",
    )?;
    if !excluded_groups.is_empty() {
        return Err(CoreError::validation(
            "conditions.people.groups.exclude",
            "is not supported (as in Okta)",
        )
        .into());
    }
    let group_ids = strings(
        body.get("actions").and_then(|a| a.pointer("/assignUserToGroups/groupIds")),
        "actions.assignUserToGroups.groupIds",
    )?;
    Ok(RuleInput { name, expression: expression.to_owned(), group_ids, excluded_users: excluded })
}

async fn list_rules(
    _admin: Admin,
    State(state): State<AppState>,
    params: QueryParams,
) -> Result<Response, ApiError> {
    let limit = params.limit(RULES_PAGE, MAX_RULES_PAGE)?;
    let after = cursor(&params)?;
    // One more than the page, to know whether there is a next one.
    let mut rules = state.groups().list_rules(params.get("search"), after, limit + 1).await?;
    let next = crate::extract::cut_page(&mut rules, limit, |r| &r.id);
    let mut body = Vec::with_capacity(rules.len());
    for rule in &rules {
        body.push(render_rule(&state, rule).await?);
    }
    let kept: Vec<(&str, &str)> = params.get("search").map(|s| vec![("search", s)]).unwrap_or_default();
    let headers = page_links(&state, "/api/v1/groups/rules", limit, &kept, after, next);
    Ok((headers, Json(Value::Array(body))).into_response())
}

async fn create_rule(
    admin: Admin,
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let rule = state.groups().create_rule(rule_input(&body, true)?, &admin.changed_by()).await?;
    Ok(Json(render_rule(&state, &rule).await?))
}

async fn read_rule(
    _admin: Admin,
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<Json<Value>, ApiError> {
    let rule = state.groups().rule(&id).await?;
    Ok(Json(render_rule(&state, &rule).await?))
}

async fn replace_rule(
    admin: Admin,
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let rule = state.groups().update_rule(&id, rule_input(&body, false)?, &admin.changed_by()).await?;
    Ok(Json(render_rule(&state, &rule).await?))
}

async fn delete_rule(
    admin: Admin,
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
    params: QueryParams,
) -> Result<StatusCode, ApiError> {
    let remove_users = params.flag("removeUsers", false)?;
    to_completion(async move { state.groups().delete_rule(&id, remove_users, &admin.changed_by()).await })
        .await?;
    Ok(StatusCode::ACCEPTED)
}

async fn rule_lifecycle(
    admin: Admin,
    State(state): State<AppState>,
    PathParams((id, operation)): PathParams<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let activate = match operation.as_str() {
        "activate" => true,
        "deactivate" => false,
        _ => {
            return Err(ApiError::RouteNotFound(format!(
                "/api/v1/groups/rules/{id}/lifecycle/{}",
                truncate(&operation)
            )));
        }
    };
    to_completion(async move {
        let groups = state.groups();
        if activate {
            groups.activate_rule(&id, &admin.changed_by()).await
        } else {
            groups.deactivate_rule(&id, &admin.changed_by()).await
        }
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
