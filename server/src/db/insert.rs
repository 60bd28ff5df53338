//! Turning a batch's entries into `entries` rows and inserting them.
//!
//! Rows go in with multi-row `INSERT`s of up to 2^7 rows (see `rows`): one
//! round trip to SQLite's worker thread per statement instead of one per
//! entry. The `fields` blobs of a whole batch are encoded into one
//! reused buffer, so an entry costs no allocation of its own beyond the
//! cursor's parts.

use crate::db::intern::Interner;
use jr_journal::cursor::Cursor;
use jr_journal::labels::Labels;
use jr_journal::stored::{encode_fields, RowValues};
use jr_proto::v1::Entry;
use sqlx::SqliteConnection;
use std::fmt::Write as _;
use std::ops::Range;
use std::sync::OnceLock;

const COLUMNS: &str = "host_id, realtime_usec, monotonic_usec, boot_id, seqnum_id, seqnum, \
                       xor_hash, cursor_raw, unit_id, about_unit_id, container_id, \
                       identifier_id, priority, pid, message, fields";
const PARAMS_PER_ROW: usize = 16;
/// Rows per statement for the largest shape (2,048 parameters, well under
/// SQLite's limit of 32,766).
const LOG2_MAX_ROWS: usize = 7;

/// `INSERT` statements for 1, 2, 4, … 2^[`LOG2_MAX_ROWS`] rows.
///
/// `OR FAIL`: with SQLite's default (`ABORT`) a statement that writes
/// several rows keeps an undo journal of its own, a copy of every page it
/// touches, so that a failure can undo it alone inside the transaction
/// (measured: 9% of the server's CPU in `jr-bench ingest`). Here any
/// failing statement fails the whole group, which is rolled back (see
/// `writer`), so that copy bought nothing.
fn statements() -> &'static [String] {
    static SQL: OnceLock<Vec<String>> = OnceLock::new();
    SQL.get_or_init(|| {
        crate::db::rows::statements(
            &format!("INSERT OR FAIL INTO entries ({COLUMNS})"),
            PARAMS_PER_ROW,
            LOG2_MAX_ROWS,
        )
    })
}

/// One `entries` row; text and blobs borrow from the batch and the
/// encoding buffer.
struct Row<'a> {
    realtime_usec: i64,
    monotonic_usec: i64,
    boot_id: Option<i64>,
    seqnum_id: Option<i64>,
    seqnum: Option<i64>,
    xor_hash: Option<i64>,
    cursor_raw: Option<&'a str>,
    unit_id: Option<i64>,
    about_unit_id: Option<i64>,
    container_id: Option<i64>,
    identifier_id: Option<i64>,
    priority: Option<i64>,
    pid: Option<i64>,
    message: Option<&'a [u8]>,
    fields: Range<usize>,
}

/// Entries of one unit in the last inserted batch, for `host_units`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnitCount {
    pub unit_id: i64,
    pub entries: u64,
    pub last_entry_usec: i64,
}

/// Reusable buffers of the insert path.
#[derive(Default)]
pub struct Inserter {
    blobs: Vec<u8>,
    cursor_text: String,
    /// Per-unit counts of the last batch, counted from its rows here
    /// rather than by re-reading them with SQL.
    units: Vec<UnitCount>,
}

/// SQLite integers are signed; journal counters are `u64`. Values past
/// `i64::MAX` (xor hashes) are stored as their two's-complement bit
/// pattern, which `printf('%x')` in the `journal` view prints back as the
/// original unsigned hex.
fn int(v: u64) -> i64 {
    v as i64
}

impl Inserter {
    /// Inserts `entries` for `host_id`; returns how many rows were written
    /// and the id of the last one (`None` for no rows).
    pub async fn insert(
        &mut self,
        conn: &mut SqliteConnection,
        interner: &mut Interner,
        host_id: i64,
        machine_id: &str,
        entries: &[Entry],
    ) -> Result<(u64, Option<i64>), sqlx::Error> {
        self.blobs.clear();
        let mut rows: Vec<Row<'_>> = Vec::with_capacity(entries.len());
        self.units.clear();
        for e in entries {
            let r = row(conn, interner, self.scratch(machine_id), e).await?;
            if let Some(unit_id) = r.unit_id {
                count_unit(&mut self.units, unit_id, r.realtime_usec);
            }
            rows.push(r);
        }
        let sql = statements();
        let mut last_id = None;
        for (k, chunk) in crate::db::rows::chunks(&rows, LOG2_MAX_ROWS) {
            let mut q = sqlx::query(&sql[k]);
            for r in chunk {
                q = q
                    .bind(host_id)
                    .bind(r.realtime_usec)
                    .bind(r.monotonic_usec)
                    .bind(r.boot_id)
                    .bind(r.seqnum_id)
                    .bind(r.seqnum)
                    .bind(r.xor_hash)
                    .bind(r.cursor_raw)
                    .bind(r.unit_id)
                    .bind(r.about_unit_id)
                    .bind(r.container_id)
                    .bind(r.identifier_id)
                    .bind(r.priority)
                    .bind(r.pid)
                    .bind(r.message)
                    .bind(&self.blobs[r.fields.clone()]);
            }
            last_id = Some(q.execute(&mut *conn).await?.last_insert_rowid());
        }
        Ok((rows.len() as u64, last_id))
    }

    fn scratch<'s>(&'s mut self, machine_id: &'s str) -> Scratch<'s> {
        Scratch {
            blobs: &mut self.blobs,
            cursor_text: &mut self.cursor_text,
            machine_id,
        }
    }

    /// Entries per unit of the batch last passed to [`Inserter::insert`].
    pub fn unit_counts(&self) -> &[UnitCount] {
        &self.units
    }
}

/// Adds one entry of `unit_id` to `units`. A batch holds a few dozen
/// units at most and runs of one unit are common, so a linear search from
/// the most recently added unit beats hashing.
fn count_unit(units: &mut Vec<UnitCount>, unit_id: i64, realtime_usec: i64) {
    match units.iter_mut().rev().find(|u| u.unit_id == unit_id) {
        Some(u) => {
            u.entries += 1;
            u.last_entry_usec = u.last_entry_usec.max(realtime_usec);
        }
        None => units.push(UnitCount {
            unit_id,
            entries: 1,
            last_entry_usec: realtime_usec,
        }),
    }
}

/// What building a row needs besides the entry: the batch's buffers and
/// its host's machine id.
struct Scratch<'s> {
    blobs: &'s mut Vec<u8>,
    cursor_text: &'s mut String,
    machine_id: &'s str,
}

/// Builds the row of one entry, interning its labels and appending its
/// encoded fields to the batch's buffer.
async fn row<'a>(
    conn: &mut SqliteConnection,
    interner: &mut Interner,
    scratch: Scratch<'_>,
    e: &'a Entry,
) -> Result<Row<'a>, sqlx::Error> {
    let Scratch {
        blobs,
        cursor_text,
        machine_id,
    } = scratch;
    let labels = Labels::of(&e.fields);
    // The view rebuilds the cursor from its parts and the entry's own
    // timestamps; keep the text whole when that would not give it back.
    let parts = e.cursor.parse::<Cursor>().ok().filter(|c| {
        cursor_text.clear();
        let _ = write!(cursor_text, "{c}");
        *cursor_text == e.cursor
            && c.realtime_usec == e.realtime_usec
            && c.monotonic_usec == e.monotonic_usec
    });
    let (boot_id, seqnum_id, seqnum, xor_hash, cursor_raw) = match &parts {
        Some(c) => (
            Some(interner.string(conn, &c.boot_id).await?),
            Some(interner.string(conn, &c.seqnum_id).await?),
            Some(int(c.seqnum)),
            Some(int(c.xor_hash)),
            None,
        ),
        None => (
            interner.opt_string(conn, labels.boot_id).await?,
            None,
            None,
            None,
            Some(e.cursor.as_str()),
        ),
    };
    // The boot id the row stores: the cursor's, or without one the field's.
    let boot_id_text = parts
        .as_ref()
        .map(|c| c.boot_id.as_str())
        .or(labels.boot_id);
    let start = blobs.len();
    let values = RowValues {
        message: labels.message,
        boot_id: boot_id_text.map(str::as_bytes),
        machine_id: Some(machine_id.as_bytes()),
    };
    encode_fields(&e.fields, &values, blobs);
    Ok(Row {
        realtime_usec: int(e.realtime_usec),
        monotonic_usec: int(e.monotonic_usec),
        boot_id,
        seqnum_id,
        seqnum,
        xor_hash,
        cursor_raw,
        unit_id: interner.opt_unit(conn, labels.unit).await?,
        about_unit_id: interner.opt_unit(conn, labels.about_unit).await?,
        container_id: interner.opt_string(conn, labels.container).await?,
        identifier_id: interner.opt_string(conn, labels.identifier).await?,
        priority: labels.priority.map(i64::from),
        pid: labels.pid,
        message: labels.message,
        fields: start..blobs.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_counts_add_up_per_unit_with_the_newest_time() {
        let mut units = Vec::new();
        for (unit_id, t) in [(1, 10), (2, 5), (1, 30), (1, 20), (2, 4), (3, 7)] {
            count_unit(&mut units, unit_id, t);
        }
        let unit = |unit_id, entries, last_entry_usec| UnitCount {
            unit_id,
            entries,
            last_entry_usec,
        };
        assert_eq!(units, vec![unit(1, 3, 30), unit(2, 2, 5), unit(3, 1, 7)]);
    }
}
