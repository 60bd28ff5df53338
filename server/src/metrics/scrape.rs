//! Series read when Prometheus scrapes, from where the numbers already
//! live: the writer's `Stats`, retention's counters, the `hosts` and
//! `gaps` tables (`db::hosts::lag_and_gaps`), the forwarder's routes and
//! the database files' sizes.
//!
//! [`Scrape::refresh`] does the asynchronous reads (bounded by
//! [`REFRESH_TIMEOUT`]) before each encoding; the collector then encodes
//! the latest snapshot. A source that fails keeps its previous values and
//! is logged, so one slow query cannot make `/metrics` fail as a whole.

use crate::db::hosts::{self, HealthPolicy, HostHealth, HostLag};
use crate::db::retention::RetentionStats;
use crate::db::writer::Stats;
use crate::forward::Forwarder;
use crate::sessions::Sessions;
use jr_proto::v1::RouteStatus;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use sqlx::SqlitePool;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Longest a scrape waits for the database and the forwarder.
pub const REFRESH_TIMEOUT: Duration = Duration::from_secs(5);

/// Where scrape-time series come from.
pub struct Sources {
    pub stats: Arc<Stats>,
    pub retention: Arc<RetentionStats>,
    pub read: SqlitePool,
    pub sessions: Arc<Sessions>,
    pub policy: HealthPolicy,
    pub forwarder: Option<Forwarder>,
    pub db_path: PathBuf,
}

#[derive(Debug, Default)]
struct Snapshot {
    hosts: Vec<HostLag>,
    routes: Vec<RouteStatus>,
    route_errors: HashMap<String, u64>,
    db_bytes: u64,
}

/// The scrape-time collector.
pub struct Scrape {
    sources: Sources,
    /// `Stats::stored` at start-up: it starts at the entries already in
    /// the database, the counter at zero.
    stored_at_start: u64,
    snapshot: Mutex<Snapshot>,
}

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrape").finish_non_exhaustive()
    }
}

/// Size of the database file, its write-ahead log and its full-text
/// index's files, in bytes.
pub fn database_bytes(db: &Path) -> u64 {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let beside = |suffix: &str| {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        size(Path::new(&p))
    };
    size(db) + beside("-wal") + beside("-fts") + beside("-fts-wal")
}

impl Scrape {
    pub fn new(sources: Sources) -> Scrape {
        Scrape {
            stored_at_start: sources.stats.stored.load(Ordering::Relaxed),
            sources,
            snapshot: Mutex::default(),
        }
    }

    fn snapshot(&self) -> std::sync::MutexGuard<'_, Snapshot> {
        // Every update replaces whole fields, so a poisoned lock still
        // holds a consistent snapshot.
        self.snapshot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the scrape-time sources.
    pub async fn refresh(&self) {
        let s = &self.sources;
        let sessions = s.sessions.clone();
        let connected = move |m: &str| sessions.is_live(m);
        let db_bytes = database_bytes(&s.db_path);
        self.snapshot().db_bytes = db_bytes;
        match tokio::time::timeout(
            REFRESH_TIMEOUT,
            hosts::lag_and_gaps(&s.read, &connected, s.policy),
        )
        .await
        {
            Ok(Ok(h)) => self.snapshot().hosts = h,
            Ok(Err(e)) => tracing::warn!(error = %e, "metrics: cannot read the hosts' lag"),
            Err(_) => tracing::warn!("metrics: reading the hosts' lag timed out"),
        }
        if let Some(f) = &s.forwarder {
            let errors: HashMap<String, u64> = f.error_counts().await.into_iter().collect();
            self.snapshot().route_errors = errors;
            match tokio::time::timeout(REFRESH_TIMEOUT, f.list()).await {
                Ok(Ok(r)) => self.snapshot().routes = r,
                Ok(Err(e)) => tracing::warn!(error = %e, "metrics: cannot read the routes"),
                Err(_) => tracing::warn!("metrics: reading the routes timed out"),
            }
        }
    }
}

fn counter(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(value);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge<N>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: N,
) -> Result<(), std::fmt::Error>
where
    ConstGauge<N>: EncodeMetric,
{
    let g = ConstGauge::new(value);
    g.encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// One series per item of `rows`, labelled by `labels(row)`.
fn family<'r, R, L, F>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    rows: impl IntoIterator<Item = &'r R>,
    labels: L,
    value: F,
) -> Result<(), std::fmt::Error>
where
    R: 'r,
    L: Fn(&R) -> Vec<(&'static str, String)>,
    F: Fn(&R) -> Option<f64>,
{
    let mut m = e.encode_descriptor(name, help, None, kind)?;
    for row in rows {
        let Some(v) = value(row) else { continue };
        let l = labels(row);
        let fam = m.encode_family(&l)?;
        match kind {
            MetricType::Counter => ConstCounter::new(v).encode(fam)?,
            _ => ConstGauge::new(v).encode(fam)?,
        }
    }
    Ok(())
}

fn host_labels(h: &HostLag) -> Vec<(&'static str, String)> {
    vec![
        ("host", h.hostname.clone()),
        ("machine_id", h.machine_id.clone()),
    ]
}

fn route_labels(r: &RouteStatus) -> Vec<(&'static str, String)> {
    vec![("route", r.name.clone())]
}

const STATES: [HostHealth; 4] = [
    HostHealth::Ok,
    HostHealth::Stalled,
    HostHealth::Silent,
    HostHealth::Disconnected,
];

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.sources;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut e,
            "jr_server_entries_committed",
            "Entries stored (committed) since start-up",
            load(&s.stats.stored).saturating_sub(self.stored_at_start),
        )?;
        counter(
            &mut e,
            "jr_server_commits",
            "Group commits since start-up",
            load(&s.stats.commits),
        )?;
        counter(
            &mut e,
            "jr_server_commit_failures",
            "Group commits that failed and were rolled back",
            load(&s.stats.failed_commits),
        )?;
        let r = &s.retention;
        let mut m = e.encode_descriptor(
            "jr_server_retention_deleted_entries",
            "Entries deleted by retention, by reason (age: --retention, size: --max-db-size)",
            None,
            MetricType::Counter,
        )?;
        for (reason, v) in [
            ("age", load(&r.deleted_by_age)),
            ("size", load(&r.deleted_by_size)),
        ] {
            ConstCounter::new(v).encode(m.encode_family(&[("reason", reason)])?)?;
        }
        counter(
            &mut e,
            "jr_server_retention_freed_bytes",
            "Bytes the incremental vacuum gave back to the file system",
            load(&r.bytes_freed),
        )?;

        let snap = self.snapshot();
        gauge(
            &mut e,
            "jr_server_database_size_bytes",
            "Size of the database file plus its write-ahead log",
            snap.db_bytes,
        )?;
        family(
            &mut e,
            "jr_server_host_lag_seconds",
            "How far the committed entries are behind the host's journal head, in seconds",
            MetricType::Gauge,
            &snap.hosts,
            host_labels,
            |h| Some(h.lag_seconds),
        )?;
        family(
            &mut e,
            "jr_server_host_entries_behind",
            "Entries between the host's committed cursor and its journal head (when countable)",
            MetricType::Gauge,
            &snap.hosts,
            host_labels,
            |h| h.entries_behind.map(|n| n as f64),
        )?;
        let mut m = e.encode_descriptor(
            "jr_server_host_state",
            "1 for the host's state (ok, stalled, silent, disconnected), 0 for the others",
            None,
            MetricType::Gauge,
        )?;
        for h in &snap.hosts {
            for state in STATES {
                let mut l = host_labels(h);
                l.push(("state", state.as_str().to_owned()));
                ConstGauge::new(i64::from(h.state == state)).encode(m.encode_family(&l)?)?;
            }
        }
        let mut m = e.encode_descriptor(
            "jr_server_host_gap_entries",
            "Entries lost before shipping, by kind (vacuumed: the resume cursor's entry was \
             vacuumed; suppressed: journald's rate limit)",
            None,
            MetricType::Counter,
        )?;
        for h in &snap.hosts {
            for (kind, v) in [
                ("vacuumed", h.vacuumed_entries),
                ("suppressed", h.suppressed_entries),
            ] {
                let mut l = host_labels(h);
                l.push(("kind", kind.to_owned()));
                ConstCounter::new(v).encode(m.encode_family(&l)?)?;
            }
        }

        let routes = &snap.routes;
        family(
            &mut e,
            "jr_server_route_position",
            "Id of the last entry the route delivered (or passed over)",
            MetricType::Gauge,
            routes,
            route_labels,
            |r| Some(r.position as f64),
        )?;
        family(
            &mut e,
            "jr_server_route_lag_entries",
            "Entries stored after the route's position",
            MetricType::Gauge,
            routes,
            route_labels,
            |r| Some(r.lag_entries as f64),
        )?;
        family(
            &mut e,
            "jr_server_route_lag_seconds",
            "Age of the oldest entry the route has not delivered",
            MetricType::Gauge,
            routes,
            route_labels,
            |r| Some(r.lag_seconds),
        )?;
        family(
            &mut e,
            "jr_server_route_entries_sent",
            "Entries the route delivered (all time)",
            MetricType::Counter,
            routes,
            route_labels,
            |r| Some(r.entries_sent as f64),
        )?;
        family(
            &mut e,
            "jr_server_route_bytes_sent",
            "Bytes the route delivered (all time)",
            MetricType::Counter,
            routes,
            route_labels,
            |r| Some(r.bytes_sent as f64),
        )?;
        family(
            &mut e,
            "jr_server_route_errors",
            "Failed connects, writes and acknowledgements of the route since start-up",
            MetricType::Counter,
            routes,
            route_labels,
            |r| Some(snap.route_errors.get(&r.name).copied().unwrap_or(0) as f64),
        )?;
        family(
            &mut e,
            "jr_server_route_connected",
            "1 while the route has a connection to its endpoint",
            MetricType::Gauge,
            routes,
            route_labels,
            |r| Some(f64::from(u8::from(r.connected))),
        )?;
        Ok(())
    }
}
