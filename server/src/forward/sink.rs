//! The destination of a route, behind one small trait.
//!
//! A sink frames rendered lines into bytes ([`Sink::encode`]), keeps one
//! connection, writes whole buffers and confirms them. The route task
//! ([`super::route`]) owns positions, retries and counting, so a new
//! destination (syslog over TLS, HTTP) is one more file implementing
//! [`Sink`], not a change to delivery.

use std::future::Future;
use thiserror::Error;

/// Why a sink could not take a write. Every variant is retried by the
/// route after a backoff; the text is what `jrctl routes` shows.
#[derive(Debug, Error)]
pub enum SinkError {
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error("{host} resolves to no address")]
    NoAddress { host: String },
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("TLS handshake with {host} failed: {source}")]
    Tls {
        host: String,
        source: std::io::Error,
    },
    #[error("connection timed out: {0}")]
    Timeout(String),
    #[error("write failed: {0}")]
    Write(#[source] std::io::Error),
    #[error("the endpoint closed the connection")]
    Closed,
    #[error("not connected")]
    NotConnected,
}

/// A destination for rendered lines.
pub trait Sink: Send + Sync + 'static {
    /// Appends `line` to `out` in the sink's framing; returns how many
    /// lines went out on the wire (more than one when it had to be split).
    fn encode(&self, line: &str, out: &mut Vec<u8>) -> u64;

    /// Connects unless connected.
    fn connect(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Writes `buf` whole and flushes it to the socket.
    fn write(&mut self, buf: &[u8]) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Returns once the peer acknowledged every byte written so far; an
    /// error means the last write may not have arrived.
    fn confirm(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Drops the connection (the next write reconnects).
    fn disconnect(&mut self);

    fn is_connected(&self) -> bool;
}
