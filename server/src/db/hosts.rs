//! The `hosts` table: one row per machine id, with its committed cursor,
//! the journal head its agent reports, and what follows from both: how far
//! behind the host is and whether it is ok, stalled, silent or
//! disconnected ([`lag_and_gaps`], [`classify`]).
//!
//! Stalled is tracked with one timestamp, `behind_since_usec`: set when a
//! reported head is first seen ahead of a committed cursor, restarted
//! whenever the committed cursor moves while still behind, cleared when it
//! catches up. A host that is slow but moving is therefore lagging, not
//! stalled; one whose reader is stuck while its journal grows becomes
//! stalled `--stall-after` after the head first got ahead.

use crate::db::insert::UnitCount;
use jr_journal::cursor::Cursor;
use jr_proto::v1::Batch;
use sqlx::{Row as _, SqliteConnection, SqlitePool};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

/// Default of `--stall-after`.
pub const DEFAULT_STALL_AFTER: Duration = Duration::from_secs(60);
/// Default of `--silent-after`.
pub const DEFAULT_SILENT_AFTER: Duration = Duration::from_secs(120);

/// The journal head as the server last heard it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeadState {
    /// Cursor of the newest entry of the host's journal; empty when unknown.
    pub cursor: String,
    pub realtime_usec: i64,
    /// When the agent reported it (server time); 0 when never.
    pub reported_usec: i64,
    /// Since when the head has been ahead of a committed cursor that did
    /// not move; 0 when caught up or moving.
    pub behind_since_usec: i64,
}

/// What the writer keeps in memory about a host.
#[derive(Debug, Clone)]
pub struct HostState {
    pub id: i64,
    /// Last committed cursor; empty when nothing was committed yet.
    pub cursor: String,
    pub head: HeadState,
}

/// What an agent says about itself in Hello.
#[derive(Debug, Clone)]
pub struct HostHello {
    pub machine_id: String,
    pub hostname: String,
    pub boot_id: String,
    pub agent_version: String,
}

/// A head an agent reported outside a batch (its heartbeat).
#[derive(Debug, Clone)]
pub struct HeadReport {
    pub machine_id: Arc<str>,
    /// The reporting session's generation: a fenced session's report is
    /// dropped.
    pub generation: u64,
    pub cursor: String,
    pub realtime_usec: i64,
    /// When the server received it.
    pub reported_usec: i64,
}

/// Microseconds since the epoch, for the `*_usec` columns.
pub fn now_usec() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn state_of(r: &sqlx::sqlite::SqliteRow) -> Result<HostState, sqlx::Error> {
    Ok(HostState {
        id: r.try_get("id")?,
        cursor: r.try_get("cursor")?,
        head: HeadState {
            cursor: r.try_get("head_cursor")?,
            realtime_usec: r.try_get("head_realtime_usec")?,
            reported_usec: r.try_get("head_reported_usec")?,
            behind_since_usec: r.try_get("behind_since_usec")?,
        },
    })
}

const STATE_COLUMNS: &str =
    "id, cursor, head_cursor, head_realtime_usec, head_reported_usec, behind_since_usec";

/// Every host's id, committed cursor and head.
pub async fn load(conn: &mut SqliteConnection) -> Result<HashMap<String, HostState>, sqlx::Error> {
    let rows = sqlx::query(&format!("SELECT machine_id, {STATE_COLUMNS} FROM hosts"))
        .fetch_all(&mut *conn)
        .await?;
    let mut hosts = HashMap::with_capacity(rows.len());
    for r in rows {
        hosts.insert(r.try_get::<String, _>("machine_id")?, state_of(&r)?);
    }
    Ok(hosts)
}

/// Entries stored over all hosts (cheap: one row per host).
pub async fn total_entries(conn: &mut SqliteConnection) -> Result<u64, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("SELECT COALESCE(SUM(entries), 0) FROM hosts")
        .fetch_one(&mut *conn)
        .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Creates or refreshes the host's row; returns its state as stored.
pub async fn upsert(conn: &mut SqliteConnection, h: &HostHello) -> Result<HostState, sqlx::Error> {
    let now = now_usec();
    let r = sqlx::query(&format!(
        "INSERT INTO hosts (machine_id, hostname, boot_id, agent_version, \
                            first_seen_usec, last_contact_usec) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?5) \
         ON CONFLICT (machine_id) DO UPDATE SET \
             hostname = excluded.hostname, boot_id = excluded.boot_id, \
             agent_version = excluded.agent_version, \
             last_contact_usec = excluded.last_contact_usec \
         RETURNING {STATE_COLUMNS}"
    ))
    .bind(&h.machine_id)
    .bind(&h.hostname)
    .bind(&h.boot_id)
    .bind(&h.agent_version)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    state_of(&r)
}

/// Whether the journal's head `head` is ahead of the committed cursor
/// `committed`: a later sequence number in the same sequence-number space,
/// else a later realtime. An unknown head is never ahead; a head with
/// nothing committed always is.
pub fn ahead(head: &str, committed: &str) -> bool {
    if head.is_empty() {
        return false;
    }
    if committed.is_empty() {
        return true;
    }
    match (head.parse::<Cursor>(), committed.parse::<Cursor>()) {
        (Ok(h), Ok(c)) if h.seqnum_id == c.seqnum_id => h.seqnum > c.seqnum,
        (Ok(h), Ok(c)) => h.realtime_usec > c.realtime_usec,
        _ => head != committed,
    }
}

/// The new `behind_since_usec` after the committed cursor became
/// `cursor` (`moved`: it changed) with `head` as the newest head.
fn behind_since(old: i64, head: &str, cursor: &str, moved: bool, now: i64) -> i64 {
    if !ahead(head, cursor) {
        0
    } else if moved || old == 0 {
        now
    } else {
        old
    }
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Advances a host after a batch, in the batch's transaction: its cursor,
/// counters, last contact, and the head the batch carries. Returns the
/// host's new state.
pub async fn advance(
    conn: &mut SqliteConnection,
    host: &HostState,
    batch: &Batch,
    stored: u64,
) -> Result<HostState, sqlx::Error> {
    let now = now_usec();
    let cursor = if batch.last_cursor.is_empty() {
        host.cursor.clone()
    } else {
        batch.last_cursor.clone()
    };
    let mut head = match batch.head.as_ref().filter(|h| !h.cursor.is_empty()) {
        Some(h) => HeadState {
            cursor: h.cursor.clone(),
            realtime_usec: int(h.realtime_usec),
            reported_usec: now,
            behind_since_usec: host.head.behind_since_usec,
        },
        None => host.head.clone(),
    };
    head.behind_since_usec = behind_since(
        host.head.behind_since_usec,
        &head.cursor,
        &cursor,
        cursor != host.cursor,
        now,
    );
    sqlx::query(
        "UPDATE hosts SET cursor = ?2, entries = entries + ?3, \
             gap_entries = gap_entries + ?4, last_contact_usec = ?5, \
             head_cursor = ?6, head_realtime_usec = ?7, head_reported_usec = ?8, \
             behind_since_usec = ?9 \
         WHERE id = ?1",
    )
    .bind(host.id)
    .bind(&cursor)
    .bind(int(stored))
    .bind(int(batch.gap_entries))
    .bind(now)
    .bind(&head.cursor)
    .bind(head.realtime_usec)
    .bind(head.reported_usec)
    .bind(head.behind_since_usec)
    .execute(&mut *conn)
    .await?;
    Ok(HostState {
        id: host.id,
        cursor,
        head,
    })
}

/// Adds a batch's per-unit counts (counted by the inserter from the rows
/// it just wrote for `host_id`) to `host_units`, in the batch's
/// transaction. One statement for all units (passed as a JSON array of
/// `[unit_id, entries, last_entry_usec]`): each statement is a round trip
/// to SQLite's thread, which costs more than the upsert itself.
pub async fn count_units(
    conn: &mut SqliteConnection,
    host_id: i64,
    units: &[UnitCount],
) -> Result<(), sqlx::Error> {
    if units.is_empty() {
        return Ok(());
    }
    let mut json = String::with_capacity(2 + units.len() * 40);
    json.push('[');
    for (i, u) in units.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        let _ = write!(json, "[{},{},{}]", u.unit_id, u.entries, u.last_entry_usec);
    }
    json.push(']');
    // `WHERE true`: SQLite's parser needs it between a SELECT and ON CONFLICT.
    sqlx::query(
        "INSERT INTO host_units (host_id, unit_id, entries, last_entry_usec) \
         SELECT ?1, json_extract(value, '$[0]'), json_extract(value, '$[1]'), \
                json_extract(value, '$[2]') \
         FROM json_each(?2) WHERE true \
         ON CONFLICT (host_id, unit_id) DO UPDATE SET \
             entries = entries + excluded.entries, \
             last_entry_usec = MAX(last_entry_usec, excluded.last_entry_usec)",
    )
    .bind(host_id)
    .bind(json)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Records a heartbeat's head; `None` when it changes no head: an agent
/// that does not know its head yet (empty cursor: only the contact time is
/// kept), or a report older than the head already known (a batch
/// overtook it). Else the host's new state.
pub async fn record_head(
    conn: &mut SqliteConnection,
    host: &HostState,
    report: &HeadReport,
) -> Result<Option<HostState>, sqlx::Error> {
    if report.cursor.is_empty() || report.reported_usec < host.head.reported_usec {
        sqlx::query(
            "UPDATE hosts SET last_contact_usec = MAX(last_contact_usec, ?2) WHERE id = ?1",
        )
        .bind(host.id)
        .bind(report.reported_usec)
        .execute(&mut *conn)
        .await?;
        return Ok(None);
    }
    let head = HeadState {
        behind_since_usec: behind_since(
            host.head.behind_since_usec,
            &report.cursor,
            &host.cursor,
            false,
            report.reported_usec,
        ),
        cursor: report.cursor.clone(),
        realtime_usec: report.realtime_usec,
        reported_usec: report.reported_usec,
    };
    sqlx::query(
        "UPDATE hosts SET head_cursor = ?2, head_realtime_usec = ?3, head_reported_usec = ?4, \
             behind_since_usec = ?5, last_contact_usec = MAX(last_contact_usec, ?4) \
         WHERE id = ?1",
    )
    .bind(host.id)
    .bind(&head.cursor)
    .bind(head.realtime_usec)
    .bind(head.reported_usec)
    .bind(head.behind_since_usec)
    .execute(&mut *conn)
    .await?;
    Ok(Some(HostState {
        id: host.id,
        cursor: host.cursor.clone(),
        head,
    }))
}

/// When a host counts as stalled or silent (`--stall-after`,
/// `--silent-after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    pub stall_after: Duration,
    pub silent_after: Duration,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy {
            stall_after: DEFAULT_STALL_AFTER,
            silent_after: DEFAULT_SILENT_AFTER,
        }
    }
}

/// A host's state as `jrctl hosts` and the metrics show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostHealth {
    /// Connected and caught up, or moving.
    Ok,
    /// Connected, its head is ahead, and the committed cursor has not
    /// moved for longer than `stall_after`.
    Stalled,
    /// Nothing heard for longer than `silent_after`.
    Silent,
    /// No session now, but heard from within `silent_after`.
    Disconnected,
}

impl HostHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            HostHealth::Ok => "ok",
            HostHealth::Stalled => "stalled",
            HostHealth::Silent => "silent",
            HostHealth::Disconnected => "disconnected",
        }
    }
}

fn older_than(now: i64, t: i64, d: Duration) -> bool {
    now.saturating_sub(t) > i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// A host's state at `now` from its last contact and `behind_since_usec`.
pub fn classify(
    connected: bool,
    last_contact_usec: i64,
    behind_since_usec: i64,
    policy: HealthPolicy,
    now: i64,
) -> HostHealth {
    let silent = older_than(now, last_contact_usec, policy.silent_after);
    if silent {
        HostHealth::Silent
    } else if !connected {
        HostHealth::Disconnected
    } else if behind_since_usec != 0 && older_than(now, behind_since_usec, policy.stall_after) {
        HostHealth::Stalled
    } else {
        HostHealth::Ok
    }
}

/// How far the committed cursor is behind the head: (realtime of the
/// committed entry, lag in µs, entries behind when countable).
pub fn lag(head: &str, head_realtime_usec: i64, committed: &str) -> (u64, u64, Option<u64>) {
    let c = committed.parse::<Cursor>().ok();
    let committed_rt = c.as_ref().map_or(0, |c| c.realtime_usec);
    if !ahead(head, committed) {
        return (committed_rt, 0, Some(0).filter(|_| !head.is_empty()));
    }
    let head_rt = u64::try_from(head_realtime_usec).unwrap_or(0);
    let lag = if committed_rt == 0 {
        0
    } else {
        head_rt.saturating_sub(committed_rt)
    };
    let behind = match (head.parse::<Cursor>(), c) {
        (Ok(h), Some(c)) if h.seqnum_id == c.seqnum_id => h.seqnum.checked_sub(c.seqnum),
        _ => None,
    };
    (committed_rt, lag, behind)
}

/// One host's lag, state and gap totals, as the metrics scrape and
/// `jrctl hosts` use them.
#[derive(Debug, Clone, PartialEq)]
pub struct HostLag {
    pub id: i64,
    pub machine_id: String,
    pub hostname: String,
    pub state: HostHealth,
    /// Head realtime minus committed realtime, in seconds (0 when caught
    /// up or the head is unknown).
    pub lag_seconds: f64,
    /// Entries between committed cursor and head, when countable.
    pub entries_behind: Option<u64>,
    /// Entries lost to vacuumed resume cursors.
    pub vacuumed_entries: u64,
    /// Entries journald's rate limit dropped.
    pub suppressed_entries: u64,
    pub last_contact_usec: i64,
    pub head_cursor: String,
    pub head_realtime_usec: i64,
    pub head_reported_usec: i64,
    pub behind_since_usec: i64,
    pub committed_realtime_usec: u64,
    pub cursor: String,
}

/// Every host's lag behind its journal, state and gap totals, read from
/// the `hosts` and `gaps` tables (one row per host; no entry is read).
/// `connected` tells whether a machine id has a live agent session.
pub async fn lag_and_gaps(
    pool: &SqlitePool,
    connected: &(dyn Fn(&str) -> bool + Send + Sync),
    policy: HealthPolicy,
) -> Result<Vec<HostLag>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT h.id, h.machine_id, h.hostname, h.cursor, h.last_contact_usec, \
                h.head_cursor, h.head_realtime_usec, h.head_reported_usec, h.behind_since_usec, \
                h.gap_entries, \
                COALESCE((SELECT SUM(g.entries) FROM gaps g \
                          WHERE g.host_id = h.id AND g.kind = 'suppressed'), 0) AS suppressed \
         FROM hosts h ORDER BY h.hostname, h.machine_id",
    )
    .fetch_all(pool)
    .await?;
    let now = now_usec();
    rows.iter()
        .map(|r| {
            let machine_id: String = r.try_get("machine_id")?;
            let cursor: String = r.try_get("cursor")?;
            let head_cursor: String = r.try_get("head_cursor")?;
            let head_realtime_usec: i64 = r.try_get("head_realtime_usec")?;
            let last_contact_usec: i64 = r.try_get("last_contact_usec")?;
            let behind_since_usec: i64 = r.try_get("behind_since_usec")?;
            let (committed_realtime_usec, lag_usec, entries_behind) =
                lag(&head_cursor, head_realtime_usec, &cursor);
            let state = classify(
                connected(&machine_id),
                last_contact_usec,
                behind_since_usec,
                policy,
                now,
            );
            Ok(HostLag {
                id: r.try_get("id")?,
                hostname: r.try_get("hostname")?,
                state,
                lag_seconds: lag_usec as f64 / 1e6,
                entries_behind,
                vacuumed_entries: u64::try_from(r.try_get::<i64, _>("gap_entries")?).unwrap_or(0),
                suppressed_entries: u64::try_from(r.try_get::<i64, _>("suppressed")?).unwrap_or(0),
                last_contact_usec,
                head_reported_usec: r.try_get("head_reported_usec")?,
                head_cursor,
                head_realtime_usec,
                behind_since_usec,
                committed_realtime_usec,
                cursor,
                machine_id,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(s: &str, i: u64, t: u64) -> String {
        format!("s={s};i={i:x};b=0123456789abcdef0123456789abcdef;m=1;t={t:x};x=2")
    }

    const S: &str = "4f30609c77d9406e86aba8a29393cad7";
    const T: &str = "5f30609c77d9406e86aba8a29393cad7";

    #[test]
    fn ahead_by_seqnum_then_realtime() {
        assert!(!ahead("", &cursor(S, 1, 10)));
        assert!(ahead(&cursor(S, 1, 10), ""));
        assert!(ahead(&cursor(S, 5, 10), &cursor(S, 4, 10)));
        assert!(!ahead(&cursor(S, 4, 10), &cursor(S, 4, 10)));
        assert!(!ahead(&cursor(S, 3, 99), &cursor(S, 4, 10)));
        assert!(ahead(&cursor(T, 1, 11), &cursor(S, 4, 10)));
        assert!(!ahead(&cursor(T, 1, 10), &cursor(S, 4, 10)));
    }

    #[test]
    fn behind_since_starts_holds_restarts_and_clears() {
        let (h, c) = (cursor(S, 9, 90), cursor(S, 4, 40));
        assert_eq!(behind_since(0, &h, &c, false, 100), 100, "starts");
        assert_eq!(behind_since(100, &h, &c, false, 200), 100, "holds");
        assert_eq!(behind_since(100, &h, &c, true, 300), 300, "moved: restarts");
        assert_eq!(behind_since(100, &h, &h, true, 300), 0, "caught up");
    }

    #[test]
    fn classify_states() {
        let p = HealthPolicy {
            stall_after: Duration::from_secs(10),
            silent_after: Duration::from_secs(30),
        };
        let s = 1_000_000i64;
        let now = 100 * s;
        assert_eq!(classify(true, now - s, 0, p, now), HostHealth::Ok);
        assert_eq!(classify(true, now - s, now - 5 * s, p, now), HostHealth::Ok);
        assert_eq!(
            classify(true, now - s, now - 11 * s, p, now),
            HostHealth::Stalled
        );
        assert_eq!(classify(true, now - 31 * s, 0, p, now), HostHealth::Silent);
        assert_eq!(
            classify(false, now - s, 0, p, now),
            HostHealth::Disconnected
        );
        assert_eq!(classify(false, now - 31 * s, 0, p, now), HostHealth::Silent);
    }

    #[test]
    fn lag_in_time_and_entries() {
        let (c, h) = (cursor(S, 4, 40), cursor(S, 9, 90));
        assert_eq!(lag(&h, 90, &c), (40, 50, Some(5)));
        assert_eq!(lag(&c, 40, &c), (40, 0, Some(0)));
        assert_eq!(lag("", 0, &c), (40, 0, None));
        assert_eq!(lag(&cursor(T, 1, 95), 95, &c), (40, 55, None));
    }
}
