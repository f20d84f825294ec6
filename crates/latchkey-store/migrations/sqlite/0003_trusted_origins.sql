-- Trusted origins: web origins allowed for CORS and as redirect targets.
CREATE TABLE trusted_origins (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    origin       TEXT NOT NULL UNIQUE,
    scopes       TEXT NOT NULL,
    active       BIGINT NOT NULL,
    created      BIGINT NOT NULL,
    last_updated BIGINT NOT NULL
);
