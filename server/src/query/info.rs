//! Hosts, units and store statistics: small summary queries over the
//! interned tables and the `entries` indexes.

use super::error::QueryError;
use super::sql;
use jr_proto::v1::{HostInfo, StatsResponse, UnitInfo};
use sqlx::{Row, SqlitePool};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

fn usec(v: Option<i64>) -> u64 {
    v.map_or(0, |v| u64::try_from(v).unwrap_or(0))
}

/// Every host that ever shipped; `connected` says whether a machine id has
/// a live agent session.
pub async fn hosts(
    pool: &SqlitePool,
    connected: &(dyn Fn(&str) -> bool + Send + Sync),
) -> Result<Vec<HostInfo>, QueryError> {
    // The per-host MIN/MAX are answered from the (host_id, realtime_usec)
    // index, one seek each.
    let rows = sqlx::query(
        "SELECT h.machine_id, h.hostname, h.entries, h.last_contact_usec, h.cursor, h.boot_id, \
         h.agent_version, h.gap_entries, \
         (SELECT MIN(realtime_usec) FROM entries WHERE host_id = h.id), \
         (SELECT MAX(realtime_usec) FROM entries WHERE host_id = h.id) \
         FROM hosts h ORDER BY h.hostname, h.machine_id",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let machine_id: String = r.try_get(0)?;
            Ok(HostInfo {
                connected: connected(&machine_id),
                machine_id,
                hostname: r.try_get(1)?,
                entries: usec(r.try_get(2)?),
                last_contact_usec: usec(r.try_get(3)?),
                cursor: r.try_get(4)?,
                boot_id: r.try_get(5)?,
                agent_version: r.try_get(6)?,
                gap_entries: usec(r.try_get(7)?),
                first_entry_usec: usec(r.try_get(8)?),
                last_entry_usec: usec(r.try_get(9)?),
            })
        })
        .collect()
}

/// Units with their entry counts, for all hosts or those matching `hosts`.
pub async fn units(pool: &SqlitePool, hosts: &[String]) -> Result<Vec<UnitInfo>, QueryError> {
    let rows = if hosts.is_empty() {
        // Answered from the (unit_id, realtime_usec) index alone.
        sqlx::query(
            "SELECT u.name, c.n, c.last FROM \
             (SELECT unit_id, COUNT(*) AS n, MAX(realtime_usec) AS last FROM entries \
              WHERE unit_id IS NOT NULL GROUP BY unit_id) c \
             JOIN units u ON u.id = c.unit_id ORDER BY u.name",
        )
        .fetch_all(pool)
        .await?
    } else {
        let ids = sql::host_ids(pool, hosts).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list = vec!["?"; ids.len()].join(",");
        let text = format!(
            "SELECT u.name, c.n, c.last FROM \
             (SELECT unit_id, COUNT(*) AS n, MAX(realtime_usec) AS last FROM entries \
              WHERE unit_id IS NOT NULL AND host_id IN ({list}) GROUP BY unit_id) c \
             JOIN units u ON u.id = c.unit_id ORDER BY u.name"
        );
        let mut q = sqlx::query(&text);
        for id in &ids {
            q = q.bind(id);
        }
        q.fetch_all(pool).await?
    };
    rows.iter()
        .map(|r| {
            Ok(UnitInfo {
                name: r.try_get(0)?,
                entries: usec(r.try_get(1)?),
                last_entry_usec: usec(r.try_get(2)?),
            })
        })
        .collect()
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
    let row = sqlx::query(
        "SELECT COUNT(*), MIN(realtime_usec), MAX(realtime_usec), \
         (SELECT COUNT(*) FROM hosts), (SELECT COUNT(*) FROM units) FROM entries",
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
    let wal = match file.filter(|f| !f.is_empty()) {
        Some(f) => tokio::fs::metadata(format!("{f}-wal"))
            .await
            .map_or(0, |m| m.len()),
        None => 0,
    };
    Ok(StatsResponse {
        entries: usec(row.try_get(0)?),
        first_entry_usec: usec(row.try_get(1)?),
        last_entry_usec: usec(row.try_get(2)?),
        hosts: usec(row.try_get(3)?),
        units: usec(row.try_get(4)?),
        database_bytes: usec(Some(page_count.saturating_mul(page_size))) + wal,
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
