-- Primary authentication: lockout time, factors, transactions, session tokens, throttling windows,
-- remembered devices; policy ids and creation times. Times are epoch milliseconds.
ALTER TABLE users ADD COLUMN locked_at BIGINT;
ALTER TABLE policies ADD COLUMN rule_id TEXT NOT NULL DEFAULT '';
ALTER TABLE policies ADD COLUMN created BIGINT NOT NULL DEFAULT 0;

CREATE TABLE factors (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider     TEXT NOT NULL,
    status       TEXT NOT NULL,
    secret       TEXT NOT NULL,
    last_step    BIGINT NOT NULL,
    qr_digest    TEXT UNIQUE,
    created      BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    UNIQUE (user_id, provider)
);

CREATE TABLE authn_transactions (
    digest     TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    state      TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    version    BIGINT NOT NULL
);
CREATE INDEX authn_transactions_expiry ON authn_transactions (expires_at);

CREATE TABLE session_tokens (
    digest               TEXT PRIMARY KEY,
    user_id              TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    amr                  TEXT NOT NULL,
    password_verified_at BIGINT,
    factor_verified_at   BIGINT,
    created              BIGINT NOT NULL,
    expires_at           BIGINT NOT NULL,
    used_at              BIGINT
);
CREATE INDEX session_tokens_expiry ON session_tokens (expires_at);

CREATE TABLE rate_limits (
    bucket       TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    hits         BIGINT NOT NULL
);

CREATE TABLE remembered_devices (
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device     TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, device)
);
