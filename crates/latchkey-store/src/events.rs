//! The system log. An event's full body is stored as JSON; the columns that queries filter on are
//! stored beside it. `seq` (assigned by the database) orders events as written and is the cursor.

use latchkey_core::events::{Actor, Event, LogField, LogQuery, Target};
use latchkey_core::store::EventStore;
use latchkey_core::store::StoreResult;
use latchkey_core::{StoreError, Timestamp};
use serde_json::Value;
use sqlx::AssertSqlSafe;

use crate::{Bind, Store, bind_all, map_err, on_pool};

fn party(value: &Value) -> (String, String, String, String) {
    let text = |k: &str| value.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    (text("id"), text("type"), text("alternateId"), text("displayName"))
}

/// The stored body of an event, written straight from the event (no `Value` tree: one is written
/// per request that logs). [`from_json`] reads it back.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct StoredEvent<'a> {
    id: &'a str,
    published: i64,
    event_type: &'a str,
    severity: &'a str,
    display_message: &'a str,
    outcome: &'a str,
    reason: Option<&'a str>,
    actor: StoredParty<'a>,
    targets: Vec<StoredParty<'a>>,
    client_ip: Option<&'a str>,
    session_id: Option<&'a str>,
    request_id: Option<&'a str>,
}

#[derive(serde::Serialize)]
struct StoredParty<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(rename = "alternateId")]
    alternate_id: &'a str,
    #[serde(rename = "displayName")]
    display_name: &'a str,
}

fn to_json(event: &Event) -> StoreResult<String> {
    let actor = &event.actor;
    let body = StoredEvent {
        id: &event.id,
        published: event.published.millis(),
        event_type: &event.event_type,
        severity: event.severity,
        display_message: &event.display_message,
        outcome: event.outcome,
        reason: event.reason.as_deref(),
        actor: StoredParty {
            id: &actor.id,
            kind: &actor.kind,
            alternate_id: &actor.alternate_id,
            display_name: &actor.display_name,
        },
        targets: event
            .targets
            .iter()
            .map(|t| StoredParty {
                id: &t.id,
                kind: &t.kind,
                alternate_id: &t.alternate_id,
                display_name: &t.display_name,
            })
            .collect(),
        client_ip: event.client_ip.as_deref(),
        session_id: event.session_id.as_deref(),
        request_id: event.request_id.as_deref(),
    };
    serde_json::to_string(&body).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_json(body: &str) -> StoreResult<Event> {
    let v: Value = serde_json::from_str(body).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let (id, kind, alternate_id, display_name) = party(&v["actor"]);
    let targets = v["targets"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|t| {
                    let (id, kind, alternate_id, display_name) = party(t);
                    Target { id, kind, alternate_id, display_name }
                })
                .collect()
        })
        .unwrap_or_default();
    let outcome = match v["outcome"].as_str() {
        Some("SUCCESS") => "SUCCESS",
        Some("ALLOW") => "ALLOW",
        Some("DENY") => "DENY",
        _ => "FAILURE",
    };
    Ok(Event {
        id: text("id").unwrap_or_default(),
        published: Timestamp(v["published"].as_i64().unwrap_or_default()),
        event_type: text("eventType").unwrap_or_default(),
        severity: if v["severity"] == "INFO" { "INFO" } else { "WARN" },
        display_message: text("displayMessage").unwrap_or_default(),
        outcome,
        reason: text("reason"),
        actor: Actor { id, kind, alternate_id, display_name },
        targets,
        client_ip: text("clientIp"),
        session_id: text("sessionId"),
        request_id: text("requestId"),
    })
}

/// Rows per INSERT statement (7 placeholders each; far below both engines' limits).
const EVENTS_PER_STATEMENT: usize = 64;

/// `INSERT INTO events ... VALUES (...), (...)` for `rows` rows.
fn insert_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO events (id, published, event_type, outcome, actor_id, target_id, body) VALUES ",
    );
    for row in 0..rows {
        let first = row * 7;
        if row > 0 {
            sql.push_str(", ");
        }
        let placeholders: Vec<String> = (1..=7).map(|n| format!("${}", first + n)).collect();
        sql.push('(');
        sql.push_str(&placeholders.join(", "));
        sql.push(')');
    }
    sql
}

impl EventStore for Store {
    async fn insert_event(&self, event: &Event) -> StoreResult<()> {
        self.insert_events(std::slice::from_ref(event)).await
    }

    async fn insert_events(&self, events: &[Event]) -> StoreResult<()> {
        // One multi-row INSERT per chunk rather than one statement (one driver round trip) per event.
        let chunks: Vec<&[Event]> = events.chunks(EVENTS_PER_STATEMENT).collect();
        let statements: Vec<String> = chunks.iter().map(|chunk| insert_sql(chunk.len())).collect();
        let bodies = events.iter().map(to_json).collect::<StoreResult<Vec<String>>>()?;
        on_pool!(self, write, |pool| {
            // A single statement is atomic by itself; several share a transaction.
            let mut tx = if chunks.len() > 1 { Some(pool.begin().await.map_err(map_err)?) } else { None };
            let mut bodies = bodies.into_iter();
            for (chunk, sql) in chunks.iter().zip(&statements) {
                let mut insert = sqlx::query(AssertSqlSafe(sql.as_str()));
                for (event, body) in chunk.iter().zip(bodies.by_ref()) {
                    insert = insert
                        .bind(&event.id)
                        .bind(event.published.millis())
                        .bind(&event.event_type)
                        .bind(event.outcome)
                        .bind(&event.actor.id)
                        .bind(event.targets.first().map(|t| t.id.as_str()))
                        .bind(body);
                }
                match tx.as_mut() {
                    Some(tx) => insert.execute(&mut **tx).await.map_err(map_err)?,
                    None => insert.execute(pool).await.map_err(map_err)?,
                };
            }
            if let Some(tx) = tx {
                tx.commit().await.map_err(map_err)?;
            }
        });
        Ok(())
    }

    async fn list_events(&self, query: &LogQuery) -> StoreResult<Vec<(i64, Event)>> {
        let mut conditions = Vec::new();
        let mut binds: Vec<Bind> = Vec::new();
        if let Some(since) = query.since {
            binds.push(Bind::Int(since.millis()));
            conditions.push(format!("published >= ${}", binds.len()));
        }
        if let Some(until) = query.until {
            binds.push(Bind::Int(until.millis()));
            conditions.push(format!("published < ${}", binds.len()));
        }
        if let Some(after) = query.after {
            binds.push(Bind::Int(after));
            conditions.push(format!("seq > ${}", binds.len()));
        }
        if !query.filter.is_empty() {
            let mut alternatives = Vec::new();
            for conjunction in &query.filter {
                let mut parts = Vec::new();
                for (field, value) in conjunction {
                    let column = match field {
                        LogField::EventType => "event_type",
                        LogField::ActorId => "actor_id",
                        LogField::TargetId => "target_id",
                        LogField::Outcome => "outcome",
                    };
                    binds.push(Bind::Text(value.clone()));
                    parts.push(format!("{column} = ${}", binds.len()));
                }
                alternatives.push(format!("({})", parts.join(" AND ")));
            }
            conditions.push(format!("({})", alternatives.join(" OR ")));
        }
        let filter =
            if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
        binds.push(Bind::Int(i64::from(query.limit)));
        let sql = format!("SELECT seq, body FROM events {filter} ORDER BY seq LIMIT ${}", binds.len());
        let rows: Vec<(i64, String)> = on_pool!(self, read, |pool| {
            let q = bind_all!(sqlx::query_as(AssertSqlSafe(sql)), &binds);
            q.fetch_all(pool).await.map_err(map_err)?
        });
        rows.iter().map(|(seq, body)| Ok((*seq, from_json(body)?))).collect()
    }
}
