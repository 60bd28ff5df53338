-- The full-text index of `entries.message`, in its own file beside the
-- database (`<db>-fts`, attached as `fts` by every reader).
--
-- Contentless: the text lives only in entries.message, the index holds
-- just the tokens, keyed by entries.id (the FTS rowid). contentless_delete
-- lets retention delete rows by id alone.
CREATE VIRTUAL TABLE entries_fts USING fts5(
    message,
    content = '',
    contentless_delete = 1
);

-- Every entry with an id up to `upto` is indexed (entries without a
-- message have nothing to index). Written in the same transaction as the
-- index rows.
CREATE TABLE fts_position (
    upto INTEGER NOT NULL
);
INSERT INTO fts_position (upto) VALUES (0);
