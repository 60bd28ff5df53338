-- Journal heads, stalled and silent hosts, gaps as data, per-host unit
-- counters.

-- The newest entry of the host's journal as its agent last reported it,
-- and when. Written with the batches and, for heartbeats, in bulk.
ALTER TABLE hosts ADD COLUMN head_cursor        TEXT    NOT NULL DEFAULT '';
ALTER TABLE hosts ADD COLUMN head_realtime_usec INTEGER NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN head_reported_usec INTEGER NOT NULL DEFAULT 0;
-- Since when the reported head has been ahead of a committed cursor that
-- has not moved; 0 when caught up or moving. A host is stalled when this
-- is older than the server's --stall-after.
ALTER TABLE hosts ADD COLUMN behind_since_usec  INTEGER NOT NULL DEFAULT 0;

-- Entries lost before they were shipped, one row per report: journald's
-- "Suppressed N messages from UNIT" (kind 'suppressed') or a resume cursor
-- whose entry was vacuumed (kind 'vacuumed', unit unknown). Written in the
-- transaction that stores the reporting batch, so each is counted once.
CREATE TABLE gaps (
    id            INTEGER PRIMARY KEY,
    host_id       INTEGER NOT NULL REFERENCES hosts(id),
    -- NULL when the unit is not known.
    unit_id       INTEGER REFERENCES units(id),
    -- Realtime of the entry that reported the loss (journald's message, or
    -- the first entry after the vacuumed cursor).
    realtime_usec INTEGER NOT NULL,
    entries       INTEGER NOT NULL,
    kind          TEXT    NOT NULL,
    recorded_usec INTEGER NOT NULL
);
CREATE INDEX gaps_host_time ON gaps(host_id, realtime_usec);

-- Entries and newest entry per host and unit (`jrctl units`), kept by the
-- writer with each batch so listing units never scans entries; deletes
-- (retention) are counted down by the trigger below.
CREATE TABLE host_units (
    host_id         INTEGER NOT NULL REFERENCES hosts(id),
    unit_id         INTEGER NOT NULL REFERENCES units(id),
    entries         INTEGER NOT NULL,
    last_entry_usec INTEGER NOT NULL,
    PRIMARY KEY (host_id, unit_id)
) WITHOUT ROWID;

INSERT INTO host_units (host_id, unit_id, entries, last_entry_usec)
SELECT host_id, unit_id, COUNT(*), MAX(realtime_usec)
FROM entries WHERE unit_id IS NOT NULL GROUP BY host_id, unit_id;

CREATE TRIGGER host_units_delete AFTER DELETE ON entries
WHEN old.unit_id IS NOT NULL
BEGIN
    UPDATE host_units SET entries = entries - 1
    WHERE host_id = old.host_id AND unit_id = old.unit_id;
END;
