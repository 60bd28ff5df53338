-- The full-text index moves to a database file of its own (`<db>-fts`,
-- created with migrations/fts), filled beside the writer instead of inside
-- its group commits: SQLite lets one connection write a file at a time,
-- and indexing took a third of the writer's time. The index there is
-- rebuilt from `entries` when the server starts.
DROP TRIGGER IF EXISTS entries_fts_delete;
DROP TABLE IF EXISTS entries_fts;
