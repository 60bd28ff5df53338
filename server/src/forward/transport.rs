//! One TCP or TLS connection to an endpoint, for stream sinks.
//!
//! Logentries never answers on its data port, so "written" cannot be
//! confirmed by the protocol. Two things stand in for it:
//!
//! - before every write, a read that must find nothing: an end of stream
//!   or an error means the peer closed the connection (idle timeouts,
//!   restarts), and writing into it would lose the write;
//! - after a write, [`Conn::confirm`] waits until the kernel's send queue
//!   is empty (`TIOCOUTQ`), that is until the peer's TCP acknowledged every
//!   byte. Bytes that only reached our own send buffer are not delivered:
//!   a position advanced on them would lose them when the peer goes away.

use super::sink::SinkError;
use std::io;
use std::os::fd::AsRawFd as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// Longest a connect (TCP and TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest a write may block: an endpoint that takes no data for this long
/// is treated as down.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest the peer may take to acknowledge what was written.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// Where to connect and how.
#[derive(Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub tls: Option<Arc<ClientConfig>>,
}

impl Endpoint {
    pub fn describe(&self) -> String {
        let scheme = if self.tls.is_some() { "tls" } else { "tcp" };
        format!("{scheme}://{}:{}", self.host, self.port)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read CA file {path}: {source}")]
    CaFile {
        path: std::path::PathBuf,
        source: tokio_rustls::rustls::pki_types::pem::Error,
    },
    #[error("CA file {path}: {source}")]
    BadCa {
        path: std::path::PathBuf,
        source: tokio_rustls::rustls::Error,
    },
    #[error("CA file {0} holds no certificate")]
    EmptyCa(std::path::PathBuf),
    #[error("TLS setup: {0}")]
    Rustls(#[from] tokio_rustls::rustls::Error),
}

/// A TLS client configuration trusting the system's certificate
/// authorities and those of `ca_file`.
pub fn tls_config(ca_file: Option<&std::path::Path>) -> Result<Arc<ClientConfig>, TlsSetupError> {
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!(error = %e, "a system certificate could not be loaded");
    }
    let (_added, _ignored) = roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let mut n = 0;
        for cert in CertificateDer::pem_file_iter(path).map_err(|source| TlsSetupError::CaFile {
            path: path.to_owned(),
            source,
        })? {
            let cert = cert.map_err(|source| TlsSetupError::CaFile {
                path: path.to_owned(),
                source,
            })?;
            roots.add(cert).map_err(|source| TlsSetupError::BadCa {
                path: path.to_owned(),
                source,
            })?;
            n += 1;
        }
        if n == 0 {
            return Err(TlsSetupError::EmptyCa(path.to_owned()));
        }
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// An open connection.
pub struct Conn {
    stream: Stream,
}

impl Conn {
    /// Resolves, connects and (for TLS) shakes hands.
    pub async fn open(ep: &Endpoint) -> Result<Conn, SinkError> {
        tokio::time::timeout(CONNECT_TIMEOUT, Self::open_inner(ep))
            .await
            .map_err(|_| {
                SinkError::Timeout(format!(
                    "no connection to {} within {CONNECT_TIMEOUT:?}",
                    ep.describe()
                ))
            })?
    }

    async fn open_inner(ep: &Endpoint) -> Result<Conn, SinkError> {
        let addrs: Vec<_> = tokio::net::lookup_host((ep.host.as_str(), ep.port))
            .await
            .map_err(|source| SinkError::Resolve {
                host: ep.host.clone(),
                source,
            })?
            .collect();
        let mut last = None;
        let mut tcp = None;
        for addr in &addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = Some((addr.to_string(), e)),
            }
        }
        let tcp = match (tcp, last) {
            (Some(t), _) => t,
            (None, Some((addr, source))) => return Err(SinkError::Connect { addr, source }),
            (None, None) => {
                return Err(SinkError::NoAddress {
                    host: ep.host.clone(),
                })
            }
        };
        // Lines are written in whole buffers; waiting to coalesce them only
        // delays the acknowledgement `confirm` waits for.
        tcp.set_nodelay(true).map_err(SinkError::Write)?;
        let stream = match &ep.tls {
            None => Stream::Plain(tcp),
            Some(config) => {
                let name = ServerName::try_from(ep.host.clone()).map_err(|e| SinkError::Tls {
                    host: ep.host.clone(),
                    source: io::Error::new(io::ErrorKind::InvalidInput, e),
                })?;
                let tls = TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|source| SinkError::Tls {
                        host: ep.host.clone(),
                        source,
                    })?;
                Stream::Tls(Box::new(tls))
            }
        };
        Ok(Conn { stream })
    }

    fn tcp(&self) -> &TcpStream {
        match &self.stream {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }

    /// True when the peer has closed or reset the connection, or sent
    /// something (which a Logentries endpoint never does). Does not wait.
    pub fn peer_gone(&mut self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut byte = [0u8; 256];
        let mut buf = ReadBuf::new(&mut byte);
        let polled = match &mut self.stream {
            Stream::Plain(s) => Pin::new(s).poll_read(&mut cx, &mut buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(&mut cx, &mut buf),
        };
        matches!(polled, Poll::Ready(_))
    }

    /// Writes `buf` whole and flushes it.
    pub async fn write(&mut self, buf: &[u8]) -> Result<(), SinkError> {
        if self.peer_gone() {
            return Err(SinkError::Closed);
        }
        let io = async {
            match &mut self.stream {
                Stream::Plain(s) => {
                    s.write_all(buf).await?;
                    s.flush().await
                }
                Stream::Tls(s) => {
                    s.write_all(buf).await?;
                    s.flush().await
                }
            }
        };
        match tokio::time::timeout(WRITE_TIMEOUT, io).await {
            Ok(r) => r.map_err(SinkError::Write),
            Err(_) => Err(SinkError::Timeout(format!(
                "the endpoint took no data for {WRITE_TIMEOUT:?}"
            ))),
        }
    }

    /// Waits until the peer acknowledged every byte written.
    pub async fn confirm(&mut self) -> Result<(), SinkError> {
        let started = tokio::time::Instant::now();
        let mut polls = 0u32;
        loop {
            if unacked(self.tcp()).map_err(SinkError::Write)? == 0 {
                return Ok(());
            }
            if self.peer_gone() {
                return Err(SinkError::Closed);
            }
            if started.elapsed() > CONFIRM_TIMEOUT {
                return Err(SinkError::Timeout(format!(
                    "the endpoint acknowledged nothing for {CONFIRM_TIMEOUT:?}"
                )));
            }
            polls += 1;
            if polls < 16 {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

/// Bytes in the socket's send queue not yet acknowledged by the peer.
fn unacked(s: &TcpStream) -> io::Result<u32> {
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ on sockets) writes one c_int through the
    // pointer, which points at a live local; the descriptor is owned by
    // `s` for the duration of the call.
    let r = unsafe { libc::ioctl(s.as_raw_fd(), libc::TIOCOUTQ, &mut n as *mut libc::c_int) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u32::try_from(n).unwrap_or(0))
}
