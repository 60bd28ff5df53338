//! Stand-ins for Logentries (plain TCP, TLS with a CA made here, and an
//! endpoint that accepts and never reads), config files with routes, and
//! a client of the `Routes` service.

#![allow(dead_code)]

use jr_proto::v1::routes_client::RoutesClient;
use jr_proto::v1::{ListRoutesRequest, RouteStatus};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;

pub const TOKEN_A: &str = "aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa";
pub const TOKEN_B: &str = "bbbbbbbb-2222-4222-8222-bbbbbbbbbbbb";

/// Polls `check` every 20 ms, at most `tries` times.
pub async fn eventually(what: &str, tries: u32, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..tries {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not reached after {tries} tries");
}

/// A test certificate authority and a server certificate for `localhost`.
pub struct TestCa {
    pub ca_pem: String,
    cert: rustls::pki_types::CertificateDer<'static>,
    key: Vec<u8>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "journal-router test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        TestCa {
            ca_pem: ca.pem(),
            cert: cert.der().clone(),
            key: key.serialize_der(),
        }
    }

    pub fn write_ca(&self, dir: &Path) -> PathBuf {
        let p = dir.join("test-ca.pem");
        std::fs::write(&p, &self.ca_pem).unwrap();
        p
    }

    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(self.key.clone().into());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.clone()], key)
            .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Plain,
    Tls,
    /// Accepts and never reads.
    Stuck,
}

/// A fake Logentries endpoint that keeps every line it receives.
pub struct Fake {
    pub addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
    accepted: Arc<Mutex<u32>>,
    mode: Mode,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: CancellationToken,
}

impl Fake {
    pub async fn plain() -> Fake {
        Fake::start(Mode::Plain, None).await
    }

    pub async fn tls(ca: &TestCa) -> Fake {
        Fake::start(Mode::Tls, Some(ca.acceptor())).await
    }

    pub async fn stuck() -> Fake {
        Fake::start(Mode::Stuck, None).await
    }

    async fn start(mode: Mode, tls: Option<tokio_rustls::TlsAcceptor>) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut f = Fake {
            addr: listener.local_addr().unwrap(),
            lines: Arc::default(),
            accepted: Arc::default(),
            mode,
            tls,
            stop: CancellationToken::new(),
        };
        f.serve(listener);
        f
    }

    fn serve(&mut self, listener: TcpListener) {
        let stop = CancellationToken::new();
        self.stop = stop.clone();
        let lines = self.lines.clone();
        let accepted = self.accepted.clone();
        let mode = self.mode;
        let tls = self.tls.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let (s, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                };
                *accepted.lock().unwrap() += 1;
                match mode {
                    Mode::Stuck => held.push(s),
                    Mode::Plain => {
                        tokio::spawn(read_lines(s, lines.clone(), stop.clone()));
                    }
                    Mode::Tls => {
                        let acceptor = tls.clone().unwrap();
                        let lines = lines.clone();
                        let stop = stop.clone();
                        tokio::spawn(async move {
                            if let Ok(s) = acceptor.accept(s).await {
                                read_lines(s, lines, stop).await;
                            }
                        });
                    }
                }
            }
        });
    }

    /// Goes away: stops accepting and closes every connection (after
    /// reading what has arrived).
    pub fn down(&self) {
        self.stop.cancel();
    }

    /// Comes back on the same address.
    pub async fn up(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    pub fn connections(&self) -> u32 {
        *self.accepted.lock().unwrap()
    }

    pub async fn wait_for(&self, n: usize) {
        eventually(&format!("{n} lines at {}", self.addr), 3000, async || {
            self.count() >= n
        })
        .await;
    }
}

async fn read_lines<S: tokio::io::AsyncRead + Unpin>(
    mut s: S,
    lines: Arc<Mutex<Vec<String>>>,
    stop: CancellationToken,
) {
    let mut partial = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            biased;
            r = s.read(&mut buf) => match r { Ok(0) | Err(_) => return, Ok(n) => n },
            _ = stop.cancelled() => return,
        };
        partial.extend_from_slice(&buf[..n]);
        let mut got = Vec::new();
        while let Some(i) = partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = partial.drain(..=i).collect();
            got.push(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned());
        }
        lines.lock().unwrap().extend(got);
    }
}

/// A `[[routes]]` table.
pub fn route(
    name: &str,
    token: &str,
    endpoint: SocketAddr,
    tls: Option<&Path>,
    extra: &str,
) -> String {
    let dest = match tls {
        None => format!("{{ token = \"{token}\", endpoint = \"{endpoint}\", tls = false }}"),
        Some(ca) => format!(
            "{{ token = \"{token}\", endpoint = \"localhost:{}\", ca-file = \"{}\" }}",
            endpoint.port(),
            ca.display()
        ),
    };
    format!("[[routes]]\nname = \"{name}\"\ndestination = {dest}\n{extra}\n")
}

pub async fn routes_client(addr: SocketAddr) -> RoutesClient<tonic::transport::Channel> {
    RoutesClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
}

pub async fn list(addr: SocketAddr) -> Vec<RouteStatus> {
    routes_client(addr)
        .await
        .list_routes(ListRoutesRequest {})
        .await
        .unwrap()
        .into_inner()
        .routes
}

pub async fn status(addr: SocketAddr, name: &str) -> RouteStatus {
    list(addr)
        .await
        .into_iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no route {name}"))
}

/// Connects, avoiding the race of a just-started server.
pub async fn connect_tcp(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

/// The `message N` numbers of lines of the form `<token> ... message N`
/// for `token`, in arrival order.
pub fn numbers(lines: &[String], token: &str) -> Vec<u64> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(token)?.strip_prefix(' '))
        .filter_map(|l| l.rsplit_once("message ")?.1.parse().ok())
        .collect()
}

/// Duplicates in `seen`, after checking that every number of `expected`
/// is there and that each first arrival is in increasing order.
pub fn check_complete_in_order(seen: &[u64], expected: impl Iterator<Item = u64>) -> usize {
    let mut firsts = Vec::new();
    let mut set = std::collections::HashSet::new();
    for n in seen {
        if set.insert(*n) {
            firsts.push(*n);
        }
    }
    let want: Vec<u64> = expected.collect();
    let missing: Vec<&u64> = want.iter().filter(|n| !set.contains(n)).collect();
    assert!(
        missing.is_empty(),
        "{} entries never arrived, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        firsts.windows(2).all(|w| w[0] < w[1]),
        "entries arrived out of order"
    );
    seen.len() - set.len()
}

/// The numbers of `host`'s lines for `token`, in arrival order.
pub fn numbers_of(lines: &[String], token: &str, host: &str) -> Vec<u64> {
    let prefix = format!("{token} {host} ");
    let owned: Vec<String> = lines
        .iter()
        .filter(|l| l.starts_with(&prefix))
        .cloned()
        .collect();
    numbers(&owned, token)
}

/// A server with the routes of `toml`, loaded the way `--config` does.
pub async fn server_with(dir: &std::path::Path, toml: &str) -> super::common::TestServer {
    let path = dir.join("server.toml");
    std::fs::write(&path, toml).unwrap();
    let db = dir.join("j.db");
    let config = jr_server::ServerConfig::load_from([
        "jr-server",
        "--config",
        path.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--db",
        db.to_str().unwrap(),
    ])
    .unwrap();
    super::common::TestServer::start(config).await
}
