//! The system log's writer: the server's [`AuditLog`], committing events in groups.

use latchkey_core::events::{AuditLog, Event};
use latchkey_core::store::EventStore;
use latchkey_store::Store;

/// Most events one commit carries.
const MAX_BATCH: usize = 256;
/// Least time between the starts of two commits, so that a steady stream of events shares
/// commits (on SQLite each is a WAL write and an fsync) instead of taking one each. An event after
/// a quiet spell is committed at once; under load an event waits at most this long in addition.
const MIN_COMMIT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(4);

type Pending = (Event, tokio::sync::oneshot::Sender<()>);

/// Writes system-log events with group commit: requests logging at the same moment share one
/// transaction (one durable commit, one fsync on SQLite) instead of queueing for the single writer
/// one by one, and commits are at least [`MIN_COMMIT_INTERVAL`] apart. Each caller still waits
/// until its event is committed, so a response is never sent before its event is in the log.
struct EventWriter {
    queue: tokio::sync::mpsc::Sender<Pending>,
}

impl EventWriter {
    /// Starts the writer task on the current runtime; `None` outside a runtime.
    fn start(store: latchkey_store::Store) -> Option<Self> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let (queue, mut incoming) = tokio::sync::mpsc::channel::<Pending>(4 * MAX_BATCH);
        runtime.spawn(async move {
            let mut last_commit: Option<tokio::time::Instant> = None;
            while let Some(first) = incoming.recv().await {
                if let Some(last) = last_commit {
                    tokio::time::sleep_until(last + MIN_COMMIT_INTERVAL).await;
                }
                last_commit = Some(tokio::time::Instant::now());
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match incoming.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let (events, acks): (Vec<Event>, Vec<_>) = batch.into_iter().unzip();
                if let Err(e) = store.insert_events(&events).await {
                    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
                    tracing::error!(error = %e, event_types = ?types, "could not write to the system log");
                }
                for ack in acks {
                    let _ = ack.send(());
                }
            }
        });
        Some(Self { queue })
    }
}

/// Where the server's events go: the group-commit writer, or (built outside a runtime, in tests)
/// one write per event.
pub(crate) struct EventLog {
    writer: Option<EventWriter>,
    store: Store,
}

impl EventLog {
    pub(crate) fn start(store: Store) -> Self {
        EventLog { writer: EventWriter::start(store.clone()), store }
    }
}

impl AuditLog for EventLog {
    /// Waits until the event is committed, so a response is never sent before its event is in the
    /// log. The change it describes has already happened, so a failure to log is reported in the
    /// process log rather than turned into an error for the client.
    async fn record(&self, event: Event) {
        if let Some(writer) = &self.writer {
            let (ack, committed) = tokio::sync::oneshot::channel();
            if writer.queue.send((event, ack)).await.is_ok() {
                let _ = committed.await;
                return;
            }
            tracing::error!("the system log writer has stopped; an event was not written");
            return;
        }
        if let Err(e) = self.store.insert_event(&event).await {
            tracing::error!(error = %e, event_type = %event.event_type, "could not write to the system log");
        }
    }

    /// Queues every event before waiting for any, so they share the writer's commits.
    async fn record_all(&self, events: Vec<Event>) {
        let Some(writer) = &self.writer else {
            for event in events {
                self.record(event).await;
            }
            return;
        };
        let mut committed = Vec::with_capacity(events.len());
        for event in events {
            let (ack, done) = tokio::sync::oneshot::channel();
            if writer.queue.send((event, ack)).await.is_err() {
                tracing::error!("the system log writer has stopped; events were not written");
                break;
            }
            committed.push(done);
        }
        for done in committed {
            let _ = done.await;
        }
    }
}
