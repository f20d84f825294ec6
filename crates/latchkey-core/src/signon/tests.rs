//! The sign-on decisions against an in-memory store: no HTTP, no SQL.

use std::sync::Mutex;

use serde_json::{Map, Value, json};

use super::service::SignOn;
use super::{Decision, Grant, GrantEncoder, Participant, Reauthentication, Refusal, SignOnRequest, SignedOn};
use crate::apps::query::AppQuery;
use crate::apps::{App, AppStatus, AppUser, SamlSignOn, SignOn as AppSignOn};
use crate::authn::{SessionToken, StoredTransaction};
use crate::clock::{Clock, Timestamp};
use crate::error::{CoreError, StoreError};
use crate::events::{AuditLog, Event};
use crate::groups::query::GroupQuery;
use crate::groups::{AppGroup, Group, GroupRef, GroupRule, GroupStats, MembershipSource};
use crate::ids::secret_digest;
use crate::policy::{PasswordPolicy, PolicyKind, PolicyRow};
use crate::sessions::service::Sessions;
use crate::sessions::{BrowserRequest, BrowserSession, CookieChange, EndReason, Session, TokenPrecedence};
use crate::store::{
    AppStore, AuthnStore, GroupStore, PolicyStore, SessionStore, SignOnStore, StoreResult, UserStore,
};
use crate::tokens::{OneTimeToken, TokenPurpose};
use crate::users::profile::Profile;
use crate::users::query::UserQuery;
use crate::users::{User, UserStatus};

const NOW: Timestamp = Timestamp(1_800_000_000_000);

struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        NOW
    }
}

/// Only what sign-on reads and writes; anything else is refused, so a test that strays fails.
#[derive(Default)]
struct MemoryStore {
    users: Mutex<Vec<User>>,
    tokens: Mutex<Vec<(SessionToken, bool)>>,
    sessions: Mutex<Vec<(Session, Option<EndReason>)>>,
    apps: Mutex<Vec<App>>,
    assignments: Mutex<Vec<AppUser>>,
    participants: Mutex<Vec<Participant>>,
    groups: Mutex<Vec<GroupRef>>,
    /// (group id, user id)
    memberships: Mutex<Vec<(String, String)>>,
    /// (app id, group id)
    app_groups: Mutex<Vec<(String, String)>>,
}

fn not_kept<T>() -> StoreResult<T> {
    Err(StoreError::Unavailable("not kept by the test store".to_owned()))
}

#[derive(Default)]
struct Recorded(Mutex<Vec<Event>>);

impl AuditLog for Recorded {
    async fn record(&self, event: Event) {
        self.0.lock().unwrap().push(event);
    }
}

impl Recorded {
    /// `(eventType, outcome, reason)` of every event, in order.
    fn summary(&self) -> Vec<(String, &'static str, Option<String>)> {
        self.0.lock().unwrap().iter().map(|e| (e.event_type.clone(), e.outcome, e.reason.clone())).collect()
    }
}

impl UserStore for MemoryStore {
    async fn insert_user(&self, user: &User) -> StoreResult<()> {
        self.users.lock().unwrap().push(user.clone());
        Ok(())
    }

    async fn find_user(&self, id_or_login: &str) -> StoreResult<Option<User>> {
        Ok(self
            .users
            .lock()
            .unwrap()
            .iter()
            .find(|u| u.id == id_or_login || u.login() == id_or_login)
            .cloned())
    }

    async fn list_users(&self, _: &UserQuery, _: Option<&str>, _: u32) -> StoreResult<Vec<User>> {
        not_kept()
    }

    async fn update_user(&self, _: &User, _: i64, _: Option<&OneTimeToken>) -> StoreResult<()> {
        not_kept()
    }

    async fn record_sign_in(&self, _: &str, _: Timestamp) -> StoreResult<()> {
        not_kept()
    }

    async fn record_failed_sign_in(&self, _: &str, _: u32, _: Timestamp) -> StoreResult<Option<User>> {
        not_kept()
    }

    async fn delete_user(&self, _: &str) -> StoreResult<bool> {
        not_kept()
    }
}

impl PolicyStore for MemoryStore {
    async fn password_policy(&self) -> StoreResult<PasswordPolicy> {
        Ok(PasswordPolicy::default())
    }

    /// No rows: every policy has Okta's defaults.
    async fn policy_rows(&self) -> StoreResult<Vec<PolicyRow>> {
        Ok(Vec::new())
    }

    async fn ensure_policies(&self, _: &[PolicyRow]) -> StoreResult<()> {
        not_kept()
    }

    async fn update_policy(&self, _: PolicyKind, _: &str, _: Timestamp, _: i64) -> StoreResult<()> {
        not_kept()
    }
}

impl AuthnStore for MemoryStore {
    async fn insert_transaction(&self, _: &StoredTransaction) -> StoreResult<()> {
        not_kept()
    }

    async fn find_transaction(&self, _: &str, _: Timestamp) -> StoreResult<Option<StoredTransaction>> {
        not_kept()
    }

    async fn update_transaction(&self, _: &StoredTransaction, _: i64) -> StoreResult<()> {
        not_kept()
    }

    async fn delete_transaction(&self, _: &str) -> StoreResult<()> {
        not_kept()
    }

    async fn finish_transaction(&self, _: &str, _: i64) -> StoreResult<bool> {
        not_kept()
    }

    async fn insert_session_token(&self, token: &SessionToken) -> StoreResult<()> {
        self.tokens.lock().unwrap().push((token.clone(), false));
        Ok(())
    }

    async fn consume_session_token(&self, digest: &str, now: Timestamp) -> StoreResult<Option<SessionToken>> {
        let mut tokens = self.tokens.lock().unwrap();
        let found = tokens.iter_mut().find(|(t, used)| t.digest == digest && !used && t.expires_at > now);
        Ok(found.map(|(token, used)| {
            *used = true;
            token.clone()
        }))
    }

    async fn consume_one_time_token(
        &self,
        _: &str,
        _: TokenPurpose,
        _: Timestamp,
    ) -> StoreResult<Option<OneTimeToken>> {
        not_kept()
    }

    async fn purge_expired(&self, _: Timestamp) -> StoreResult<u64> {
        not_kept()
    }
}

impl SessionStore for MemoryStore {
    async fn insert_session(&self, session: &Session) -> StoreResult<()> {
        self.sessions.lock().unwrap().push((session.clone(), None));
        Ok(())
    }

    async fn find_session(&self, id: &str, _: Timestamp) -> StoreResult<Option<Session>> {
        let sessions = self.sessions.lock().unwrap();
        Ok(sessions.iter().find(|(s, ended)| s.id == id && ended.is_none()).map(|(s, _)| s.clone()))
    }

    async fn find_session_by_cookie(
        &self,
        digest: &str,
        _: Timestamp,
    ) -> StoreResult<Option<(Session, User)>> {
        let session = {
            let sessions = self.sessions.lock().unwrap();
            sessions
                .iter()
                .find(|(s, ended)| s.cookie_digest == digest && ended.is_none())
                .map(|(s, _)| s.clone())
        };
        let Some(session) = session else { return Ok(None) };
        let user = self.find_user(&session.user_id).await?;
        Ok(user.map(|user| (session, user)))
    }

    async fn touch_session(&self, _: &str, _: Timestamp, _: Timestamp) -> StoreResult<bool> {
        Ok(true)
    }

    async fn end_session(&self, id: &str, reason: EndReason, _: Timestamp) -> StoreResult<bool> {
        let mut sessions = self.sessions.lock().unwrap();
        match sessions.iter_mut().find(|(s, ended)| s.id == id && ended.is_none()) {
            Some((_, ended)) => {
                *ended = Some(reason);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn end_user_sessions(
        &self,
        _: &str,
        _: Option<&str>,
        _: EndReason,
        _: Timestamp,
    ) -> StoreResult<Vec<String>> {
        not_kept()
    }

    async fn list_user_sessions(&self, _: &str, _: Timestamp) -> StoreResult<Vec<Session>> {
        not_kept()
    }

    async fn expire_sessions(&self, _: Timestamp) -> StoreResult<Vec<(String, String, Timestamp)>> {
        not_kept()
    }
}

impl AppStore for MemoryStore {
    async fn insert_app(&self, app: &App) -> StoreResult<()> {
        self.apps.lock().unwrap().push(app.clone());
        Ok(())
    }

    async fn update_app(&self, _: &App) -> StoreResult<bool> {
        not_kept()
    }

    async fn delete_app(&self, _: &str) -> StoreResult<bool> {
        not_kept()
    }

    async fn find_app(&self, id: &str) -> StoreResult<Option<App>> {
        Ok(self.apps.lock().unwrap().iter().find(|a| a.id == id).cloned())
    }

    async fn list_apps(&self, _: &AppQuery) -> StoreResult<Vec<App>> {
        not_kept()
    }

    async fn put_app_user(&self, assignment: &AppUser) -> StoreResult<()> {
        self.assignments.lock().unwrap().push(assignment.clone());
        Ok(())
    }

    async fn find_app_user(&self, _: &str, _: &str) -> StoreResult<Option<AppUser>> {
        not_kept()
    }

    async fn list_app_users(&self, _: &str, _: Option<&str>, _: u32) -> StoreResult<Vec<AppUser>> {
        not_kept()
    }

    async fn delete_app_user(&self, _: &str, _: &str) -> StoreResult<bool> {
        not_kept()
    }

    async fn list_user_apps(&self, user_id: &str) -> StoreResult<Vec<(App, AppUser)>> {
        let apps = self.apps.lock().unwrap();
        let assignments = self.assignments.lock().unwrap();
        Ok(assignments
            .iter()
            .filter(|a| a.user_id == user_id)
            .filter_map(|a| apps.iter().find(|app| app.id == a.app_id).map(|app| (app.clone(), a.clone())))
            .collect())
    }
}

impl SignOnStore for MemoryStore {
    async fn add_participant(&self, participant: &Participant) -> StoreResult<Participant> {
        let mut participants = self.participants.lock().unwrap();
        if let Some(existing) = participants
            .iter()
            .find(|p| p.session_id == participant.session_id && p.app_id == participant.app_id)
        {
            return Ok(existing.clone());
        }
        participants.push(participant.clone());
        Ok(participant.clone())
    }

    async fn find_participant(&self, _: &str, _: &str) -> StoreResult<Option<Participant>> {
        not_kept()
    }

    async fn list_participants(&self, _: &str) -> StoreResult<Vec<Participant>> {
        not_kept()
    }

    async fn find_sso_grant(
        &self,
        app_id: &str,
        user_id: &str,
        session_id: &str,
    ) -> StoreResult<Option<Option<Participant>>> {
        let direct =
            self.assignments.lock().unwrap().iter().any(|a| a.app_id == app_id && a.user_id == user_id);
        let memberships = self.memberships.lock().unwrap();
        let through_group =
            self.app_groups.lock().unwrap().iter().any(|(app, group)| {
                app == app_id && memberships.iter().any(|(g, u)| g == group && u == user_id)
            });
        if !direct && !through_group {
            return Ok(None);
        }
        let participants = self.participants.lock().unwrap();
        Ok(Some(participants.iter().find(|p| p.session_id == session_id && p.app_id == app_id).cloned()))
    }

    async fn find_participant_by_index(&self, _: &str, _: &str) -> StoreResult<Option<Participant>> {
        not_kept()
    }
}

impl GroupStore for MemoryStore {
    async fn insert_group(&self, _: &Group) -> StoreResult<()> {
        not_kept()
    }
    async fn update_group(&self, _: &Group) -> StoreResult<bool> {
        not_kept()
    }
    async fn delete_group(&self, _: &str) -> StoreResult<bool> {
        not_kept()
    }
    async fn find_group(&self, _: &str) -> StoreResult<Option<Group>> {
        not_kept()
    }
    async fn everyone_group(&self) -> StoreResult<Group> {
        not_kept()
    }
    async fn list_groups(&self, _: &GroupQuery) -> StoreResult<Vec<Group>> {
        not_kept()
    }
    async fn group_stats(&self, _: &str) -> StoreResult<GroupStats> {
        not_kept()
    }
    async fn add_member(&self, _: &str, _: &str, _: MembershipSource<'_>, _: Timestamp) -> StoreResult<bool> {
        not_kept()
    }
    async fn remove_member(
        &self,
        _: &str,
        _: &str,
        _: MembershipSource<'_>,
        _: Timestamp,
    ) -> StoreResult<bool> {
        not_kept()
    }
    async fn membership_sources(&self, _: &str, _: &str) -> StoreResult<Vec<Option<String>>> {
        not_kept()
    }
    async fn list_members(&self, _: &str, _: Option<&str>, _: u32) -> StoreResult<Vec<User>> {
        not_kept()
    }
    async fn list_user_groups(&self, _: &str) -> StoreResult<Vec<Group>> {
        not_kept()
    }
    async fn user_memberships(&self, _: &str) -> StoreResult<Vec<(String, Option<String>)>> {
        not_kept()
    }
    async fn user_group_refs(&self, user_id: &str) -> StoreResult<Vec<GroupRef>> {
        let memberships = self.memberships.lock().unwrap();
        let groups = self.groups.lock().unwrap();
        let mut found: Vec<GroupRef> = groups
            .iter()
            .filter(|g| memberships.iter().any(|(id, u)| *id == g.id && u == user_id))
            .cloned()
            .collect();
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(found)
    }
    async fn put_rule(&self, _: &GroupRule) -> StoreResult<()> {
        not_kept()
    }
    async fn find_rule(&self, _: &str) -> StoreResult<Option<GroupRule>> {
        not_kept()
    }
    async fn list_rules(&self, _: Option<&str>, _: u32) -> StoreResult<Vec<GroupRule>> {
        not_kept()
    }
    async fn delete_rule(&self, _: &str) -> StoreResult<bool> {
        not_kept()
    }
    async fn remove_rule_memberships(&self, _: &str, _: Timestamp) -> StoreResult<Vec<(String, String)>> {
        not_kept()
    }
    async fn keep_rule_memberships(&self, _: &str) -> StoreResult<()> {
        not_kept()
    }
    async fn put_app_group(&self, _: &AppGroup) -> StoreResult<bool> {
        not_kept()
    }
    async fn find_app_group(&self, _: &str, _: &str) -> StoreResult<Option<AppGroup>> {
        not_kept()
    }
    async fn list_app_groups(&self, _: &str, _: Option<&str>, _: u32) -> StoreResult<Vec<AppGroup>> {
        not_kept()
    }
    async fn list_group_apps(&self, _: &str, _: Option<&str>, _: u32) -> StoreResult<Vec<App>> {
        not_kept()
    }
    async fn delete_app_group(&self, _: &str, _: &str) -> StoreResult<bool> {
        not_kept()
    }
}

fn user(id: &str, login: &str, status: UserStatus, profile: Value) -> User {
    let mut attributes = Map::new();
    attributes.insert("login".into(), json!(login));
    attributes.insert("email".into(), json!(login));
    if let Value::Object(extra) = profile {
        attributes.extend(extra);
    }
    User {
        id: id.to_owned(),
        status,
        created: NOW,
        activated: Some(NOW),
        status_changed: None,
        last_login: None,
        last_updated: NOW,
        password_changed: None,
        profile: Profile::from_stored(attributes),
        password_hash: None,
        password_history: Vec::new(),
        failed_attempts: 0,
        locked_at: None,
        version: 1,
    }
}

fn app(id: &str, status: AppStatus, name_id_template: &str) -> App {
    let settings = SamlSignOn::from_json(&json!({
        "ssoAcsUrl": "https://sp.example.com/acs",
        "audience": "https://sp.example.com",
        "subjectNameIdTemplate": name_id_template,
        "subjectNameIdFormat": crate::apps::NAME_ID_EMAIL,
        "attributeStatements": [
            {"type": "EXPRESSION", "name": "department", "values": ["user.department"]},
            {"type": "EXPRESSION", "name": "nickname", "values": ["user.nickName"]},
        ],
    }))
    .unwrap();
    App {
        id: id.to_owned(),
        name: format!("latchkey_{id}_1"),
        label: format!("App {id}"),
        status,
        external_key: format!("exk{id}"),
        link_id: format!("aln{id}"),
        sign_on: AppSignOn::Saml2(settings),
        visibility: Map::new(),
        created: NOW,
        last_updated: NOW,
    }
}

/// An organisation with Alice (assigned to the app), Bob (not assigned) and a deactivated Carol.
struct Org {
    store: MemoryStore,
    audit: Recorded,
    app: App,
}

impl Org {
    async fn new() -> Self {
        let store = MemoryStore::default();
        store
            .insert_user(&user(
                "00ualice",
                "alice@example.com",
                UserStatus::Active,
                json!({"department": "R&D"}),
            ))
            .await
            .unwrap();
        store.insert_user(&user("00ubob", "bob@example.com", UserStatus::Active, json!({}))).await.unwrap();
        store
            .insert_user(&user("00ucarol", "carol@example.com", UserStatus::Deprovisioned, json!({})))
            .await
            .unwrap();
        let app = app("0oa1", AppStatus::Active, "${user.email}");
        store.insert_app(&app).await.unwrap();
        for user_id in ["00ualice", "00ucarol"] {
            let assignment = AppUser {
                app_id: app.id.clone(),
                user_id: user_id.to_owned(),
                scope: "USER".to_owned(),
                user_name: None,
                created: NOW,
                last_updated: NOW,
            };
            store.put_app_user(&assignment).await.unwrap();
        }
        Org { store, audit: Recorded::default(), app }
    }

    fn sign_on(&self) -> SignOn<'_, MemoryStore, Recorded> {
        SignOn { store: &self.store, audit: &self.audit, clock: &FixedClock }
    }

    /// A one-time session token for `user_id`, as `POST /api/v1/authn` would issue it.
    async fn session_token(&self, user_id: &str, secret: &str) -> String {
        let token = SessionToken {
            digest: secret_digest(secret),
            user_id: user_id.to_owned(),
            amr: vec!["pwd".to_owned()],
            password_verified_at: Some(NOW),
            factor_verified_at: None,
            created: NOW,
            expires_at: NOW.plus_seconds(300),
        };
        self.store.insert_session_token(&token).await.unwrap();
        secret.to_owned()
    }

    /// A browser signed in as `user_id`: its `sid` cookie value.
    async fn signed_in(&self, user_id: &str) -> String {
        let token = self.session_token(user_id, &format!("token-of-{user_id}")).await;
        let browser = self.browser(&request(None, Some(&token), TokenPrecedence::Token)).await.unwrap();
        match browser.cookie {
            CookieChange::Set(secret) => secret.expose().to_owned(),
            _ => panic!("a valid token starts a session"),
        }
    }

    /// The browser's session under the session-token rule, as the sign-on resolves it.
    async fn browser(&self, request: &BrowserRequest<'_>) -> Result<BrowserSession, CoreError> {
        Sessions { store: &self.store, clock: &FixedClock, audit: &self.audit }.browser(request).await
    }

    /// The grant decision alone, for a session already resolved.
    async fn grant(&self, session: &Session, user: &User, app: &App) -> Result<Grant, Refusal> {
        let request = SignOnRequest {
            app,
            browser: request(None, None, TokenPrecedence::Token),
            subject_format: None,
            reauthentication: Reauthentication::NotRequired,
        };
        self.sign_on().grant(session, user, &request, &GrantItself).await.unwrap()
    }

    /// A whole sign-on to `app`, the way a protocol asks for one.
    async fn sign_on_to(
        &self,
        app: &App,
        cookie: Option<&str>,
        token: Option<&str>,
        reauthentication: Reauthentication,
    ) -> SignedOn<Grant> {
        let request = SignOnRequest {
            app,
            browser: request(cookie, token, TokenPrecedence::Token),
            subject_format: None,
            reauthentication,
        };
        self.sign_on().sign_on(&request, &GrantItself).await.unwrap()
    }
}

/// An encoder whose answer is the grant itself.
struct GrantItself;

impl GrantEncoder for GrantItself {
    type Answer = Grant;
    async fn encode(&self, grant: &Grant) -> Result<Grant, CoreError> {
        Ok(grant.clone())
    }
}

/// An encoder that cannot write its answer.
struct Unwritable;

impl GrantEncoder for Unwritable {
    type Answer = ();
    async fn encode(&self, _: &Grant) -> Result<(), CoreError> {
        Err(CoreError::validation("profile", "a character XML cannot carry"))
    }
}

fn request<'r>(
    cookie: Option<&'r str>,
    token: Option<&'r str>,
    precedence: TokenPrecedence,
) -> BrowserRequest<'r> {
    BrowserRequest {
        cookie,
        session_token: token,
        precedence,
        persistent: false,
        client_ip: Some("192.0.2.1"),
    }
}

#[tokio::test]
async fn an_assigned_user_gets_a_grant_with_subject_attributes_and_one_participant_record() {
    let org = Org::new().await;
    let cookie = org.signed_in("00ualice").await;
    let browser = org.browser(&request(Some(&cookie), None, TokenPrecedence::Token)).await.unwrap();
    let (session, user) = browser.current.expect("the cookie names a live session");
    assert!(matches!(browser.cookie, CookieChange::Keep));

    let grant = org.grant(&session, &user, &org.app).await.unwrap();
    assert_eq!(grant.subject, "alice@example.com");
    assert_eq!(grant.subject_format, crate::apps::NAME_ID_EMAIL);
    assert_eq!(grant.session_id, session.id);
    assert_eq!(grant.authn_instant, NOW);
    // An attribute the profile lacks (nickName) is left out rather than sent empty.
    let names: Vec<&str> = grant.attributes.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["department"]);
    assert_eq!(grant.attributes[0].values, ["R&D"]);

    // A second sign-on in the same session names the same session to the app.
    let again = org.grant(&session, &user, &org.app).await.unwrap();
    assert_eq!(again.session_index, grant.session_index);
    let participants = org.store.participants.lock().unwrap().clone();
    assert_eq!(participants.len(), 1);
    assert_eq!(participants[0].name_id, "alice@example.com");
    assert_eq!(participants[0].session_index, grant.session_index);

    let sso: Vec<_> = org.audit.summary().into_iter().filter(|e| e.0 == "user.authentication.sso").collect();
    assert_eq!(
        sso,
        [
            ("user.authentication.sso".into(), "SUCCESS", None),
            ("user.authentication.sso".into(), "SUCCESS", None)
        ]
    );
}

#[tokio::test]
async fn an_unassigned_user_is_refused_and_the_refusal_is_logged() {
    let org = Org::new().await;
    let cookie = org.signed_in("00ubob").await;
    let browser = org.browser(&request(Some(&cookie), None, TokenPrecedence::Token)).await.unwrap();
    let (session, user) = browser.current.unwrap();

    assert_eq!(org.grant(&session, &user, &org.app).await, Err(Refusal::NotAssigned));
    assert!(org.store.participants.lock().unwrap().is_empty(), "a refusal records no participant");
    let last = org.audit.summary().pop().unwrap();
    assert_eq!(last, ("user.authentication.sso".into(), "FAILURE", Some("NOT_ASSIGNED".into())));
}

#[tokio::test]
async fn an_inactive_app_is_refused_before_anything_is_recorded() {
    let org = Org::new().await;
    let cookie = org.signed_in("00ualice").await;
    let (session, user) =
        org.browser(&request(Some(&cookie), None, TokenPrecedence::Token)).await.unwrap().current.unwrap();
    let events_before = org.audit.summary().len();
    let mut inactive = org.app.clone();
    inactive.status = AppStatus::Inactive;

    assert_eq!(super::check_app(&inactive), Err(Refusal::AppInactive));
    assert_eq!(org.grant(&session, &user, &inactive).await, Err(Refusal::AppInactive));
    assert!(org.store.participants.lock().unwrap().is_empty());
    assert_eq!(org.audit.summary().len(), events_before);
}

#[tokio::test]
async fn a_deactivated_user_has_no_session_and_gets_no_grant() {
    let org = Org::new().await;
    // A token issued before Carol was deactivated is worth nothing now.
    let token = org.session_token("00ucarol", "carols-old-token").await;
    let browser = org.browser(&request(None, Some(&token), TokenPrecedence::Token)).await.unwrap();
    assert!(browser.current.is_none());
    assert!(matches!(browser.cookie, CookieChange::Clear));
    assert_eq!(
        org.audit.summary().pop().unwrap(),
        ("user.session.start".into(), "FAILURE", Some("INVALID_SESSION_TOKEN".into()))
    );

    // A session that survived her deactivation is ended at its next use, and grants nothing.
    let carol = org.store.find_user("00ucarol").await.unwrap().unwrap();
    let survivor = Session {
        id: "102survivor".into(),
        cookie_digest: secret_digest("carols-cookie"),
        user_id: carol.id.clone(),
        amr: vec!["pwd".into()],
        created: NOW,
        expires_at: NOW.plus_seconds(3600),
        lifetime_ends_at: None,
        last_activity: NOW,
        password_verified_at: Some(NOW),
        factor_verified_at: None,
        persistent: false,
    };
    org.store.insert_session(&survivor).await.unwrap();
    let browser = org.browser(&request(Some("carols-cookie"), None, TokenPrecedence::Token)).await.unwrap();
    assert!(browser.current.is_none());
    assert_eq!(
        org.audit.summary().pop().unwrap(),
        ("user.session.end".into(), "SUCCESS", Some("USER_NOT_ACTIVE".into()))
    );
    assert_eq!(org.grant(&survivor, &carol, &org.app).await, Err(Refusal::UserNotActive));
}

#[tokio::test]
async fn a_valid_token_replaces_the_browsers_session_and_the_grant_goes_to_its_user() {
    let org = Org::new().await;
    let bobs_cookie = org.signed_in("00ubob").await;
    let alices_token = org.session_token("00ualice", "alices-token").await;

    let browser =
        org.browser(&request(Some(&bobs_cookie), Some(&alices_token), TokenPrecedence::Token)).await.unwrap();
    assert!(browser.from_token());
    let (session, user) = browser.current.unwrap();
    assert_eq!(user.id, "00ualice");
    let grant = org.grant(&session, &user, &org.app).await.unwrap();
    assert_eq!(grant.subject, "alice@example.com");

    // Bob's session is over everywhere: his cookie names nothing now.
    let after = org.browser(&request(Some(&bobs_cookie), None, TokenPrecedence::Token)).await.unwrap();
    assert!(after.current.is_none());
    let summary = org.audit.summary();
    let replaced = summary.iter().position(|e| e.2.as_deref() == Some("REPLACED_BY_SESSION_TOKEN")).unwrap();
    let started = summary.iter().rposition(|e| e.0 == "user.session.start" && e.1 == "SUCCESS").unwrap();
    assert!(replaced < started, "the old session's end is logged before the new one's start: {summary:?}");
}

#[tokio::test]
async fn an_invalid_token_ends_the_session_and_cookie_precedence_keeps_it() {
    let org = Org::new().await;
    let cookie = org.signed_in("00ualice").await;
    let bobs_token = org.session_token("00ubob", "bobs-token").await;

    // Okta Classic: the live session wins and the token is left unused.
    let kept =
        org.browser(&request(Some(&cookie), Some(&bobs_token), TokenPrecedence::Cookie)).await.unwrap();
    assert_eq!(kept.current.unwrap().1.id, "00ualice");
    assert!(matches!(kept.cookie, CookieChange::Keep));
    assert!(org.store.tokens.lock().unwrap().iter().any(|(t, used)| t.user_id == "00ubob" && !used));

    // Under the token rule an unknown token ends the session and sends the browser to sign in.
    let ended =
        org.browser(&request(Some(&cookie), Some("no-such-token"), TokenPrecedence::Token)).await.unwrap();
    assert!(ended.current.is_none());
    assert!(matches!(ended.cookie, CookieChange::Clear));
    assert!(
        org.audit
            .summary()
            .iter()
            .any(|e| e.2.as_deref() == Some("INVALID_SESSION_TOKEN") && e.0 == "user.session.end")
    );
}

#[tokio::test]
async fn a_profile_without_the_subject_attribute_is_refused() {
    let org = Org::new().await;
    let by_nickname = app("0oa2", AppStatus::Active, "${user.nickName}");
    org.store.insert_app(&by_nickname).await.unwrap();
    org.store
        .put_app_user(&AppUser {
            app_id: by_nickname.id.clone(),
            user_id: "00ualice".into(),
            scope: "USER".into(),
            user_name: None,
            created: NOW,
            last_updated: NOW,
        })
        .await
        .unwrap();
    let cookie = org.signed_in("00ualice").await;
    let (session, user) =
        org.browser(&request(Some(&cookie), None, TokenPrecedence::Token)).await.unwrap().current.unwrap();

    assert_eq!(org.grant(&session, &user, &by_nickname).await, Err(Refusal::NoSubject));
    assert!(org.store.participants.lock().unwrap().is_empty());
    assert_eq!(org.audit.summary().pop().unwrap().2.as_deref(), Some("NO_SUBJECT"));
    // The dashboard lists both apps Alice is assigned to, active ones only.
    let links = org.sign_on().app_links("00ualice").await.unwrap();
    assert_eq!(links.len(), 2);
}

#[tokio::test]
async fn a_grant_whose_answer_cannot_be_written_logs_no_success() {
    let org = Org::new().await;
    let cookie = org.signed_in("00ualice").await;
    let events_before = org.audit.summary().len();
    let request = SignOnRequest {
        app: &org.app,
        browser: request(Some(&cookie), None, TokenPrecedence::Token),
        subject_format: None,
        reauthentication: Reauthentication::NotRequired,
    };
    let failed = org.sign_on().sign_on(&request, &Unwritable).await;
    assert!(failed.is_err());
    assert_eq!(org.audit.summary().len(), events_before, "no sign-on is logged that did not happen");
}

#[tokio::test]
async fn one_call_resolves_the_browser_and_decides_the_grant() {
    let org = Org::new().await;
    // A shared browser: Bob's cookie, Alice's token. The token wins and Alice is granted.
    let bobs_cookie = org.signed_in("00ubob").await;
    let alices_token = org.session_token("00ualice", "alices-token").await;
    let signed = org
        .sign_on_to(&org.app, Some(&bobs_cookie), Some(&alices_token), Reauthentication::NotRequired)
        .await;
    let Decision::Granted(grant) = signed.decision else { panic!("granted: {:?}", signed.decision) };
    assert_eq!(grant.user_id, "00ualice");
    assert!(matches!(signed.browser.cookie, CookieChange::Set(_)), "the browser gets Alice's cookie");

    // No session: sign in first, and nothing about the app is logged.
    let events_before = org.audit.summary().len();
    let signed = org.sign_on_to(&org.app, None, None, Reauthentication::NotRequired).await;
    assert!(matches!(signed.decision, Decision::SignInRequired));
    assert_eq!(org.audit.summary().len(), events_before);

    // Bob is signed in but not assigned.
    let bobs_cookie = org.signed_in("00ubob").await;
    let signed = org.sign_on_to(&org.app, Some(&bobs_cookie), None, Reauthentication::NotRequired).await;
    assert!(matches!(signed.decision, Decision::Refused(Refusal::NotAssigned)));
}

#[tokio::test]
async fn an_inactive_app_spends_no_session_token() {
    let org = Org::new().await;
    let mut inactive = org.app.clone();
    inactive.status = AppStatus::Inactive;
    let token = org.session_token("00ualice", "alices-token").await;
    let signed = org.sign_on_to(&inactive, None, Some(&token), Reauthentication::NotRequired).await;
    assert!(matches!(signed.decision, Decision::Refused(Refusal::AppInactive)));
    assert!(matches!(signed.browser.cookie, CookieChange::Keep));
    assert!(org.store.tokens.lock().unwrap().iter().any(|(t, used)| t.user_id == "00ualice" && !used));
}

#[tokio::test]
async fn reauthentication_is_met_only_by_a_fresh_sign_in() {
    let org = Org::new().await;
    let cookie = org.signed_in("00ualice").await;
    // ForceAuthn on the request itself: the cookie's session will not do, a token with it does.
    let signed = org.sign_on_to(&org.app, Some(&cookie), None, Reauthentication::WithRequest).await;
    assert!(matches!(signed.decision, Decision::SignInRequired));
    assert!(matches!(signed.browser.cookie, CookieChange::Keep), "the session stays for the sign-in page");
    let token = org.session_token("00ualice", "fresh-token").await;
    let signed = org.sign_on_to(&org.app, Some(&cookie), Some(&token), Reauthentication::WithRequest).await;
    assert!(matches!(signed.decision, Decision::Granted(_)));
    let CookieChange::Set(fresh) = signed.browser.cookie else { panic!("the token starts a session") };

    // A parked request: only an authentication after it arrived answers it.
    let signed = org.sign_on_to(&org.app, Some(fresh.expose()), None, Reauthentication::After(NOW)).await;
    assert!(matches!(signed.decision, Decision::SignInRequired), "signed in at NOW, not after");
    let before = Timestamp(NOW.millis() - 1);
    let signed = org.sign_on_to(&org.app, Some(fresh.expose()), None, Reauthentication::After(before)).await;
    assert!(matches!(signed.decision, Decision::Granted(_)));
}

#[tokio::test]
async fn a_user_in_an_assigned_group_gets_a_grant_with_the_groups_the_filter_passes() {
    let org = Org::new().await;
    let settings = SamlSignOn::from_json(&json!({
        "ssoAcsUrl": "https://sp.example.com/acs",
        "audience": "https://sp.example.com",
        "attributeStatements": [
            {"type": "GROUP", "name": "groups", "filterType": "REGEX", "filterValue": "Eng.*"},
            {"type": "GROUP", "name": "none", "filterType": "EQUALS", "filterValue": "Nobody"},
        ],
    }))
    .unwrap();
    let mut by_group = app("0oa3", AppStatus::Active, "${user.email}");
    by_group.sign_on = AppSignOn::Saml2(settings);
    org.store.insert_app(&by_group).await.unwrap();
    for (id, name) in [("00geng", "Engineering"), ("00gengx", "Eng Leads"), ("00gsales", "Sales")] {
        org.store.groups.lock().unwrap().push(GroupRef { id: id.into(), name: name.into() });
    }
    org.store.app_groups.lock().unwrap().push(("0oa3".into(), "00gsales".into()));
    let cookie = org.signed_in("00ubob").await;
    let (session, user) =
        org.browser(&request(Some(&cookie), None, TokenPrecedence::Token)).await.unwrap().current.unwrap();
    assert_eq!(
        org.grant(&session, &user, &by_group).await,
        Err(Refusal::NotAssigned),
        "not in the group yet"
    );

    org.store
        .memberships
        .lock()
        .unwrap()
        .extend(["00geng", "00gengx", "00gsales"].into_iter().map(|g| (g.to_owned(), "00ubob".to_owned())));
    let grant = org.grant(&session, &user, &by_group).await.unwrap();
    assert_eq!(grant.attributes.len(), 1, "a claim no group passes is left out: {:?}", grant.attributes);
    assert_eq!(grant.attributes[0].name, "groups");
    assert_eq!(grant.attributes[0].values, ["Eng Leads", "Engineering"]);

    // Out of the group, out of the app.
    org.store.memberships.lock().unwrap().retain(|(g, _)| g != "00gsales");
    assert_eq!(org.grant(&session, &user, &by_group).await, Err(Refusal::NotAssigned));
}
