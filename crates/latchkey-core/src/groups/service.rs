//! Group use cases: groups and their members, group rules, apps assigned to groups; each change
//! writes its system-log event as Okta names it.
//!
//! Rules: an active rule puts every user whose profile satisfies its expression into its groups,
//! when it is activated (all users) and whenever a user is created or their profile changes (that
//! user); a user who no longer satisfies it leaves the groups it put them in. Deactivating a rule
//! removes the memberships it made; deleting one removes them with `removeUsers=true` and keeps
//! them (as an administrator's) without, Okta's default. Memberships an administrator made are
//! never touched by a rule.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::query::GroupQuery;
use super::{AppGroup, Group, GroupRule, GroupType, RuleStatus, name_key};
use crate::apps::App;
use crate::clock::Clock;
use crate::error::{CoreError, FieldError, StoreError};
use crate::events::{Actor, AuditLog, Event, Target};
use crate::expr::{Expression, Subject};
use crate::ids::{IdKind, new_id};
use crate::store::{AppStore, GroupStore, UserStore};
use crate::users::User;
use crate::users::query::UserQuery;

/// Longest group name (Okta: 255) and description (Okta: 1024).
const MAX_NAME: usize = 255;
const MAX_DESCRIPTION: usize = 1024;
/// Most groups one rule may fill.
const MAX_RULE_GROUPS: usize = 100;
/// Users read per page while a rule is applied to everyone.
const USERS_PER_PAGE: u32 = 500;
/// A rule may add a user to a group another rule's expression asks about: rules are applied again
/// until nothing changes, at most this many times.
const MAX_RULE_PASSES: usize = 8;
/// Rules read at a time when all of them are needed.
const RULES_PER_READ: u32 = 200;

/// What an administrator says about a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInput {
    pub name: String,
    pub description: Option<String>,
}

/// What an administrator says about a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInput {
    pub name: String,
    pub expression: String,
    pub group_ids: Vec<String>,
    pub excluded_users: Vec<String>,
}

/// Who made a change, for the system log.
#[derive(Debug, Clone)]
pub struct ChangedBy<'a> {
    pub actor: Actor,
    pub client_ip: Option<&'a str>,
}

/// The group use cases, wired to their collaborators.
pub struct Groups<'a, S, A> {
    pub store: &'a S,
    pub audit: &'a A,
    pub clock: &'a dyn Clock,
}

fn group_target(group: &Group) -> Target {
    Target::new(&group.id, "UserGroup", &group.name)
}

fn user_target(user: &User) -> Target {
    Target::new(&user.id, "User", user.login())
}

fn not_found(id: &str, kind: &str) -> CoreError {
    let id: String = id.chars().take(64).collect();
    CoreError::NotFound(format!("{id} ({kind})"))
}

impl<S: GroupStore + UserStore + AppStore, A: AuditLog> Groups<'_, S, A> {
    async fn log(&self, by: &ChangedBy<'_>, event_type: &str, message: &str, targets: Vec<Target>) {
        self.audit.record(self.event(by, event_type, message, targets)).await;
    }

    fn event(&self, by: &ChangedBy<'_>, event_type: &str, message: &str, targets: Vec<Target>) -> Event {
        let mut event = Event::new(event_type, message, "SUCCESS", by.actor.clone(), self.clock.now())
            .client(by.client_ip);
        for target in targets {
            event = event.target(target);
        }
        event
    }

    pub async fn get(&self, id: &str) -> Result<Group, CoreError> {
        self.store.find_group(id).await?.ok_or_else(|| not_found(id, "UserGroup"))
    }

    /// A group that may be edited: `Everyone` may not (Okta answers 403 E0000006).
    async fn editable(&self, id: &str) -> Result<Group, CoreError> {
        let group = self.get(id).await?;
        if group.is_built_in() {
            return Err(CoreError::Forbidden("the Everyone group cannot be changed".to_owned()));
        }
        Ok(group)
    }

    pub async fn list(&self, query: &GroupQuery) -> Result<Vec<Group>, CoreError> {
        Ok(self.store.list_groups(query).await?)
    }

    pub async fn create(&self, input: GroupInput, by: &ChangedBy<'_>) -> Result<Group, CoreError> {
        let input = validated(input)?;
        let now = self.clock.now();
        let group = Group {
            id: new_id(IdKind::Group),
            kind: GroupType::Okta,
            name: input.name,
            description: input.description,
            created: now,
            last_updated: now,
            last_membership_updated: now,
        };
        self.store.insert_group(&group).await.map_err(name_taken)?;
        self.log(by, "group.lifecycle.create", "Create okta group", vec![group_target(&group)]).await;
        Ok(group)
    }

    pub async fn update(&self, id: &str, input: GroupInput, by: &ChangedBy<'_>) -> Result<Group, CoreError> {
        let mut group = self.editable(id).await?;
        let input = validated(input)?;
        group.name = input.name;
        group.description = input.description;
        group.last_updated = self.clock.now();
        if !self.store.update_group(&group).await.map_err(name_taken)? {
            return Err(not_found(id, "UserGroup"));
        }
        self.log(by, "group.profile.update", "Update group profile", vec![group_target(&group)]).await;
        Ok(group)
    }

    /// Deletes a group with its memberships and app assignments. Rules that fill it or name it in
    /// their expression become INVALID (and take back the memberships they made); the former
    /// members, and the users those rules put out, are put through the rules again (see
    /// `reapply_rules`).
    pub async fn delete(&self, id: &str, by: &ChangedBy<'_>) -> Result<(), CoreError> {
        let group = self.editable(id).await?;
        let group_rules = self.active_rules().await?.into_iter().any(|rule| rule_uses_groups(&rule));
        let mut left: BTreeSet<String> = if group_rules {
            self.all_members(&group.id).await?.into_iter().map(|u| u.id).collect()
        } else {
            BTreeSet::new()
        };
        if self.store.delete_group(&group.id).await? {
            self.log(by, "group.lifecycle.delete", "Delete okta group", vec![group_target(&group)]).await;
        }
        for mut rule in self.all_rules().await? {
            let names_it = rule.group_ids.contains(&group.id) || rule.expression.contains(&group.id);
            if names_it && rule.status != RuleStatus::Invalid {
                rule.status = RuleStatus::Invalid;
                rule.last_updated = self.clock.now();
                self.store.put_rule(&rule).await?;
                self.log(by, "group.rule.invalidate", "Invalidate group rule", vec![rule_target(&rule)])
                    .await;
                // It applies to no one now: what it gave goes, as when it is deactivated.
                left.extend(self.drop_rule_memberships(&rule, by).await?);
            }
        }
        self.reapply_rules(&left, by).await
    }

    /// Adds a user to a group (an administrator's membership). Idempotent. `Everyone` takes no
    /// members by hand (Okta: E0000060).
    pub async fn add_member(
        &self,
        group_id: &str,
        user_id: &str,
        by: &ChangedBy<'_>,
    ) -> Result<(), CoreError> {
        let group = self.get(group_id).await?;
        if group.is_built_in() {
            return Err(CoreError::UnsupportedOperation);
        }
        let user = self
            .store
            .find_user(user_id)
            .await?
            .filter(|u| u.id == user_id)
            .ok_or_else(|| not_found(user_id, "User"))?;
        let added = self.store.add_member(&group.id, &user.id, None, self.clock.now()).await;
        if added.map_err(|e| gone(e, &group.id, &user.id))? {
            let targets = vec![user_target(&user), group_target(&group)];
            self.log(by, "group.user_membership.add", "Add user to group membership", targets).await;
            // Rules that ask about groups (`isMemberOfAnyGroup`) see the new membership.
            self.apply_rules(&user, by).await?;
        }
        Ok(())
    }

    /// Removes a user from a group. Idempotent. A membership a rule made goes too, and the user is
    /// put on that rule's exclusions so it does not add them back (as Okta does).
    pub async fn remove_member(
        &self,
        group_id: &str,
        user_id: &str,
        by: &ChangedBy<'_>,
    ) -> Result<(), CoreError> {
        let group = self.editable(group_id).await?;
        let user = self
            .store
            .find_user(user_id)
            .await?
            .filter(|u| u.id == user_id)
            .ok_or_else(|| not_found(user_id, "User"))?;
        let mut left = false;
        for source in self.store.membership_sources(&group.id, &user.id).await? {
            if let Some(rule_id) = &source
                && let Some(mut rule) = self.store.find_rule(rule_id).await?
                && !rule.excluded_users.contains(&user.id)
            {
                rule.excluded_users.push(user.id.clone());
                rule.last_updated = self.clock.now();
                self.store.put_rule(&rule).await?;
            }
            left |=
                self.store.remove_member(&group.id, &user.id, source.as_deref(), self.clock.now()).await?;
        }
        if left {
            let targets = vec![user_target(&user), group_target(&group)];
            self.log(by, "group.user_membership.remove", "Remove user from group membership", targets).await;
            // Memberships a rule made because of this one go with it.
            self.apply_rules(&user, by).await?;
        }
        Ok(())
    }

    /// Puts a new user into groups (`groupIds` of `POST /api/v1/users`); every group is checked
    /// before any is written.
    pub async fn add_new_user(
        &self,
        user: &User,
        group_ids: &[String],
        by: &ChangedBy<'_>,
    ) -> Result<(), CoreError> {
        let mut groups = Vec::with_capacity(group_ids.len());
        for id in group_ids {
            let group = self.get(id).await?;
            if !group.is_built_in() {
                groups.push(group);
            }
        }
        for group in groups {
            let added = self.store.add_member(&group.id, &user.id, None, self.clock.now()).await;
            if added.map_err(|e| gone(e, &group.id, &user.id))? {
                let targets = vec![user_target(user), group_target(&group)];
                self.log(by, "group.user_membership.add", "Add user to group membership", targets).await;
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------------------------------------
    // Rules

    pub async fn rule(&self, id: &str) -> Result<GroupRule, CoreError> {
        self.store.find_rule(id).await?.ok_or_else(|| not_found(id, "GroupRule"))
    }

    /// Rules ordered by id, after `after`, at most `limit`; with `search`, only those whose name
    /// contains it (without regard to case). The search applies before the page is cut: store
    /// pages are read until `limit` rules match or none are left, so a page is never short while
    /// matching rules remain after it.
    pub async fn list_rules(
        &self,
        search: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<GroupRule>, CoreError> {
        let Some(search) = search.map(str::to_lowercase) else {
            return Ok(self.store.list_rules(after, limit).await?);
        };
        let mut found = Vec::new();
        let mut after = after.map(str::to_owned);
        loop {
            let page = self.store.list_rules(after.as_deref(), RULES_PER_READ).await?;
            let full = page.len() == RULES_PER_READ as usize;
            after = page.last().map(|r| r.id.clone());
            found.extend(page.into_iter().filter(|r| r.name.to_lowercase().contains(&search)));
            if found.len() >= limit as usize || !full {
                found.truncate(limit as usize);
                return Ok(found);
            }
        }
    }

    /// A new rule, INACTIVE (as Okta creates them).
    pub async fn create_rule(&self, input: RuleInput, by: &ChangedBy<'_>) -> Result<GroupRule, CoreError> {
        let input = self.validated_rule(input).await?;
        let now = self.clock.now();
        let rule = GroupRule {
            id: new_id(IdKind::GroupRule),
            name: input.name,
            status: RuleStatus::Inactive,
            expression: input.expression,
            group_ids: input.group_ids,
            excluded_users: input.excluded_users,
            created: now,
            last_updated: now,
        };
        self.store.put_rule(&rule).await.map_err(rule_name_taken)?;
        self.log(by, "group.rule.create", "Create group rule", vec![rule_target(&rule)]).await;
        Ok(rule)
    }

    /// Replaces an inactive rule (Okta refuses to edit an active one).
    pub async fn update_rule(
        &self,
        id: &str,
        input: RuleInput,
        by: &ChangedBy<'_>,
    ) -> Result<GroupRule, CoreError> {
        let mut rule = self.rule(id).await?;
        if rule.status == RuleStatus::Active {
            return Err(CoreError::validation(
                "status",
                "an active rule cannot be changed: deactivate it first",
            ));
        }
        let input = self.validated_rule(input).await?;
        // Saved with groups that exist, an invalid rule is whole again (and inactive).
        rule.status = RuleStatus::Inactive;
        rule.name = input.name;
        rule.expression = input.expression;
        rule.group_ids = input.group_ids;
        rule.excluded_users = input.excluded_users;
        rule.last_updated = self.clock.now();
        self.store.put_rule(&rule).await.map_err(rule_name_taken)?;
        self.log(by, "group.rule.update", "Update group rule", vec![rule_target(&rule)]).await;
        Ok(rule)
    }

    /// Activates a rule and applies it to every existing user.
    pub async fn activate_rule(&self, id: &str, by: &ChangedBy<'_>) -> Result<(), CoreError> {
        let mut rule = self.rule(id).await?;
        refuse_invalid(&rule)?;
        if rule.status != RuleStatus::Active {
            rule.status = RuleStatus::Active;
            rule.last_updated = self.clock.now();
            self.store.put_rule(&rule).await?;
            self.log(by, "group.rule.activate", "Activate group rule", vec![rule_target(&rule)]).await;
        }
        // Read and parsed once for every user; a page's membership events are logged together.
        let rules = self.parsed_active_rules().await?;
        let mut after: Option<String> = None;
        loop {
            let page = self.store.list_users(&UserQuery::All, after.as_deref(), USERS_PER_PAGE).await?;
            let mut events = Vec::new();
            let mut applied = Ok(());
            for user in &page {
                applied = self.apply_parsed(user, &rules, by, &mut events).await;
                if applied.is_err() {
                    break;
                }
            }
            // What was written is logged even when a later write failed.
            self.audit.record_all(events).await;
            applied?;
            match page.last() {
                Some(last) if page.len() == USERS_PER_PAGE as usize => after = Some(last.id.clone()),
                _ => break,
            }
        }
        Ok(())
    }

    /// Deactivates a rule and removes the memberships it made.
    pub async fn deactivate_rule(&self, id: &str, by: &ChangedBy<'_>) -> Result<(), CoreError> {
        let mut rule = self.rule(id).await?;
        refuse_invalid(&rule)?;
        if rule.status == RuleStatus::Active {
            rule.status = RuleStatus::Inactive;
            rule.last_updated = self.clock.now();
            self.store.put_rule(&rule).await?;
            self.log(by, "group.rule.deactivate", "Deactivate group rule", vec![rule_target(&rule)]).await;
        }
        let left = self.drop_rule_memberships(&rule, by).await?;
        self.reapply_rules(&left, by).await
    }

    /// Deletes a rule. With `remove_users` the memberships it made go too; without (Okta's
    /// default) its users stay in its groups, as if an administrator had put them there.
    pub async fn delete_rule(
        &self,
        id: &str,
        remove_users: bool,
        by: &ChangedBy<'_>,
    ) -> Result<(), CoreError> {
        let rule = self.rule(id).await?;
        // An active rule may be deleted: `removeUsers` decides whether the memberships it made go
        // with it (deactivating first would remove them, leaving the choice nothing to decide).
        let left = if remove_users {
            self.drop_rule_memberships(&rule, by).await?
        } else {
            self.store.keep_rule_memberships(&rule.id).await?;
            BTreeSet::new()
        };
        if self.store.delete_rule(&rule.id).await? {
            self.log(by, "group.rule.delete", "Delete group rule", vec![rule_target(&rule)]).await;
        }
        // Gone, the rule can no longer put back what it gave.
        self.reapply_rules(&left, by).await
    }

    /// Removes the memberships a rule made; returns the users who left a group because of it, for
    /// `reapply_rules` (call it once the rule can no longer admit anyone).
    async fn drop_rule_memberships(
        &self,
        rule: &GroupRule,
        by: &ChangedBy<'_>,
    ) -> Result<BTreeSet<String>, CoreError> {
        let mut left = BTreeSet::new();
        let mut events = Vec::new();
        for (group_id, user_id) in self.store.remove_rule_memberships(&rule.id, self.clock.now()).await? {
            events.push(self.rule_membership_event(rule, &group_id, &user_id, None, false, by).await?);
            left.insert(user_id);
        }
        self.audit.record_all(events).await;
        Ok(left)
    }

    /// Puts users who left a group through the active rules again: a rule that asks about that
    /// group (`isMemberOfGroup`) may no longer admit them, and a rule that asks about the group
    /// that one fills neither, down the chain (each user to a fixed point, see `apply_rules`).
    /// Only rules that ask about groups can change their answer, so without one nothing is read.
    async fn reapply_rules(&self, user_ids: &BTreeSet<String>, by: &ChangedBy<'_>) -> Result<(), CoreError> {
        if user_ids.is_empty() {
            return Ok(());
        }
        let rules = self.parsed_active_rules().await?;
        if !rules.iter().any(|(_, expression)| expression.uses_groups()) {
            return Ok(());
        }
        let mut events = Vec::new();
        let mut applied = Ok(());
        for user_id in user_ids {
            // A user deleted meanwhile has no memberships left to follow.
            let user = match self.store.find_user(user_id).await {
                Ok(user) => user.filter(|u| &u.id == user_id),
                Err(e) => {
                    applied = Err(e.into());
                    break;
                }
            };
            if let Some(user) = user {
                applied = self.apply_parsed(&user, &rules, by, &mut events).await;
                if applied.is_err() {
                    break;
                }
            }
        }
        self.audit.record_all(events).await;
        applied
    }

    /// Applies every active rule to `user` (after the user was created, or their profile
    /// changed): groups a rule's expression now admits them to are joined, groups a rule put them
    /// in that it no longer admits them to are left.
    pub async fn apply_rules(&self, user: &User, by: &ChangedBy<'_>) -> Result<(), CoreError> {
        let rules = self.parsed_active_rules().await?;
        if rules.is_empty() {
            return Ok(());
        }
        let mut events = Vec::new();
        let applied = self.apply_parsed(user, &rules, by, &mut events).await;
        self.audit.record_all(events).await;
        applied
    }

    /// The active rules with their expressions parsed. Validated when saved; a rule that no
    /// longer parses (an older version's) applies to no one.
    async fn parsed_active_rules(&self) -> Result<Vec<(GroupRule, Expression)>, CoreError> {
        Ok(self
            .active_rules()
            .await?
            .into_iter()
            .filter_map(|rule| Expression::parse_condition(&rule.expression).ok().map(|e| (rule, e)))
            .collect())
    }

    /// `apply_rules` with the rules already read, the membership events left in `events` for the
    /// caller to log (together with others). A rule may put the user in a group another rule asks
    /// about, so the rules run again until nothing changes (at most `MAX_RULE_PASSES`). Each pass
    /// reads the user's memberships once and writes only what must change: a membership the rule
    /// should make and has not, or one it made and should not have.
    async fn apply_parsed(
        &self,
        user: &User,
        rules: &[(GroupRule, Expression)],
        by: &ChangedBy<'_>,
        events: &mut Vec<Event>,
    ) -> Result<(), CoreError> {
        for _ in 0..MAX_RULE_PASSES {
            let rows = self.store.user_memberships(&user.id).await?;
            let mut group_ids: Vec<String> = rows.iter().map(|(group, _)| group.clone()).collect();
            group_ids.dedup();
            let subject = Subject { user, group_ids: Some(&group_ids) };
            let mut changed = false;
            for (rule, expression) in rules {
                let admits = !rule.excluded_users.contains(&user.id) && expression.holds(&subject);
                for group_id in &rule.group_ids {
                    let made = rows.iter().any(|(group, source)| {
                        group == group_id && source.as_deref() == Some(rule.id.as_str())
                    });
                    if made == admits {
                        continue;
                    }
                    let now = self.clock.now();
                    let moved = if admits {
                        self.store.add_member(group_id, &user.id, Some(&rule.id), now).await
                    } else {
                        self.store.remove_member(group_id, &user.id, Some(&rule.id), now).await
                    };
                    match moved {
                        Ok(true) => {
                            changed = true;
                            events.push(
                                self.rule_membership_event(rule, group_id, &user.id, Some(user), admits, by)
                                    .await?,
                            );
                        }
                        Ok(false) => {}
                        // The group (or the user) was deleted meanwhile: nothing to fill.
                        Err(StoreError::Gone(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            if !changed {
                break;
            }
        }
        Ok(())
    }

    async fn active_rules(&self) -> Result<Vec<GroupRule>, CoreError> {
        let mut rules = self.all_rules().await?;
        rules.retain(|r| r.status == RuleStatus::Active);
        Ok(rules)
    }

    async fn all_rules(&self) -> Result<Vec<GroupRule>, CoreError> {
        let mut rules = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.store.list_rules(after.as_deref(), RULES_PER_READ).await?;
            let full = page.len() == RULES_PER_READ as usize;
            after = page.last().map(|r| r.id.clone());
            rules.extend(page);
            if !full {
                return Ok(rules);
            }
        }
    }

    /// Every member of a group.
    async fn all_members(&self, group_id: &str) -> Result<Vec<User>, CoreError> {
        let mut members = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.store.list_members(group_id, after.as_deref(), USERS_PER_PAGE).await?;
            let full = page.len() == USERS_PER_PAGE as usize;
            after = page.last().map(|u| u.id.clone());
            members.extend(page);
            if !full {
                return Ok(members);
            }
        }
    }

    /// The system-log event of a membership a rule made or took back (`user` when at hand).
    async fn rule_membership_event(
        &self,
        rule: &GroupRule,
        group_id: &str,
        user_id: &str,
        user: Option<&User>,
        added: bool,
        by: &ChangedBy<'_>,
    ) -> Result<Event, CoreError> {
        let mut targets = vec![rule_target(rule)];
        match user {
            Some(user) => targets.push(user_target(user)),
            None => {
                if let Some(user) = self.store.find_user(user_id).await? {
                    targets.push(user_target(&user));
                }
            }
        }
        if let Some(group) = self.store.find_group(group_id).await? {
            targets.push(group_target(&group));
        }
        let (event_type, message) = if added {
            ("group.user_membership.add", "Add user to group membership")
        } else {
            ("group.user_membership.remove", "Remove user from group membership")
        };
        Ok(self.event(by, event_type, message, targets))
    }

    /// Okta: every problem of a rule is reported under `validateRule`.
    async fn validated_rule(&self, input: RuleInput) -> Result<RuleInput, CoreError> {
        self.check_rule(input).await.map_err(|e| match e {
            CoreError::Validation { causes, .. } => {
                CoreError::Validation { field: "validateRule".to_owned(), causes }
            }
            other => other,
        })
    }

    async fn check_rule(&self, input: RuleInput) -> Result<RuleInput, CoreError> {
        let name = input.name.trim().to_owned();
        let mut causes = Vec::new();
        if name.is_empty() || name.chars().count() > 50 || name.contains(char::is_control) {
            causes.push(FieldError::new("name", "is required (1 to 50 characters)"));
        }
        if let Err(e) = Expression::parse_condition(&input.expression) {
            causes.push(FieldError::new(
                "conditions.expression.value",
                format!("Latchkey cannot evaluate this expression {e}"),
            ));
        }
        if input.group_ids.is_empty() || input.group_ids.len() > MAX_RULE_GROUPS {
            causes.push(FieldError::new(
                "actions.assignUserToGroups.groupIds",
                format!("between 1 and {MAX_RULE_GROUPS} group ids"),
            ));
        }
        for id in &input.group_ids {
            match self.store.find_group(id).await? {
                Some(group) if !group.is_built_in() => {}
                Some(_) => causes.push(FieldError::new(
                    "actions.assignUserToGroups.groupIds",
                    "rules cannot assign users to the Everyone group",
                )),
                None => causes.push(FieldError::new(
                    "actions.assignUserToGroups.groupIds",
                    format!("{} is not a group", id.chars().take(64).collect::<String>()),
                )),
            }
        }
        CoreError::from_causes(causes)?;
        // Every repeat goes, not only adjacent ones; the first place of each id is kept.
        let mut seen = BTreeSet::new();
        let mut group_ids = input.group_ids;
        group_ids.retain(|id| seen.insert(id.clone()));
        Ok(RuleInput { name, group_ids, ..input })
    }

    // ---------------------------------------------------------------------------------------------
    // Apps assigned to groups

    /// Assigns an app to a group, or replaces the assignment (Okta's PUT: a `priority` or
    /// `profile` left out is reset, to 0 and empty, not kept).
    pub async fn assign_app(
        &self,
        app: &App,
        group_id: &str,
        priority: Option<u32>,
        profile: Map<String, Value>,
        by: &ChangedBy<'_>,
    ) -> Result<AppGroup, CoreError> {
        let group = self.get(group_id).await?;
        let now = self.clock.now();
        let existing = self.store.find_app_group(&app.id, &group.id).await?;
        let assignment = AppGroup {
            app_id: app.id.clone(),
            group_id: group.id.clone(),
            priority: priority.unwrap_or(0),
            profile,
            created: existing.as_ref().map_or(now, |e| e.created),
            last_updated: now,
        };
        if self.store.put_app_group(&assignment).await.map_err(|e| gone(e, &group.id, &app.id))? {
            let targets = vec![Target::new(&app.id, "AppInstance", &app.label), group_target(&group)];
            self.log(by, "group.application_assignment.add", "Add assigned application to group", targets)
                .await;
        }
        Ok(assignment)
    }

    pub async fn unassign_app(&self, app: &App, group_id: &str, by: &ChangedBy<'_>) -> Result<(), CoreError> {
        let group = self.get(group_id).await?;
        if !self.store.delete_app_group(&app.id, &group.id).await? {
            return Err(not_found(group_id, "ApplicationGroupAssignment"));
        }
        let targets = vec![Target::new(&app.id, "AppInstance", &app.label), group_target(&group)];
        self.log(
            by,
            "group.application_assignment.remove",
            "Remove assigned application from group",
            targets,
        )
        .await;
        Ok(())
    }
}

/// Rule names are unique (Okta: "Policy rule name already in use").
/// Okta refuses to activate or deactivate an INVALID rule; it must be saved with existing groups.
fn refuse_invalid(rule: &GroupRule) -> Result<(), CoreError> {
    if rule.status == RuleStatus::Invalid {
        return Err(CoreError::validation(
            "updateRuleStatus",
            "Cannot activate or deactivate a Group Rule with the status INVALID",
        ));
    }
    Ok(())
}

/// Whether a rule's expression asks about the user's groups.
fn rule_uses_groups(rule: &GroupRule) -> bool {
    Expression::parse_condition(&rule.expression).is_ok_and(|e| e.uses_groups())
}

/// A write that found its group, user or app deleted meanwhile (a race with a DELETE): Okta's 404
/// for what is gone, as if the DELETE had come first. `other_id` is the user's or the app's.
fn gone(e: StoreError, group_id: &str, other_id: &str) -> CoreError {
    match e {
        StoreError::Gone(what) if what == "group" => not_found(group_id, "UserGroup"),
        StoreError::Gone(what) if what == "user" => not_found(other_id, "User"),
        StoreError::Gone(what) if what == "app" => not_found(other_id, "AppInstance"),
        other => other.into(),
    }
}

fn rule_name_taken(e: StoreError) -> CoreError {
    match e {
        StoreError::Conflict(_) => CoreError::Validation {
            field: "name".to_owned(),
            causes: vec![FieldError::new("name", "Policy rule name already in use")],
        },
        other => other.into(),
    }
}

fn rule_target(rule: &GroupRule) -> Target {
    Target::new(&rule.id, "GroupRule", &rule.name)
}

/// A name taken by another group (without regard to case): Okta's 400 E0000001 with its cause.
fn name_taken(e: StoreError) -> CoreError {
    match e {
        StoreError::Conflict(_) => CoreError::Validation {
            field: "name".to_owned(),
            causes: vec![FieldError::new(
                "name",
                "An object with this field already exists in the current organization",
            )],
        },
        other => other.into(),
    }
}

fn validated(input: GroupInput) -> Result<GroupInput, CoreError> {
    let name = input.name.trim().to_owned();
    let mut causes = Vec::new();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.contains(char::is_control) {
        causes.push(FieldError::new("name", format!("is required (1 to {MAX_NAME} characters)")));
    }
    if name_key(&name) == name_key(super::EVERYONE) {
        causes.push(FieldError::new(
            "name",
            "An object with this field already exists in the current organization",
        ));
    }
    let description = input.description.filter(|d| !d.is_empty());
    if description.as_ref().is_some_and(|d| d.chars().count() > MAX_DESCRIPTION || d.contains('\0')) {
        causes.push(FieldError::new("description", format!("at most {MAX_DESCRIPTION} characters")));
    }
    CoreError::from_causes(causes)?;
    Ok(GroupInput { name, description })
}
