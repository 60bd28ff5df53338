-- Full-text search of messages (`jrctl logs --search`).
--
-- Contentless: the text lives only in entries.message, the index holds
-- just the tokens, keyed by entries.id (the FTS rowid). contentless_delete
-- lets retention delete rows by id alone.
CREATE VIRTUAL TABLE entries_fts USING fts5(
    message,
    content = '',
    contentless_delete = 1
);

CREATE TRIGGER entries_fts_insert AFTER INSERT ON entries
WHEN new.message IS NOT NULL
BEGIN
    INSERT INTO entries_fts(rowid, message) VALUES (new.id, CAST(new.message AS TEXT));
END;

CREATE TRIGGER entries_fts_delete AFTER DELETE ON entries
WHEN old.message IS NOT NULL
BEGIN
    DELETE FROM entries_fts WHERE rowid = old.id;
END;

-- Entries stored before this migration.
INSERT INTO entries_fts(rowid, message)
SELECT id, CAST(message AS TEXT) FROM entries WHERE message IS NOT NULL;
