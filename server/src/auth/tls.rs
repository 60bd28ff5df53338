//! TLS on the gRPC port: the rustls server configuration built from PEM
//! files (`--tls-cert`, `--tls-key`, `--tls-client-ca`), held behind a
//! lock so that a reload swaps it for new connections, and the accept loop
//! that hands finished handshakes to tonic.
//!
//! With `--tls-client-ca`, the handshake asks for a client certificate
//! and checks that the client holds its key, but leaves the chain to the
//! auth layer ([`Reloadable::verify_client`], the same webpki verifier):
//! a client without a certificate, or with one from another CA, then gets
//! a gRPC status that says so (`UNAUTHENTICATED`) instead of a TLS alert
//! that TLS 1.3 clients often report only as a closed connection; health
//! and reflection stay open to it.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::rustls::client::danger::HandshakeSignatureValid;
use tokio_rustls::rustls::pki_types::UnixTime;
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{
    self, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

/// A handshake that has not finished in this long is dropped, so a client
/// that connects and says nothing holds no slot for long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; accepting waits when all are taken.
const MAX_HANDSHAKES: usize = 256;
/// Finished connections waiting for tonic to pick them up.
const READY_QUEUE: usize = 64;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {path} holds no usable PEM {kind}: {detail}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        kind: &'static str,
        detail: String,
    },
    #[error("--tls-client-ca {path}: {detail}")]
    ClientCa { path: PathBuf, detail: String },
    #[error("--tls-cert {cert} and --tls-key {key} do not make a usable certificate: {detail}")]
    Config {
        cert: PathBuf,
        key: PathBuf,
        detail: String,
    },
}

/// The files TLS is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// Every file whose change calls for a reload.
    pub fn paths(&self) -> Vec<PathBuf> {
        let mut v = vec![self.cert.clone(), self.key.clone()];
        v.extend(self.client_ca.clone());
        v
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

fn certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            path: path.to_owned(),
            kind: "certificate",
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            path: path.to_owned(),
            kind: "certificate",
            detail: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Checks the client's signature in the handshake and defers the chain
/// to [`Reloadable::verify_client`].
#[derive(Debug)]
struct Deferred(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for Deferred {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // The auth layer verifies the chain of every request that relies
        // on the certificate; a certificate is never trusted unverified.
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// One version of the TLS files, loaded.
#[derive(Clone)]
pub struct Loaded {
    pub config: Arc<ServerConfig>,
    /// Verifies client certificate chains against `--tls-client-ca`.
    pub client_verifier: Option<Arc<dyn ClientCertVerifier>>,
}

/// Reads the files and builds a server configuration that offers HTTP/2.
pub fn load(files: &TlsFiles) -> Result<Loaded, TlsError> {
    let chain = certs("--tls-cert", &files.cert)?;
    let key_pem = read("--tls-key", &files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
        what: "--tls-key",
        path: files.key.clone(),
        kind: "private key",
        detail: e.to_string(),
    })?;
    let config_err = |detail: String| TlsError::Config {
        cert: files.cert.clone(),
        key: files.key.clone(),
        detail,
    };
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| config_err(e.to_string()))?;
    let mut client_verifier = None;
    let builder = match &files.client_ca {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for c in certs("--tls-client-ca", path)? {
                roots.add(c).map_err(|e| TlsError::ClientCa {
                    path: path.clone(),
                    detail: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| TlsError::ClientCa {
                    path: path.clone(),
                    detail: e.to_string(),
                })?;
            client_verifier = Some(verifier.clone());
            builder.with_client_cert_verifier(Arc::new(Deferred(verifier)))
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| config_err(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Loaded {
        config: Arc::new(config),
        client_verifier,
    })
}

/// The configuration new connections get; [`Reloadable::set`] swaps it.
pub struct Reloadable {
    current: RwLock<Loaded>,
}

impl Reloadable {
    pub fn new(loaded: Loaded) -> Arc<Reloadable> {
        Arc::new(Reloadable {
            current: RwLock::new(loaded),
        })
    }

    fn loaded(&self) -> Loaded {
        // A writer that panicked left a complete value behind (assignment
        // is the only write), so a poisoned lock still holds a usable one.
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn current(&self) -> Arc<ServerConfig> {
        self.loaded().config
    }

    pub fn set(&self, loaded: Loaded) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = loaded;
    }

    /// Verifies a client's certificate chain (leaf first) against the
    /// current `--tls-client-ca`; the error says why it is not accepted.
    pub fn verify_client(&self, chain: &[CertificateDer<'static>]) -> Result<(), String> {
        let Some(verifier) = self.loaded().client_verifier else {
            return Err("this server accepts no client certificates".into());
        };
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Err("no client certificate".into());
        };
        verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// Accepts TCP connections on `listener` and yields them once their TLS
/// handshake (with the configuration current at accept time) finished.
/// Handshakes run concurrently, so a slow client does not hold up others.
/// The listener closes when the returned stream is dropped.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<Reloadable>,
) -> ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    let (tx, rx) = mpsc::channel(READY_QUEUE);
    tokio::spawn(async move {
        let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        loop {
            let permit = tokio::select! {
                _ = tx.closed() => break,
                p = handshakes.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let (tcp, peer) = tokio::select! {
                _ = tx.closed() => break,
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait a
                        // little instead of spinning on the error.
                        tracing::warn!(error = %e, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = TlsAcceptor::from(tls.current());
            let tx = tx.clone();
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
