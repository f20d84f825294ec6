//! Storage ports: what the domain needs from a database, sized to its use cases.
//!
//! Each method is atomic inside the adapter (one transaction). Adapters report failures only as
//! [`StoreError`]; the domain never sees a driver type. Methods return `Send` futures so the HTTP
//! layer can await them on a multi-threaded runtime.

use std::future::Future;

use crate::apps::query::AppQuery;
use crate::apps::sso::{LogoutWalk, PendingSso};
use crate::apps::{App, AppUser};
use crate::authn::{Factor, SessionToken, StoredTransaction};
use crate::clock::Timestamp;
use crate::error::{CoreError, StoreError};
use crate::events::{Event, LogQuery};
use crate::groups::query::GroupQuery;
use crate::groups::{AppGroup, Group, GroupRef, GroupRule, GroupStats, MembershipSource};
use crate::oidc::backchannel::LogoutNotice;
use crate::oidc::custom::{CustomClaim, CustomScope};
use crate::oidc::{AuthorizationCode, IssuedToken, Redeemed, Revocation, Server};
use crate::origins::TrustedOrigin;
use crate::policy::{PasswordPolicy, Policies, PolicyKind, PolicyRow};
use crate::sessions::{EndReason, Session};
use crate::signing_keys::StoredSigningKey;
use crate::signon::Participant;
use crate::tokens::{ApiToken, OneTimeToken, TokenPurpose};
use crate::users::User;
use crate::users::query::UserQuery;

pub type StoreResult<T> = Result<T, StoreError>;

pub trait UserStore: Send + Sync {
    /// Inserts a new user. `Conflict("login")` when the login is taken (case-insensitively).
    fn insert_user(&self, user: &User) -> impl Future<Output = StoreResult<()>> + Send;

    /// Finds a user by id, or else by login (case-insensitive).
    fn find_user(&self, id_or_login: &str) -> impl Future<Output = StoreResult<Option<User>>> + Send;

    /// The user `user_id`, for a request made on the strength of their session `session_id`
    /// (an authorization code): as the node's session cache holds them when it holds that
    /// session (the cache is kept exact across nodes), else as [`Self::find_user`] reads them.
    fn find_session_user(
        &self,
        session_id: &str,
        user_id: &str,
    ) -> impl Future<Output = StoreResult<Option<User>>> + Send {
        let _ = session_id;
        self.find_user(user_id)
    }

    /// Users matching `query`, ordered by id, strictly after the `after` id, at most `limit`.
    fn list_users(
        &self,
        query: &UserQuery,
        after: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<User>>> + Send;

    /// Replaces a user whose stored version is still `expected_version` (else `Stale`), and in the
    /// same transaction issues `token`, replacing the user's earlier token of the same purpose.
    fn update_user(
        &self,
        user: &User,
        expected_version: i64,
        token: Option<&OneTimeToken>,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// A successful sign-in: clears the failure count and stamps `lastLogin`. One statement, so
    /// concurrent sign-ins on any nodes never conflict.
    fn record_sign_in(&self, user_id: &str, now: Timestamp) -> impl Future<Output = StoreResult<()>> + Send;

    /// A failed sign-in or passcode: increments the failure count and, when it reaches
    /// `max_attempts` (0 = never) for an ACTIVE or PASSWORD_EXPIRED user, locks the user — in one atomic statement.
    /// Returns the user as written.
    fn record_failed_sign_in(
        &self,
        user_id: &str,
        max_attempts: u32,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<Option<User>>> + Send;

    /// Deletes a user and everything that belongs to it. `false` when it did not exist.
    fn delete_user(&self, id: &str) -> impl Future<Output = StoreResult<bool>> + Send;
}

pub trait ApiTokenStore: Send + Sync {
    fn insert_api_token(&self, token: &ApiToken) -> impl Future<Output = StoreResult<()>> + Send;

    /// Deletes every token with this name (the demo replaces its own token on each start).
    fn delete_api_tokens_named(&self, name: &str) -> impl Future<Output = StoreResult<u64>> + Send;

    /// The token whose secret has this digest.
    fn find_api_token(&self, digest: &str) -> impl Future<Output = StoreResult<Option<ApiToken>>> + Send;
}

pub trait PolicyStore: Send + Sync {
    /// The default PASSWORD policy's settings (Okta's defaults until an administrator changes them).
    fn password_policy(&self) -> impl Future<Output = StoreResult<PasswordPolicy>> + Send;

    /// Every stored policy row.
    fn policy_rows(&self) -> impl Future<Output = StoreResult<Vec<PolicyRow>>> + Send;

    /// Creates the default row of each kind that is missing (several nodes may race: one wins).
    fn ensure_policies(&self, defaults: &[PolicyRow]) -> impl Future<Output = StoreResult<()>> + Send;

    /// Replaces a policy's settings if its version is still `expected_version` (else `Stale`).
    fn update_policy(
        &self,
        kind: PolicyKind,
        settings: &str,
        now: Timestamp,
        expected_version: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// The policies in force, typed. Read per use, so a change made on any node applies at once;
    /// a missing row means that policy's defaults.
    fn policies(&self) -> impl Future<Output = Result<Policies, CoreError>> + Send {
        async {
            let rows = self.policy_rows().await?;
            Policies::from_rows(&rows).map_err(|e| CoreError::Store(StoreError::Corrupt(e.to_string())))
        }
    }
}

/// Authentication transactions, session tokens and lifecycle tokens.
pub trait AuthnStore: Send + Sync {
    fn insert_transaction(&self, tx: &StoredTransaction) -> impl Future<Output = StoreResult<()>> + Send;

    /// The live transaction with this digest (`None` when unknown or expired at `now`).
    fn find_transaction(
        &self,
        digest: &str,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<Option<StoredTransaction>>> + Send;

    /// Writes `tx` (whose `version` is the new one) if the stored version is `expected_version`.
    fn update_transaction(
        &self,
        tx: &StoredTransaction,
        expected_version: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    fn delete_transaction(&self, digest: &str) -> impl Future<Output = StoreResult<()>> + Send;

    /// Deletes the transaction if its version is still `expected_version`; `false` when another
    /// request finished or moved it first (so one transaction ends in at most one SUCCESS).
    fn finish_transaction(
        &self,
        digest: &str,
        expected_version: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    fn insert_session_token(&self, token: &SessionToken) -> impl Future<Output = StoreResult<()>> + Send;

    /// Marks the token used and returns it, if it exists, is unused and unexpired at `now`. One
    /// conditional update: of concurrent redemptions on any nodes, exactly one succeeds.
    fn consume_session_token(
        &self,
        digest: &str,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<Option<SessionToken>>> + Send;

    /// Marks a lifecycle token used and returns it, under the same single-use rule.
    fn consume_one_time_token(
        &self,
        digest: &str,
        purpose: TokenPurpose,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<Option<OneTimeToken>>> + Send;

    /// Deletes expired transactions, tokens and rate-limit windows; returns how many rows went.
    fn purge_expired(&self, now: Timestamp) -> impl Future<Output = StoreResult<u64>> + Send;
}

pub trait FactorStore: Send + Sync {
    fn list_factors(&self, user_id: &str) -> impl Future<Output = StoreResult<Vec<Factor>>> + Send;

    /// Stores a factor, replacing a pending (not active) one of the same user and provider.
    /// `Conflict` when an active factor of that provider exists.
    fn put_pending_factor(&self, factor: &Factor) -> impl Future<Output = StoreResult<()>> + Send;

    /// Activates a pending factor, recording the step that proved it.
    fn activate_factor(
        &self,
        factor_id: &str,
        step: i64,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Records `step` as used if it is newer than the last used one. `false` means a replay: the
    /// step (or a newer one) was already accepted, on this node or another.
    fn record_totp_step(&self, factor_id: &str, step: i64) -> impl Future<Output = StoreResult<bool>> + Send;

    fn delete_factor(&self, user_id: &str, factor_id: &str)
    -> impl Future<Output = StoreResult<bool>> + Send;

    /// Deletes all of a user's factors and remembered devices (`lifecycle/reset_factors`).
    fn delete_user_factors(&self, user_id: &str) -> impl Future<Output = StoreResult<u64>> + Send;

    /// Replaces the QR-code token of a pending factor (shown again when the transaction is re-read).
    fn set_factor_qr(
        &self,
        factor_id: &str,
        qr_digest: &str,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Finds a pending factor by the digest of its QR-code token.
    fn find_factor_by_qr(&self, digest: &str) -> impl Future<Output = StoreResult<Option<Factor>>> + Send;

    fn remember_device(
        &self,
        user_id: &str,
        device_digest: &str,
        expires_at: Timestamp,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    fn is_device_remembered(
        &self,
        user_id: &str,
        device_digest: &str,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
}

pub trait TrustedOriginStore: Send + Sync {
    fn list_trusted_origins(&self) -> impl Future<Output = StoreResult<Vec<TrustedOrigin>>> + Send;

    /// The trusted origin with this normalised origin, active or not.
    fn find_trusted_origin(
        &self,
        origin: &str,
    ) -> impl Future<Output = StoreResult<Option<TrustedOrigin>>> + Send;

    /// Inserts, or replaces the row with the same id. `Conflict("origin")` when another row has the origin.
    fn put_trusted_origin(&self, origin: &TrustedOrigin) -> impl Future<Output = StoreResult<()>> + Send;

    fn delete_trusted_origin(&self, id: &str) -> impl Future<Output = StoreResult<bool>> + Send;
}

pub trait AppStore: Send + Sync {
    /// Inserts an app. `Conflict("name")` when the generated name is taken.
    fn insert_app(&self, app: &App) -> impl Future<Output = StoreResult<()>> + Send;

    /// Replaces the stored app with the same id; `false` when there is none.
    fn update_app(&self, app: &App) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Deletes the app and its assignments and SSO state; `false` when there is none.
    fn delete_app(&self, id: &str) -> impl Future<Output = StoreResult<bool>> + Send;

    /// The app with this id or external key.
    fn find_app(&self, id_or_external_key: &str) -> impl Future<Output = StoreResult<Option<App>>> + Send;

    /// Apps that match `query`, ordered by id: at most `query.limit`, after `query.after`.
    fn list_apps(&self, query: &AppQuery) -> impl Future<Output = StoreResult<Vec<App>>> + Send;

    /// Assigns (or updates the assignment of) a user.
    fn put_app_user(&self, assignment: &AppUser) -> impl Future<Output = StoreResult<()>> + Send;

    /// The user's assignment to the app: the direct one, else the one through a group (`scope` "GROUP").
    fn find_app_user(
        &self,
        app_id: &str,
        user_id: &str,
    ) -> impl Future<Output = StoreResult<Option<AppUser>>> + Send;

    /// The app's users ordered by user id, strictly after `after`, at most `limit`: direct
    /// assignments, and users who have the app through a group (`scope` "GROUP", as Okta lists them).
    fn list_app_users(
        &self,
        app_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<AppUser>>> + Send;

    fn delete_app_user(&self, app_id: &str, user_id: &str) -> impl Future<Output = StoreResult<bool>> + Send;

    /// The apps a user may use (assigned directly, or through a group: `scope` "GROUP"), with the
    /// assignment, ordered by label.
    fn list_user_apps(&self, user_id: &str) -> impl Future<Output = StoreResult<Vec<(App, AppUser)>>> + Send;
}

/// Groups, their members, their rules, and the apps assigned to them.
pub trait GroupStore: Send + Sync {
    /// Inserts a group. `Conflict("name")` when another group has the name (without regard to case).
    fn insert_group(&self, group: &Group) -> impl Future<Output = StoreResult<()>> + Send;

    /// Replaces a group's name and description; `false` when there is none. `Conflict("name")` as
    /// for an insert.
    fn update_group(&self, group: &Group) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Deletes a group with its memberships and app assignments; `false` when there is none. The
    /// users who lose access by it lose it on every node before this returns.
    fn delete_group(&self, id: &str) -> impl Future<Output = StoreResult<bool>> + Send;

    fn find_group(&self, id: &str) -> impl Future<Output = StoreResult<Option<Group>>> + Send;

    /// The built-in `Everyone` group (created by the migrations, one per organisation).
    fn everyone_group(&self) -> impl Future<Output = StoreResult<Group>> + Send;

    /// Groups matching `query`, ordered by id, after `query.after`, at most `query.limit`.
    fn list_groups(&self, query: &GroupQuery) -> impl Future<Output = StoreResult<Vec<Group>>> + Send;

    fn group_stats(&self, id: &str) -> impl Future<Output = StoreResult<GroupStats>> + Send;

    /// Adds a membership made by `source` (an administrator, or a rule); `true` when the user was
    /// not a member before. Idempotent. Stamps the group's `lastMembershipUpdated` when it changed.
    /// `Gone("group")` or `Gone("user")` when either was deleted (meanwhile).
    fn add_member(
        &self,
        group_id: &str,
        user_id: &str,
        source: MembershipSource<'_>,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Removes the membership `source` made; `true` when the user is no longer a member at all
    /// (another source may keep them in). Idempotent. Access the membership gave ends on every
    /// node before this returns.
    fn remove_member(
        &self,
        group_id: &str,
        user_id: &str,
        source: MembershipSource<'_>,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Who made a user's membership of a group: `None` for an administrator, else a rule's id.
    /// Empty when the user is not a member.
    fn membership_sources(
        &self,
        group_id: &str,
        user_id: &str,
    ) -> impl Future<Output = StoreResult<Vec<Option<String>>>> + Send;

    /// The group's members, ordered by user id, after `after`, at most `limit`.
    fn list_members(
        &self,
        group_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<User>>> + Send;

    /// The groups a user belongs to, ordered by name.
    fn list_user_groups(&self, user_id: &str) -> impl Future<Output = StoreResult<Vec<Group>>> + Send;

    /// Every membership row of a user, `(group id, source)` ordered by group and source (`None`
    /// for an administrator's, else the rule's id), read from the database (never a cache): what
    /// applying the rules to a user starts from, in one read.
    fn user_memberships(
        &self,
        user_id: &str,
    ) -> impl Future<Output = StoreResult<Vec<(String, Option<String>)>>> + Send;

    /// The ids and names of a user's groups, ordered by name (a sign-on's group claims): one read.
    fn user_group_refs(&self, user_id: &str) -> impl Future<Output = StoreResult<Vec<GroupRef>>> + Send;

    /// Inserts or replaces a rule.
    fn put_rule(&self, rule: &GroupRule) -> impl Future<Output = StoreResult<()>> + Send;

    fn find_rule(&self, id: &str) -> impl Future<Output = StoreResult<Option<GroupRule>>> + Send;

    /// Rules ordered by id, after `after`, at most `limit`.
    fn list_rules(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<GroupRule>>> + Send;

    fn delete_rule(&self, id: &str) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Removes every membership the rule made; returns the (group, user) pairs whose user is no
    /// longer a member of the group at all. Access they gave ends on every node before this returns.
    fn remove_rule_memberships(
        &self,
        rule_id: &str,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<Vec<(String, String)>>> + Send;

    /// Turns the memberships a rule made into administrator-made ones (a rule deleted without
    /// `removeUsers`: its users stay in its groups).
    fn keep_rule_memberships(&self, rule_id: &str) -> impl Future<Output = StoreResult<()>> + Send;

    /// Assigns an app to a group, or updates the assignment; `true` when it is new. `Gone("group")`
    /// or `Gone("app")` when either was deleted (meanwhile).
    fn put_app_group(&self, assignment: &AppGroup) -> impl Future<Output = StoreResult<bool>> + Send;

    fn find_app_group(
        &self,
        app_id: &str,
        group_id: &str,
    ) -> impl Future<Output = StoreResult<Option<AppGroup>>> + Send;

    /// An app's group assignments, ordered by group id, after `after`, at most `limit`.
    fn list_app_groups(
        &self,
        app_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<AppGroup>>> + Send;

    /// The apps assigned to a group, ordered by app id, after `after`, at most `limit`.
    fn list_group_apps(
        &self,
        group_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<App>>> + Send;

    /// Unassigns an app from a group; `false` when it was not assigned. Access it gave ends on
    /// every node before this returns.
    fn delete_app_group(
        &self,
        app_id: &str,
        group_id: &str,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
}

/// Sign-on state shared by every protocol: the access check, and the apps each session was sent
/// to (what a logout must tell).
pub trait SignOnStore: Send + Sync {
    /// Records that a session's user was sent to an app. An existing record is kept (another node
    /// may have answered the same session at the same moment) and returned: it is the record the
    /// SP must be told, since SLO finds the session by its SessionIndex.
    fn add_participant(
        &self,
        participant: &Participant,
    ) -> impl Future<Output = StoreResult<Participant>> + Send;

    fn find_participant(
        &self,
        session_id: &str,
        app_id: &str,
    ) -> impl Future<Output = StoreResult<Option<Participant>>> + Send;

    fn list_participants(
        &self,
        session_id: &str,
    ) -> impl Future<Output = StoreResult<Vec<Participant>>> + Send;

    /// For single sign-on in one read: `None` when the user is not assigned to the app (directly,
    /// or through any group they belong to), else the session's participant record for the app,
    /// if it has one already.
    fn find_sso_grant(
        &self,
        app_id: &str,
        user_id: &str,
        session_id: &str,
    ) -> impl Future<Output = StoreResult<Option<Option<Participant>>>> + Send;

    /// The participant record an SP's SessionIndex names.
    fn find_participant_by_index(
        &self,
        app_id: &str,
        session_index: &str,
    ) -> impl Future<Output = StoreResult<Option<Participant>>> + Send;
}

/// The organisation's signing keys (every protocol signs with them).
pub trait SigningKeyStore: Send + Sync {
    /// All signing keys, newest first.
    fn list_signing_keys(&self) -> impl Future<Output = StoreResult<Vec<StoredSigningKey>>> + Send;

    /// Inserts a key. `Conflict("status")` when a key with the same ACTIVE or NEXT status exists
    /// (two nodes generating the first key at once: one wins, the other reads the winner's).
    fn insert_signing_key(&self, key: &StoredSigningKey) -> impl Future<Output = StoreResult<()>> + Send;

    /// In one transaction: PREVIOUS → RETIRED, ACTIVE → PREVIOUS and NEXT → ACTIVE. `false` when
    /// there is no NEXT key.
    fn promote_next_signing_key(&self) -> impl Future<Output = StoreResult<bool>> + Send;

    /// PREVIOUS → RETIRED (stops publishing the key the last rollover replaced). `false` when none.
    fn retire_previous_signing_key(&self) -> impl Future<Output = StoreResult<bool>> + Send;
}

/// State a SAML flow keeps between browser round trips: request ids against replay, requests parked
/// for a sign-in, and logout walks.
pub trait SamlStore: Send + Sync {
    /// Records an SP's request id until `expires_at`; `false` when it was already seen (replay).
    fn remember_saml_request(
        &self,
        app_id: &str,
        request_id: &str,
        expires_at: Timestamp,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    fn put_pending_sso(&self, pending: &PendingSso) -> impl Future<Output = StoreResult<()>> + Send;

    fn find_pending_sso(
        &self,
        id_digest: &str,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<Option<PendingSso>>> + Send;

    /// Removes a pending request; `false` when another request already answered it.
    fn delete_pending_sso(&self, id_digest: &str) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Inserts or replaces a logout walk.
    fn put_logout_walk(&self, walk: &LogoutWalk) -> impl Future<Output = StoreResult<()>> + Send;

    fn find_logout_walk(
        &self,
        id_digest: &str,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<Option<LogoutWalk>>> + Send;

    fn delete_logout_walk(&self, id_digest: &str) -> impl Future<Output = StoreResult<()>> + Send;

    /// Deletes expired request ids, pending requests and logout walks.
    fn purge_saml(&self, now: Timestamp) -> impl Future<Output = StoreResult<u64>> + Send;
}

pub trait SessionStore: Send + Sync {
    fn insert_session(&self, session: &Session) -> impl Future<Output = StoreResult<()>> + Send;

    /// The live (not ended, not expired at `now`) session with this public id.
    fn find_session(
        &self,
        id: &str,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<Option<Session>>> + Send;

    /// The live session whose cookie secret has this digest, with its user (one round trip: this
    /// is the hot path of every cookie-authenticated request).
    fn find_session_by_cookie(
        &self,
        digest: &str,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<Option<(Session, User)>>> + Send;

    /// Moves a live session's idle expiry (never past its absolute lifetime).
    fn touch_session(
        &self,
        id: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Ends a live session; `false` when it was not live.
    fn end_session(
        &self,
        id: &str,
        reason: EndReason,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Ends every live session of a user except `keep`; returns their ids.
    fn end_user_sessions(
        &self,
        user_id: &str,
        keep: Option<&str>,
        reason: EndReason,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<Vec<String>>> + Send;

    fn list_user_sessions(
        &self,
        user_id: &str,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<Vec<Session>>> + Send;

    /// Marks sessions whose time ran out as ended (reason EXPIRED, at the moment they expired);
    /// returns `(id, user_id, when it expired)` of each.
    fn expire_sessions(
        &self,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<Vec<(String, String, Timestamp)>>> + Send;
}

/// The system log (Okta's System Log API reads it).
pub trait EventStore: Send + Sync {
    fn insert_event(&self, event: &Event) -> impl Future<Output = StoreResult<()>> + Send;

    /// Inserts several events in one transaction (one durable commit for all), in order.
    fn insert_events(&self, events: &[Event]) -> impl Future<Output = StoreResult<()>> + Send;

    /// Events matching `query` in the order they were written, each with its paging cursor.
    fn list_events(&self, query: &LogQuery) -> impl Future<Output = StoreResult<Vec<(i64, Event)>>> + Send;
}

pub trait RateLimitStore: Send + Sync {
    /// Counts one hit in `bucket` for the fixed window starting at `window_start` and returns the
    /// window's count including this hit. Atomic across nodes.
    fn hit(&self, bucket: &str, window_start: Timestamp) -> impl Future<Output = StoreResult<i64>> + Send;
}

/// OAuth state: authorization codes (under their digests), refresh tokens, what revoked access
/// tokens early, the clients a session owes a logout, and client assertion ids against replay.
/// Access tokens themselves are not stored (they are signed JWTs; what ends one early is a [`Revocation`]).
pub trait OAuthStore: Send + Sync {
    /// Stores a code and records that its client received a grant in the code's session (for
    /// back-channel logout), in one transaction.
    fn insert_code(
        &self,
        digest: &str,
        code: &AuthorizationCode,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Records that `app_id` received tokens in `session_id` without a code (the implicit flow).
    fn record_session_client(
        &self,
        session_id: &str,
        app_id: &str,
        server: Server,
        user_id: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Spends the code under `digest` in one conditional update, so that across every node one
    /// request gets [`Redeemed::First`]; later ones get [`Redeemed::Again`] (a replay) until the
    /// record is purged. An expired code is [`Redeemed::Unknown`]. Concurrent spends may share one
    /// statement and one commit.
    fn redeem_code(&self, digest: &str, now: Timestamp)
    -> impl Future<Output = StoreResult<Redeemed>> + Send;

    /// Stores a refresh token.
    fn insert_token(&self, token: &IssuedToken) -> impl Future<Output = StoreResult<()>> + Send;

    /// Writes the refresh token a code exchange issued, in one transaction with a check that the
    /// code has not been replayed meanwhile; `false` (nothing written) when it has. Together with
    /// [`Self::redeem_code`] marking a replay on the same row, a replay racing the exchange on
    /// another node either prevents the write or revokes what it wrote.
    fn insert_tokens_for_code(
        &self,
        code_digest: &str,
        tokens: &[IssuedToken],
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// A refresh token by the digest of its secret.
    fn find_token(&self, id: &str) -> impl Future<Output = StoreResult<Option<IssuedToken>>> + Send;

    /// Marks a live refresh token as exchanged for its successor, in one conditional update:
    /// `false` when it was already rotated, revoked or expired (a reuse, or a race another
    /// request won).
    fn mark_rotated(&self, id: &str, now: Timestamp) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Writes revocation `keys` (see [`Revocation`]), each kept until `until`; existing keys keep
    /// the later of the two times.
    fn revoke(&self, keys: &[Revocation], until: Timestamp) -> impl Future<Output = StoreResult<()>> + Send;

    /// Revokes every stored token of `family` (the tokens one code or one grant issued) and writes
    /// the family's revocation key (kept until `until`) in one transaction; how many stored tokens
    /// it revoked.
    fn revoke_family(&self, family: &str, until: Timestamp) -> impl Future<Output = StoreResult<u64>> + Send;

    /// Whether any of `keys` is revoked (one point read).
    fn is_revoked(&self, keys: &[Revocation]) -> impl Future<Output = StoreResult<bool>> + Send;

    /// The default server's custom scopes, by name.
    fn list_custom_scopes(&self) -> impl Future<Output = StoreResult<Vec<CustomScope>>> + Send;

    /// Inserts or replaces (by id) a custom scope. `Conflict` when another has its name.
    fn put_custom_scope(&self, scope: &CustomScope) -> impl Future<Output = StoreResult<()>> + Send;

    fn delete_custom_scope(&self, id: &str) -> impl Future<Output = StoreResult<bool>> + Send;

    /// The default server's custom claims, by name.
    fn list_custom_claims(&self) -> impl Future<Output = StoreResult<Vec<CustomClaim>>> + Send;

    /// Inserts or replaces (by id) a custom claim. `Conflict` when another has its name.
    fn put_custom_claim(&self, claim: &CustomClaim) -> impl Future<Output = StoreResult<()>> + Send;

    fn delete_custom_claim(&self, id: &str) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Back-channel logout notices due at `now`, oldest first.
    fn due_logout_notices(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<LogoutNotice>>> + Send;

    /// Takes a due notice for one attempt in one conditional update (its attempt count must be the
    /// one read): counts the attempt and sets when it is due again. `false` when another node took it.
    fn lease_logout_notice(
        &self,
        notice: &LogoutNotice,
        retry_at: Timestamp,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    fn delete_logout_notice(&self, notice: &LogoutNotice) -> impl Future<Output = StoreResult<()>> + Send;

    /// Records a client assertion's `jti` until `expires_at`; `false` when it was already seen.
    fn remember_assertion(
        &self,
        app_id: &str,
        jti: &str,
        expires_at: Timestamp,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
}

pub trait HealthStore: Send + Sync {
    /// A round trip to the database.
    fn ping(&self) -> impl Future<Output = StoreResult<()>> + Send;
}

/// Everything the application needs from storage.
pub trait Storage:
    UserStore
    + ApiTokenStore
    + PolicyStore
    + HealthStore
    + AuthnStore
    + FactorStore
    + RateLimitStore
    + TrustedOriginStore
    + AppStore
    + SamlStore
    + SignOnStore
    + GroupStore
    + SigningKeyStore
    + SessionStore
    + EventStore
    + OAuthStore
{
}

impl<T> Storage for T where
    T: UserStore
        + ApiTokenStore
        + PolicyStore
        + HealthStore
        + AuthnStore
        + FactorStore
        + RateLimitStore
        + TrustedOriginStore
        + AppStore
        + SamlStore
        + SignOnStore
        + GroupStore
        + SigningKeyStore
        + SessionStore
        + EventStore
        + OAuthStore
{
}
