//! The connection to jr-server: plain HTTP/2 only to a loopback address
//! (or with `--insecure`), TLS for `https://` URLs with the system trust
//! store plus `--ca`, a client certificate for mutual TLS (`--cert`,
//! `--key`), and a bearer token (`--token`, `--token-file`) sent as the
//! `authorization` metadata of every call.
//!
//! Files are read each time a session connects, so a renewed certificate
//! or rotated token is picked up at the next reconnect.

use crate::config::AgentConfig;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use thiserror::Error;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

#[derive(Debug, Error)]
pub enum ChannelError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid server URL {url:?}: {source}")]
    Url {
        url: String,
        source: tonic::transport::Error,
    },
    #[error("TLS setup for {url}: {source}")]
    Tls {
        url: String,
        source: tonic::transport::Error,
    },
    #[error("the token in {0} is empty or holds characters not allowed in a header")]
    BadToken(String),
}

/// Whether `host` (as a URL gives it, IPv6 in brackets) is this machine.
pub fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Why `url` may not be used, if it may not: plain text to another
/// machine without `insecure`, or a scheme other than http/https.
pub fn check_url(url: &str, insecure: bool) -> Result<(), String> {
    let uri: tonic::codegen::http::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let Some(host) = uri.host() else {
        return Err("no host".into());
    };
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if insecure || is_loopback_host(host) => Ok(()),
        Some("http") => Err(format!(
            "plain http:// to {host}, which is not loopback, would send logs and \
             credentials unencrypted: use https:// or give --insecure"
        )),
        _ => Err("expected http://HOST:PORT or https://HOST:PORT".into()),
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, ChannelError> {
    std::fs::read(path).map_err(|source| ChannelError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// Whether the system trust store has any certificate (looked up once).
fn system_roots_exist() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| !rustls_native_certs::load_native_certs().certs.is_empty())
}

/// TLS and credential options shared by every client of jr-server.
#[derive(Debug, Clone, Default)]
pub struct ClientAuth {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
}

impl ClientAuth {
    /// The options of an agent configuration.
    pub fn of(cfg: &AgentConfig) -> ClientAuth {
        ClientAuth {
            ca: cfg.ca.clone(),
            cert: cfg.cert.clone(),
            key: cfg.key.clone(),
            token: cfg.token.clone(),
            token_file: cfg.token_file.clone(),
        }
    }

    /// An endpoint for `url`, with TLS set up for `https://`.
    pub fn endpoint(&self, url: &str) -> Result<Endpoint, ChannelError> {
        let endpoint =
            Endpoint::from_shared(url.to_owned()).map_err(|source| ChannelError::Url {
                url: url.to_owned(),
                source,
            })?;
        if !url.starts_with("https://") {
            return Ok(endpoint);
        }
        let mut tls = ClientTlsConfig::new();
        if self.ca.is_none() || system_roots_exist() {
            tls = tls.with_native_roots();
        }
        if let Some(ca) = &self.ca {
            tls = tls.ca_certificate(Certificate::from_pem(read("--ca", ca)?));
        }
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            tls = tls.identity(Identity::from_pem(
                read("--cert", cert)?,
                read("--key", key)?,
            ));
        }
        endpoint
            .tls_config(tls)
            .map_err(|source| ChannelError::Tls {
                url: url.to_owned(),
                source,
            })
    }

    /// The `authorization` metadata value, when a token is configured.
    pub fn bearer(&self) -> Result<Option<MetadataValue<Ascii>>, ChannelError> {
        let (token, origin) = match (&self.token, &self.token_file) {
            (Some(t), _) => (t.clone(), "--token".to_owned()),
            (None, Some(path)) => {
                let bytes = read("--token-file", path)?;
                (
                    String::from_utf8_lossy(&bytes).into_owned(),
                    path.display().to_string(),
                )
            }
            (None, None) => return Ok(None),
        };
        let token = token.trim();
        if token.is_empty() {
            return Err(ChannelError::BadToken(origin));
        }
        format!("Bearer {token}")
            .parse()
            .map(Some)
            .map_err(|_| ChannelError::BadToken(origin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_only_to_loopback() {
        assert!(check_url("http://127.0.0.1:7070", false).is_ok());
        assert!(check_url("http://[::1]:7070", false).is_ok());
        assert!(check_url("http://localhost:7070", false).is_ok());
        let e = check_url("http://central:7070", false).unwrap_err();
        assert!(
            e.contains("not loopback") && e.contains("--insecure"),
            "{e}"
        );
        assert!(check_url("http://10.0.0.1:7070", true).is_ok());
        assert!(check_url("https://central:7070", false).is_ok());
        assert!(check_url("ftp://central:7070", false).is_err());
    }

    #[test]
    fn tokens_become_bearer_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret-token-0123456789\n").unwrap();
        let a = ClientAuth {
            token_file: Some(path.clone()),
            ..ClientAuth::default()
        };
        assert_eq!(
            a.bearer().unwrap().unwrap().to_str().unwrap(),
            "Bearer s3cret-token-0123456789"
        );
        std::fs::write(&path, "\n").unwrap();
        assert!(a.bearer().unwrap_err().to_string().contains("empty"));
        assert!(ClientAuth::default().bearer().unwrap().is_none());
    }
}
