-- Nothing to do: SQLite's sole server evicts cached groups itself after each write to a
-- membership or a group; the eviction triggers are PostgreSQL's (several nodes).
SELECT 1;
