-- SAML apps, assignments, the organisation's signing keys and SSO/SLO state.
CREATE TABLE apps (
    id           TEXT COLLATE "C" PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    label        TEXT NOT NULL,
    status       TEXT NOT NULL,
    external_key TEXT NOT NULL UNIQUE,
    link_id      TEXT NOT NULL,
    sign_on      TEXT NOT NULL,
    visibility   TEXT NOT NULL,
    created      BIGINT NOT NULL,
    last_updated BIGINT NOT NULL
);

CREATE TABLE app_users (
    app_id       TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    user_id      TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    scope        TEXT NOT NULL,
    user_name    TEXT,
    created      BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    PRIMARY KEY (app_id, user_id)
);
CREATE INDEX app_users_user ON app_users (user_id);

CREATE TABLE saml_signing_keys (
    kid                TEXT PRIMARY KEY,
    status             TEXT NOT NULL,
    sealed_private_key TEXT NOT NULL,
    certificate_der    TEXT NOT NULL,
    created            BIGINT NOT NULL
);
-- At most one ACTIVE and one NEXT key.
CREATE UNIQUE INDEX saml_signing_keys_status ON saml_signing_keys (status) WHERE status IN ('ACTIVE', 'NEXT');

CREATE TABLE saml_request_ids (
    app_id     TEXT NOT NULL,
    request_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, request_id)
);

CREATE TABLE saml_pending (
    id_digest      TEXT PRIMARY KEY,
    app_id         TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    request_id     TEXT NOT NULL,
    acs_url        TEXT NOT NULL,
    relay_state    TEXT,
    force_authn    BIGINT NOT NULL,
    name_id_format TEXT,
    created        BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL
);

CREATE TABLE saml_participants (
    session_id     TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    app_id         TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    name_id        TEXT NOT NULL,
    name_id_format TEXT NOT NULL,
    session_index  TEXT NOT NULL,
    created        BIGINT NOT NULL,
    PRIMARY KEY (session_id, app_id)
);
CREATE UNIQUE INDEX saml_participants_index ON saml_participants (app_id, session_index);

CREATE TABLE saml_logout_walks (
    id_digest  TEXT PRIMARY KEY,
    walk       TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
