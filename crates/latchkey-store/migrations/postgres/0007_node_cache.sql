-- Each node's session cache (src/node_cache.rs): the nodes holding a lease, and the triggers that
-- tell every node, on commit, which session (by cookie digest), user (by id) or app changed.
-- The channel is per schema (the md5 of the table's schema name), so organisations (or tests)
-- sharing a database do not hear each other.
CREATE TABLE cache_nodes (
    node_id      TEXT PRIMARY KEY,
    lease_until  BIGINT NOT NULL
);

-- Arguments: the message's kind (`s`, `u`, `p`) and the column of the changed row it carries.
CREATE FUNCTION latchkey_evict() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('latchkey_' || md5(TG_TABLE_SCHEMA),
                      TG_ARGV[0] || ':' || (to_jsonb(OLD) ->> TG_ARGV[1]));
    RETURN NULL;
END
$$;

CREATE TRIGGER sessions_evict AFTER UPDATE OR DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION latchkey_evict('s', 'cookie_digest');

CREATE TRIGGER users_evict AFTER UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION latchkey_evict('u', 'id');

CREATE TRIGGER apps_evict AFTER UPDATE OR DELETE ON apps
    FOR EACH ROW EXECUTE FUNCTION latchkey_evict('p', 'id');
