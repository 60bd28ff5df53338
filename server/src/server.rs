//! The server's life: validate the configuration, open the database, bind
//! the socket ([`Server::bind`]), then serve until the shutdown token
//! fires and drain ([`Server::serve`]).
//!
//! Shutdown order: stop accepting connections; sessions stop reading and
//! wait for the answers to what they already handed the writer; the
//! writer commits what is queued and stops once every session has let go
//! of it. Every wait has a deadline so a stuck client cannot hold the
//! process forever.

use crate::config::{ConfigError, ServerConfig};
use crate::db::open::{open, Database, OpenError};
use crate::db::retention::{index_log_budget, Policy, Retention};
use crate::db::writer::{Bounds, Stats, Writer};
use crate::grpc::{router, GrpcContext};
use crate::ingest::{IngestService, Limits};
use crate::local_agent;
use crate::metrics::{MetricsListener, MetricsServer};
use crate::progress;
use crate::sessions::Sessions;
use jr_proto::v1::ingest_server::IngestServer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::server::TcpIncoming;

/// How long open connections get to finish after shutdown was asked for.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("cannot load hosts from the database: {0}")]
    Load(#[source] sqlx::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error(transparent)]
    Forward(#[from] crate::forward::ForwardError),
    #[error("retention: {0}")]
    Retention(#[from] crate::db::retention::RetentionError),
    #[error(transparent)]
    Security(#[from] crate::auth::SecurityError),
    #[error("cannot serve metrics on {addr} (--metrics-listen): {source}")]
    MetricsBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A server with its database open and its socket bound.
pub struct Server {
    config: ServerConfig,
    listener: TcpListener,
    local_addr: SocketAddr,
    db: Database,
    security: crate::auth::Security,
    /// What retention has done; read by metrics.
    retention: Arc<crate::db::retention::RetentionStats>,
    /// The `/metrics` and `/healthz` socket, unless turned off.
    metrics: Option<MetricsListener>,
}

impl Server {
    /// Validates `config`, opens and migrates the database, and binds the
    /// listening socket (port 0 picks a free port; see
    /// [`Server::local_addr`]).
    pub async fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        let addr = config.validate()?;
        let security = crate::auth::Security::load(&config)?;
        let mut db = open(&config.db, config.synchronous).await?;
        crate::db::retention::prepare(&mut db.write, &mut db.fts, &Policy::from_config(&config))
            .await?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr, source })?;
        let metrics = MetricsListener::bind(config.metrics_spec()?)
            .await
            .map_err(|(addr, source)| ServerError::MetricsBind { addr, source })?;
        if security.tokens_file.is_some() && security.tls.is_none() && !addr.ip().is_loopback() {
            tracing::warn!(%local_addr, "bearer tokens travel in plain text: give --tls-cert/--tls-key");
        }
        Ok(Server {
            config,
            listener,
            local_addr,
            db,
            security,
            retention: Default::default(),
            metrics,
        })
    }

    /// The address of `/metrics` and `/healthz`, when they are served.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(MetricsListener::local_addr)
    }

    /// Counters of retention's passes (entries deleted, bytes freed, the
    /// database's size).
    pub fn retention_stats(&self) -> Arc<crate::db::retention::RetentionStats> {
        self.retention.clone()
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` is cancelled, then drains and returns.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), ServerError> {
        let Server {
            config,
            listener,
            local_addr,
            db,
            security,
            retention,
            metrics,
        } = self;
        let sessions = Arc::new(Sessions::default());
        let bounds = Bounds {
            commit_entries: config.commit_entries,
            commit_latency: config.commit_latency,
        };
        let (mut writer, writer_handle, stats) = Writer::new(db.write, sessions.clone(), bounds)
            .await
            .map_err(ServerError::Load)?;
        let policy = Policy::from_config(&config);
        let maintenance = policy.is_active().then(|| writer.maintenance(&config.db));
        let writer_running = stats.counters.writer();
        let writer_task = tokio::spawn(async move {
            let _running = writer_running;
            writer.run().await
        });

        let tasks = TaskTracker::new();
        tasks.spawn(crate::db::checkpoint::run(
            db.checkpoint,
            stats.committed.subscribe(),
            crate::db::checkpoint::log_bound(config.max_db_size),
            shutdown.clone(),
        ));
        let indexer = crate::db::fts::Indexer::new(db.fts)
            .await
            .map_err(ServerError::Load)?
            .bounded(config.max_db_size.map(index_log_budget))
            .await
            .map_err(ServerError::Load)?;
        tasks.spawn(indexer.run(stats.committed.subscribe(), shutdown.clone()));
        let limits = Limits {
            max_message_bytes: config.max_message_bytes,
            max_batch_entries: config.max_batch_entries,
            max_sessions: config.max_sessions,
        };
        let ingest = IngestService::new(
            writer_handle,
            sessions.clone(),
            limits,
            shutdown.clone(),
            tasks.clone(),
        )
        .with_counters(stats.counters.clone());
        let metrics_sessions = sessions.clone();
        let (router, health) = router(GrpcContext {
            ingest,
            limits,
            read_pool: db.read.clone(),
            shutdown: shutdown.clone(),
            sessions: sessions.clone(),
            commits: stats.committed.subscribe(),
            auth: security.auth.clone(),
            host_policy: config.host_policy(),
            counters: stats.counters.clone(),
        })
        .await?;
        security.watch(config.reload_interval, shutdown.clone(), &tasks)?;
        let forwarder = crate::forward::Forwarder::start(
            crate::forward::ForwardContext {
                read: db.read.clone(),
                db_path: config.db.clone(),
                commits: stats.committed.subscribe(),
                shutdown: shutdown.clone(),
                tasks: tasks.clone(),
            },
            &config.routes,
        )
        .await?;
        if let Some(path) = &config.config {
            forwarder.reload_on_sighup(path.clone())?;
        }
        let router = router.add_service(crate::metrics::grpc::counted(
            crate::forward::service::RoutesService::server(forwarder.clone()),
            &stats.counters.queries,
        ));

        progress::listening(local_addr, &config.db, &stats);
        tasks.spawn(progress::report(stats.clone(), shutdown.clone()));
        if let Some(listener) = metrics {
            progress::say(format_args!(
                "jr-server metrics on http://{}/metrics",
                listener.local_addr()
            ));
            let scrape = crate::metrics::scrape::Scrape::new(crate::metrics::scrape::Sources {
                stats: stats.clone(),
                retention: retention.clone(),
                read: db.read.clone(),
                sessions: metrics_sessions,
                policy: config.host_policy(),
                forwarder: Some(forwarder),
                db_path: config.db.clone(),
            });
            let health = crate::metrics::health::Health {
                read: db.read.clone(),
                counters: stats.counters.clone(),
                shutdown: shutdown.clone(),
            };
            let endpoint = MetricsServer::new(&stats.counters, scrape, health);
            tasks.spawn(endpoint.serve(listener, shutdown.clone()));
        }
        if let Some(maintenance) = maintenance {
            let retention = Retention::new(
                policy,
                maintenance,
                db.read.clone(),
                config.db.clone(),
                retention,
                stats.committed.subscribe(),
            );
            tasks.spawn(retention.run(shutdown.clone()));
        }
        if config.local_agent {
            local_agent::spawn(&config, local_addr, shutdown.clone(), &tasks);
        }

        // The block owns the router: leaving it drops the services and with
        // them their handles on the writer.
        let served = {
            let stop = shutdown.clone().cancelled_owned();
            let serving = match &security.tls {
                Some((_, tls)) => {
                    futures::future::Either::Left(router.serve_with_incoming_shutdown(
                        crate::auth::tls::incoming(listener, tls.clone()),
                        stop,
                    ))
                }
                None => futures::future::Either::Right(router.serve_with_incoming_shutdown(
                    TcpIncoming::from(listener).with_nodelay(Some(true)),
                    stop,
                )),
            };
            tokio::pin!(serving);
            let deadline = async {
                shutdown.cancelled().await;
                tokio::time::sleep(DRAIN_DEADLINE).await;
            };
            tokio::select! {
                r = &mut serving => r.map_err(ServerError::from),
                _ = deadline => {
                    tracing::warn!("connections still open {DRAIN_DEADLINE:?} after shutdown; closing them");
                    Ok(())
                }
            }
        };
        health
            .set_not_serving::<IngestServer<IngestService>>()
            .await;
        tasks.close();
        if tokio::time::timeout(DRAIN_DEADLINE, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("sessions still running {DRAIN_DEADLINE:?} after shutdown");
        }
        // The writer stops once the last session released its handle and
        // the queue is empty.
        match tokio::time::timeout(DRAIN_DEADLINE, writer_task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "writer task failed"),
            Err(_) => tracing::error!("writer still busy {DRAIN_DEADLINE:?} after shutdown"),
        }
        db.read.close().await;
        report_total(&stats);
        served
    }
}

fn report_total(stats: &Stats) {
    tracing::info!(
        stored = stats.stored.load(std::sync::atomic::Ordering::Relaxed),
        "jr-server stopped"
    );
}

/// Binds and serves `config` until `shutdown` is cancelled.
pub async fn run(config: ServerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let server = Server::bind(config).await?;
    server.serve(shutdown).await?;
    Ok(())
}
