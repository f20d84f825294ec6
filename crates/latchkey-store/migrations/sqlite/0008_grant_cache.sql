-- Nothing to do: SQLite's sole server evicts grants itself after each write to an assignment;
-- the eviction trigger is PostgreSQL's (several nodes).
SELECT 1;
