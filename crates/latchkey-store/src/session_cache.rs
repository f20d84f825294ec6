//! Live sessions by cookie digest, with their users, and apps by id and external key, held in
//! memory so that a session check (and the app lookup of every SSO) is not a database read. A
//! cached session also carries its *grants*: the apps its user is assigned to that it has already
//! signed in to, with the participant record SLO needs, so a repeated SSO reads nothing either.
//! The groups of users with such sessions are kept too (group claims are on the SSO path).
//! The maps know nothing of how they are kept exact; their owner evicts:
//! - on SQLite (one server process per database file, which `Store::claim_server` enforces),
//!   the store evicts after each committed write to a session, a user, an assignment, a group
//!   membership, a group or an app (an assignment or a membership is evicted as its user: grants
//!   and groups live with the user's sessions);
//! - on PostgreSQL, `node_cache` evicts on the triggers' messages and serves only under a lease.
//!
//! A fill that raced an eviction is dropped: the eviction count read before the database read
//! (the *ticket*) must be unchanged when the entry is inserted. Time-based expiry needs no
//! eviction: a hit is checked against `now` as the SQL would.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use latchkey_core::Timestamp;
use latchkey_core::apps::App;
use latchkey_core::groups::GroupRef;
use latchkey_core::sessions::Session;
use latchkey_core::signon::Participant;
use latchkey_core::users::User;

/// An entry older than this is read again even if nothing evicted it (a bound on any change that
/// reached the database some other way, such as a restored backup).
pub(crate) const MAX_AGE: Duration = Duration::from_secs(30);
/// At most this many sessions (and apps) are kept. A fill that finds the map full first forgets
/// entries past [`MAX_AGE`] (at most once a second); if it is still full, the new one is simply not
/// cached.
const MAX_ENTRIES: usize = 100_000;

struct Entry {
    session: Session,
    user: User,
    filled: Instant,
    /// Participant records by app id, each found together with its user's assignment. Records
    /// never change while their session lives, so only the assignment needs evicting.
    grants: HashMap<String, Participant>,
}

#[derive(Default)]
struct Entries {
    /// The map answers for good (SQLite's sole server).
    always: bool,
    /// Otherwise, until when the owner lets the map answer (`None`: not now).
    serving_until: Option<Instant>,
    /// Evictions so far (see the module header).
    evictions: u64,
    by_cookie: HashMap<String, Entry>,
    /// Cookie digests of each user's cached sessions.
    by_user: HashMap<String, Vec<String>>,
    /// Cookie digest of each cached session id.
    by_id: HashMap<String, String>,
    /// Apps by the key they were looked up with (id or external key), and when.
    apps: HashMap<String, (App, Instant)>,
    /// The groups of users with cached sessions (ids and names), and when they were read.
    groups: HashMap<String, (Vec<GroupRef>, Instant)>,
    /// When a full map last forgot its old entries.
    last_purge: Option<Instant>,
    /// A smaller bound than [`MAX_ENTRIES`] (tests).
    cap: Option<usize>,
}

impl Entries {
    /// Whether a fill may add to `len` entries, forgetting old ones first if the map is full.
    fn room(&mut self, len: impl Fn(&Self) -> usize, at: Instant) -> bool {
        let cap = self.cap.unwrap_or(MAX_ENTRIES);
        if len(self) < cap {
            return true;
        }
        if self.last_purge.is_none_or(|last| at.duration_since(last) >= Duration::from_secs(1)) {
            self.last_purge = Some(at);
            self.forget_old(at);
        }
        len(self) < cap
    }

    fn forget_old(&mut self, now: Instant) {
        let stale: Vec<String> = self
            .by_cookie
            .iter()
            .filter(|(_, entry)| now.duration_since(entry.filled) >= MAX_AGE)
            .map(|(digest, _)| digest.clone())
            .collect();
        for digest in stale {
            self.remove_cookie(&digest);
        }
        self.apps.retain(|_, (_, filled)| now.duration_since(*filled) < MAX_AGE);
        self.groups.retain(|_, (_, filled)| now.duration_since(*filled) < MAX_AGE);
    }

    fn serving(&self, at: Instant) -> bool {
        self.always || self.serving_until.is_some_and(|until| at < until)
    }

    fn remove_cookie(&mut self, digest: &str) {
        if let Some(entry) = self.by_cookie.remove(digest) {
            self.by_id.remove(&entry.session.id);
            if let Some(digests) = self.by_user.get_mut(&entry.user.id) {
                digests.retain(|d| d != digest);
                if digests.is_empty() {
                    self.by_user.remove(&entry.user.id);
                    self.groups.remove(&entry.user.id);
                }
            }
        }
    }
}

/// Locks a mutex, recovering the data if a holder panicked (every critical section here leaves
/// the data consistent, and a poisoned lock must not take the server down).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Live at `now` by the same test as the SQL's (`sessions::live`).
fn live(session: &Session, now: Timestamp) -> bool {
    session.expires_at > now && session.lifetime_ends_at.is_none_or(|end| end > now)
}

/// What a write changed, for eviction.
pub(crate) enum Changed<'a> {
    /// A session, by its public id.
    Session(&'a str),
    /// Sessions, by their public ids.
    Sessions(&'a [String]),
    /// A user (and so every session of theirs that carries the user, and their groups).
    User(&'a str),
    /// Apps (rarely changed: all are forgotten).
    Apps,
    /// Grants and groups of any user (an app's group assignment, a group, or a rule's memberships
    /// went, or a group was renamed: all cached grants and groups are forgotten, the sessions
    /// stay).
    Grants,
}

#[derive(Default)]
pub(crate) struct SessionCache {
    entries: Mutex<Entries>,
}

impl std::fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCache").field("sessions", &lock(&self.entries).by_cookie.len()).finish()
    }
}

impl SessionCache {
    /// A map that answers from the start and never stops (SQLite's sole server).
    pub(crate) fn serving() -> Self {
        let cache = Self::default();
        lock(&cache.entries).always = true;
        cache
    }

    /// The cached live session behind a cookie digest, if the map may answer now.
    pub(crate) fn get(&self, digest: &str, now: Timestamp) -> Option<(Session, User)> {
        let entries = lock(&self.entries);
        let at = Instant::now();
        if !entries.serving(at) {
            return None;
        }
        let entry = entries.by_cookie.get(digest)?;
        (live(&entry.session, now) && at.duration_since(entry.filled) < MAX_AGE)
            .then(|| (entry.session.clone(), entry.user.clone()))
    }

    /// Taken before a database read whose result may be cached: `None` when the map is not
    /// answering.
    pub(crate) fn ticket(&self) -> Option<u64> {
        let entries = lock(&self.entries);
        entries.serving(Instant::now()).then_some(entries.evictions)
    }

    /// Caches what a read under `ticket` found, unless something was evicted since.
    pub(crate) fn fill(&self, ticket: u64, session: &Session, user: &User) {
        let mut entries = lock(&self.entries);
        let at = Instant::now();
        if entries.evictions != ticket || !entries.serving(at) || !entries.room(|e| e.by_cookie.len(), at) {
            return;
        }
        let digest = session.cookie_digest.clone();
        entries.remove_cookie(&digest);
        entries.by_user.entry(user.id.clone()).or_default().push(digest.clone());
        entries.by_id.insert(session.id.clone(), digest.clone());
        let entry =
            Entry { session: session.clone(), user: user.clone(), filled: at, grants: HashMap::new() };
        entries.by_cookie.insert(digest, entry);
    }

    /// The participant record of a cached session of `user_id` for `app_id`, if the map may answer
    /// now and has one: the session already signed in to the app and its user is still assigned.
    pub(crate) fn get_grant(&self, session_id: &str, user_id: &str, app_id: &str) -> Option<Participant> {
        let entries = lock(&self.entries);
        let at = Instant::now();
        if !entries.serving(at) {
            return None;
        }
        let entry = entries.by_cookie.get(entries.by_id.get(session_id)?)?;
        if entry.user.id != user_id || at.duration_since(entry.filled) >= MAX_AGE {
            return None;
        }
        entry.grants.get(app_id).cloned()
    }

    /// Caches a participant record that a read under `ticket` found with its user's assignment,
    /// in its session's entry (only a cached session carries grants), unless something was
    /// evicted since.
    pub(crate) fn fill_grant(&self, ticket: u64, user_id: &str, participant: &Participant) {
        let mut entries = lock(&self.entries);
        if entries.evictions != ticket || !entries.serving(Instant::now()) {
            return;
        }
        let Some(digest) = entries.by_id.get(&participant.session_id).cloned() else { return };
        if let Some(entry) = entries.by_cookie.get_mut(&digest)
            && entry.user.id == user_id
        {
            entry.grants.insert(participant.app_id.clone(), participant.clone());
        }
    }

    /// The user `user_id` as the cached session `session_id` carries them, if the map may answer
    /// now and holds that session.
    pub(crate) fn get_session_user(&self, session_id: &str, user_id: &str) -> Option<User> {
        let entries = lock(&self.entries);
        let at = Instant::now();
        if !entries.serving(at) {
            return None;
        }
        let entry = entries.by_cookie.get(entries.by_id.get(session_id)?)?;
        (entry.user.id == user_id && at.duration_since(entry.filled) < MAX_AGE).then(|| entry.user.clone())
    }

    /// Drops one session by its cookie digest.
    pub(crate) fn evict_cookie(&self, digest: &str) {
        let mut entries = lock(&self.entries);
        entries.remove_cookie(digest);
        entries.evictions += 1;
    }

    /// Drops what `changed` names.
    pub(crate) fn evict(&self, changed: &Changed<'_>) {
        let mut entries = lock(&self.entries);
        let ids: Vec<String> = match changed {
            Changed::Session(id) => vec![(*id).to_owned()],
            Changed::Sessions(ids) => ids.to_vec(),
            Changed::User(user_id) => {
                entries.groups.remove(*user_id);
                for digest in entries.by_user.remove(*user_id).unwrap_or_default() {
                    if let Some(entry) = entries.by_cookie.remove(&digest) {
                        entries.by_id.remove(&entry.session.id);
                    }
                }
                Vec::new()
            }
            Changed::Apps => {
                entries.apps.clear();
                Vec::new()
            }
            Changed::Grants => {
                for entry in entries.by_cookie.values_mut() {
                    entry.grants.clear();
                }
                entries.groups.clear();
                Vec::new()
            }
        };
        for id in &ids {
            if let Some(digest) = entries.by_id.get(id).cloned() {
                entries.remove_cookie(&digest);
            }
        }
        entries.evictions += 1;
    }

    /// Lets the map answer until `until`, if that is later than now allowed.
    pub(crate) fn serve_until(&self, until: Instant) {
        let mut entries = lock(&self.entries);
        if entries.serving_until.is_none_or(|current| current < until) {
            entries.serving_until = Some(until);
        }
    }

    /// Stops answering and forgets everything.
    pub(crate) fn stop_serving(&self) {
        let mut entries = lock(&self.entries);
        entries.always = false;
        entries.serving_until = None;
        entries.by_cookie.clear();
        entries.by_user.clear();
        entries.by_id.clear();
        entries.apps.clear();
        entries.groups.clear();
        entries.evictions += 1;
    }

    /// Forgets entries older than [`MAX_AGE`].
    pub(crate) fn forget_old(&self) {
        lock(&self.entries).forget_old(Instant::now());
    }

    /// The cached app looked up by `key` (its id or external key), if the map may answer now.
    pub(crate) fn get_app(&self, key: &str) -> Option<App> {
        let entries = lock(&self.entries);
        let at = Instant::now();
        if !entries.serving(at) {
            return None;
        }
        let (app, filled) = entries.apps.get(key)?;
        (at.duration_since(*filled) < MAX_AGE).then(|| app.clone())
    }

    /// The cached groups of `user_id`, if the map may answer now and holds them.
    pub(crate) fn get_groups(&self, user_id: &str) -> Option<Vec<GroupRef>> {
        let entries = lock(&self.entries);
        let at = Instant::now();
        if !entries.serving(at) {
            return None;
        }
        let (groups, filled) = entries.groups.get(user_id)?;
        (at.duration_since(*filled) < MAX_AGE).then(|| groups.clone())
    }

    /// Caches the groups a read under `ticket` found for `user_id`, if the user has a cached
    /// session (whose eviction takes them along) and nothing was evicted since.
    pub(crate) fn fill_groups(&self, ticket: u64, user_id: &str, groups: &[GroupRef]) {
        let mut entries = lock(&self.entries);
        let at = Instant::now();
        if entries.evictions != ticket || !entries.serving(at) || !entries.by_user.contains_key(user_id) {
            return;
        }
        entries.groups.insert(user_id.to_owned(), (groups.to_vec(), at));
    }

    /// Caches an app a read under `ticket` found by `key`, unless something was evicted since.
    pub(crate) fn fill_app(&self, ticket: u64, key: &str, app: &App) {
        let mut entries = lock(&self.entries);
        let at = Instant::now();
        if entries.evictions != ticket || !entries.serving(at) || !entries.room(|e| e.apps.len(), at) {
            return;
        }
        entries.apps.insert(key.to_owned(), (app.clone(), at));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code: a failed step fails the test")]

    use latchkey_core::users::UserStatus;
    use latchkey_core::users::profile::Profile;

    use super::*;

    fn session_and_user(id: &str) -> (Session, User) {
        let profile = serde_json::json!({"login": "a@example.com", "email": "a@example.com", "firstName": "A", "lastName": "B"});
        let user = User {
            id: format!("00u{id}"),
            status: UserStatus::Active,
            created: Timestamp(0),
            activated: None,
            status_changed: None,
            last_login: None,
            last_updated: Timestamp(0),
            password_changed: None,
            profile: Profile::new(profile.as_object().cloned().unwrap()).unwrap(),
            password_hash: None,
            password_history: vec![],
            failed_attempts: 0,
            locked_at: None,
            version: 1,
        };
        let session = Session {
            id: id.to_owned(),
            cookie_digest: format!("c-{id}"),
            user_id: user.id.clone(),
            amr: vec!["pwd".to_owned()],
            created: Timestamp(0),
            expires_at: Timestamp(i64::MAX),
            lifetime_ends_at: None,
            last_activity: Timestamp(0),
            password_verified_at: None,
            factor_verified_at: None,
            persistent: false,
        };
        (session, user)
    }

    /// A full map takes no new session until its old entries can go, then forgets them and does.
    #[test]
    fn a_full_map_makes_room_by_forgetting_old_entries() {
        let cache = SessionCache::serving();
        lock(&cache.entries).cap = Some(2);
        for id in ["1", "2", "3"] {
            let (session, user) = session_and_user(id);
            let ticket = cache.ticket().unwrap();
            cache.fill(ticket, &session, &user);
        }
        let now = Timestamp(1);
        assert!(cache.get("c-1", now).is_some() && cache.get("c-2", now).is_some());
        assert!(cache.get("c-3", now).is_none(), "full: not cached");

        let later = Instant::now() + MAX_AGE + Duration::from_secs(1);
        let mut entries = lock(&cache.entries);
        assert!(entries.room(|e| e.by_cookie.len(), later), "old entries forgotten");
        assert!(entries.by_cookie.is_empty() && entries.by_user.is_empty() && entries.by_id.is_empty());
    }

    /// A grant is kept in its session's entry, for that session's user only; a fill that straddled
    /// an eviction is dropped, and evicting the user forgets the grant with the session.
    #[test]
    fn grants_live_and_go_with_their_session() {
        let cache = SessionCache::serving();
        let (session, user) = session_and_user("1");
        let participant = Participant {
            session_id: "1".into(),
            app_id: "0oa1".into(),
            name_id: "a@example.com".into(),
            name_id_format: "unspecified".into(),
            session_index: "_i".into(),
            created: Timestamp(0),
        };
        let ticket = cache.ticket().unwrap();
        cache.fill_grant(ticket, &user.id, &participant);
        assert_eq!(cache.get_grant("1", &user.id, "0oa1"), None, "no cached session: nothing to carry it");

        cache.fill(cache.ticket().unwrap(), &session, &user);
        let ticket = cache.ticket().unwrap();
        cache.evict(&Changed::Session("other"));
        cache.fill_grant(ticket, &user.id, &participant);
        assert_eq!(cache.get_grant("1", &user.id, "0oa1"), None, "straddled an eviction");

        cache.fill_grant(cache.ticket().unwrap(), "00uother", &participant);
        assert_eq!(cache.get_grant("1", "00uother", "0oa1"), None, "not that session's user");

        cache.fill_grant(cache.ticket().unwrap(), &user.id, &participant);
        assert_eq!(cache.get_grant("1", &user.id, "0oa1"), Some(participant.clone()));
        assert_eq!(cache.get_grant("1", &user.id, "0oa2"), None, "another app");
        cache.evict(&Changed::User(&user.id));
        assert_eq!(cache.get_grant("1", &user.id, "0oa1"), None, "an assignment change evicts the user");
    }

    /// A user's groups are kept only while the user has a cached session, and go with it, with
    /// the user, and with any change to grants.
    #[test]
    fn groups_live_and_go_with_their_users_sessions() {
        let cache = SessionCache::serving();
        let (session, user) = session_and_user("1");
        let groups = vec![GroupRef { id: "00g1".into(), name: "Staff".into() }];
        cache.fill_groups(cache.ticket().unwrap(), &user.id, &groups);
        assert_eq!(cache.get_groups(&user.id), None, "no cached session: not kept");

        cache.fill(cache.ticket().unwrap(), &session, &user);
        let ticket = cache.ticket().unwrap();
        cache.evict(&Changed::Session("other"));
        cache.fill_groups(ticket, &user.id, &groups);
        assert_eq!(cache.get_groups(&user.id), None, "straddled an eviction");

        cache.fill_groups(cache.ticket().unwrap(), &user.id, &groups);
        assert_eq!(cache.get_groups(&user.id), Some(groups.clone()));
        cache.evict(&Changed::Grants);
        assert_eq!(cache.get_groups(&user.id), None, "a rename or a lost assignment forgets all groups");
        assert!(cache.get("c-1", Timestamp(1)).is_some(), "the session stays");

        cache.fill_groups(cache.ticket().unwrap(), &user.id, &groups);
        cache.evict(&Changed::User(&user.id));
        assert_eq!(cache.get_groups(&user.id), None, "a membership change evicts the user");

        cache.fill(cache.ticket().unwrap(), &session, &user);
        cache.fill_groups(cache.ticket().unwrap(), &user.id, &groups);
        cache.evict(&Changed::Session("1"));
        assert!(lock(&cache.entries).groups.is_empty(), "the user's last session took the groups along");
    }

    /// Evicting by session id or by user removes every index of the entry.
    #[test]
    fn evictions_clear_every_index() {
        let cache = SessionCache::serving();
        for id in ["1", "2"] {
            let (session, user) = session_and_user(id);
            cache.fill(cache.ticket().unwrap(), &session, &user);
        }
        let ticket = cache.ticket().unwrap();
        cache.evict(&Changed::Session("1"));
        assert!(cache.get("c-1", Timestamp(1)).is_none());
        let (session, user) = session_and_user("1");
        cache.fill(ticket, &session, &user);
        assert!(cache.get("c-1", Timestamp(1)).is_none(), "a fill that straddled an eviction is dropped");
        cache.evict(&Changed::User("00u2"));
        let entries = lock(&cache.entries);
        assert!(entries.by_cookie.is_empty() && entries.by_user.is_empty() && entries.by_id.is_empty());
    }
}
