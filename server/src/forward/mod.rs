//! Forwarding: routes that send chosen entries to Logentries.
//!
//! A route ([`config::RouteConfig`], a `[[routes]]` table of the server's
//! config file) is a filter, a destination and a line template. Each runs
//! as one task ([`route`]) that reads entries after its position from the
//! store, renders them ([`template`]), frames them for its sink
//! ([`sink`], [`logentries`] over [`transport`]) and advances its position
//! in the `routes` table ([`store`]) only after the peer acknowledged the
//! bytes. New commits wake the tasks through the writer's `committed`
//! watch; reconnects wait a jittered [`jr_backoff`].
//!
//! [`Forwarder`] owns the running routes: it starts them, swaps them on a
//! reload (SIGHUP; unchanged routes keep their task and connection, a bad
//! file changes nothing), lists them and replays time ranges; [`service`]
//! is its gRPC face (`jrctl routes`).

pub mod config;
pub mod logentries;
pub mod route;
pub mod service;
pub mod sink;
pub mod store;
pub mod template;
pub mod transport;

use config::{RouteConfig, RouteList, RoutesFileError};
use jr_backoff::Backoff;
use logentries::Logentries;
use route::{Cancelled, Deliverer, RouteState, RouteTask};
use sqlx::SqlitePool;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use store::Range;
use thiserror::Error;
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use transport::{Endpoint, TlsSetupError};

/// First reconnect delay and the cap.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Longest a reload waits for a replaced route to stop.
const STOP_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum ForwardError {
    #[error("route {route}: {source}")]
    Tls {
        route: String,
        source: TlsSetupError,
    },
    #[error("cannot open the database for route positions: {0}")]
    Db(#[source] sqlx::Error),
    #[error(transparent)]
    File(#[from] RoutesFileError),
    #[error("cannot install the SIGHUP handler: {0}")]
    Signal(#[source] std::io::Error),
    #[error("no route named {0:?}")]
    NoRoute(String),
    #[error("no entry at or after the replay's start time")]
    NothingToReplay,
    #[error(transparent)]
    Backoff(#[from] jr_backoff::BackoffError),
    #[error("cannot read the store")]
    Read(#[source] sqlx::Error),
}

/// What the forwarder needs from the server.
pub struct ForwardContext {
    /// The server's read-only pool.
    pub read: SqlitePool,
    /// The database file (route rows are written through a connection of
    /// the forwarder's own; see [`store`]).
    pub db_path: PathBuf,
    /// Id of the newest committed entry, from the writer.
    pub commits: watch::Receiver<i64>,
    pub shutdown: CancellationToken,
    /// Where route tasks run, so the server's drain waits for them.
    pub tasks: TaskTracker,
}

struct Running {
    config: RouteConfig,
    cancel: CancellationToken,
    handle: JoinHandle<()>,
    state: Arc<RouteState>,
    replay_pending: Arc<AtomicI64>,
}

struct Inner {
    read: SqlitePool,
    db: SqlitePool,
    commits: watch::Receiver<i64>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    backoff: Backoff,
    routes: Mutex<BTreeMap<String, Running>>,
}

/// The running routes.
#[derive(Clone)]
pub struct Forwarder {
    inner: Arc<Inner>,
}

/// What a reload changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    pub started: Vec<String>,
    pub stopped: Vec<String>,
    pub restarted: Vec<String>,
    pub unchanged: Vec<String>,
}

/// A route's sink, built before anything is started so that a bad CA
/// file refuses the whole configuration.
fn sink_for(r: &RouteConfig) -> Result<Logentries, ForwardError> {
    let d = &r.destination;
    let tls = if d.tls {
        Some(
            transport::tls_config(d.ca_file.as_deref()).map_err(|source| ForwardError::Tls {
                route: r.name.to_string(),
                source,
            })?,
        )
    } else {
        None
    };
    let (host, port) = d.host_port();
    Ok(Logentries::new(
        d.token.as_str(),
        Endpoint { host, port, tls },
    ))
}

impl Forwarder {
    /// Starts `routes`.
    pub async fn start(ctx: ForwardContext, routes: &RouteList) -> Result<Forwarder, ForwardError> {
        let db = store::open_routes_db(&ctx.db_path)
            .await
            .map_err(ForwardError::Db)?;
        let backoff = Backoff::new(BACKOFF_BASE, BACKOFF_MAX)?;
        let f = Forwarder {
            inner: Arc::new(Inner {
                read: ctx.read,
                db,
                commits: ctx.commits,
                shutdown: ctx.shutdown,
                tasks: ctx.tasks,
                backoff,
                routes: Mutex::new(BTreeMap::new()),
            }),
        };
        f.reload(routes).await?;
        Ok(f)
    }

    fn spawn(&self, config: RouteConfig, sink: Logentries) -> Running {
        let i = &self.inner;
        let cancel = i.shutdown.child_token();
        let state = Arc::new(RouteState::default());
        let task = RouteTask {
            d: Deliverer {
                name: config.name.to_string(),
                filter: config.filter.clone(),
                template: config.template.clone(),
                sink,
                read: i.read.clone(),
                db: i.db.clone(),
                backoff: i.backoff,
                state: state.clone(),
            },
            start: config.start.clone(),
            commits: i.commits.clone(),
            cancel: cancel.clone(),
        };
        let handle = i.tasks.spawn(task.run());
        i.tasks.spawn(check_endpoint(
            config.name.to_string(),
            config.destination.host_port(),
            state.clone(),
            cancel.clone(),
        ));
        Running {
            config,
            cancel,
            handle,
            state,
            replay_pending: Arc::new(AtomicI64::new(0)),
        }
    }

    /// Makes `routes` the running set: new routes start, removed ones
    /// stop, changed ones restart (keeping their position), unchanged ones
    /// keep running untouched. Nothing changes when a route cannot be set
    /// up.
    pub async fn reload(&self, routes: &RouteList) -> Result<ReloadSummary, ForwardError> {
        let mut running = self.inner.routes.lock().await;
        let mut summary = ReloadSummary::default();
        let mut fresh = Vec::new();
        for r in &routes.0 {
            let name = r.name.to_string();
            match running.get(&name) {
                Some(old) if old.config == *r => summary.unchanged.push(name),
                other => {
                    if other.is_some() {
                        summary.restarted.push(name);
                    } else {
                        summary.started.push(name);
                    }
                    fresh.push((r.clone(), sink_for(r)?));
                }
            }
        }
        let keep: std::collections::HashSet<&str> =
            routes.0.iter().map(|r| r.name.as_str()).collect();
        let gone: Vec<String> = running
            .keys()
            .filter(|n| !keep.contains(n.as_str()))
            .cloned()
            .collect();
        for name in gone.iter().chain(&summary.restarted) {
            if let Some(old) = running.remove(name) {
                old.cancel.cancel();
                if tokio::time::timeout(STOP_DEADLINE, old.handle)
                    .await
                    .is_err()
                {
                    tracing::warn!(route = %name, "route still stopping {STOP_DEADLINE:?} after the reload");
                }
            }
        }
        summary.stopped = gone;
        for (config, sink) in fresh {
            let name = config.name.to_string();
            let r = self.spawn(config, sink);
            running.insert(name, r);
        }
        Ok(summary)
    }

    /// Reads the routes of `path` again and applies them; on any error the
    /// running routes stay as they are.
    pub async fn reload_file(&self, path: &Path) -> Result<ReloadSummary, ForwardError> {
        let routes = config::load_routes(path)?;
        self.reload(&routes).await
    }

    /// Reloads `path` on every SIGHUP until shutdown.
    pub fn reload_on_sighup(&self, path: PathBuf) -> Result<(), ForwardError> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup()).map_err(ForwardError::Signal)?;
        let f = self.clone();
        let shutdown = self.inner.shutdown.clone();
        self.inner.tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = hup.recv() => if r.is_none() { return },
                }
                match f.reload_file(&path).await {
                    Ok(s) => tracing::info!(
                        started = ?s.started, stopped = ?s.stopped, restarted = ?s.restarted,
                        unchanged = ?s.unchanged, "routes reloaded"
                    ),
                    Err(e) => tracing::error!(error = %e, "config reload failed; the running routes are kept"),
                }
            }
        });
        Ok(())
    }

    /// Delivery failures of each running route since it started.
    pub async fn error_counts(&self) -> Vec<(String, u64)> {
        let running = self.inner.routes.lock().await;
        running
            .iter()
            .map(|(name, r)| (name.clone(), r.state.errors.load(Ordering::Relaxed)))
            .collect()
    }

    /// Every running route with its saved state.
    pub async fn list(&self) -> Result<Vec<jr_proto::v1::RouteStatus>, ForwardError> {
        let i = &self.inner;
        let running = i.routes.lock().await;
        let head = store::head(&i.read).await.map_err(ForwardError::Read)?;
        let now = jiff::Timestamp::now().as_microsecond();
        let mut out = Vec::with_capacity(running.len());
        for (name, r) in running.iter() {
            let saved = store::load(&i.db, name)
                .await
                .map_err(ForwardError::Read)?
                .unwrap_or_default();
            let oldest = store::time_after(&i.read, saved.position)
                .await
                .map_err(ForwardError::Read)?;
            let (last_error, last_error_usec) = r
                .state
                .last_error
                .lock()
                .ok()
                .and_then(|g| g.clone())
                .unwrap_or((saved.last_error.clone(), saved.last_error_usec));
            let u = |n: i64| u64::try_from(n).unwrap_or(0);
            out.push(jr_proto::v1::RouteStatus {
                name: name.clone(),
                destination: r.config.destination.describe(),
                position: saved.position,
                lag_entries: (head - saved.position).max(0),
                lag_seconds: oldest.map_or(0.0, |t| (now - t).max(0) as f64 / 1e6),
                entries_sent: u(saved.entries_sent),
                lines_sent: u(saved.lines_sent),
                bytes_sent: u(saved.bytes_sent),
                repeated_lines: u(saved.repeated_lines),
                connected: r.state.connected.load(Ordering::Relaxed),
                last_error,
                last_error_usec,
                replay_pending: r.replay_pending.load(Ordering::Relaxed),
            });
        }
        Ok(out)
    }

    /// Sends again what route `name` delivered between `since_usec` and
    /// `until_usec` (inclusive; `None`: up to its position), on a
    /// connection of its own. Returns the id range gone through.
    pub async fn replay(
        &self,
        name: &str,
        since_usec: i64,
        until_usec: Option<i64>,
    ) -> Result<(i64, i64), ForwardError> {
        let i = &self.inner;
        let running = i.routes.lock().await;
        let r = running
            .get(name)
            .ok_or_else(|| ForwardError::NoRoute(name.to_owned()))?;
        let first = store::before_time(&i.read, since_usec)
            .await
            .map_err(ForwardError::Read)?
            .ok_or(ForwardError::NothingToReplay)?;
        let last = store::load(&i.db, name)
            .await
            .map_err(ForwardError::Read)?
            .map_or(0, |s| s.position);
        let range = Range {
            after: first,
            upto: last,
            since_usec,
            until_usec: until_usec.unwrap_or(i64::MAX),
        };
        let mut d = Deliverer {
            name: format!("{name} (replay)"),
            filter: r.config.filter.clone(),
            template: r.config.template.clone(),
            sink: sink_for(&r.config)?,
            read: i.read.clone(),
            db: i.db.clone(),
            backoff: i.backoff,
            state: Arc::new(RouteState::default()),
        };
        let cancel = r.cancel.child_token();
        let pending = r.replay_pending.clone();
        pending.fetch_add((last - first).max(0), Ordering::Relaxed);
        let route = name.to_owned();
        i.tasks.spawn(async move {
            let mut after = range.after;
            let mut attempt = 0;
            loop {
                let chunk = match d.build(Range { after, ..range }, 0).await {
                    Ok(Some(c)) => c,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(route = %route, error = %e, "replay cannot read entries; retrying");
                        attempt += 1;
                        tokio::select! {
                            _ = cancel.cancelled() => break,
                            _ = tokio::time::sleep(d.backoff.delay(attempt)) => continue,
                        }
                    }
                };
                if chunk.lines > 0 {
                    if let Err(Cancelled) = d.deliver(&chunk, &cancel).await {
                        break;
                    }
                    let p = store::Progress {
                        entries: chunk.entries,
                        lines: chunk.lines,
                        bytes: chunk.buf.len() as i64,
                        ..store::Progress::default()
                    };
                    if let Err(e) = store::add_counts(&d.db, &route, p).await {
                        tracing::debug!(route = %route, error = %e, "cannot count replayed lines");
                    }
                }
                pending.fetch_sub(chunk.last_id - after, Ordering::Relaxed);
                after = chunk.last_id;
            }
            pending.fetch_sub((range.upto - after).max(0), Ordering::Relaxed);
            tracing::info!(route = %route, "replay finished");
        });
        Ok((first + 1, last))
    }
}

/// Resolves a route's endpoint once when the route starts, so a host name
/// that does not resolve is reported at start-up or reload (in the log and
/// as the route's last error) rather than only when the first entry is due.
/// The route is not refused: DNS may be down for a while, and the route
/// retries on its own.
async fn check_endpoint(
    route: String,
    (host, port): (String, u16),
    state: Arc<route::RouteState>,
    cancel: tokio_util::sync::CancellationToken,
) {
    let lookup = tokio::net::lookup_host((host.as_str(), port));
    let error = tokio::select! {
        _ = cancel.cancelled() => return,
        r = lookup => match r.map(|mut addrs| addrs.next().is_some()) {
            Ok(true) => return,
            Ok(false) => sink::SinkError::NoAddress { host: host.clone() },
            Err(source) => sink::SinkError::Resolve { host: host.clone(), source },
        },
    };
    tracing::warn!(route = %route, endpoint = %format!("{host}:{port}"), error = %error,
        "route endpoint does not resolve; the route keeps retrying");
    state.set_error(&error.to_string());
}
