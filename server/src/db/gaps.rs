//! Gaps as data: entries lost before they were shipped, recorded per host
//! and unit with time and count in the `gaps` table.
//!
//! Two sources, both recorded by the writer in the transaction that
//! stores the batch reporting them, so each loss is counted exactly once:
//!
//! - `vacuumed`: the batch's `gap_entries`, entries between a resume
//!   cursor and the first surviving entry (unit unknown);
//! - `suppressed`: journald's own rate-limit notice, an entry with
//!   `MESSAGE_ID=a596d6fe7bfa4994828e72309e95d61e` ("Suppressed N messages
//!   from UNIT"). The count is `N_DROPPED=` (systemd 240 and later) or the
//!   N of the message; the unit is the message's (older journalds wrote
//!   the cgroup path there: its last component is the unit), else
//!   `OBJECT_SYSTEMD_UNIT`. Only journald writes these (`_TRANSPORT=driver`):
//!   the same id sent by a client over another transport is not a gap.

use crate::db::intern::Interner;
use jr_proto::v1::{Batch, Field};
use sqlx::{Row as _, SqliteConnection, SqlitePool};

/// `SD_MESSAGE_JOURNAL_DROPPED` of systemd's catalog.
pub const JOURNAL_DROPPED: &str = "a596d6fe7bfa4994828e72309e95d61e";
pub const KIND_SUPPRESSED: &str = "suppressed";
pub const KIND_VACUUMED: &str = "vacuumed";
/// Longest unit name taken from a message (systemd's limit is 255).
const MAX_UNIT: usize = 256;

/// What one of journald's rate-limit notices says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppressed<'a> {
    pub entries: u64,
    pub unit: Option<&'a str>,
}

fn field<'a>(fields: &'a [Field], name: &str) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|f| f.name == name)
        .map(|f| f.value.as_ref())
}

fn text(v: &[u8]) -> Option<&str> {
    std::str::from_utf8(v).ok().map(str::trim)
}

/// "Suppressed N messages from UNIT": N and UNIT, when the text has that shape.
fn parse_message(m: &str) -> (Option<u64>, Option<&str>) {
    let Some(rest) = m.trim().strip_prefix("Suppressed ") else {
        return (None, None);
    };
    let mut words = rest.splitn(2, ' ');
    let n = words.next().and_then(|w| w.parse::<u64>().ok());
    let unit = words
        .next()
        .and_then(|r| r.strip_prefix("messages from "))
        .map(str::trim)
        .map(|u| u.rsplit('/').next().unwrap_or(u));
    (n, unit)
}

fn plausible_unit(u: &str) -> bool {
    !u.is_empty() && u.len() <= MAX_UNIT && !u.chars().any(|c| c.is_control() || c == ' ')
}

/// The rate-limit notice in an entry's fields, if it is one.
pub fn suppressed(fields: &[Field]) -> Option<Suppressed<'_>> {
    let id = field(fields, "MESSAGE_ID").and_then(text)?;
    if !id.eq_ignore_ascii_case(JOURNAL_DROPPED) {
        return None;
    }
    let mut transports = fields.iter().filter(|f| f.name == "_TRANSPORT").peekable();
    if transports.peek().is_some() && !transports.any(|f| text(&f.value) == Some("driver")) {
        return None;
    }
    let (n, unit) = field(fields, "MESSAGE")
        .and_then(text)
        .map_or((None, None), parse_message);
    let entries = field(fields, "N_DROPPED")
        .and_then(text)
        .and_then(|v| v.parse::<u64>().ok())
        .or(n)?;
    let unit = unit
        .filter(|u| plausible_unit(u))
        .or_else(|| field(fields, "OBJECT_SYSTEMD_UNIT").and_then(text))
        .filter(|u| plausible_unit(u));
    Some(Suppressed { entries, unit })
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

async fn insert(
    conn: &mut SqliteConnection,
    host_id: i64,
    unit_id: Option<i64>,
    realtime_usec: u64,
    entries: u64,
    kind: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO gaps (host_id, unit_id, realtime_usec, entries, kind, recorded_usec) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .bind(host_id)
    .bind(unit_id)
    .bind(int(realtime_usec))
    .bind(int(entries))
    .bind(kind)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Records the gaps a batch reports, in the batch's transaction; returns
/// how many rows were written.
pub async fn record_batch(
    conn: &mut SqliteConnection,
    interner: &mut Interner,
    host_id: i64,
    batch: &Batch,
) -> Result<u64, sqlx::Error> {
    let now = crate::db::hosts::now_usec();
    let mut rows = 0;
    if batch.gap_entries > 0 {
        let at = batch
            .entries
            .first()
            .map_or(u64::try_from(now).unwrap_or(0), |e| e.realtime_usec);
        insert(
            conn,
            host_id,
            None,
            at,
            batch.gap_entries,
            KIND_VACUUMED,
            now,
        )
        .await?;
        rows += 1;
    }
    for e in &batch.entries {
        let Some(s) = suppressed(&e.fields) else {
            continue;
        };
        let unit_id = interner.opt_unit(conn, s.unit).await?;
        insert(
            conn,
            host_id,
            unit_id,
            e.realtime_usec,
            s.entries,
            KIND_SUPPRESSED,
            now,
        )
        .await?;
        rows += 1;
    }
    Ok(rows)
}

/// One recorded gap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GapRow {
    pub hostname: String,
    pub machine_id: String,
    pub unit: Option<String>,
    pub realtime_usec: i64,
    pub entries: i64,
    pub kind: String,
}

/// Gaps of `host_ids` (all hosts when `None`) at or after `since_usec`,
/// oldest first; the newest `limit` when it is not 0.
pub async fn list(
    pool: &SqlitePool,
    host_ids: Option<&[i64]>,
    since_usec: Option<i64>,
    limit: u32,
) -> Result<Vec<GapRow>, sqlx::Error> {
    let hosts = match host_ids {
        Some(ids) => {
            let params: Vec<String> = (0..ids.len()).map(|k| format!("?{}", k + 3)).collect();
            format!("AND g.host_id IN ({})", params.join(","))
        }
        None => String::new(),
    };
    let limit = if limit == 0 {
        i64::MAX
    } else {
        i64::from(limit)
    };
    let sql = format!(
        "SELECT * FROM (SELECT g.id, h.hostname, h.machine_id, u.name AS unit, g.realtime_usec, \
                g.entries, g.kind \
         FROM gaps g JOIN hosts h ON h.id = g.host_id LEFT JOIN units u ON u.id = g.unit_id \
         WHERE g.realtime_usec >= ?1 {hosts} \
         ORDER BY g.realtime_usec DESC, g.id DESC LIMIT ?2) ORDER BY realtime_usec, id"
    );
    let mut q = sqlx::query(&sql)
        .bind(since_usec.unwrap_or(i64::MIN))
        .bind(limit);
    for id in host_ids.unwrap_or(&[]) {
        q = q.bind(id);
    }
    q.fetch_all(pool)
        .await?
        .iter()
        .map(|r| {
            Ok(GapRow {
                hostname: r.try_get("hostname")?,
                machine_id: r.try_get("machine_id")?,
                unit: r.try_get("unit")?,
                realtime_usec: r.try_get("realtime_usec")?,
                entries: r.try_get("entries")?,
                kind: r.try_get("kind")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, value: &str) -> Field {
        Field {
            name: name.to_owned().into(),
            value: value.as_bytes().to_vec().into(),
        }
    }

    #[test]
    fn journald_notice_with_n_dropped() {
        let fields = [
            f("_TRANSPORT", "driver"),
            f("MESSAGE_ID", JOURNAL_DROPPED),
            f("MESSAGE", "Suppressed 42 messages from flood.service"),
            f("N_DROPPED", "42"),
            f("OBJECT_SYSTEMD_UNIT", "other.service"),
        ];
        assert_eq!(
            suppressed(&fields),
            Some(Suppressed {
                entries: 42,
                unit: Some("flood.service")
            })
        );
    }

    #[test]
    fn older_notice_with_a_cgroup_path_and_no_n_dropped() {
        let fields = [
            f("MESSAGE_ID", &JOURNAL_DROPPED.to_uppercase()),
            f(
                "MESSAGE",
                "Suppressed 7 messages from /system.slice/old.service",
            ),
        ];
        assert_eq!(
            suppressed(&fields),
            Some(Suppressed {
                entries: 7,
                unit: Some("old.service")
            })
        );
    }

    #[test]
    fn unit_from_object_field_when_the_text_has_none() {
        let fields = [
            f("MESSAGE_ID", JOURNAL_DROPPED),
            f("MESSAGE", "Messages were dropped"),
            f("N_DROPPED", "3"),
            f("OBJECT_SYSTEMD_UNIT", "obj.service"),
        ];
        assert_eq!(
            suppressed(&fields),
            Some(Suppressed {
                entries: 3,
                unit: Some("obj.service")
            })
        );
    }

    #[tokio::test]
    async fn a_batch_records_its_gaps_and_they_list_per_host() {
        use crate::config::Synchronous;
        use jr_proto::v1::Entry;
        let dir = tempfile::tempdir().unwrap();
        let mut db = crate::db::open::open(&dir.path().join("g.db"), Synchronous::Normal)
            .await
            .unwrap();
        let hello = crate::db::hosts::HostHello {
            machine_id: "ab".repeat(16),
            hostname: "gappy".into(),
            boot_id: String::new(),
            agent_version: String::new(),
        };
        let host = crate::db::hosts::upsert(&mut db.write, &hello)
            .await
            .unwrap();
        let notice = Entry {
            realtime_usec: 5_000,
            fields: vec![
                f("MESSAGE_ID", JOURNAL_DROPPED),
                f("MESSAGE", "Suppressed 9 messages from noisy.service"),
            ],
            ..Entry::default()
        };
        let batch = Batch {
            gap_entries: 3,
            entries: vec![
                Entry {
                    realtime_usec: 4_000,
                    ..Entry::default()
                },
                notice,
            ],
            ..Batch::default()
        };
        let mut interner = Interner::default();
        let rows = record_batch(&mut db.write, &mut interner, host.id, &batch)
            .await
            .unwrap();
        assert_eq!(rows, 2);
        let listed = list(&db.read, Some(&[host.id]), None, 0).await.unwrap();
        let got: Vec<_> = listed
            .iter()
            .map(|g| {
                (
                    g.unit.as_deref(),
                    g.realtime_usec,
                    g.entries,
                    g.kind.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (None, 4_000, 3, KIND_VACUUMED),
                (Some("noisy.service"), 5_000, 9, KIND_SUPPRESSED)
            ]
        );
        assert_eq!(
            list(&db.read, Some(&[host.id]), None, 1)
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(list(&db.read, Some(&[host.id + 1]), None, 0)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(list(&db.read, None, Some(4_500), 0).await.unwrap().len(), 1);
    }

    #[test]
    fn not_a_notice() {
        let other = [
            f("MESSAGE_ID", "fc2e22bc6ee647b6b90729ab34a250b1"),
            f("MESSAGE", "Suppressed 5 messages from x.service"),
        ];
        assert_eq!(suppressed(&other), None, "another message id");
        let forged = [
            f("_TRANSPORT", "journal"),
            f("MESSAGE_ID", JOURNAL_DROPPED),
            f("MESSAGE", "Suppressed 5 messages from x.service"),
        ];
        assert_eq!(suppressed(&forged), None, "not written by journald");
        let no_count = [
            f("MESSAGE_ID", JOURNAL_DROPPED),
            f("MESSAGE", "Suppressed many messages from x.service"),
        ];
        assert_eq!(suppressed(&no_count), None, "no count to record");
    }
}
