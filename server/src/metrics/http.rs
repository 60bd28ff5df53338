//! The HTTP side: binding `--metrics-listen` (its value is parsed and
//! bound as the agent's is, by `jr_agent::metrics_http`), and serving
//! `/metrics` and `/healthz` with axum until shutdown.
//!
//! The default address (`127.0.0.1:7071`) is a convenience, not a
//! promise: when it is taken (a second server on the same machine, or
//! tests running side by side) the server warns and runs without the
//! endpoint. An address given explicitly must bind, or the server does
//! not start.

use super::health::Health;
use super::scrape::Scrape;
use super::Counters;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Default of `--metrics-listen`.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:7071";

use jr_agent::metrics_http::TEXT_FORMAT;
pub use jr_agent::metrics_http::{parse_listen, ListenSpec};

/// A bound metrics socket.
pub struct MetricsListener {
    listener: TcpListener,
    addr: SocketAddr,
}

impl MetricsListener {
    /// Binds what `spec` asks for; `Ok(None)` when it is off, or when the
    /// default address is taken (with a warning).
    pub async fn bind(
        spec: ListenSpec,
    ) -> Result<Option<MetricsListener>, (SocketAddr, std::io::Error)> {
        let asked = match spec {
            ListenSpec::Off => return Ok(None),
            ListenSpec::Default(a) | ListenSpec::Given(a) => a,
        };
        let Some(listener) = jr_agent::metrics_http::bind_spec(spec).await? else {
            return Ok(None);
        };
        let addr = listener.local_addr().map_err(|e| (asked, e))?;
        Ok(Some(MetricsListener { listener, addr }))
    }

    /// The bound address (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// What the endpoint serves.
pub struct MetricsServer {
    registry: Registry,
    scrape: Arc<Scrape>,
    health: Health,
}

impl MetricsServer {
    /// The registry of `counters` plus the scrape-time series of `scrape`.
    pub fn new(counters: &Counters, scrape: Scrape, health: Health) -> MetricsServer {
        let mut registry = Registry::default();
        counters.register(&mut registry);
        let scrape = Arc::new(scrape);
        registry.register_collector(Box::new(scrape.clone()));
        MetricsServer {
            registry,
            scrape,
            health,
        }
    }

    /// The text `/metrics` answers with, after refreshing the scrape-time
    /// series.
    pub async fn render(&self) -> Result<String, std::fmt::Error> {
        self.scrape.refresh().await;
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// Serves until `shutdown`.
    pub async fn serve(self, listener: MetricsListener, shutdown: CancellationToken) {
        let addr = listener.addr;
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(healthz))
            .with_state(Arc::new(self));
        let served = axum::serve(listener.listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(%addr, error = %e, "the metrics endpoint failed");
        }
    }
}

async fn metrics(State(s): State<Arc<MetricsServer>>) -> impl IntoResponse {
    match s.render().await {
        Ok(text) => (StatusCode::OK, [(header::CONTENT_TYPE, TEXT_FORMAT)], text),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "cannot encode the metrics\n".to_owned(),
        ),
    }
}

async fn healthz(State(s): State<Arc<MetricsServer>>) -> impl IntoResponse {
    match s.health.check().await {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_values() {
        let d = "127.0.0.1:7071";
        assert_eq!(
            parse_listen(None, d),
            Ok(ListenSpec::Default(d.parse().unwrap()))
        );
        assert_eq!(parse_listen(Some("none"), d), Ok(ListenSpec::Off));
        assert_eq!(parse_listen(Some(""), d), Ok(ListenSpec::Off));
        assert_eq!(
            parse_listen(Some("0.0.0.0:9"), d),
            Ok(ListenSpec::Given("0.0.0.0:9".parse().unwrap()))
        );
        assert!(parse_listen(Some("localhost"), d)
            .unwrap_err()
            .contains("localhost"));
    }

    #[test]
    fn the_option_comes_from_flag_or_file() {
        use crate::config::ServerConfig;
        let c = ServerConfig::load_from(["jr-server"]).unwrap();
        assert_eq!(
            c.metrics_spec().unwrap(),
            ListenSpec::Default(DEFAULT_METRICS_LISTEN.parse().unwrap())
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jr-server.toml");
        std::fs::write(&path, "metrics-listen = \"none\"\n").unwrap();
        let p = path.to_str().unwrap();
        let c = ServerConfig::load_from(["jr-server", "--config", p]).unwrap();
        assert_eq!(c.metrics_spec().unwrap(), ListenSpec::Off);
        let c =
            ServerConfig::load_from(["jr-server", "--config", p, "--metrics-listen", "[::1]:9"])
                .unwrap();
        assert_eq!(
            c.metrics_spec().unwrap(),
            ListenSpec::Given("[::1]:9".parse().unwrap())
        );
        let bad = ServerConfig {
            metrics_listen: Some("port 9".into()),
            ..ServerConfig::default()
        };
        let err = bad.validate().unwrap_err().to_string();
        assert!(
            err.contains("--metrics-listen") && err.contains("port 9"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_taken_default_is_skipped_but_a_given_address_fails() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        assert!(MetricsListener::bind(ListenSpec::Default(addr))
            .await
            .unwrap()
            .is_none());
        assert!(MetricsListener::bind(ListenSpec::Given(addr))
            .await
            .is_err());
        let free = MetricsListener::bind(ListenSpec::Given("127.0.0.1:0".parse().unwrap()))
            .await
            .unwrap()
            .unwrap();
        assert_ne!(free.local_addr().port(), 0);
    }
}
