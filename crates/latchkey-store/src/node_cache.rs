//! Keeps a PostgreSQL node's session cache (`session_cache`) exact across nodes, so that checking a
//! session is not a database round trip, while a session ended (or a user changed) on any node is refused by every
//! node from the moment the ending call returns.
//!
//! Reads that decide access are served from memory, yet a revocation is never served stale
//! (docs/architecture.md, "Node caches"):
//! - Triggers on `sessions`, `users` and `apps` (migration 7) notify every node, when a change
//!   commits, of the changed session (by cookie digest), user (by id) or app; a node evicts what
//!   they name.
//! - A write that ends sessions or changes a user or an app then waits for a *barrier*: it notifies a
//!   numbered barrier and waits until every node holding a lease has acknowledged it. PostgreSQL
//!   delivers notifications in commit order, so a node that has seen the barrier has evicted what
//!   the write changed before it acknowledges.
//! - A node serves from its cache only while it holds a lease (`cache_nodes`), renewed each time
//!   one of its own heartbeats (at most a lease old) comes back through its listening connection.
//!   A node that stops hearing (connection lost, stalled) stops serving from its cache before its
//!   lease ends, and a barrier waits for a silent node only until that lease ends; it re-reads a
//!   lease it saw run out, and keeps waiting if it was renewed. A lease that ran out is never
//!   extended: the node forgets its cache and takes a new one, since a barrier may have gone ahead
//!   without it.
//!
//! The map itself, and how a fill that raced an eviction is dropped, are `session_cache`'s.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::Notify;

use crate::session_cache::{Changed, SessionCache, lock};

/// How often a node sends itself a heartbeat (each one that returns renews its lease).
const HEARTBEAT: Duration = Duration::from_millis(500);
/// A lease lasts this long past the renewal. It bounds how long a barrier waits for a node that
/// went silent (crashed, cut off), so it is a few heartbeats and no more.
const LEASE: Duration = Duration::from_secs(2);
/// A node stops serving from its cache this long before its lease could end (its own reckoning
/// starts when the heartbeat was sent, before the database recorded the lease, so it is early
/// already; the margin covers clock rate differences and scheduling).
const LEASE_MARGIN: Duration = Duration::from_millis(500);
/// The longest a barrier waits for nodes that keep renewing their leases without acknowledging.
const MAX_BARRIER_WAIT: Duration = Duration::from_secs(6);
/// A listening connection that heard nothing (not even our heartbeats) this long is replaced.
const SILENT_CONNECTION: Duration = Duration::from_secs(6);

/// The database clock in milliseconds: leases are written and compared on one clock.
const DB_NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// What a waiting barrier has heard.
struct Barrier {
    acked: HashSet<String>,
    wake: Arc<Notify>,
}

/// One node's session cache; see the module header.
pub(crate) struct NodeCache {
    node: String,
    /// The notification channel of this database schema (`latchkey_` and the schema name's md5),
    /// the same name the triggers compute.
    channel: String,
    /// The sessions themselves; this module decides when they may be served.
    pub(crate) sessions: SessionCache,
    barriers: Mutex<HashMap<u64, Barrier>>,
    next_barrier: AtomicU64,
    /// When each heartbeat still in flight was sent.
    heartbeats: Mutex<HashMap<u64, Instant>>,
    shutdown: Arc<Notify>,
}

impl NodeCache {
    /// Starts the cache of one node on `pool`: its listener and heartbeat run in the background
    /// until [`NodeCache::close`] or until the cache is dropped.
    pub(crate) async fn start(pool: &PgPool) -> Result<Arc<Self>, sqlx::Error> {
        let channel: String =
            sqlx::query_scalar("SELECT 'latchkey_' || md5(current_schema())").fetch_one(pool).await?;
        let cache = Arc::new(NodeCache {
            node: latchkey_core::ids::random_alphanumeric(16),
            channel,
            sessions: SessionCache::default(),
            barriers: Mutex::default(),
            next_barrier: AtomicU64::new(1),
            heartbeats: Mutex::default(),
            shutdown: Arc::new(Notify::new()),
        });
        tokio::spawn(listen(Arc::downgrade(&cache), cache.shutdown.clone(), pool.clone()));
        tokio::spawn(beat(Arc::downgrade(&cache), pool.clone()));
        Ok(cache)
    }

    /// Applies one notification from the channel; `Some` is an acknowledgement to send.
    fn on_message(&self, payload: &str) -> Option<Reply> {
        let (kind, rest) = payload.split_once(':')?;
        match kind {
            "s" => self.sessions.evict_cookie(rest),
            "u" => self.sessions.evict(&Changed::User(rest)),
            "p" => self.sessions.evict(&Changed::Apps),
            "g" => self.sessions.evict(&Changed::Grants),
            "b" => return Some(Reply::Ack(format!("a:{rest}:{}", self.node))),
            "a" => {
                let mut parts = rest.splitn(3, ':');
                let (Some(origin), Some(number), Some(acker)) = (parts.next(), parts.next(), parts.next())
                else {
                    return None;
                };
                if origin == self.node
                    && let Ok(number) = number.parse::<u64>()
                    && let Some(barrier) = lock(&self.barriers).get_mut(&number)
                {
                    barrier.acked.insert(acker.to_owned());
                    barrier.wake.notify_one();
                }
            }
            "h" => {
                let (origin, number) = rest.split_once(':')?;
                if origin == self.node {
                    let sent = lock(&self.heartbeats).remove(&number.parse::<u64>().ok()?)?;
                    return Some(Reply::Renew(sent));
                }
            }
            _ => {}
        }
        None
    }

    /// Stops answering from the cache and forgets it (the listening connection was lost, so
    /// evictions may have been missed).
    fn stop_serving(&self) {
        self.sessions.stop_serving();
    }

    /// Waits until every node holding a lease has seen everything this node committed before the
    /// call (see the module header). Called after a write that ends sessions or changes a user; a
    /// failure is logged and not returned, since the write itself has committed and each node
    /// still evicts on the triggers' messages.
    pub(crate) async fn barrier(&self, pool: &PgPool) {
        let number = self.next_barrier.fetch_add(1, Ordering::Relaxed);
        let wake = Arc::new(Notify::new());
        lock(&self.barriers).insert(number, Barrier { acked: HashSet::new(), wake: wake.clone() });
        if let Err(error) = self.await_barrier(pool, number, &wake).await {
            tracing::warn!(%error, "cache barrier not confirmed; nodes evict when the change reaches them");
        }
        lock(&self.barriers).remove(&number);
    }

    async fn await_barrier(&self, pool: &PgPool, number: u64, wake: &Notify) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(&self.channel)
            .bind(format!("b:{}:{number}", self.node))
            .execute(pool)
            .await?;
        let give_up = Instant::now() + MAX_BARRIER_WAIT;
        let mut waits = leases(pool).await?;
        loop {
            let heard = wake.notified();
            let now = Instant::now();
            {
                let barriers = lock(&self.barriers);
                if let Some(barrier) = barriers.get(&number) {
                    waits.retain(|(node, _)| !barrier.acked.contains(node));
                }
            }
            if waits.is_empty() {
                return Ok(());
            }
            if now >= give_up {
                // Only a node that keeps renewing its lease yet never acknowledges gets here; its
                // renewals after the barrier prove it has read past the barrier (and evicted).
                tracing::warn!(nodes = waits.len(), "cache barrier: nodes renewing without acknowledging");
                return Ok(());
            }
            if waits.iter().any(|(_, until)| *until <= now) {
                // A lease seen running out may have been renewed since (a node that renews has
                // heard everything committed before the renewal): wait on its new term. A node
                // whose lease did run out serves nothing from its cache (see `renew`).
                let current = leases(pool).await?;
                waits = waits
                    .into_iter()
                    .filter_map(|(node, until)| {
                        if until > now {
                            return Some((node, until));
                        }
                        let renewed = current.iter().find(|(n, _)| *n == node).cloned();
                        if renewed.is_none() {
                            tracing::warn!(
                                node = %node,
                                "session cache: a node neither acknowledged a revocation nor renewed its \
                                 lease (stopped or cut off); went ahead once its lease ended"
                            );
                        }
                        renewed
                    })
                    .collect();
                continue;
            }
            let deadline = waits.iter().map(|(_, until)| *until).min().unwrap_or(now).min(give_up);
            let _ = tokio::time::timeout_at(deadline.into(), heard).await;
        }
    }

    /// Stops the background tasks and gives up this node's lease (clean shutdown).
    pub(crate) async fn close(&self, pool: &PgPool) {
        self.shutdown.notify_one();
        self.stop_serving();
        let _ =
            sqlx::query("DELETE FROM cache_nodes WHERE node_id = $1").bind(&self.node).execute(pool).await;
    }
}

impl std::fmt::Debug for NodeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCache").field("node", &self.node).finish_non_exhaustive()
    }
}

impl Drop for NodeCache {
    fn drop(&mut self) {
        self.shutdown.notify_one();
    }
}

/// The nodes holding a lease now, each with the instant (on this node's clock) its lease ends.
async fn leases(pool: &PgPool) -> Result<Vec<(String, Instant)>, sqlx::Error> {
    let leased: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT node_id, lease_until - {DB_NOW_MS} FROM cache_nodes WHERE lease_until > {DB_NOW_MS}"
    )))
    .fetch_all(pool)
    .await?;
    let now = Instant::now();
    Ok(leased
        .into_iter()
        .map(|(node, left_ms)| {
            (node, now + Duration::from_millis(u64::try_from(left_ms).unwrap_or(0)).min(LEASE))
        })
        .collect())
}

/// What the listener sends back after a message.
enum Reply {
    Ack(String),
    /// One of our heartbeats returned: renew the lease, counted from when it was sent.
    Renew(Instant),
}

/// The listening task: one connection that receives the channel's messages in commit order.
async fn listen(cache: Weak<NodeCache>, shutdown: Arc<Notify>, pool: PgPool) {
    loop {
        let mut listener = match connect_listener(&cache, &pool).await {
            Ok(Some(listener)) => listener,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, "session cache listener cannot connect; sessions are read from the database");
                tokio::select! {
                    () = shutdown.notified() => return,
                    () = tokio::time::sleep(HEARTBEAT) => continue,
                }
            }
        };
        loop {
            // `try_recv` is cancelled only where the listener is dropped next (shutdown, or a
            // connection silent for longer than a heartbeat can take: cut without a reset).
            let received = tokio::select! {
                () = shutdown.notified() => return,
                received = tokio::time::timeout(SILENT_CONNECTION, listener.try_recv()) => received,
            };
            let Some(node) = cache.upgrade() else { return };
            let notification = match received {
                Ok(Ok(Some(notification))) => notification,
                Ok(Ok(None) | Err(_)) | Err(_) => {
                    if pool.is_closed() {
                        return;
                    }
                    tracing::warn!(
                        "session cache: the listening connection was lost or went silent; sessions are read \
                         from the database until this node hears its own heartbeat again"
                    );
                    node.stop_serving();
                    break;
                }
            };
            match node.on_message(notification.payload()) {
                Some(Reply::Ack(payload)) => {
                    let _ = sqlx::query("SELECT pg_notify($1, $2)")
                        .bind(&node.channel)
                        .bind(payload)
                        .execute(&pool)
                        .await;
                }
                Some(Reply::Renew(sent)) => renew(&node, &pool, sent).await,
                None => {}
            }
        }
    }
}

async fn connect_listener(cache: &Weak<NodeCache>, pool: &PgPool) -> Result<Option<PgListener>, sqlx::Error> {
    let Some(channel) = cache.upgrade().map(|c| c.channel.clone()) else { return Ok(None) };
    let mut listener = PgListener::connect_with(pool).await?;
    listener.eager_reconnect(false);
    listener.listen(&channel).await?;
    Ok(Some(listener))
}

/// Records the lease in the database, then (only then) extends how long this node serves.
///
/// A lease is extended only while it still runs. One that ran out may have been seen running out
/// by a barrier that then went ahead without this node's acknowledgement, so the node first forgets
/// its cache (the evictions it has not read yet may be among those) and then takes a new lease.
async fn renew(node: &NodeCache, pool: &PgPool, sent: Instant) {
    let lease_ms = i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX);
    let extended = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE cache_nodes SET lease_until = {DB_NOW_MS} + $2 WHERE node_id = $1 AND lease_until > {DB_NOW_MS}"
    )))
    .bind(&node.node)
    .bind(lease_ms)
    .execute(pool)
    .await;
    let recorded = match extended {
        Ok(done) if done.rows_affected() == 1 => true,
        Ok(_) => {
            node.stop_serving();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO cache_nodes (node_id, lease_until) VALUES ($1, {DB_NOW_MS} + $2) \
                 ON CONFLICT (node_id) DO UPDATE SET lease_until = EXCLUDED.lease_until"
            )))
            .bind(&node.node)
            .bind(lease_ms)
            .execute(pool)
            .await
            .is_ok()
        }
        Err(_) => false,
    };
    if recorded {
        node.sessions.serve_until(sent + LEASE - LEASE_MARGIN);
    }
}

/// The heartbeat task: sends this node's heartbeats, forgets old entries and old leases.
async fn beat(cache: Weak<NodeCache>, pool: PgPool) {
    let mut ticks = tokio::time::interval(HEARTBEAT);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut number: u64 = 0;
    loop {
        ticks.tick().await;
        let Some(node) = cache.upgrade() else { return };
        if pool.is_closed() {
            return;
        }
        number += 1;
        let now = Instant::now();
        {
            let mut heartbeats = lock(&node.heartbeats);
            heartbeats.retain(|_, sent| now.duration_since(*sent) < LEASE);
            heartbeats.insert(number, now);
        }
        node.sessions.forget_old();
        let channel = node.channel.clone();
        let payload = format!("h:{}:{number}", node.node);
        drop(node);
        let _ = sqlx::query("SELECT pg_notify($1, $2)").bind(channel).bind(payload).execute(&pool).await;
        if number.is_multiple_of(120) {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM cache_nodes WHERE lease_until < {DB_NOW_MS} - 60000"
            )))
            .execute(&pool)
            .await;
        }
    }
}
