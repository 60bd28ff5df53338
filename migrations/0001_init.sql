-- journal-router storage, version 1.
--
-- Entries reference interned strings by integer id; the `journal` view at
-- the end is the stable, documented way to read the store with sqlite3.

-- One row per machine id that ever shipped.
CREATE TABLE hosts (
    id                INTEGER PRIMARY KEY,
    machine_id        TEXT    NOT NULL UNIQUE,
    hostname          TEXT    NOT NULL,
    boot_id           TEXT    NOT NULL DEFAULT '',
    agent_version     TEXT    NOT NULL DEFAULT '',
    -- Cursor of the last journal entry committed (stored or filtered by the
    -- agent). Updated in the same transaction as the entries.
    cursor            TEXT    NOT NULL DEFAULT '',
    entries           INTEGER NOT NULL DEFAULT 0,
    gap_entries       INTEGER NOT NULL DEFAULT 0,
    first_seen_usec   INTEGER NOT NULL,
    last_contact_usec INTEGER NOT NULL
);

-- Unit names (_SYSTEMD_UNIT and the units entries are about).
CREATE TABLE units (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

-- Other repeated strings: identifiers, containers, boot ids, seqnum ids.
CREATE TABLE strings (
    id    INTEGER PRIMARY KEY,
    value TEXT NOT NULL UNIQUE
);

-- One row per journal entry; `id` is the commit order.
CREATE TABLE entries (
    id             INTEGER PRIMARY KEY,
    host_id        INTEGER NOT NULL REFERENCES hosts(id),
    realtime_usec  INTEGER NOT NULL,
    monotonic_usec INTEGER NOT NULL,
    boot_id        INTEGER REFERENCES strings(id),
    -- Cursor parts (s=, i=, x=); the cursor text is rebuilt from them with
    -- boot_id, monotonic_usec and realtime_usec. A cursor that does not have
    -- the standard shape is kept whole in cursor_raw instead.
    seqnum_id      INTEGER REFERENCES strings(id),
    seqnum         INTEGER,
    xor_hash       INTEGER,
    cursor_raw     TEXT,
    unit_id        INTEGER REFERENCES units(id),
    about_unit_id  INTEGER REFERENCES units(id),
    container_id   INTEGER REFERENCES strings(id),
    identifier_id  INTEGER REFERENCES strings(id),
    priority       INTEGER,
    pid            INTEGER,
    -- MESSAGE exactly as journald stored it (may be binary).
    message        BLOB,
    -- Every field of the entry in journal order (see jr-journal's `stored`
    -- module for the encoding).
    fields         BLOB NOT NULL
);

CREATE INDEX entries_host_time  ON entries(host_id, realtime_usec);
CREATE INDEX entries_unit_time  ON entries(unit_id, realtime_usec);
CREATE INDEX entries_about_time ON entries(about_unit_id, realtime_usec)
    WHERE about_unit_id IS NOT NULL;
CREATE INDEX entries_time       ON entries(realtime_usec);

-- The stable view: one row per entry.
CREATE VIEW journal AS
SELECT
    e.id                                 AS id,
    h.hostname                           AS host,
    h.machine_id                         AS machine_id,
    u.name                               AS unit,
    au.name                              AS about_unit,
    c.value                              AS container,
    e.priority                           AS priority,
    e.realtime_usec                      AS realtime_usec,
    b.value                              AS boot_id,
    COALESCE(e.cursor_raw,
             printf('s=%s;i=%x;b=%s;m=%x;t=%x;x=%x',
                    s.value, e.seqnum, b.value, e.monotonic_usec,
                    e.realtime_usec, e.xor_hash)) AS cursor,
    i.value                              AS identifier,
    e.pid                                AS pid,
    e.message                            AS message
FROM entries e
JOIN hosts h        ON h.id = e.host_id
LEFT JOIN units u   ON u.id = e.unit_id
LEFT JOIN units au  ON au.id = e.about_unit_id
LEFT JOIN strings c ON c.id = e.container_id
LEFT JOIN strings b ON b.id = e.boot_id
LEFT JOIN strings s ON s.id = e.seqnum_id
LEFT JOIN strings i ON i.id = e.identifier_id;
