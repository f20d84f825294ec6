-- Groups, their members, their rules, and apps assigned to groups (src/groups.rs).
CREATE TABLE user_groups (
    id                      TEXT PRIMARY KEY,
    type                    TEXT NOT NULL,
    name                    TEXT NOT NULL,
    -- The name lower-cased: names are unique without regard to case.
    name_key                TEXT NOT NULL UNIQUE,
    description             TEXT,
    created                 BIGINT NOT NULL,
    last_updated            BIGINT NOT NULL,
    last_membership_updated BIGINT NOT NULL
);

-- One row per source of a membership: '' for an administrator's, else the id of the rule that
-- made it. A user is a member while any row exists.
CREATE TABLE group_members (
    group_id TEXT NOT NULL REFERENCES user_groups (id) ON DELETE CASCADE,
    user_id  TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    source   TEXT NOT NULL DEFAULT '',
    created  BIGINT NOT NULL,
    PRIMARY KEY (group_id, user_id, source)
);
CREATE INDEX group_members_user ON group_members (user_id, group_id);
CREATE INDEX group_members_source ON group_members (source);

CREATE TABLE group_rules (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    status         TEXT NOT NULL,
    expression     TEXT NOT NULL,
    group_ids      TEXT NOT NULL,
    excluded_users TEXT NOT NULL,
    created        BIGINT NOT NULL,
    last_updated   BIGINT NOT NULL
);

CREATE TABLE app_groups (
    app_id       TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    group_id     TEXT NOT NULL REFERENCES user_groups (id) ON DELETE CASCADE,
    priority     BIGINT NOT NULL,
    profile      TEXT NOT NULL,
    created      BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    PRIMARY KEY (app_id, group_id)
);
CREATE INDEX app_groups_group ON app_groups (group_id);

-- The built-in Everyone group, with every existing user (new users join it as they are created).
INSERT INTO user_groups (id, type, name, name_key, description, created, last_updated, last_membership_updated)
SELECT '00g' || substr(upper(hex(randomblob(9))), 1, 17), 'BUILT_IN', 'Everyone', 'everyone',
       'All users in your organization', now, now, now
FROM (SELECT CAST(strftime('%s', 'now') AS INTEGER) * 1000 AS now);

INSERT INTO group_members (group_id, user_id, source, created)
SELECT g.id, u.id, '', u.created FROM user_groups g CROSS JOIN users u WHERE g.type = 'BUILT_IN';
