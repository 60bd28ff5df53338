-- Forwarding routes (the `[[routes]]` of jr-server's config): how far each
-- route has delivered and what it has sent. A route's row is created the
-- first time it runs and kept when the route is removed from the config,
-- so putting it back resumes where it stopped.
CREATE TABLE routes (
    name            TEXT    PRIMARY KEY,
    -- Id of the last entry delivered (or passed over as not matching the
    -- route's filter). Advanced only after the peer acknowledged the bytes.
    position        INTEGER NOT NULL,
    -- Entries up to this id were written but not yet confirmed when the
    -- server stopped; they are sent again and counted as repeated.
    unconfirmed     INTEGER NOT NULL DEFAULT 0,
    entries_sent    INTEGER NOT NULL DEFAULT 0,
    lines_sent      INTEGER NOT NULL DEFAULT 0,
    bytes_sent      INTEGER NOT NULL DEFAULT 0,
    -- Lines sent more than once (an unconfirmed write sent again).
    repeated_lines  INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT    NOT NULL DEFAULT '',
    last_error_usec INTEGER NOT NULL DEFAULT 0,
    created_usec    INTEGER NOT NULL,
    updated_usec    INTEGER NOT NULL
);
