//! Who may call what on the gRPC port.
//!
//! Two roles: **agent** may call `Ingest` only, **reader** may call
//! `Query` and `Routes`; gRPC health and reflection are open to everyone.
//! A caller proves its roles with a bearer token from `--tokens-file`
//! ([`tokens`]) or with a client certificate signed by `--tls-client-ca`
//! ([`cert`]); a token, when presented, takes precedence. An agent's
//! credential may bind it to one machine id; the ingest service then
//! refuses a Hello for any other machine.
//!
//! Without `--tokens-file` and `--tls-client-ca` every call is allowed
//! (plain text is then only served on loopback, or with `--insecure`).
//!
//! [`tls`] builds the rustls configuration and accepts connections;
//! [`layer`] is the tower layer that checks every request; [`reload`]
//! re-reads certificates and tokens when their files change or on SIGHUP.

pub mod cert;
pub mod layer;
pub mod reload;
pub mod tls;
pub mod tokens;

use serde::Deserialize;
use std::fmt;
use std::sync::{Arc, RwLock};
use tokens::Tokens;
use tonic::codegen::http::{Extensions, HeaderMap};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::Status;

/// Why the security options could not be put in force.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Tokens(#[from] tokens::TokensError),
    #[error("cannot watch certificates and tokens for reload: {0}")]
    Watch(std::io::Error),
}

/// TLS and authentication as configured, loaded before the socket is
/// bound so that a bad file stops the start with a clear error.
pub struct Security {
    pub tls: Option<(tls::TlsFiles, Arc<tls::Reloadable>)>,
    pub tokens_file: Option<std::path::PathBuf>,
    pub auth: Auth,
}

impl Security {
    pub fn load(config: &crate::config::ServerConfig) -> Result<Security, SecurityError> {
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => {
                let files = tls::TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: config.tls_client_ca.clone(),
                };
                let current = tls::Reloadable::new(tls::load(&files)?);
                Some((files, current))
            }
            _ => None,
        };
        let tokens = config
            .tokens_file
            .as_deref()
            .map(Tokens::load)
            .transpose()?;
        if let Some(t) = &tokens {
            tracing::info!(tokens = t.len(), "bearer tokens loaded");
        }
        let client_certs = match (&tls, &config.tls_client_ca) {
            (Some((_, current)), Some(_)) => Some(current.clone()),
            _ => None,
        };
        let auth = Auth::new(tokens, client_certs);
        Ok(Security {
            tls,
            tokens_file: config.tokens_file.clone(),
            auth,
        })
    }

    /// Starts watching the files (interval and SIGHUP) until `shutdown`.
    pub fn watch(
        &self,
        interval: std::time::Duration,
        shutdown: tokio_util::sync::CancellationToken,
        tasks: &tokio_util::task::TaskTracker,
    ) -> Result<(), SecurityError> {
        let watched = reload::Watched {
            tls: self.tls.clone(),
            tokens: self.tokens_file.clone().map(|p| (p, self.auth.clone())),
        };
        reload::spawn(watched, interval, shutdown, tasks).map_err(SecurityError::Watch)
    }
}

/// What a credential allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Ships journals: `Ingest`.
    Agent,
    /// Reads: `Query` and `Routes`.
    Reader,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Agent => "agent",
            Role::Reader => "reader",
        })
    }
}

/// An authenticated caller; put into the request's extensions for the
/// services (the ingest service reads `machine_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `token NAME` or `certificate CN=…`: safe to log and to show.
    pub name: String,
    pub roles: Vec<Role>,
    /// The only machine id this agent may write as.
    pub machine_id: Option<String>,
}

/// What a gRPC method needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Open,
    Needs(Role),
}

/// The access rule of a request path (`/package.Service/Method`).
/// Anything that is neither open nor `Ingest` needs the reader role, so
/// a service added later is closed until it is given a rule here.
pub fn access(path: &str) -> Access {
    const OPEN: [&str; 3] = [
        "/grpc.health.v1.Health/",
        "/grpc.reflection.v1.ServerReflection/",
        "/grpc.reflection.v1alpha.ServerReflection/",
    ];
    if OPEN.iter().any(|p| path.starts_with(p)) {
        Access::Open
    } else if path.starts_with("/journal_router.v1.Ingest/") {
        Access::Needs(Role::Agent)
    } else {
        Access::Needs(Role::Reader)
    }
}

/// The server's authentication state, shared by the layer and the
/// reloader; cheap to clone.
#[derive(Clone, Default)]
pub struct Auth {
    inner: Arc<State>,
}

#[derive(Default)]
struct State {
    /// `--tokens-file` loaded; `None` when tokens are not in use.
    tokens: Option<RwLock<Arc<Tokens>>>,
    /// `--tls-client-ca` given: client certificates carry roles, and
    /// their chains are verified here.
    client_certs: Option<Arc<tls::Reloadable>>,
}

impl Auth {
    /// No authentication: every call is allowed.
    pub fn open() -> Auth {
        Auth::default()
    }

    /// Authentication with these tokens (if any) and client certificates
    /// verified by `client_certs`'s current `--tls-client-ca`.
    pub fn new(tokens: Option<Tokens>, client_certs: Option<Arc<tls::Reloadable>>) -> Auth {
        Auth {
            inner: Arc::new(State {
                tokens: tokens.map(|t| RwLock::new(Arc::new(t))),
                client_certs,
            }),
        }
    }

    /// Whether calls are checked at all.
    pub fn enabled(&self) -> bool {
        self.inner.tokens.is_some() || self.inner.client_certs.is_some()
    }

    /// Replaces the tokens; requests from now on use the new set.
    pub fn set_tokens(&self, tokens: Tokens) {
        if let Some(lock) = &self.inner.tokens {
            *lock.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(tokens);
        }
    }

    fn tokens(&self) -> Option<Arc<Tokens>> {
        self.inner
            .tokens
            .as_ref()
            .map(|l| l.read().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// Decides one request: `Ok(None)` for an open method or with
    /// authentication off, `Ok(Some(principal))` for an allowed caller,
    /// `Err(status)` (UNAUTHENTICATED or PERMISSION_DENIED) otherwise.
    pub fn check(
        &self,
        path: &str,
        headers: &HeaderMap,
        extensions: &Extensions,
    ) -> Result<Option<Principal>, Status> {
        let Access::Needs(role) = access(path) else {
            return Ok(None);
        };
        if !self.enabled() {
            return Ok(None);
        }
        let principal = self.identify(path, headers, extensions)?;
        if !principal.roles.contains(&role) {
            let has = principal
                .roles
                .iter()
                .map(Role::to_string)
                .collect::<Vec<_>>()
                .join(" and ");
            return Err(Status::permission_denied(format!(
                "{} has the {has} role; {path} needs the {role} role",
                principal.name
            )));
        }
        Ok(Some(principal))
    }

    fn identify(
        &self,
        path: &str,
        headers: &HeaderMap,
        extensions: &Extensions,
    ) -> Result<Principal, Status> {
        let tokens = self.tokens();
        if let (Some(tokens), Some(value)) = (&tokens, headers.get("authorization")) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .ok_or_else(|| {
                    Status::unauthenticated("the authorization header is not `Bearer <token>`")
                })?;
            return tokens.find(token).cloned().ok_or_else(|| {
                Status::unauthenticated(
                    "the bearer token is not known to this server (revoked, or mistyped?)",
                )
            });
        }
        if let Some(tls) = &self.inner.client_certs {
            let certs = extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|i| i.peer_certs());
            if let Some(chain) = certs.as_deref().filter(|c| !c.is_empty()) {
                tls.verify_client(chain).map_err(|e| {
                    Status::unauthenticated(format!(
                        "the client certificate is not accepted ({e}); it must be signed by \
                         the server's --tls-client-ca"
                    ))
                })?;
                return cert::principal(&chain[0]).map_err(Status::permission_denied);
            }
        }
        let wanted = match (tokens.is_some(), self.inner.client_certs.is_some()) {
            (true, true) => "a bearer token (--token) or a client certificate signed by the server's --tls-client-ca",
            (true, false) => "a bearer token (--token, sent as `authorization: Bearer <token>`)",
            _ => "a client certificate signed by the server's --tls-client-ca (--cert and --key)",
        };
        Err(Status::unauthenticated(format!(
            "{path} needs {wanted}; none was presented"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn paths_map_to_roles() {
        assert_eq!(access("/grpc.health.v1.Health/Check"), Access::Open);
        assert_eq!(
            access("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            Access::Open
        );
        assert_eq!(
            access("/journal_router.v1.Ingest/Ship"),
            Access::Needs(Role::Agent)
        );
        assert_eq!(
            access("/journal_router.v1.Query/Logs"),
            Access::Needs(Role::Reader)
        );
        assert_eq!(
            access("/journal_router.v1.Routes/ListRoutes"),
            Access::Needs(Role::Reader)
        );
        assert_eq!(access("/something.Else/X"), Access::Needs(Role::Reader));
    }

    #[test]
    fn tokens_decide_and_errors_say_why() {
        let tokens = Tokens::parse(
            "[[tokens]]\nname = \"a\"\ntoken = \"agent-token-0123456789\"\nroles = [\"agent\"]\n",
            Path::new("t.toml"),
        )
        .unwrap();
        let auth = Auth::new(Some(tokens), None);
        let ext = Extensions::new();
        let mut h = HeaderMap::new();
        let e = auth
            .check("/journal_router.v1.Query/Logs", &h, &ext)
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(e.message().contains("bearer token"), "{}", e.message());
        h.insert(
            "authorization",
            "Bearer agent-token-0123456789".parse().unwrap(),
        );
        let p = auth
            .check("/journal_router.v1.Ingest/Ship", &h, &ext)
            .unwrap()
            .unwrap();
        assert_eq!(p.name, "token a");
        let e = auth
            .check("/journal_router.v1.Query/Logs", &h, &ext)
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(
            e.message().contains("needs the reader role"),
            "{}",
            e.message()
        );
        assert_eq!(
            auth.check("/grpc.health.v1.Health/Check", &HeaderMap::new(), &ext)
                .unwrap(),
            None
        );
        h.insert("authorization", "Basic abc".parse().unwrap());
        let e = auth
            .check("/journal_router.v1.Ingest/Ship", &h, &ext)
            .unwrap_err();
        assert!(e.message().contains("Bearer"), "{}", e.message());
        assert_eq!(
            Auth::open()
                .check("/journal_router.v1.Query/Logs", &HeaderMap::new(), &ext)
                .unwrap(),
            None
        );
    }
}
