//! jrctl over TLS, mutual TLS and bearer tokens against a real jr-server
//! with certificates made by the test: the right credential reads, a
//! wrong one is refused with a message that says why, and plain text to
//! another machine is refused before connecting.

// The harness re-exports more than this file uses.
#[allow(unused_imports)]
mod common;

use common::*;
use jr_tests::pki::Pki;
use std::path::Path;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const AGENT: &str = "agent-token-0123456789";
const READER: &str = "reader-token-0123456789";

struct Secure {
    url: String,
    ca: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn secure_server(dir: &Path, pki: &Pki) -> Secure {
    let tokens = dir.join("tokens.toml");
    std::fs::write(
        &tokens,
        format!(
            "[[tokens]]\nname = \"node\"\ntoken = \"{AGENT}\"\nroles = [\"agent\"]\n\n\
             [[tokens]]\nname = \"ops\"\ntoken = \"{READER}\"\nroles = [\"reader\"]\n"
        ),
    )
    .unwrap();
    let cert = pki.server("server");
    let config = jr_server::ServerConfig {
        listen: "127.0.0.1:0".into(),
        db: dir.join("journal-router.db"),
        commit_latency: Duration::from_millis(10),
        tls_cert: Some(cert.cert),
        tls_key: Some(cert.key),
        tls_client_ca: Some(pki.ca.clone()),
        tokens_file: Some(tokens),
        ..Default::default()
    };
    let server = jr_server::Server::bind(config).await.expect("bind");
    let url = format!("https://127.0.0.1:{}", server.local_addr().port());
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let task = tokio::spawn(async move { server.serve(stop).await.expect("serves") });
    Secure {
        url,
        ca: pki.ca.display().to_string(),
        shutdown,
        task,
    }
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn jrctl_reads_over_tls_with_a_certificate_or_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "main");
    let foreign = Pki::new(dir.path(), "foreign");
    let server = secure_server(dir.path(), &pki).await;

    let journals = dir.path().join("journal");
    std::fs::create_dir(&journals).unwrap();
    let host = Host::new("tls-host");
    let mut fx = Fixture::new();
    for i in 0..5 {
        fx.entry(&host)
            .unit("tls.service")
            .message(format!("over tls {i}"));
    }
    fx.write_new(&journals.join("system.journal"), Layout::Default);
    let agent = jr_agent::AgentConfig {
        server: server.url.clone(),
        directory: Some(journals),
        no_follow: true,
        ca: Some(pki.ca.clone()),
        token: Some(AGENT.into()),
        metrics_listen: Some("none".into()),
        ..Default::default()
    };
    let shipped = tokio::time::timeout(
        Duration::from_secs(60),
        jr_agent::run(agent, CancellationToken::new()),
    )
    .await
    .expect("in time")
    .expect("the agent ships over TLS with a token");
    assert_eq!(shipped.metrics.acknowledged, 5);

    // Mutual TLS: a reader certificate.
    let reader = pki.client("reader", &["jr:reader"]);
    let (cert, key) = (
        reader.cert.display().to_string(),
        reader.key.display().to_string(),
    );
    let out = jrctl_at(
        &server.url,
        &[
            "--ca", &server.ca, "--cert", &cert, "--key", &key, "logs", "-o", "cat",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().filter(|l| l.starts_with("over tls")).count(),
        5,
        "{text}"
    );

    // A reader token from a file.
    let token_file = dir.path().join("reader.token");
    std::fs::write(&token_file, READER).unwrap();
    let tf = token_file.display().to_string();
    let out = jrctl_at(
        &server.url,
        &["--ca", &server.ca, "--token-file", &tf, "hosts"],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("tls-host"));

    // Refusals, each with its reason.
    let refused = |out: std::process::Output, words: &[&str]| {
        assert!(!out.status.success());
        let e = stderr(&out);
        println!("{}", e.trim());
        for w in words {
            assert!(e.contains(w), "{w:?} not in {e:?}");
        }
    };
    refused(
        jrctl_at(
            &server.url,
            &["--ca", &server.ca, "--token", AGENT, "stats"],
        )
        .await,
        &["token node", "needs the reader role"],
    );
    refused(
        jrctl_at(&server.url, &["--ca", &server.ca, "stats"]).await,
        &["bearer token", "client certificate"],
    );
    let stranger = foreign.client("stranger", &["jr:reader"]);
    refused(
        jrctl_at(
            &server.url,
            &[
                "--ca",
                &server.ca,
                "--cert",
                &stranger.cert.display().to_string(),
                "--key",
                &stranger.key.display().to_string(),
                "stats",
            ],
        )
        .await,
        &["client certificate is not accepted", "UnknownIssuer"],
    );
    refused(
        jrctl_at("http://192.0.2.1:7070", &["stats"]).await,
        &["not loopback", "--insecure"],
    );
    server.shutdown.cancel();
    server.task.await.unwrap();
}
