-- Users, their one-time tokens, admin API tokens and policies. Times are epoch milliseconds.
CREATE TABLE users (
    id               TEXT PRIMARY KEY,
    login            TEXT NOT NULL,
    login_key        TEXT NOT NULL UNIQUE,
    email_key        TEXT NOT NULL,
    first_name_key   TEXT NOT NULL,
    last_name_key    TEXT NOT NULL,
    status           TEXT NOT NULL,
    created          INTEGER NOT NULL,
    activated        INTEGER,
    status_changed   INTEGER,
    last_login       INTEGER,
    last_updated     INTEGER NOT NULL,
    password_changed INTEGER,
    profile          TEXT NOT NULL,
    password_hash    TEXT,
    password_history TEXT NOT NULL,
    failed_attempts  INTEGER NOT NULL,
    version          INTEGER NOT NULL
);
CREATE INDEX users_status ON users (status, id);

CREATE TABLE one_time_tokens (
    digest     TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL,
    created    INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);
CREATE INDEX one_time_tokens_user ON one_time_tokens (user_id, purpose);

CREATE TABLE api_tokens (
    id      TEXT PRIMARY KEY,
    name    TEXT NOT NULL,
    digest  TEXT NOT NULL UNIQUE,
    created INTEGER NOT NULL
);

CREATE TABLE policies (
    id           TEXT PRIMARY KEY,
    policy_type  TEXT NOT NULL UNIQUE,
    settings     TEXT NOT NULL,
    version      INTEGER NOT NULL,
    last_updated INTEGER NOT NULL
);
