//! Counting gRPC requests by method without touching the services: a
//! wrapper around a tonic service that increments
//! `jr_server_query_requests_total{kind}` from the request path
//! (`/journal_router.v1.Query/Logs` → `logs`) and passes the request on.

use super::KindLabels;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::task::{Context, Poll};
use tonic::codegen::http;
use tonic::server::NamedService;

/// A service whose requests are counted by method.
#[derive(Debug, Clone)]
pub struct Counted<S> {
    inner: S,
    counts: Family<KindLabels, Counter>,
}

/// Wraps `inner` so that each request counts in `counts`.
pub fn counted<S>(inner: S, counts: &Family<KindLabels, Counter>) -> Counted<S> {
    Counted {
        inner,
        counts: counts.clone(),
    }
}

/// The methods counted by name; anything else (a path a client made up)
/// counts as `other`, so a client cannot grow the series without bound.
const KNOWN: &[&str] = &[
    "logs",
    "hosts",
    "units",
    "stats",
    "gaps",
    "list_routes",
    "replay_route",
];

/// `logs` for `/journal_router.v1.Query/Logs`, `list_routes` for
/// `.../ListRoutes`, `other` for a method not in [`KNOWN`].
pub fn kind_of(path: &str) -> &'static str {
    let method = path.rsplit('/').next().unwrap_or(path);
    let mut snake = String::with_capacity(method.len() + 4);
    for (i, c) in method.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            snake.push('_');
        }
        snake.push(c.to_ascii_lowercase());
    }
    KNOWN
        .iter()
        .find(|k| **k == snake)
        .copied()
        .unwrap_or("other")
}

impl<S, B> tower::Service<http::Request<B>> for Counted<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let kind = kind_of(req.uri().path()).to_owned();
        self.counts.get_or_create(&KindLabels { kind }).inc();
        self.inner.call(req)
    }
}

impl<S: NamedService> NamedService for Counted<S> {
    const NAME: &'static str = S::NAME;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_snake_case_method_names() {
        assert_eq!(kind_of("/journal_router.v1.Query/Logs"), "logs");
        assert_eq!(
            kind_of("/journal_router.v1.Routes/ListRoutes"),
            "list_routes"
        );
        assert_eq!(kind_of("/journal_router.v1.Query/Gaps"), "gaps");
        assert_eq!(kind_of("/journal_router.v1.Query/Made\"Up"), "other");
    }
}
