-- Each node's session cache (src/node_cache.rs): the nodes holding a lease, and the triggers that
-- tell every node, on commit, which session (by cookie digest), user (by id) or app changed.
-- The channel is per schema (the md5 of the table's schema name), so organisations (or tests)
-- sharing a database do not hear each other.
CREATE TABLE cache_nodes (
    node_id      TEXT PRIMARY KEY,
    lease_until  BIGINT NOT NULL
);

CREATE FUNCTION latchkey_evict_session() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('latchkey_' || md5(TG_TABLE_SCHEMA), 's:' || OLD.cookie_digest);
    RETURN NULL;
END
$$;

CREATE TRIGGER sessions_evict AFTER UPDATE OR DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION latchkey_evict_session();

CREATE FUNCTION latchkey_evict_user() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('latchkey_' || md5(TG_TABLE_SCHEMA), 'u:' || OLD.id);
    RETURN NULL;
END
$$;

CREATE TRIGGER users_evict AFTER UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION latchkey_evict_user();

CREATE FUNCTION latchkey_evict_apps() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('latchkey_' || md5(TG_TABLE_SCHEMA), 'p:' || OLD.id);
    RETURN NULL;
END
$$;

CREATE TRIGGER apps_evict AFTER UPDATE OR DELETE ON apps
    FOR EACH ROW EXECUTE FUNCTION latchkey_evict_apps();
