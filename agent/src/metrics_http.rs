//! The agent's HTTP endpoint (`--metrics-listen`, default
//! `127.0.0.1:7072`): `/metrics` in the Prometheus text format, exporting
//! the counters of [`Metrics`], and `/healthz`.
//!
//! `/healthz` answers 200 while a session with the server is established
//! and 503, with the latest failure, while it is not: an agent that cannot
//! reach its server keeps the journal as its buffer and loses nothing, but
//! an operator wants to know. Use it for alerting or readiness, not as a
//! liveness probe: restarting the agent does not bring a server back.
//!
//! The default address is a convenience: when it is taken (several agents
//! on one machine) the agent warns once and runs without the endpoint. An
//! address given explicitly must bind, or the agent does not start.
//! prometheus-client encodes the series (see the server's `metrics`
//! module for why that crate); axum serves them.

use crate::head::HeadGauge;
use crate::metrics::{Exported, Metrics};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Default of `--metrics-listen`.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:7072";

/// The content type of the Prometheus text format.
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What `--metrics-listen` asks for (the server's option too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenSpec {
    /// `none` or empty: no HTTP endpoint.
    Off,
    /// Not given: the default address, skipped with a warning when taken.
    Default(SocketAddr),
    /// Given: must bind.
    Given(SocketAddr),
}

/// Parses the option's value (`None` when not given); `default` is the
/// binary's own default address.
pub fn parse_listen(value: Option<&str>, default: &str) -> Result<ListenSpec, String> {
    match value.map(str::trim) {
        None => default
            .parse()
            .map(ListenSpec::Default)
            .map_err(|e| format!("{default:?}: {e}")),
        Some("") | Some("none") => Ok(ListenSpec::Off),
        Some(s) => s
            .parse()
            .map(ListenSpec::Given)
            .map_err(|e| format!("{s:?} is not an address like {default} (or `none`): {e}")),
    }
}

/// Binds what `spec` asks for; `Ok(None)` when off or when the default
/// address is taken (with a warning). The error names the address.
pub async fn bind_spec(
    spec: ListenSpec,
) -> Result<Option<TcpListener>, (SocketAddr, std::io::Error)> {
    let (addr, given) = match spec {
        ListenSpec::Off => return Ok(None),
        ListenSpec::Default(a) => (a, false),
        ListenSpec::Given(a) => (a, true),
    };
    match TcpListener::bind(addr).await {
        Ok(l) => Ok(Some(l)),
        Err(e) if !given => {
            tracing::warn!(%addr, error = %e, "the default metrics address is not available; \
                running without /metrics and /healthz (give --metrics-listen ADDR or `none`)");
            Ok(None)
        }
        Err(e) => Err((addr, e)),
    }
}

/// [`bind_spec`] with the address and the option in the error.
pub async fn bind(spec: ListenSpec) -> std::io::Result<Option<TcpListener>> {
    bind_spec(spec).await.map_err(|(addr, e)| {
        std::io::Error::new(
            e.kind(),
            format!("cannot serve metrics on {addr} (--metrics-listen): {e}"),
        )
    })
}

struct Endpoint {
    registry: Registry,
    metrics: Arc<Metrics>,
    server: String,
}

/// Serves `/metrics` and `/healthz` on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    head: Arc<HeadGauge>,
    server: String,
    shutdown: CancellationToken,
) {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Exported {
        metrics: metrics.clone(),
        head,
    }));
    let app = Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(healthz))
        .with_state(Arc::new(Endpoint {
            registry,
            metrics,
            server,
        }));
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "the metrics endpoint failed");
    }
}

async fn render(State(s): State<Arc<Endpoint>>) -> impl IntoResponse {
    let mut out = String::new();
    match prometheus_client::encoding::prometheus_text::encode(&mut out, &s.registry) {
        Ok(()) => (StatusCode::OK, [(header::CONTENT_TYPE, TEXT_FORMAT)], out),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "cannot encode the metrics\n".to_owned(),
        ),
    }
}

async fn healthz(State(s): State<Arc<Endpoint>>) -> impl IntoResponse {
    if s.metrics.connected.load(Ordering::Relaxed) {
        return (StatusCode::OK, format!("ok: connected to {}\n", s.server));
    }
    let why = match s.metrics.last_error() {
        e if e.is_empty() => "connecting".to_owned(),
        e => e,
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("not connected to {}: {why}\n", s.server),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_values() {
        assert!(matches!(
            parse_listen(None, DEFAULT_METRICS_LISTEN),
            Ok(ListenSpec::Default(_))
        ));
        assert_eq!(
            parse_listen(Some("none"), DEFAULT_METRICS_LISTEN),
            Ok(ListenSpec::Off)
        );
        assert_eq!(
            parse_listen(Some("0.0.0.0:7072"), DEFAULT_METRICS_LISTEN),
            Ok(ListenSpec::Given("0.0.0.0:7072".parse().unwrap()))
        );
        assert!(parse_listen(Some("everywhere"), DEFAULT_METRICS_LISTEN).is_err());
    }

    #[test]
    fn the_option_comes_from_flag_or_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jr-agent.toml");
        std::fs::write(&path, "metrics-listen = \"0.0.0.0:7072\"\n").unwrap();
        let p = path.to_str().unwrap();
        let c = crate::cli::load_from(["jr-agent", "--config", p]).unwrap();
        assert_eq!(c.metrics_listen.as_deref(), Some("0.0.0.0:7072"));
        let c =
            crate::cli::load_from(["jr-agent", "--config", p, "--metrics-listen", "none"]).unwrap();
        assert_eq!(
            parse_listen(c.metrics_listen.as_deref(), DEFAULT_METRICS_LISTEN),
            Ok(ListenSpec::Off)
        );
        let c = crate::cli::load_from(["jr-agent", "--metrics-listen", "nowhere"]).unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("--metrics-listen"), "{err}");
    }

    #[tokio::test]
    async fn a_taken_default_is_skipped_but_a_given_address_fails() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        assert!(bind(ListenSpec::Default(addr)).await.unwrap().is_none());
        let err = bind(ListenSpec::Given(addr)).await.unwrap_err();
        assert!(err.to_string().contains("--metrics-listen"), "{err}");
    }

    #[test]
    fn every_counter_and_gauge_is_encoded() {
        let m = Arc::new(Metrics::default());
        let head = Arc::new(HeadGauge::default());
        Metrics::add(&m.read, 5);
        Metrics::add(&m.acknowledged, 3);
        let _c = m.connected();
        let mut r = Registry::default();
        r.register_collector(Box::new(Exported {
            metrics: m.clone(),
            head: head.clone(),
        }));
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &r).unwrap();
        assert!(out.contains("jr_agent_entries_read_total 5\n"), "{out}");
        assert!(
            out.contains("jr_agent_entries_acknowledged_total 3\n"),
            "{out}"
        );
        assert!(out.contains("jr_agent_connected 1\n"), "{out}");
        assert!(!out.contains("jr_agent_lag_seconds"), "{out}");
        head.set_acked(10_000_000);
        head.set_head(11_500_000);
        out.clear();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &r).unwrap();
        assert!(out.contains("jr_agent_lag_seconds 1.5\n"), "{out}");
        for (name, _, _) in crate::metrics::SERIES {
            assert!(out.contains(name), "{name} missing:\n{out}");
        }
    }
}
