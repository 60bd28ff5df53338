//! Bad input gives one line naming the problem and a non-zero exit; the
//! server answers bad requests with INVALID_ARGUMENT and keeps serving.
//! Also the hosts, units and stats listings.

mod common;

use common::{jrctl_at, Cluster, Fixture, Host, JournalWriter, Layout};
use jr_proto::v1::query_client::QueryClient;
use jr_proto::v1::{LogsRequest, StatsRequest};
use std::process::Output;

async fn cluster_with_entries() -> Cluster {
    let cluster = Cluster::start().await;
    let dir = cluster.path("journal");
    std::fs::create_dir_all(&dir).expect("journal directory");
    let mut w = JournalWriter::create(&dir.join("system.journal"), Layout::Default);
    let mut fx = Fixture::new();
    let host = Host::new("solo");
    for i in 0..12 {
        let mut e = fx.make(&host);
        e.unit(if i % 2 == 0 {
            "even.service"
        } else {
            "odd.service"
        })
        .identifier("t")
        .priority(6)
        .message(format!("message {i}"));
        w.append(&e);
    }
    w.finish();
    cluster.ship(&dir).await;
    cluster
}

/// A failure with exactly one line on stderr that contains `needle`.
fn one_line_error(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exit status {:?}", out.status);
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with("jrctl: "), "{err:?}");
    assert!(err.contains(needle), "{err:?} names {needle:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_one_line_and_the_server_survives() {
    let c = cluster_with_entries().await;
    one_line_error(&c.jrctl(&["logs", "-o", "nope"]).await, "'nope'");
    one_line_error(
        &c.jrctl(&["logs", "-g", "(unclosed"]).await,
        "invalid regular expression \"(unclosed\": unclosed group",
    );
    one_line_error(
        &c.jrctl(&["logs", "--since", "next blue moon"]).await,
        "invalid --since: cannot parse time \"next blue moon\"",
    );
    one_line_error(
        &c.jrctl(&["logs", "-U", "13/45/2024"]).await,
        "invalid --until",
    );
    one_line_error(
        &c.jrctl(&["logs", "-p", "loud"]).await,
        "invalid --priority \"loud\"",
    );
    one_line_error(
        &c.jrctl(&["logs", "-b", "not-a-boot"]).await,
        "invalid --boot",
    );
    one_line_error(
        &c.jrctl(&["logs", "lowercase=1"]).await,
        "invalid field name",
    );
    one_line_error(
        &c.jrctl(&["logs", "-f", "-r"]).await,
        "--reverse and --follow",
    );

    // Requests jrctl would not send still get a clear INVALID_ARGUMENT.
    let mut client = QueryClient::connect(c.url.clone()).await.expect("connect");
    for (req, needle) in [
        (
            LogsRequest {
                resume_token: "v1:garbage".into(),
                ..Default::default()
            },
            "invalid resume token",
        ),
        (
            LogsRequest {
                priority_max: Some(9),
                ..Default::default()
            },
            "out of range",
        ),
        (
            LogsRequest {
                grep: "a{99999999}".into(),
                ..Default::default()
            },
            "invalid regular expression",
        ),
    ] {
        let status = client.logs(req).await.expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains(needle), "{}", status.message());
    }

    // And it still answers.
    let out = c.ok(&["logs", "-o", "cat", "-u", "odd.service"]).await;
    assert_eq!(String::from_utf8_lossy(&out).lines().count(), 6);
    let stats = client
        .stats(StatsRequest {})
        .await
        .expect("stats")
        .into_inner();
    assert_eq!(stats.entries, 12);
}

#[tokio::test]
async fn unreachable_server_is_one_line() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let out = jrctl_at(&url, &["logs"]).await;
    one_line_error(&out, &format!("cannot connect to jr-server at {url}"));
    one_line_error(&jrctl_at(&url, &["hosts"]).await, "cannot connect");
    one_line_error(
        &jrctl_at("not a url", &["stats"]).await,
        "invalid server URL",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_units_and_stats() {
    let c = cluster_with_entries().await;
    let hosts = String::from_utf8_lossy(&c.ok(&["hosts"]).await).into_owned();
    let solo = Host::new("solo");
    let row = hosts
        .lines()
        .find(|l| l.starts_with("solo "))
        .unwrap_or_else(|| panic!("solo listed: {hosts}"));
    assert!(row.contains(&solo.machine_id), "{row}");
    assert!(row.contains(" 12 "), "{row}");
    assert!(row.contains("2024-01-01 00:00:00"), "{row}");
    // The shipping agent has gone: not connected.
    assert!(row.contains(" no "), "{row}");

    let units = String::from_utf8_lossy(&c.ok(&["units", "-H", "so*"]).await).into_owned();
    let lines: Vec<&str> = units.lines().collect();
    assert_eq!(lines.len(), 3, "{units}");
    assert!(
        lines[1].starts_with("even.service") && lines[1].contains(" 6 "),
        "{units}"
    );
    assert!(
        lines[2].starts_with("odd.service") && lines[2].contains(" 6 "),
        "{units}"
    );
    let none = String::from_utf8_lossy(&c.ok(&["units", "-H", "nobody"]).await).into_owned();
    assert_eq!(none.lines().count(), 1, "header only: {none}");

    let stats = String::from_utf8_lossy(&c.ok(&["stats"]).await).into_owned();
    assert!(stats.contains("entries:        12\n"), "{stats}");
    assert!(stats.contains("hosts:          1\n"), "{stats}");
    assert!(stats.contains("routes:         none\n"), "{stats}");
    assert!(stats.contains("units:          2\n"), "{stats}");
    let size: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("database size:"))
        .and_then(|l| l.split('(').nth(1))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("database size in bytes");
    assert!(size > 4096, "{stats}");
}
