-- Nothing to do: the session cache and its eviction triggers are PostgreSQL's (several nodes). An
-- embedded SQLite node reads sessions inline, with no cache to keep consistent.
SELECT 1;
