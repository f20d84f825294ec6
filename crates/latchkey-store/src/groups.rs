//! Groups, memberships, group rules and app-group assignments.
//!
//! A membership row records its source: `''` for an administrator's, else the id of the rule that
//! made it; a user is a member while any row exists. Every write that can end someone's access
//! (a membership removed, an assignment removed, a group deleted) evicts the cached grants it
//! affects on every node before it returns (`session_cache`, `node_cache`); one that adds a
//! membership or renames a group evicts the cached groups it changes without waiting.

use latchkey_core::apps::App;
use latchkey_core::groups::query::{Field, GroupQuery};
use latchkey_core::groups::{
    AppGroup, Group, GroupRef, GroupRule, GroupStats, GroupType, MembershipSource, RuleStatus,
};
use latchkey_core::store::{GroupStore, StoreResult};
use latchkey_core::users::User;
use latchkey_core::{StoreError, Timestamp};
use sqlx::AssertSqlSafe;

use crate::filter::sql_of;
use crate::rows::{self, Columns, USER_COLUMNS, json};
use crate::session_cache::Changed;
use crate::{Bind, Store, bind_all, map_err, on_pool};

/// A no-op write to a group's row. On PostgreSQL it takes the row's lock until the transaction
/// ends, which serializes the membership changes of one group across connections and nodes (SQLite
/// has a single writer anyway); it touches no row when the group does not exist.
const LOCK_GROUP: &str =
    "UPDATE user_groups SET last_membership_updated = last_membership_updated WHERE id = $1";

const GROUP_COLUMNS: &str = "id, type, name, description, created, last_updated, last_membership_updated";
const RULE_COLUMNS: &str = "id, name, status, expression, group_ids, excluded_users, created, last_updated";
const APP_GROUP_COLUMNS: &str = "app_id, group_id, priority, profile, created, last_updated";

fn group(row: &(impl Columns + ?Sized)) -> StoreResult<Group> {
    let kind = row.text("type")?;
    Ok(Group {
        id: row.text("id")?,
        kind: GroupType::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("group type {kind}")))?,
        name: row.text("name")?,
        description: row.maybe_text("description")?,
        created: row.time("created")?,
        last_updated: row.time("last_updated")?,
        last_membership_updated: row.time("last_membership_updated")?,
    })
}

fn rule(row: &(impl Columns + ?Sized)) -> StoreResult<GroupRule> {
    let status = row.text("status")?;
    Ok(GroupRule {
        id: row.text("id")?,
        name: row.text("name")?,
        status: RuleStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("rule status {status}")))?,
        expression: row.text("expression")?,
        group_ids: json(&row.text("group_ids")?)?,
        excluded_users: json(&row.text("excluded_users")?)?,
        created: row.time("created")?,
        last_updated: row.time("last_updated")?,
    })
}

fn app_group(row: &(impl Columns + ?Sized)) -> StoreResult<AppGroup> {
    let priority = row.int("priority")?;
    Ok(AppGroup {
        app_id: row.text("app_id")?,
        group_id: row.text("group_id")?,
        priority: u32::try_from(priority).map_err(|_| StoreError::Corrupt(format!("priority {priority}")))?,
        profile: json(&row.text("profile")?)?,
        created: row.time("created")?,
        last_updated: row.time("last_updated")?,
    })
}

fn to_json(value: &impl serde::Serialize) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A foreign-key failure of a write whose other referenced rows are held (locked) is `Gone(what)`:
/// the one row it can be about was deleted meanwhile. Any other failure maps as usual.
fn gone_unless(e: sqlx::Error, what: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::Gone(what.to_owned()),
        _ => map_err(e),
    }
}

/// A name clash is the store's `Conflict("name")`.
fn name_conflict(e: sqlx::Error) -> StoreError {
    match map_err(e) {
        StoreError::Conflict(_) => StoreError::Conflict("name".to_owned()),
        other => other,
    }
}

fn source_key(source: MembershipSource<'_>) -> &str {
    source.unwrap_or_default()
}

impl Store {
    async fn query_groups(&self, sql: &str, binds: &[Bind]) -> StoreResult<Vec<Group>> {
        on_pool!(self, read, |pool| {
            let found =
                bind_all!(sqlx::query(AssertSqlSafe(sql)), binds).fetch_all(pool).await.map_err(map_err)?;
            found.iter().map(group).collect()
        })
    }
}

impl GroupStore for Store {
    async fn insert_group(&self, g: &Group) -> StoreResult<()> {
        on_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO user_groups (id, type, name, name_key, description, created, last_updated, \
                 last_membership_updated) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&g.id)
            .bind(g.kind.as_str())
            .bind(&g.name)
            .bind(latchkey_core::groups::name_key(&g.name))
            .bind(&g.description)
            .bind(g.created.millis())
            .bind(g.last_updated.millis())
            .bind(g.last_membership_updated.millis())
            .execute(pool)
            .await
            .map_err(name_conflict)?;
        });
        Ok(())
    }

    async fn update_group(&self, g: &Group) -> StoreResult<bool> {
        let updated = on_pool!(self, write, |pool| {
            sqlx::query(
                "UPDATE user_groups SET name = $2, name_key = $3, description = $4, last_updated = $5 WHERE id = $1",
            )
            .bind(&g.id)
            .bind(&g.name)
            .bind(latchkey_core::groups::name_key(&g.name))
            .bind(&g.description)
            .bind(g.last_updated.millis())
            .execute(pool)
            .await
            .map_err(name_conflict)?
            .rows_affected()
        });
        if updated == 1 {
            // A renamed group: the cached groups (and the claims made from them) go.
            self.forget(Changed::Grants, false).await;
        }
        Ok(updated == 1)
    }

    async fn delete_group(&self, id: &str) -> StoreResult<bool> {
        let deleted = on_pool!(self, write, |pool| {
            // Memberships and app assignments go with it (ON DELETE CASCADE).
            sqlx::query("DELETE FROM user_groups WHERE id = $1 AND type <> 'BUILT_IN'")
                .bind(id)
                .execute(pool)
                .await
                .map_err(map_err)?
                .rows_affected()
        });
        self.forget(Changed::Grants, true).await;
        Ok(deleted == 1)
    }

    async fn find_group(&self, id: &str) -> StoreResult<Option<Group>> {
        let sql = format!("SELECT {GROUP_COLUMNS} FROM user_groups WHERE id = $1");
        self.read_row(&sql, &[Bind::Text(id.to_owned())], |row| group(row)).await
    }

    async fn everyone_group(&self) -> StoreResult<Group> {
        let sql =
            format!("SELECT {GROUP_COLUMNS} FROM user_groups WHERE type = 'BUILT_IN' ORDER BY id LIMIT 1");
        self.read_row(&sql, &[], |row| group(row))
            .await?
            .ok_or_else(|| StoreError::Corrupt("the Everyone group is missing".to_owned()))
    }

    async fn list_groups(&self, query: &GroupQuery) -> StoreResult<Vec<Group>> {
        let mut binds = vec![Bind::Text(query.after.clone().unwrap_or_default())];
        let mut conditions = vec!["id > $1".to_owned()];
        if let Some(prefix) = &query.name_prefix {
            binds.push(Bind::Text(format!("{}%", crate::users::escape_like(prefix))));
            conditions.push(format!("name_key LIKE ${} ESCAPE '\\'", binds.len()));
        }
        for condition in &query.conditions {
            conditions.push(sql_of(condition, &mut binds, group_column, |kind: GroupType| kind.as_str()));
        }
        binds.push(Bind::Int(i64::from(query.limit)));
        let sql = format!(
            "SELECT {GROUP_COLUMNS} FROM user_groups WHERE {} ORDER BY id LIMIT ${}",
            conditions.join(" AND "),
            binds.len()
        );
        self.query_groups(&sql, &binds).await
    }

    async fn group_stats(&self, id: &str) -> StoreResult<GroupStats> {
        let sql = "SELECT (SELECT COUNT(DISTINCT user_id) FROM group_members WHERE group_id = $1) AS users, \
                   (SELECT COUNT(*) FROM app_groups WHERE group_id = $1) AS apps";
        let stats = self
            .read_row(sql, &[Bind::Text(id.to_owned())], |row| {
                let count = |name: &str| row.int(name).map(|n| u64::try_from(n).unwrap_or(0));
                Ok(GroupStats { users: count("users")?, apps: count("apps")? })
            })
            .await?;
        Ok(stats.unwrap_or_default())
    }

    async fn add_member(
        &self,
        group_id: &str,
        user_id: &str,
        source: MembershipSource<'_>,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let became = on_pool!(self, write, |pool| {
            let mut tx = pool.begin().await.map_err(map_err)?;
            // Holds the group's row lock until commit, so `before` below stays true meanwhile.
            let locked = sqlx::query(LOCK_GROUP).bind(group_id).execute(&mut *tx).await.map_err(map_err)?;
            if locked.rows_affected() == 0 {
                return Err(StoreError::Gone("group".to_owned()));
            }
            let before: (i64,) =
                sqlx::query_as("SELECT COUNT(*) FROM group_members WHERE group_id = $1 AND user_id = $2")
                    .bind(group_id)
                    .bind(user_id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(map_err)?;
            sqlx::query(
                "INSERT INTO group_members (group_id, user_id, source, created) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (group_id, user_id, source) DO NOTHING",
            )
            .bind(group_id)
            .bind(user_id)
            .bind(source_key(source))
            .bind(now.millis())
            .execute(&mut *tx)
            .await
            // The group's row is locked: only the user can have gone.
            .map_err(|e| gone_unless(e, "user"))?;
            let became = before.0 == 0;
            if became {
                sqlx::query("UPDATE user_groups SET last_membership_updated = $2 WHERE id = $1")
                    .bind(group_id)
                    .bind(now.millis())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
            }
            tx.commit().await.map_err(map_err)?;
            became
        });
        if became {
            // The user's cached groups no longer list them all (no barrier: nothing is revoked).
            self.forget(Changed::User(user_id), false).await;
        }
        Ok(became)
    }

    async fn remove_member(
        &self,
        group_id: &str,
        user_id: &str,
        source: MembershipSource<'_>,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let left = on_pool!(self, write, |pool| {
            let mut tx = pool.begin().await.map_err(map_err)?;
            sqlx::query(LOCK_GROUP).bind(group_id).execute(&mut *tx).await.map_err(map_err)?;
            let removed =
                sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2 AND source = $3")
                    .bind(group_id)
                    .bind(user_id)
                    .bind(source_key(source))
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?
                    .rows_affected();
            let remaining: (i64,) =
                sqlx::query_as("SELECT COUNT(*) FROM group_members WHERE group_id = $1 AND user_id = $2")
                    .bind(group_id)
                    .bind(user_id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(map_err)?;
            let left = removed > 0 && remaining.0 == 0;
            if left {
                sqlx::query("UPDATE user_groups SET last_membership_updated = $2 WHERE id = $1")
                    .bind(group_id)
                    .bind(now.millis())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
            }
            tx.commit().await.map_err(map_err)?;
            left
        });
        if left {
            // The grants cached in the user's sessions may have come through this group.
            self.forget(Changed::User(user_id), true).await;
        }
        Ok(left)
    }

    async fn membership_sources(&self, group_id: &str, user_id: &str) -> StoreResult<Vec<Option<String>>> {
        let found: Vec<(String,)> = on_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT source FROM group_members WHERE group_id = $1 AND user_id = $2 ORDER BY source",
            )
            .bind(group_id)
            .bind(user_id)
            .fetch_all(pool)
            .await
            .map_err(map_err)?
        });
        Ok(found.into_iter().map(|(source,)| Some(source).filter(|s| !s.is_empty())).collect())
    }

    async fn list_members(&self, group_id: &str, after: Option<&str>, limit: u32) -> StoreResult<Vec<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id IN (SELECT user_id FROM group_members WHERE group_id = $1) \
             AND id > $2 ORDER BY id LIMIT $3"
        );
        on_pool!(self, read, |pool| {
            let found = sqlx::query(AssertSqlSafe(sql))
                .bind(group_id)
                .bind(after.unwrap_or(""))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await
                .map_err(map_err)?;
            found.iter().map(rows::user).collect()
        })
    }

    async fn list_user_groups(&self, user_id: &str) -> StoreResult<Vec<Group>> {
        let sql = format!(
            "SELECT {GROUP_COLUMNS} FROM user_groups WHERE id IN (SELECT group_id FROM group_members WHERE user_id = $1) \
             ORDER BY name_key, id"
        );
        self.query_groups(&sql, &[Bind::Text(user_id.to_owned())]).await
    }

    async fn user_memberships(&self, user_id: &str) -> StoreResult<Vec<(String, Option<String>)>> {
        let found: Vec<(String, String)> = on_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT group_id, source FROM group_members WHERE user_id = $1 ORDER BY group_id, source",
            )
            .bind(user_id)
            .fetch_all(pool)
            .await
            .map_err(map_err)?
        });
        Ok(found.into_iter().map(|(group, source)| (group, Some(source).filter(|s| !s.is_empty()))).collect())
    }

    async fn user_group_refs(&self, user_id: &str) -> StoreResult<Vec<GroupRef>> {
        // On the SSO path of apps with group claims: answered from the node cache while the user
        // has a cached session (see `session_cache`).
        let cache = self.session_cache();
        if let Some(groups) = cache.and_then(|cache| cache.get_groups(user_id)) {
            return Ok(groups);
        }
        let ticket = cache.and_then(|cache| cache.ticket());
        let sql = "SELECT DISTINCT g.id, g.name FROM group_members m JOIN user_groups g ON g.id = m.group_id \
                   WHERE m.user_id = $1 ORDER BY g.name";
        let groups: Vec<GroupRef> = on_pool!(self, read, |pool| {
            let found: Vec<(String, String)> =
                sqlx::query_as(sql).bind(user_id).fetch_all(pool).await.map_err(map_err)?;
            found.into_iter().map(|(id, name)| GroupRef { id, name }).collect()
        });
        if let (Some(cache), Some(ticket)) = (cache, ticket) {
            cache.fill_groups(ticket, user_id, &groups);
        }
        Ok(groups)
    }

    async fn put_rule(&self, r: &GroupRule) -> StoreResult<()> {
        let group_ids = to_json(&r.group_ids)?;
        let excluded = to_json(&r.excluded_users)?;
        on_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO group_rules (id, name, status, expression, group_ids, excluded_users, created, \
                 last_updated) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO UPDATE SET \
                 name = excluded.name, status = excluded.status, expression = excluded.expression, \
                 group_ids = excluded.group_ids, excluded_users = excluded.excluded_users, \
                 last_updated = excluded.last_updated",
            )
            .bind(&r.id)
            .bind(&r.name)
            .bind(r.status.as_str())
            .bind(&r.expression)
            .bind(&group_ids)
            .bind(&excluded)
            .bind(r.created.millis())
            .bind(r.last_updated.millis())
            .execute(pool)
            .await
            .map_err(map_err)?;
        });
        Ok(())
    }

    async fn find_rule(&self, id: &str) -> StoreResult<Option<GroupRule>> {
        let sql = format!("SELECT {RULE_COLUMNS} FROM group_rules WHERE id = $1");
        self.read_row(&sql, &[Bind::Text(id.to_owned())], |row| rule(row)).await
    }

    async fn list_rules(&self, after: Option<&str>, limit: u32) -> StoreResult<Vec<GroupRule>> {
        let sql = format!("SELECT {RULE_COLUMNS} FROM group_rules WHERE id > $1 ORDER BY id LIMIT $2");
        on_pool!(self, read, |pool| {
            let found = sqlx::query(AssertSqlSafe(sql))
                .bind(after.unwrap_or(""))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await
                .map_err(map_err)?;
            found.iter().map(rule).collect()
        })
    }

    async fn delete_rule(&self, id: &str) -> StoreResult<bool> {
        let deleted = on_pool!(self, write, |pool| {
            sqlx::query("DELETE FROM group_rules WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await
                .map_err(map_err)?
                .rows_affected()
        });
        Ok(deleted == 1)
    }

    async fn remove_rule_memberships(
        &self,
        rule_id: &str,
        now: Timestamp,
    ) -> StoreResult<Vec<(String, String)>> {
        let gone = on_pool!(self, write, |pool| {
            let mut tx = pool.begin().await.map_err(map_err)?;
            let made: Vec<(String, String)> = sqlx::query_as(
                "SELECT group_id, user_id FROM group_members WHERE source = $1 ORDER BY group_id, user_id",
            )
            .bind(rule_id)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?;
            sqlx::query("DELETE FROM group_members WHERE source = $1")
                .bind(rule_id)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            let mut gone = Vec::new();
            for (group_id, user_id) in made {
                let remaining: (i64,) =
                    sqlx::query_as("SELECT COUNT(*) FROM group_members WHERE group_id = $1 AND user_id = $2")
                        .bind(&group_id)
                        .bind(&user_id)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(map_err)?;
                if remaining.0 == 0 {
                    sqlx::query("UPDATE user_groups SET last_membership_updated = $2 WHERE id = $1")
                        .bind(&group_id)
                        .bind(now.millis())
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                    gone.push((group_id, user_id));
                }
            }
            tx.commit().await.map_err(map_err)?;
            gone
        });
        if !gone.is_empty() {
            self.forget(Changed::Grants, true).await;
        }
        Ok(gone)
    }

    async fn keep_rule_memberships(&self, rule_id: &str) -> StoreResult<()> {
        on_pool!(self, write, |pool| {
            let mut tx = pool.begin().await.map_err(map_err)?;
            sqlx::query(
                "INSERT INTO group_members (group_id, user_id, source, created) \
                 SELECT group_id, user_id, '', created FROM group_members WHERE source = $1 \
                 ON CONFLICT (group_id, user_id, source) DO NOTHING",
            )
            .bind(rule_id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
            sqlx::query("DELETE FROM group_members WHERE source = $1")
                .bind(rule_id)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            tx.commit().await.map_err(map_err)?;
        });
        Ok(())
    }

    async fn put_app_group(&self, a: &AppGroup) -> StoreResult<bool> {
        let profile = to_json(&a.profile)?;
        let inserted = on_pool!(self, write, |pool| {
            let mut tx = pool.begin().await.map_err(map_err)?;
            // Held until commit: a group deleted meanwhile is told apart from a failure.
            let locked =
                sqlx::query(LOCK_GROUP).bind(&a.group_id).execute(&mut *tx).await.map_err(map_err)?;
            if locked.rows_affected() == 0 {
                return Err(StoreError::Gone("group".to_owned()));
            }
            let existed: (i64,) =
                sqlx::query_as("SELECT COUNT(*) FROM app_groups WHERE app_id = $1 AND group_id = $2")
                    .bind(&a.app_id)
                    .bind(&a.group_id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(map_err)?;
            sqlx::query(
                "INSERT INTO app_groups (app_id, group_id, priority, profile, created, last_updated) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (app_id, group_id) DO UPDATE SET \
                 priority = excluded.priority, profile = excluded.profile, last_updated = excluded.last_updated",
            )
            .bind(&a.app_id)
            .bind(&a.group_id)
            .bind(i64::from(a.priority))
            .bind(&profile)
            .bind(a.created.millis())
            .bind(a.last_updated.millis())
            .execute(&mut *tx)
            .await
            // The group's row is locked: only the app can have gone.
            .map_err(|e| gone_unless(e, "app"))?;
            tx.commit().await.map_err(map_err)?;
            existed.0 == 0
        });
        Ok(inserted)
    }

    async fn find_app_group(&self, app_id: &str, group_id: &str) -> StoreResult<Option<AppGroup>> {
        let sql = format!("SELECT {APP_GROUP_COLUMNS} FROM app_groups WHERE app_id = $1 AND group_id = $2");
        self.read_row(&sql, &[Bind::Text(app_id.to_owned()), Bind::Text(group_id.to_owned())], |row| {
            app_group(row)
        })
        .await
    }

    async fn list_app_groups(
        &self,
        app_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<AppGroup>> {
        let sql = format!(
            "SELECT {APP_GROUP_COLUMNS} FROM app_groups WHERE app_id = $1 AND group_id > $2 ORDER BY group_id LIMIT $3"
        );
        on_pool!(self, read, |pool| {
            let found = sqlx::query(AssertSqlSafe(sql))
                .bind(app_id)
                .bind(after.unwrap_or(""))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await
                .map_err(map_err)?;
            found.iter().map(app_group).collect()
        })
    }

    async fn list_group_apps(
        &self,
        group_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<App>> {
        let ids: Vec<(String,)> = on_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT app_id FROM app_groups WHERE group_id = $1 AND app_id > $2 ORDER BY app_id LIMIT $3",
            )
            .bind(group_id)
            .bind(after.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .map_err(map_err)?
        });
        let mut apps = Vec::with_capacity(ids.len());
        for (id,) in ids {
            if let Some(app) = latchkey_core::store::AppStore::find_app(self, &id).await? {
                apps.push(app);
            }
        }
        Ok(apps)
    }

    async fn delete_app_group(&self, app_id: &str, group_id: &str) -> StoreResult<bool> {
        let deleted = on_pool!(self, write, |pool| {
            sqlx::query("DELETE FROM app_groups WHERE app_id = $1 AND group_id = $2")
                .bind(app_id)
                .bind(group_id)
                .execute(pool)
                .await
                .map_err(map_err)?
                .rows_affected()
        });
        // Every member's cached grant of the app may have come through this assignment.
        self.forget(Changed::Grants, true).await;
        Ok(deleted == 1)
    }
}

fn group_column(field: Field) -> &'static str {
    match field {
        Field::Id => "id",
        Field::Type => "type",
        Field::Created => "created",
        Field::LastUpdated => "last_updated",
        Field::LastMembershipUpdated => "last_membership_updated",
        Field::Name => "name_key",
        Field::Description => "lower(coalesce(description, ''))",
    }
}
