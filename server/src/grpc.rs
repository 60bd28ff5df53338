//! The tonic router: every gRPC service the server offers, in one place.
//!
//! A new service is one more `.add_service(...)` line in [`router`]; it
//! gets what it needs (the read pool, the shutdown token) from
//! [`GrpcContext`].

use crate::ingest::{IngestService, Limits};
use jr_proto::v1::ingest_server::IngestServer;
use sqlx::SqlitePool;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::transport::server::Router;
use tonic_health::server::HealthReporter;

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
}

/// Builds the router; the returned reporter marks the services as not
/// serving at shutdown.
pub async fn router(
    ctx: GrpcContext,
) -> Result<(Router, HealthReporter), tonic_reflection::server::Error> {
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
        .add_service(health_service)
        .add_service(reflection)
        // Each further service (the query service, with `ctx.read_pool`)
        // is one more line here.
        .add_service(crate::query::QueryService::for_server(
            &ctx.read_pool,
            &ctx.sessions,
            &ctx.commits,
            &ctx.shutdown,
        ))
        .add_service(ingest);
    Ok((router, health))
}
