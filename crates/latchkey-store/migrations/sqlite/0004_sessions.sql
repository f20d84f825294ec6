-- Browser sessions (the sid cookie is stored only as a digest) and organisation-wide settings.
CREATE TABLE sessions (
    id                   TEXT PRIMARY KEY,
    cookie_digest        TEXT NOT NULL UNIQUE,
    user_id              TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    amr                  TEXT NOT NULL,
    created              BIGINT NOT NULL,
    expires_at           BIGINT NOT NULL,
    lifetime_ends_at     BIGINT,
    last_activity        BIGINT NOT NULL,
    password_verified_at BIGINT,
    factor_verified_at   BIGINT,
    persistent           BIGINT NOT NULL,
    ended_at             BIGINT,
    end_reason           TEXT
);
CREATE INDEX sessions_user ON sessions (user_id, ended_at);
CREATE INDEX sessions_expiry ON sessions (expires_at);

CREATE TABLE org_settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
