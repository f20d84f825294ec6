-- Each node's session cache also holds the groups of users with cached sessions (group claims are
-- on the SSO path, src/session_cache.rs). A membership that is added evicts its user on every node
-- (one that goes already does, 0010), and a renamed group evicts every cached group ('g').
-- `latchkey_evict` reads OLD, which an INSERT does not have: this one reads NEW.
CREATE FUNCTION latchkey_evict_new() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('latchkey_' || md5(TG_TABLE_SCHEMA),
                      TG_ARGV[0] || ':' || (to_jsonb(NEW) ->> TG_ARGV[1]));
    RETURN NULL;
END
$$;

CREATE TRIGGER group_members_added AFTER INSERT ON group_members
    FOR EACH ROW EXECUTE FUNCTION latchkey_evict_new('u', 'user_id');

CREATE TRIGGER user_groups_renamed AFTER UPDATE OF name ON user_groups
    FOR EACH ROW EXECUTE FUNCTION latchkey_evict('g', 'id');
