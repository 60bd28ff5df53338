//! The tonic router: every gRPC service the server offers, in one place.
//!
//! A new service is one more `.add_service(...)` line in [`router`]; it
//! gets what it needs (the read pool, the shutdown token) from
//! [`GrpcContext`].

use crate::auth::layer::AuthLayer;
use crate::auth::Auth;
use crate::ingest::{IngestService, Limits};
use jr_proto::v1::ingest_server::IngestServer;
use sqlx::SqlitePool;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::transport::server::Router;
use tonic_health::server::HealthReporter;
use tower::layer::util::{Identity, Stack};

/// The router with the authentication layer in front of every service.
pub type GrpcRouter = Router<Stack<AuthLayer, Identity>>;

/// What the services share.
pub struct GrpcContext {
    pub ingest: IngestService,
    pub limits: Limits,
    /// Read-only connections for query services.
    pub read_pool: SqlitePool,
    pub shutdown: CancellationToken,
    /// Live agent sessions (the query service's "connected").
    pub sessions: std::sync::Arc<crate::sessions::Sessions>,
    /// Id of the newest committed entry (wakes followers).
    pub commits: tokio::sync::watch::Receiver<i64>,
    /// Who may call what (see `auth`).
    pub auth: Auth,
    /// When hosts count as stalled or silent (`--stall-after`, `--silent-after`).
    pub host_policy: crate::db::hosts::HealthPolicy,
    /// The server's metrics (query requests are counted by method).
    pub counters: crate::metrics::Counters,
}

/// Builds the router; the returned reporter marks the services as not
/// serving at shutdown.
pub async fn router(
    ctx: GrpcContext,
) -> Result<(GrpcRouter, HealthReporter), tonic_reflection::server::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<IngestServer<IngestService>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(jr_proto::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let ingest = IngestServer::new(ctx.ingest)
        .accept_compressed(CompressionEncoding::Zstd)
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Zstd)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(ctx.limits.max_message_bytes)
        .max_encoding_message_size(ctx.limits.max_message_bytes);
    let router = tonic::transport::Server::builder()
        .layer(AuthLayer::new(ctx.auth))
        .add_service(health_service)
        .add_service(reflection)
        // Each further service (the query service, with `ctx.read_pool`)
        // is one more line here.
        .add_service(crate::metrics::grpc::counted(
            crate::query::QueryService::for_server(
                &ctx.read_pool,
                &ctx.sessions,
                &ctx.commits,
                &ctx.shutdown,
                ctx.host_policy,
            ),
            &ctx.counters.queries,
        ))
        .add_service(ingest);
    Ok((router, health))
}
