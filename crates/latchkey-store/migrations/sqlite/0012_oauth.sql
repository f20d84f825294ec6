-- OAuth 2.0 / OpenID Connect state: authorization codes (under the digest of the code; kept after
-- use until purged, so that a replay is recognised), issued tokens (access token `jti`s and
-- refresh token digests) for introspection and revocation, and client assertion ids against replay.
CREATE TABLE oauth_codes (
    digest     TEXT PRIMARY KEY,
    app_id     TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    code       TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    -- Presented again after it was spent: the tokens it issued are revoked, and tokens not yet
    -- written for it never will be.
    replayed   BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE oauth_tokens (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    app_id      TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    user_id     TEXT REFERENCES users (id) ON DELETE CASCADE,
    session_id  TEXT,
    -- The grant a token descends from (the digest of its code, or a client credentials
    -- request's id): a replayed code or a reused refresh token revokes the whole family.
    family      TEXT NOT NULL,
    server      TEXT NOT NULL,
    scopes      TEXT NOT NULL,
    issued_at   BIGINT NOT NULL,
    auth_time   BIGINT,
    expires_at  BIGINT NOT NULL,
    -- A rotated refresh token: when it was exchanged for its successor.
    rotated_at  BIGINT,
    revoked     BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX oauth_tokens_family ON oauth_tokens (family);
CREATE INDEX oauth_tokens_user ON oauth_tokens (user_id);

CREATE TABLE oauth_assertions (
    app_id     TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, jti)
);

-- The default authorization server's custom scopes and claims, in the core's JSON.
CREATE TABLE oauth_server_objects (
    id   TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (kind, name)
);

-- OpenID Connect Back-Channel Logout: when a session ends, each app that received tokens in it
-- and registered a backchannel_logout_uri is owed a logout token. The trigger writes the notices
-- in the same transaction that ends the session, whatever ended it; a worker sends them.
CREATE TABLE oauth_logout_notices (
    session_id   TEXT NOT NULL,
    app_id       TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    server       TEXT NOT NULL,
    user_id      TEXT,
    created      BIGINT NOT NULL,
    next_attempt BIGINT NOT NULL,
    attempts     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (session_id, app_id, server)
);
CREATE INDEX oauth_logout_notices_due ON oauth_logout_notices (next_attempt);

CREATE TRIGGER sessions_backchannel_logout AFTER UPDATE OF ended_at ON sessions
WHEN OLD.ended_at IS NULL AND NEW.ended_at IS NOT NULL
BEGIN
    INSERT OR IGNORE INTO oauth_logout_notices (session_id, app_id, server, user_id, created, next_attempt, attempts)
    SELECT DISTINCT t.session_id, t.app_id, t.server, t.user_id, NEW.ended_at, NEW.ended_at, 0
    FROM oauth_tokens t JOIN apps a ON a.id = t.app_id
    WHERE t.session_id = NEW.id
      AND a.sign_on_mode = 'OPENID_CONNECT'
      AND json_extract(a.sign_on, '$.client.backchannel_logout_uri') IS NOT NULL;
END;
