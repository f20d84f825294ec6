-- Users, their one-time tokens, admin API tokens and policies. Times are epoch milliseconds.
-- Ids use the "C" collation so cursor pagination orders bytewise, the same as on SQLite.
CREATE TABLE users (
    id               TEXT COLLATE "C" PRIMARY KEY,
    login            TEXT NOT NULL,
    login_key        TEXT NOT NULL UNIQUE,
    email_key        TEXT NOT NULL,
    first_name_key   TEXT NOT NULL,
    last_name_key    TEXT NOT NULL,
    status           TEXT NOT NULL,
    created          BIGINT NOT NULL,
    activated        BIGINT,
    status_changed   BIGINT,
    last_login       BIGINT,
    last_updated     BIGINT NOT NULL,
    password_changed BIGINT,
    profile          TEXT NOT NULL,
    password_hash    TEXT,
    password_history TEXT NOT NULL,
    failed_attempts  BIGINT NOT NULL,
    version          BIGINT NOT NULL
);
CREATE INDEX users_status ON users (status, id);

CREATE TABLE one_time_tokens (
    digest     TEXT PRIMARY KEY,
    user_id    TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL,
    created    BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX one_time_tokens_user ON one_time_tokens (user_id, purpose);

CREATE TABLE api_tokens (
    id      TEXT PRIMARY KEY,
    name    TEXT NOT NULL,
    digest  TEXT NOT NULL UNIQUE,
    created BIGINT NOT NULL
);

CREATE TABLE policies (
    id           TEXT PRIMARY KEY,
    policy_type  TEXT NOT NULL UNIQUE,
    settings     TEXT NOT NULL,
    version      BIGINT NOT NULL,
    last_updated BIGINT NOT NULL
);
