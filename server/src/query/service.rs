//! The tonic `Query` service: a thin adapter from gRPC to the query
//! functions of this module.

use super::info::{self, Rate};
use super::logs;
use super::request::LogQuery;
use crate::db::hosts::HealthPolicy;
use crate::sessions::Sessions;
use jr_proto::v1::query_server::{Query, QueryServer};
use jr_proto::v1::{
    GapsRequest, GapsResponse, HostsRequest, HostsResponse, LogsRequest, LogsResponse,
    StatsRequest, StatsResponse, UnitsRequest, UnitsResponse,
};
use sqlx::SqlitePool;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status};

/// Answers whether a machine id has a live agent session.
pub type Connected = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The query service over the read pool.
#[derive(Clone)]
pub struct QueryService {
    pool: SqlitePool,
    /// Last committed entry id, from the writer; wakes followers.
    commits: Option<watch::Receiver<i64>>,
    connected: Connected,
    /// When hosts count as stalled or silent.
    policy: HealthPolicy,
    rate: Arc<Rate>,
    /// Ends follow streams so that the server can shut down.
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl QueryService {
    /// A service reading `pool`. `commits` is the writer's last committed
    /// entry id (followers poll once a second without it); `connected`
    /// tells live agent sessions; `shutdown` ends follow streams.
    pub fn new(
        pool: SqlitePool,
        commits: Option<watch::Receiver<i64>>,
        connected: Connected,
        shutdown: CancellationToken,
    ) -> Self {
        let rate = Arc::new(Rate::default());
        let tasks = TaskTracker::new();
        if let Some(mut rx) = commits.clone() {
            let rate = rate.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        r = rx.changed() => {
                            if r.is_err() {
                                break;
                            }
                            let id = *rx.borrow_and_update();
                            rate.sample(Instant::now(), id);
                        }
                    }
                }
            });
        }
        QueryService {
            pool,
            commits,
            connected,
            policy: HealthPolicy::default(),
            rate,
            shutdown,
            tasks,
        }
    }

    /// Uses `policy` (`--stall-after`, `--silent-after`) for host states.
    pub fn with_policy(mut self, policy: HealthPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The service as jr-server mounts it: followers woken by the writer's
    /// commits, "connected" from the live sessions.
    pub fn for_server(
        pool: &SqlitePool,
        sessions: &Arc<Sessions>,
        commits: &watch::Receiver<i64>,
        shutdown: &CancellationToken,
        policy: HealthPolicy,
    ) -> QueryServer<Self> {
        let sessions = sessions.clone();
        let connected: Connected = Arc::new(move |machine_id| sessions.is_live(machine_id));
        Self::new(
            pool.clone(),
            Some(commits.clone()),
            connected,
            shutdown.clone(),
        )
        .with_policy(policy)
        .into_server()
    }

    /// The tonic server of this service.
    pub fn into_server(self) -> QueryServer<Self> {
        QueryServer::new(self)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .accept_compressed(tonic::codec::CompressionEncoding::Zstd)
            .send_compressed(tonic::codec::CompressionEncoding::Zstd)
            .send_compressed(tonic::codec::CompressionEncoding::Gzip)
            // Entries are streamed in responses of about 1 MiB; one entry
            // may be as large as an agent may send.
            .max_encoding_message_size(usize::MAX)
    }

    /// Tasks of running queries, for a shutdown that waits for them.
    pub fn tasks(&self) -> TaskTracker {
        self.tasks.clone()
    }
}

#[tonic::async_trait]
impl Query for QueryService {
    type LogsStream = ReceiverStream<Result<LogsResponse, Status>>;

    async fn logs(
        &self,
        request: Request<LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        let q = LogQuery::from_request(request.get_ref())?;
        let (tx, rx) = mpsc::channel(logs::CHANNEL);
        self.tasks.spawn(logs::run(
            self.pool.clone(),
            q,
            self.commits.clone(),
            self.shutdown.clone(),
            tx,
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn hosts(&self, _: Request<HostsRequest>) -> Result<Response<HostsResponse>, Status> {
        let hosts = info::hosts(&self.pool, self.connected.as_ref(), self.policy).await?;
        Ok(Response::new(HostsResponse { hosts }))
    }

    async fn units(
        &self,
        request: Request<UnitsRequest>,
    ) -> Result<Response<UnitsResponse>, Status> {
        let units = info::units(&self.pool, &request.get_ref().hosts).await?;
        Ok(Response::new(UnitsResponse { units }))
    }

    async fn gaps(&self, request: Request<GapsRequest>) -> Result<Response<GapsResponse>, Status> {
        let gaps = info::gaps(&self.pool, request.get_ref()).await?;
        Ok(Response::new(GapsResponse { gaps }))
    }

    async fn stats(&self, _: Request<StatsRequest>) -> Result<Response<StatsResponse>, Status> {
        Ok(Response::new(info::stats(&self.pool, &self.rate).await?))
    }
}
