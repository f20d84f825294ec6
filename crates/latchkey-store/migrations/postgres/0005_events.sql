-- The system log, in the order events were written (seq), which is also the paging cursor.
CREATE TABLE events (
    seq         BIGSERIAL PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    published   BIGINT NOT NULL,
    event_type  TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    actor_id    TEXT NOT NULL,
    target_id   TEXT,
    body        TEXT NOT NULL
);
CREATE INDEX events_published ON events (published);
CREATE INDEX events_type ON events (event_type, published);
