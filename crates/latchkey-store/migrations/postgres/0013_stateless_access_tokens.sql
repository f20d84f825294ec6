-- Access tokens are no longer stored: they are signed JWTs, checked by signature and expiry, and
-- what ends one before its `exp` is written here instead (docs/architecture.md, "OAuth tokens").
-- `key` is `token:<jti>` for one revoked access token, or `family:<reference>` for every token
-- of a grant (a replayed code, a reused or revoked refresh token). A row is kept until the last
-- access token it can name has expired.
CREATE TABLE oauth_revocations (
    key        TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX oauth_revocations_expiry ON oauth_revocations (expires_at);

-- Which clients received a grant in a session, recorded when the code (or the implicit flow's
-- tokens) is issued: a session that ends owes each of them a back-channel logout notice. Rows
-- go with their session.
CREATE TABLE oauth_session_clients (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    app_id     TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    server     TEXT NOT NULL,
    user_id    TEXT,
    PRIMARY KEY (session_id, app_id, server)
);

-- Grants made before this migration are known by their stored tokens.
INSERT INTO oauth_session_clients (session_id, app_id, server, user_id)
SELECT DISTINCT t.session_id, t.app_id, t.server, t.user_id
FROM oauth_tokens t JOIN sessions s ON s.id = t.session_id
WHERE t.session_id IS NOT NULL
ON CONFLICT DO NOTHING;

DELETE FROM oauth_tokens WHERE kind = 'access_token';

CREATE OR REPLACE FUNCTION latchkey_backchannel_logout() RETURNS trigger AS $$
BEGIN
    INSERT INTO oauth_logout_notices (session_id, app_id, server, user_id, created, next_attempt, attempts)
    SELECT c.session_id, c.app_id, c.server, c.user_id, NEW.ended_at, NEW.ended_at, 0
    FROM oauth_session_clients c JOIN apps a ON a.id = c.app_id
    WHERE c.session_id = NEW.id
      AND a.sign_on_mode = 'OPENID_CONNECT'
      AND (a.sign_on::jsonb -> 'client' ->> 'backchannel_logout_uri') IS NOT NULL
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
