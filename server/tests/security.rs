//! TLS, mutual TLS and bearer tokens on the gRPC port, with certificates
//! made by the test: the real jr-agent ships a fixture journal over TLS;
//! callers without the right certificate or token are refused with a
//! status that says why; roles and machine bindings hold; certificates and
//! tokens reload without a restart; plain text is for loopback only; the
//! session limit answers RESOURCE_EXHAUSTED.

mod common;

use common::*;
use jr_agent::channel::ClientAuth;
use jr_agent::AgentConfig;
use jr_proto::v1::ingest_client::IngestClient;
use jr_proto::v1::query_client::QueryClient;
use jr_proto::v1::ship_request::Kind as In;
use jr_proto::v1::{Hello, HostsRequest, ShipRequest, StatsRequest};
use jr_tests::pki::{CertFiles, Pki};
use jr_tests::{Fixture, Host, Layout};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const ENTRIES: usize = 40;

/// A fixture journal of one host in `dir/journal`.
fn journal(dir: &Path, host: &Host) -> PathBuf {
    let journals = dir.join("journal");
    std::fs::create_dir_all(&journals).unwrap();
    let mut fx = Fixture::new();
    for i in 0..ENTRIES {
        fx.entry(host)
            .unit("secure.service")
            .message(format!("secret {i}"));
    }
    fx.write_new(&journals.join("system.journal"), Layout::Default);
    journals
}

fn url(server: &TestServer) -> String {
    format!("https://127.0.0.1:{}", server.addr.port())
}

/// A connected channel with these credentials, or why it failed.
async fn channel(url: &str, auth: &ClientAuth) -> Result<Channel, String> {
    auth.endpoint(url)
        .map_err(|e| e.to_string())?
        .connect_timeout(WAIT)
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

fn with_token(auth: &ClientAuth, token: &str) -> ClientAuth {
    ClientAuth {
        token: Some(token.to_owned()),
        ..auth.clone()
    }
}

fn bearer<T>(auth: &ClientAuth, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(b) = auth.bearer().unwrap() {
        r.metadata_mut().insert("authorization", b);
    }
    r
}

/// `Query.Stats` with these credentials.
async fn stats(url: &str, auth: &ClientAuth) -> Result<(), Status> {
    let ch = channel(url, auth).await.map_err(Status::unavailable)?;
    QueryClient::new(ch)
        .stats(bearer(auth, StatsRequest::default()))
        .await
        .map(drop)
}

/// Opens `Ingest.Ship` and says Hello as `machine_id`; the first answer.
async fn hello(url: &str, auth: &ClientAuth, machine_id: &str) -> Result<(), Status> {
    let ch = channel(url, auth).await.map_err(Status::unavailable)?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(ShipRequest {
        kind: Some(In::Hello(Hello {
            machine_id: machine_id.into(),
            hostname: "test".into(),
            boot_id: BOOT.into(),
            agent_version: "test".into(),
        })),
    })
    .await
    .unwrap();
    let mut inbound = IngestClient::new(ch)
        .ship(bearer(auth, ReceiverStream::new(rx)))
        .await?
        .into_inner();
    let first = tokio::time::timeout(WAIT, inbound.message())
        .await
        .expect("an answer in time")?;
    drop(tx);
    assert!(first.is_some(), "the server answers Hello");
    Ok(())
}

/// Ships the fixture with the real agent library; the number of entries
/// the agent saw acknowledged.
async fn ship(server_url: &str, journals: &Path, auth: &ClientAuth) -> u64 {
    let config = AgentConfig {
        server: server_url.to_owned(),
        directory: Some(journals.to_owned()),
        no_follow: true,
        ca: auth.ca.clone(),
        cert: auth.cert.clone(),
        key: auth.key.clone(),
        token: auth.token.clone(),
        token_file: auth.token_file.clone(),
        metrics_listen: Some("none".into()),
        ..AgentConfig::default()
    };
    let summary = tokio::time::timeout(WAIT, jr_agent::run(config, CancellationToken::new()))
        .await
        .expect("the agent finishes in time")
        .expect("the agent ships");
    summary.metrics.acknowledged
}

fn expect_code(r: Result<(), Status>, code: Code, words: &[&str]) -> String {
    let s = r.expect_err("the call is refused");
    assert_eq!(s.code(), code, "{s:?}");
    for w in words {
        assert!(s.message().contains(w), "{w:?} not in {:?}", s.message());
    }
    s.message().to_owned()
}

#[tokio::test]
async fn mutual_tls_roles_and_machine_binding() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "main");
    let foreign = Pki::new(dir.path(), "foreign");
    let host = Host::new("secure-1");
    let journals = journal(dir.path(), &host);
    let server_cert = pki.server("server");
    let mut cfg = config(&dir.path().join("j.db"));
    cfg.tls_cert = Some(server_cert.cert.clone());
    cfg.tls_key = Some(server_cert.key.clone());
    cfg.tls_client_ca = Some(pki.ca.clone());
    let server = TestServer::start(cfg).await;
    let url = url(&server);
    let client = |c: CertFiles| ClientAuth {
        ca: Some(pki.ca.clone()),
        cert: Some(c.cert),
        key: Some(c.key),
        ..ClientAuth::default()
    };
    let agent = client(pki.client("agent", &[&format!("jr:agent:{}", host.machine_id)]));
    let reader = client(pki.client("reader", &["jr:reader"]));
    let anonymous = ClientAuth {
        ca: Some(pki.ca.clone()),
        ..ClientAuth::default()
    };

    // The real agent ships over mutual TLS.
    assert_eq!(ship(&url, &journals, &agent).await, ENTRIES as u64);
    assert_eq!(count(&server.read().await).await, ENTRIES as i64);

    // A reader reads; its role is all it has.
    stats(&url, &reader).await.expect("a reader may query");
    let ch = channel(&url, &reader).await.unwrap();
    let hosts = QueryClient::new(ch)
        .hosts(HostsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(hosts.hosts.iter().any(|h| h.hostname == "secure-1"));
    let m = expect_code(
        hello(&url, &reader, &host.machine_id).await,
        Code::PermissionDenied,
        &["CN=reader", "needs the agent role"],
    );
    println!("reader ingesting: {m}");

    // An agent cannot query, nor write as another machine.
    let m = expect_code(
        stats(&url, &agent).await,
        Code::PermissionDenied,
        &["CN=agent", "needs the reader role"],
    );
    println!("agent querying: {m}");
    let other = machine(7);
    let m = expect_code(
        hello(&url, &agent, &other).await,
        Code::PermissionDenied,
        &[&host.machine_id, &other],
    );
    println!("agent writing as another machine: {m}");

    // Without a certificate: health is open, everything else is refused.
    let ch = channel(&url, &anonymous).await.unwrap();
    let health = HealthClient::new(ch)
        .check(HealthCheckRequest::default())
        .await
        .expect("health is open")
        .into_inner();
    assert_eq!(health.status(), ServingStatus::Serving);
    let m = expect_code(
        stats(&url, &anonymous).await,
        Code::Unauthenticated,
        &["client certificate", "--tls-client-ca"],
    );
    println!("no certificate: {m}");

    // A certificate from another CA is refused, saying why.
    let stranger = ClientAuth {
        ca: Some(pki.ca.clone()),
        ..client(foreign.client("stranger", &["jr:reader"]))
    };
    let refused = stats(&url, &stranger)
        .await
        .expect_err("another CA is refused");
    println!("certificate of another CA: {refused:?}");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(
        refused.message().contains("UnknownIssuer")
            && refused.message().contains("--tls-client-ca"),
        "{refused:?}"
    );

    // A client that does not trust the server's CA refuses the server.
    let distrustful = ClientAuth {
        ca: Some(foreign.ca.clone()),
        ..reader.clone()
    };
    assert!(stats(&url, &distrustful).await.is_err());
    server.stop().await;
}

fn tokens_toml(entries: &[(&str, &str, &str, Option<&str>)]) -> String {
    let mut s = String::new();
    for (name, token, role, machine) in entries {
        s.push_str(&format!(
            "[[tokens]]\nname = \"{name}\"\ntoken = \"{token}\"\nroles = [\"{role}\"]\n"
        ));
        if let Some(m) = machine {
            s.push_str(&format!("machine-id = \"{m}\"\n"));
        }
    }
    s
}

/// Polls `check` until it holds, a bounded number of times.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen in 10 s");
}

#[tokio::test]
async fn bearer_tokens_roles_binding_and_reload() {
    const AGENT: &str = "agent-token-0123456789";
    const READER: &str = "reader-token-0123456789";
    const READER2: &str = "reader-token-rotated-42";
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "main");
    let host = Host::new("secure-2");
    let journals = journal(dir.path(), &host);
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        tokens_toml(&[
            ("node", AGENT, "agent", Some(&host.machine_id)),
            ("ops", READER, "reader", None),
        ]),
    )
    .unwrap();
    let server_cert = pki.server("server");
    let mut cfg = config(&dir.path().join("j.db"));
    cfg.tls_cert = Some(server_cert.cert.clone());
    cfg.tls_key = Some(server_cert.key.clone());
    cfg.tokens_file = Some(tokens.clone());
    cfg.reload_interval = Duration::from_millis(50);
    let server = TestServer::start(cfg).await;
    let url = url(&server);
    let tls = ClientAuth {
        ca: Some(pki.ca.clone()),
        ..ClientAuth::default()
    };
    let token_file = dir.path().join("agent.token");
    std::fs::write(&token_file, format!("{AGENT}\n")).unwrap();
    let agent = ClientAuth {
        token_file: Some(token_file),
        ..tls.clone()
    };
    let reader = with_token(&tls, READER);

    assert_eq!(ship(&url, &journals, &agent).await, ENTRIES as u64);
    assert_eq!(count(&server.read().await).await, ENTRIES as i64);

    stats(&url, &reader)
        .await
        .expect("a reader token may query");
    expect_code(
        stats(&url, &agent).await,
        Code::PermissionDenied,
        &["token node", "needs the reader role"],
    );
    expect_code(
        hello(&url, &reader, &host.machine_id).await,
        Code::PermissionDenied,
        &["token ops", "needs the agent role"],
    );
    expect_code(
        hello(&url, &agent, &machine(9)).await,
        Code::PermissionDenied,
        &[&host.machine_id, &machine(9)],
    );
    expect_code(
        stats(&url, &tls).await,
        Code::Unauthenticated,
        &["bearer token"],
    );
    expect_code(
        stats(&url, &with_token(&tls, "guessed-token-0000000")).await,
        Code::Unauthenticated,
        &["not known"],
    );

    // Rotate: the new token works and the old one stops, without restart.
    std::fs::write(
        &tokens,
        tokens_toml(&[
            ("node", AGENT, "agent", Some(&host.machine_id)),
            ("ops", READER2, "reader", None),
        ]),
    )
    .unwrap();
    let rotated = with_token(&tls, READER2);
    eventually("the rotated token is accepted", || async {
        stats(&url, &rotated).await.is_ok()
    })
    .await;
    expect_code(
        stats(&url, &reader).await,
        Code::Unauthenticated,
        &["not known"],
    );

    // A broken file changes nothing.
    std::fs::write(&tokens, "[[tokens]]\nname = \"x\"\n").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stats(&url, &rotated)
        .await
        .expect("the previous tokens stay in force");
    server.stop().await;
}

#[tokio::test]
async fn a_replaced_certificate_serves_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let old_ca = Pki::new(dir.path(), "old");
    let new_ca = Pki::new(dir.path(), "new");
    let old = old_ca.server("server");
    let cert = dir.path().join("server.pem");
    let key = dir.path().join("server.key");
    std::fs::copy(&old.cert, &cert).unwrap();
    std::fs::copy(&old.key, &key).unwrap();
    let mut cfg = config(&dir.path().join("j.db"));
    cfg.tls_cert = Some(cert.clone());
    cfg.tls_key = Some(key.clone());
    cfg.reload_interval = Duration::from_millis(50);
    let server = TestServer::start(cfg).await;
    let url = url(&server);
    let trusts_old = ClientAuth {
        ca: Some(old_ca.ca.clone()),
        ..ClientAuth::default()
    };
    let trusts_new = ClientAuth {
        ca: Some(new_ca.ca.clone()),
        ..ClientAuth::default()
    };
    stats(&url, &trusts_old)
        .await
        .expect("the first certificate");
    assert!(stats(&url, &trusts_new).await.is_err());

    // Write the new pair next to the old and rename it in place, as
    // certificate tools do.
    let new = new_ca.server("server");
    std::fs::rename(&new.key, &key).unwrap();
    std::fs::rename(&new.cert, &cert).unwrap();
    eventually("new connections get the new certificate", || async {
        stats(&url, &trusts_new).await.is_ok()
    })
    .await;
    assert!(stats(&url, &trusts_old).await.is_err());
    server.stop().await;
}

#[tokio::test]
async fn plain_text_is_refused_off_loopback_unless_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&dir.path().join("j.db"));
    cfg.listen = "0.0.0.0:0".into();
    let err = match jr_server::Server::bind(cfg.clone()).await {
        Ok(_) => panic!("plain text on 0.0.0.0 must be refused"),
        Err(e) => e.to_string(),
    };
    println!("{err}");
    assert!(
        err.contains("0.0.0.0") && err.contains("--insecure"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");

    cfg.insecure = true;
    let server = TestServer::start(cfg).await;
    let url = format!("http://127.0.0.1:{}", server.addr.port());
    stats(&url, &ClientAuth::default())
        .await
        .expect("--insecure serves plain text");
    server.stop().await;

    // Clients refuse plain text to another machine.
    let agent = AgentConfig {
        server: "http://192.0.2.1:7070".into(),
        ..AgentConfig::default()
    };
    let err = agent.validate().unwrap_err().to_string();
    assert!(
        err.contains("not loopback") && err.contains("--insecure"),
        "{err}"
    );
    let agent = AgentConfig {
        insecure: true,
        ..agent
    };
    agent.validate().expect("--insecure allows it");
}

#[tokio::test]
async fn sessions_over_the_limit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&dir.path().join("j.db"));
    cfg.max_sessions = 1;
    let server = TestServer::start(cfg).await;
    let url = format!("http://127.0.0.1:{}", server.addr.port());
    let mut first = server.connect().await;
    first.hello(&machine(1)).await;
    let m = expect_code(
        hello(&url, &ClientAuth::default(), &machine(2)).await,
        Code::ResourceExhausted,
        &["--max-sessions"],
    );
    println!("second session: {m}");
    drop(first);
    eventually("the slot is free again", || async {
        hello(&url, &ClientAuth::default(), &machine(2))
            .await
            .is_ok()
    })
    .await;
    server.stop().await;
}
