//! The sign-on use case over the stores (see the module above for what it decides).

use super::{Decision, Grant, GrantEncoder, Participant, Refusal, SignOnRequest, SignedOn, check_app};
use crate::apps::{App, AppUser};
use crate::clock::Clock;
use crate::error::CoreError;
use crate::events::{Actor, AuditLog, Event, Target};
use crate::expr::Subject;
use crate::sessions::service::Sessions;
use crate::sessions::{BrowserSession, CookieChange, Session};
use crate::store::{AppStore, AuthnStore, GroupStore, PolicyStore, SessionStore, SignOnStore, UserStore};
use crate::users::User;

/// The sign-on use cases, wired to their collaborators.
pub struct SignOn<'a, S, A> {
    pub store: &'a S,
    pub audit: &'a A,
    pub clock: &'a dyn Clock,
}

/// A fresh per-app session index: an `xs:ID`-safe id (SAML core §1.3.4), unguessable, so an SP's
/// logout cannot name another user's session.
fn new_session_index() -> String {
    crate::ids::new_xml_id()
}

impl<S, A> SignOn<'_, S, A>
where
    S: SessionStore + AuthnStore + UserStore + PolicyStore + AppStore + SignOnStore + GroupStore,
    A: AuditLog,
{
    /// Signs the browser on to `request.app`: the app is checked before a session token is spent
    /// on it, then the browser's session is resolved under the session-token rule, then the
    /// grant is decided and handed to `encoder`.
    pub async fn sign_on<E: GrantEncoder>(
        &self,
        request: &SignOnRequest<'_>,
        encoder: &E,
    ) -> Result<SignedOn<E::Answer>, CoreError> {
        if let Err(refusal) = check_app(request.app) {
            let untouched = BrowserSession { current: None, cookie: CookieChange::Keep };
            return Ok(SignedOn { decision: Decision::Refused(refusal), browser: untouched });
        }
        let sessions = Sessions { store: self.store, clock: self.clock, audit: self.audit };
        let browser = sessions.browser(&request.browser).await?;
        let decision = match &browser.current {
            Some((session, user)) if request.reauthentication.met_by(session, &browser) => {
                match self.grant(session, user, request, encoder).await? {
                    Ok(answer) => Decision::Granted(answer),
                    Err(refusal) => Decision::Refused(refusal),
                }
            }
            _ => Decision::SignInRequired,
        };
        Ok(SignedOn { decision, browser })
    }

    /// Decides whether `user`, signed in with `session`, may use the app. On a grant it records the
    /// session's participant record, has `encoder` write the answer and then logs the success (the
    /// answer is ready before the log's commit is awaited). An assignment refusal is logged as a
    /// failure.
    pub(super) async fn grant<E: GrantEncoder>(
        &self,
        session: &Session,
        user: &User,
        request: &SignOnRequest<'_>,
        encoder: &E,
    ) -> Result<Result<E::Answer, Refusal>, CoreError> {
        let app = request.app;
        let client_ip = request.browser.client_ip;
        if let Err(refusal) = check_app(app) {
            return Ok(Err(refusal));
        }
        if !user.may_have_sessions() || session.user_id != user.id {
            return Ok(Err(Refusal::UserNotActive));
        }
        // One read decides the assignment and finds what this session already told the app.
        let Some(existing) = self.store.find_sso_grant(&app.id, &user.id, &session.id).await? else {
            self.record(app, user, Err(Refusal::NotAssigned), client_ip).await;
            return Ok(Err(Refusal::NotAssigned));
        };
        // The user's groups, when what the app is told depends on them (one read).
        let groups =
            if app.sign_on.needs_groups() { self.store.user_group_refs(&user.id).await? } else { Vec::new() };
        let group_ids: Vec<String> = groups.iter().map(|g| g.id.clone()).collect();
        let about = Subject { user, group_ids: Some(&group_ids) };
        let Some(subject) = app.sign_on.subject_for(&about) else {
            self.record(app, user, Err(Refusal::NoSubject), client_ip).await;
            return Ok(Err(Refusal::NoSubject));
        };
        let subject_format = request.subject_format.unwrap_or(app.sign_on.subject_format()).to_owned();
        let participant = match existing {
            Some(existing) => existing,
            None => {
                let new = Participant {
                    session_id: session.id.clone(),
                    app_id: app.id.clone(),
                    name_id: subject.clone(),
                    name_id_format: subject_format.clone(),
                    session_index: new_session_index(),
                    created: self.clock.now(),
                };
                // Another node may have answered the same session at the same moment: the record
                // kept is the one the app must be told.
                self.store.add_participant(&new).await?
            }
        };
        let grant = Grant {
            user_id: user.id.clone(),
            session_id: session.id.clone(),
            subject,
            subject_format,
            session_index: participant.session_index,
            authn_instant: session.authenticated_at(),
            amr: session.amr.clone(),
            attributes: app.sign_on.attributes_for(&about, &groups),
        };
        let answer = encoder.encode(&grant).await?;
        self.record(app, user, Ok(()), client_ip).await;
        Ok(Ok(answer))
    }

    /// The apps the user may use, with the assignment, in dashboard order (Okta's appLinks).
    pub async fn app_links(&self, user_id: &str) -> Result<Vec<(App, AppUser)>, CoreError> {
        let mut apps = self.store.list_user_apps(user_id).await?;
        // An OpenID Connect app has a link only when it can start a sign-in itself
        // (`initiate_login_uri`); its embed link goes there.
        apps.retain(|(app, _)| {
            app.is_active() && app.oidc().is_none_or(|oidc| oidc.client.initiate_login_uri.is_some())
        });
        Ok(apps)
    }

    async fn record(&self, app: &App, user: &User, outcome: Result<(), Refusal>, client_ip: Option<&str>) {
        let (result, reason) = match outcome {
            Ok(()) => ("SUCCESS", None),
            Err(refusal) => ("FAILURE", Some(refusal.as_str())),
        };
        let mut event = Event::new(
            "user.authentication.sso",
            &format!("User single sign on to app {}", app.label),
            result,
            Actor::user(&user.id, user.login()),
            self.clock.now(),
        )
        .target(Target::new(&app.id, "AppInstance", &app.label))
        .client(client_ip);
        if let Some(reason) = reason {
            event = event.reason(reason);
        }
        self.audit.record(event).await;
    }
}
