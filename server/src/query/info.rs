//! Hosts, units and store statistics: small summary queries over the
//! interned tables and the `entries` indexes.

use super::error::QueryError;
use super::sql;
use crate::db::gaps as db_gaps;
use crate::db::hosts::{self as db_hosts, HealthPolicy, HostHealth, HostLag};
use jr_proto::v1::{GapInfo, GapsRequest, HostInfo, HostState, StatsResponse, UnitInfo};
use sqlx::{Row, SqlitePool};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

fn usec(v: Option<i64>) -> u64 {
    v.map_or(0, |v| u64::try_from(v).unwrap_or(0))
}

/// Every host that ever shipped, with its lag behind its journal and its
/// state (see `db::hosts`); `connected` says whether a machine id has a
/// live agent session.
pub async fn hosts(
    pool: &SqlitePool,
    connected: &(dyn Fn(&str) -> bool + Send + Sync),
    policy: HealthPolicy,
) -> Result<Vec<HostInfo>, QueryError> {
    let lags: HashMap<i64, HostLag> = db_hosts::lag_and_gaps(pool, connected, policy)
        .await?
        .into_iter()
        .map(|l| (l.id, l))
        .collect();
    // The per-host MIN/MAX are answered from the (host_id, realtime_usec)
    // index, one seek each.
    let rows = sqlx::query(
        "SELECT h.id, h.machine_id, h.hostname, h.entries, h.boot_id, h.agent_version, \
         (SELECT MIN(realtime_usec) FROM entries WHERE host_id = h.id), \
         (SELECT MAX(realtime_usec) FROM entries WHERE host_id = h.id) \
         FROM hosts h ORDER BY h.hostname, h.machine_id",
    )
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let id: i64 = r.try_get(0)?;
        // A host that said Hello after the lag query ran is left for the
        // next call.
        let Some(l) = lags.get(&id) else { continue };
        out.push(HostInfo {
            connected: connected(&l.machine_id),
            machine_id: r.try_get(1)?,
            hostname: r.try_get(2)?,
            entries: usec(r.try_get(3)?),
            boot_id: r.try_get(4)?,
            agent_version: r.try_get(5)?,
            first_entry_usec: usec(r.try_get(6)?),
            last_entry_usec: usec(r.try_get(7)?),
            last_contact_usec: usec(Some(l.last_contact_usec)),
            cursor: l.cursor.clone(),
            gap_entries: l.vacuumed_entries,
            head_cursor: l.head_cursor.clone(),
            head_realtime_usec: usec(Some(l.head_realtime_usec)),
            head_reported_usec: usec(Some(l.head_reported_usec)),
            committed_realtime_usec: l.committed_realtime_usec,
            lag_usec: (l.lag_seconds * 1e6).round() as u64,
            entries_behind: l
                .entries_behind
                .map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX)),
            state: host_state(l.state) as i32,
            behind_since_usec: usec(Some(l.behind_since_usec)),
            suppressed_entries: l.suppressed_entries,
        });
    }
    Ok(out)
}

fn host_state(h: HostHealth) -> HostState {
    match h {
        HostHealth::Ok => HostState::Ok,
        HostHealth::Stalled => HostState::Stalled,
        HostHealth::Silent => HostState::Silent,
        HostHealth::Disconnected => HostState::Disconnected,
    }
}

/// Units with their entry counts, for all hosts or those matching `hosts`,
/// from the per-host counters in `host_units` (no entry is read).
pub async fn units(pool: &SqlitePool, hosts: &[String]) -> Result<Vec<UnitInfo>, QueryError> {
    let filter = if hosts.is_empty() {
        None
    } else {
        let ids = sql::host_ids(pool, hosts).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Some(ids)
    };
    let where_hosts = match &filter {
        Some(ids) => format!("WHERE hu.host_id IN ({})", vec!["?"; ids.len()].join(",")),
        None => String::new(),
    };
    let text = format!(
        "SELECT u.name, SUM(hu.entries) AS n, MAX(hu.last_entry_usec) AS last \
         FROM host_units hu JOIN units u ON u.id = hu.unit_id {where_hosts} \
         GROUP BY hu.unit_id HAVING n > 0 ORDER BY u.name"
    );
    let mut q = sqlx::query(&text);
    for id in filter.iter().flatten() {
        q = q.bind(id);
    }
    q.fetch_all(pool)
        .await?
        .iter()
        .map(|r| {
            Ok(UnitInfo {
                name: r.try_get(0)?,
                entries: usec(r.try_get(1)?),
                last_entry_usec: usec(r.try_get(2)?),
            })
        })
        .collect()
}

/// Recorded gaps, per host and unit, oldest first.
pub async fn gaps(pool: &SqlitePool, req: &GapsRequest) -> Result<Vec<GapInfo>, QueryError> {
    let ids = if req.hosts.is_empty() {
        None
    } else {
        let ids = sql::host_ids(pool, &req.hosts).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Some(ids)
    };
    let since = req.since_usec.map(|s| i64::try_from(s).unwrap_or(i64::MAX));
    let rows = db_gaps::list(pool, ids.as_deref(), since, req.limit).await?;
    Ok(rows
        .into_iter()
        .map(|g| GapInfo {
            hostname: g.hostname,
            machine_id: g.machine_id,
            unit: g.unit.unwrap_or_default(),
            realtime_usec: usec(Some(g.realtime_usec)),
            entries: usec(Some(g.entries)),
            kind: g.kind,
        })
        .collect())
}

/// How far back the ingest rate looks.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Samples of the committed head, for the ingest rate.
#[derive(Default)]
pub struct Rate {
    samples: Mutex<VecDeque<(Instant, i64)>>,
}

impl Rate {
    /// Records that entry `id` was the head at `at`.
    pub fn sample(&self, at: Instant, id: i64) {
        let mut s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if s.back()
            .is_some_and(|(t, _)| at.duration_since(*t) < Duration::from_millis(500))
        {
            return;
        }
        s.push_back((at, id));
        while s.len() > 1
            && s.front()
                .is_some_and(|(t, _)| at.duration_since(*t) > RATE_WINDOW)
        {
            s.pop_front();
        }
    }

    /// Entries per second between the oldest sample in the window and
    /// `(now, head)`.
    pub fn per_second(&self, now: Instant, head: i64) -> f64 {
        let s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        match s.front() {
            Some((t, id)) if now > *t => {
                (head - id).max(0) as f64 / now.duration_since(*t).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

/// Store totals and size.
pub async fn stats(pool: &SqlitePool, rate: &Rate) -> Result<StatsResponse, QueryError> {
    // Counts come from the per-host counters, the time range from one seek
    // each end of the time index: no scan of entries.
    let row = sqlx::query(
        "SELECT (SELECT COALESCE(SUM(entries), 0) FROM hosts), \
         (SELECT MIN(realtime_usec) FROM entries), (SELECT MAX(realtime_usec) FROM entries), \
         (SELECT COUNT(*) FROM hosts), \
         (SELECT COUNT(*) FROM (SELECT unit_id FROM host_units WHERE entries > 0 GROUP BY unit_id))",
    )
    .fetch_one(pool)
    .await?;
    let last_id = sql::last_id(pool).await?;
    let now = Instant::now();
    rate.sample(now, last_id);
    let page_count: i64 = sqlx::query_scalar("PRAGMA page_count")
        .fetch_one(pool)
        .await?;
    let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(pool)
        .await?;
    let file: Option<String> = sqlx::query("PRAGMA database_list")
        .fetch_all(pool)
        .await?
        .iter()
        .find(|r| r.try_get::<String, _>(1).is_ok_and(|n| n == "main"))
        .and_then(|r| r.try_get(2).ok());
    // The log and the full-text index's files (`-fts`, `-fts-wal`) are
    // part of what the database takes.
    let mut beside = 0;
    if let Some(f) = file.filter(|f| !f.is_empty()) {
        for suffix in ["-wal", "-fts", "-fts-wal"] {
            beside += tokio::fs::metadata(format!("{f}{suffix}"))
                .await
                .map_or(0, |m| m.len());
        }
    }
    Ok(StatsResponse {
        entries: usec(row.try_get(0)?),
        first_entry_usec: usec(row.try_get(1)?),
        last_entry_usec: usec(row.try_get(2)?),
        hosts: usec(row.try_get(3)?),
        units: usec(row.try_get(4)?),
        database_bytes: usec(Some(page_count.saturating_mul(page_size))) + beside,
        ingest_rate: rate.per_second(now, last_id),
        last_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_over_the_window() {
        let r = Rate::default();
        let t0 = Instant::now();
        assert_eq!(r.per_second(t0, 10), 0.0);
        r.sample(t0, 100);
        r.sample(t0 + Duration::from_secs(1), 200);
        let rate = r.per_second(t0 + Duration::from_secs(2), 300);
        assert!((rate - 100.0).abs() < 1e-6, "{rate}");
        // Samples far outside the window are dropped.
        r.sample(t0 + Duration::from_secs(200), 1000);
        r.sample(t0 + Duration::from_secs(201), 1100);
        let rate = r.per_second(t0 + Duration::from_secs(202), 1200);
        assert!((rate - 100.0).abs() < 1e-6, "{rate}");
    }
}
