-- One row per block of 64 consecutive entry ids (rowid = id >> 6),
-- holding each distinct term of the block's messages once, as jr-server
-- folds them (runs of letters and digits, lower-cased, without accents,
-- separated by spaces), without positions (detail=none). A block's
-- messages repeat most of their words, so this is a fraction of the work
-- of indexing every message with positions. A search expands the matching
-- blocks into entry ids and checks each candidate's message. The `ascii`
-- tokenizer only splits at the spaces.
--
-- The old index is dropped and rebuilt from `entries` (the indexer starts
-- again from upto = 0, with progress in the log).
DROP TABLE entries_fts;
CREATE VIRTUAL TABLE entries_fts USING fts5(
    terms,
    content = '',
    contentless_delete = 1,
    detail = none,
    tokenize = 'ascii'
);
UPDATE fts_position SET upto = 0;
