-- Each node's session cache also holds grants (an assignment together with the session's
-- participant record, src/session_cache.rs), kept in the user's cached sessions: a changed or
-- removed assignment evicts its user on every node, as a change to the user does.
CREATE TRIGGER app_users_evict AFTER UPDATE OR DELETE ON app_users
    FOR EACH ROW EXECUTE FUNCTION latchkey_evict('u', 'user_id');
