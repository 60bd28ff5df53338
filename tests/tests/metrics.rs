//! `/metrics` and `/healthz` of a real server and a real agent, scraped
//! over HTTP after shipping a known fixture; and the agent's rate-limited
//! warnings while its server is down.
//!
//! Both endpoints listen on `127.0.0.1:0`; the addresses are read from the
//! "metrics on http://ADDR/metrics" lines the binaries log.

use jr_tests::{eventually, workdir, Agent, Db, Fixture, Host, Layout, Server};
use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const POLL: Duration = Duration::from_millis(100);
const TRIES: u32 = 300;

/// One plain HTTP/1.1 GET; returns the status code and the body.
fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8(raw).map_err(|e| format!("not UTF-8: {e}"))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok((status, dechunk(body)));
    }
    Ok((status, body.to_owned()))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Series in a Prometheus text page: `name{labels}` (as printed) → value.
fn parse(page: &str) -> HashMap<String, f64> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn value(series: &HashMap<String, f64>, key: &str) -> Result<f64, String> {
    series
        .get(key)
        .copied()
        .ok_or_else(|| format!("no series {key}"))
}

/// The address in the first "metrics on http://ADDR/metrics" line of `log`.
fn metrics_addr(log: &str) -> Option<SocketAddr> {
    log.lines().find_map(|line| {
        let rest = &line[line.find("metrics on http://")? + "metrics on http://".len()..];
        rest[..rest.find("/metrics")?].parse().ok()
    })
}

async fn wait_metrics_addr(what: &str, log: impl Fn() -> String) -> SocketAddr {
    eventually(what, TRIES, POLL, || {
        let log = log();
        async move { metrics_addr(&log).ok_or_else(|| "no \"metrics on\" line yet".to_owned()) }
    })
    .await
}

async fn scrape(addr: SocketAddr) -> Result<HashMap<String, f64>, String> {
    let (status, body) = tokio::task::spawn_blocking(move || get(addr, "/metrics"))
        .await
        .map_err(|e| e.to_string())??;
    if status != 200 {
        return Err(format!("/metrics answered {status}: {body}"));
    }
    Ok(parse(&body))
}

async fn health(addr: SocketAddr) -> (u16, String) {
    tokio::task::spawn_blocking(move || get(addr, "/healthz"))
        .await
        .expect("health request task")
        .expect("GET /healthz")
}

#[tokio::test]
async fn metrics_count_a_shipped_fixture_exactly() {
    const KEPT: usize = 40;
    const FILTERED: usize = 7;
    let work = workdir();
    let mut fx = Fixture::new();
    let host = Host::new("metrics-1");
    for i in 0..KEPT {
        fx.entry(&host)
            .unit("app.service")
            .priority(6)
            .message(format!("kept {i}"));
        if i < FILTERED {
            fx.entry(&host)
                .unit("noise.service")
                .priority(6)
                .message(format!("noise {i}"));
        }
    }
    let dir = work.path().join("journal");
    std::fs::create_dir(&dir).expect("journal directory");
    fx.write_new(&dir.join("system.journal"), Layout::Default);

    let server = Server::start_with(work.path(), &["--metrics-listen", "127.0.0.1:0"]).await;
    let server_metrics =
        wait_metrics_addr("the server logs its metrics address", || server.log()).await;
    let mut agent = Agent::command(&server, work.path(), "metrics-1")
        .directory(&dir)
        .flag("--exclude-unit", "noise.service")
        .flag("--metrics-listen", "127.0.0.1:0")
        .spawn();
    let agent_metrics =
        wait_metrics_addr("the agent logs its metrics address", || agent.log()).await;

    let db = Db::open(server.db_path()).await;
    eventually("every kept entry is stored", TRIES, POLL, || async {
        match db.count().await {
            n if n == KEPT as i64 => Ok(()),
            n => Err(format!("{n} stored")),
        }
    })
    .await;

    let a = eventually(
        "the agent counts the acknowledgements",
        TRIES,
        POLL,
        || async {
            let m = scrape(agent_metrics).await?;
            match value(&m, "jr_agent_entries_acknowledged_total")? {
                v if v == KEPT as f64 => Ok(m),
                v => Err(format!("acknowledged {v}")),
            }
        },
    )
    .await;
    assert_eq!(
        value(&a, "jr_agent_entries_read_total"),
        Ok((KEPT + FILTERED) as f64)
    );
    assert_eq!(
        value(&a, "jr_agent_entries_filtered_total"),
        Ok(FILTERED as f64)
    );
    assert_eq!(value(&a, "jr_agent_entries_shipped_total"), Ok(KEPT as f64));
    assert_eq!(value(&a, "jr_agent_gap_entries_total"), Ok(0.0));
    assert_eq!(value(&a, "jr_agent_reconnects_total"), Ok(0.0));
    assert_eq!(value(&a, "jr_agent_connected"), Ok(1.0));
    assert!(value(&a, "jr_agent_sent_bytes_total").unwrap() > 0.0);
    let (status, body) = health(agent_metrics).await;
    assert_eq!(status, 200, "agent /healthz: {body}");
    assert!(body.starts_with("ok"), "{body}");

    let jrctl = tokio::process::Command::new(jr_tests::procs::binary("jrctl"))
        .args(["--server", &server.url(), "hosts"])
        .env_remove("JR_CONFIG")
        .output()
        .await
        .expect("run jrctl hosts");
    assert!(jrctl.status.success(), "jrctl hosts: {jrctl:?}");

    let s = scrape(server_metrics).await.expect("scrape the server");
    assert_eq!(
        value(&s, "jr_server_query_requests_total{kind=\"hosts\"}"),
        Ok(1.0)
    );
    assert_eq!(
        value(&s, "jr_server_entries_received_total"),
        Ok(KEPT as f64)
    );
    assert_eq!(
        value(&s, "jr_server_entries_committed_total"),
        Ok(KEPT as f64)
    );
    assert_eq!(value(&s, "jr_server_sessions"), Ok(1.0));
    assert_eq!(value(&s, "jr_server_sessions_started_total"), Ok(1.0));
    assert!(value(&s, "jr_server_batches_received_total").unwrap() >= 1.0);
    assert!(value(&s, "jr_server_commit_duration_seconds_count").unwrap() >= 1.0);
    assert!(value(&s, "jr_server_database_size_bytes").unwrap() > 0.0);
    assert!(
        !s.keys()
            .any(|k| k.starts_with("jr_server_entries_rejected_total")),
        "nothing was rejected: {s:?}"
    );
    let host_key = |name: &str, extra: &str| {
        format!(
            "{name}{{host=\"metrics-1\",machine_id=\"{}\"{extra}}}",
            host.machine_id
        )
    };
    assert_eq!(
        value(
            &s,
            &host_key("jr_server_host_gap_entries_total", ",kind=\"vacuumed\"")
        ),
        Ok(0.0)
    );
    assert!(
        s.contains_key(&host_key("jr_server_host_lag_seconds", "")),
        "per-host lag: {s:?}"
    );
    assert_eq!(
        value(&s, &host_key("jr_server_host_state", ",state=\"ok\"")),
        Ok(1.0)
    );
    let (status, body) = health(server_metrics).await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    assert!(agent.stop().await.success(), "the agent exits 0 on SIGTERM");
    eventually("the server sees the session end", TRIES, POLL, || async {
        let m = scrape(server_metrics).await?;
        let v = value(&m, "jr_server_sessions")?;
        if v == 0.0 {
            Ok(())
        } else {
            Err(format!("{v} sessions"))
        }
    })
    .await;
}

#[tokio::test]
async fn warnings_about_a_down_server_are_rate_limited() {
    let work = workdir();
    let mut fx = Fixture::new();
    let host = Host::new("down-1");
    fx.entry(&host).unit("app.service").message("waiting");
    let dir = work.path().join("journal");
    std::fs::create_dir(&dir).expect("journal directory");
    fx.write_new(&dir.join("system.journal"), Layout::Default);

    // A server that is started, learns its port, and stops: the agent then
    // points at a closed port that the restarted server binds again.
    let mut server = Server::start_with(work.path(), &["--metrics-listen", "none"]).await;
    assert!(server.stop().await.success());
    let agent = Agent::command(&server, work.path(), "down-1")
        .directory(&dir)
        .flag("--metrics-listen", "127.0.0.1:0")
        .spawn();
    let agent_metrics =
        wait_metrics_addr("the agent logs its metrics address", || agent.log()).await;
    eventually(
        "the agent has failed several times",
        TRIES,
        POLL,
        || async {
            let m = scrape(agent_metrics).await?;
            match value(&m, "jr_agent_reconnects_total")? {
                v if v >= 4.0 => Ok(()),
                v => Err(format!("{v} reconnects")),
            }
        },
    )
    .await;
    let (status, body) = health(agent_metrics).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not connected"), "{body}");

    let log = agent.log();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains(" WARN ")).collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning for several failed attempts:\n{log}"
    );
    assert!(warnings[0].contains("cannot ship"), "{log}");

    server.restart().await;
    eventually("the agent ships again", TRIES, POLL, || async {
        let m = scrape(agent_metrics).await?;
        let v = value(&m, "jr_agent_entries_acknowledged_total")?;
        if v == 1.0 {
            Ok(())
        } else {
            Err(format!("acknowledged {v}"))
        }
    })
    .await;
    let log = agent.log();
    let again = log
        .lines()
        .filter(|l| l.contains("connected to the server again"))
        .count();
    assert_eq!(again, 1, "one line when it reconnects:\n{log}");
    assert_eq!(
        log.lines().filter(|l| l.contains(" WARN ")).count(),
        1,
        "no further warnings:\n{log}"
    );
}

mod refusals {
    use super::*;
    use jr_proto::v1::ingest_client::IngestClient;
    use jr_proto::v1::{ship_request, ship_response, Batch, Entry, Field, Hello, ShipRequest};
    use tokio_stream::wrappers::ReceiverStream;

    const MACHINE: &str = "4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e";

    fn cursor(seqnum: u64) -> String {
        format!(
            "s=5e005e005e005e005e005e005e005e00;i={seqnum:x};b=b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0;m=3e8;t=60ddf8b7f8000;x=1234abcd"
        )
    }

    fn batch(seq: u64, prev: &str, first: u64, n: u64) -> ShipRequest {
        let entries = (first..first + n)
            .map(|i| Entry {
                cursor: cursor(i),
                realtime_usec: 1_704_067_200_000_000 + i,
                monotonic_usec: 1_000 + i,
                fields: vec![Field {
                    name: "MESSAGE".into(),
                    value: format!("entry {i}").into_bytes().into(),
                }],
            })
            .collect();
        ShipRequest {
            kind: Some(ship_request::Kind::Batch(Batch {
                seq,
                prev_cursor: prev.to_owned(),
                last_cursor: cursor(first + n - 1),
                entries,
                ..Batch::default()
            })),
        }
    }

    /// One session: Hello, then `batches`; returns the acknowledgements
    /// counted and the status the server ended the stream with.
    async fn session(server: &Server, batches: Vec<ShipRequest>) -> (usize, tonic::Status) {
        let mut client = IngestClient::connect(server.url())
            .await
            .expect("connect to jr-server");
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tx.send(ShipRequest {
            kind: Some(ship_request::Kind::Hello(Hello {
                machine_id: MACHINE.to_owned(),
                hostname: "refused".to_owned(),
                boot_id: String::new(),
                agent_version: "test".to_owned(),
            })),
        })
        .await
        .expect("queue Hello");
        let mut inbound = client
            .ship(ReceiverStream::new(rx))
            .await
            .expect("open the stream")
            .into_inner();
        let welcome = inbound.message().await.expect("welcome");
        assert!(matches!(
            welcome.and_then(|w| w.kind),
            Some(ship_response::Kind::Welcome(_))
        ));
        for b in batches {
            tx.send(b).await.expect("queue a batch");
        }
        let mut acks = 0;
        loop {
            match tokio::time::timeout(Duration::from_secs(15), inbound.message()).await {
                Ok(Ok(Some(_))) => acks += 1,
                Ok(Ok(None)) => panic!("the stream ended without an error"),
                Ok(Err(status)) => return (acks, status),
                Err(_) => panic!("no answer within 15 s"),
            }
        }
    }

    #[tokio::test]
    async fn refused_batches_are_counted_by_reason() {
        let work = workdir();
        let server = Server::start_with(work.path(), &["--metrics-listen", "127.0.0.1:0"]).await;
        let addr = wait_metrics_addr("the server logs its metrics address", || server.log()).await;

        // One stored entry, then a batch that does not continue from it.
        let (acks, status) = session(
            &server,
            vec![batch(1, "", 1, 1), batch(2, &cursor(9), 10, 2)],
        )
        .await;
        assert_eq!(
            (acks, status.code()),
            (1, tonic::Code::FailedPrecondition),
            "{status:?}"
        );
        // A batch out of sequence.
        let (acks, status) = session(&server, vec![batch(2, &cursor(1), 2, 3)]).await;
        assert_eq!(
            (acks, status.code()),
            (0, tonic::Code::InvalidArgument),
            "{status:?}"
        );

        let m = scrape(addr).await.expect("scrape the server");
        let rejected = |what: &str, reason: &str| {
            value(
                &m,
                &format!("jr_server_{what}_rejected_total{{reason=\"{reason}\"}}"),
            )
        };
        assert_eq!(value(&m, "jr_server_entries_received_total"), Ok(6.0));
        assert_eq!(value(&m, "jr_server_entries_committed_total"), Ok(1.0));
        assert_eq!(rejected("batches", "failed_precondition"), Ok(1.0));
        assert_eq!(rejected("entries", "failed_precondition"), Ok(2.0));
        assert_eq!(rejected("batches", "invalid_argument"), Ok(1.0));
        assert_eq!(rejected("entries", "invalid_argument"), Ok(3.0));
        assert_eq!(value(&m, "jr_server_sessions_started_total"), Ok(2.0));
    }
}
