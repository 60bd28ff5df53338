//! Results larger than the server's page limit continue through resume
//! tokens without a gap or a repeat, and the common queries use indexes.

mod common;

use common::{Cluster, Fixture, Host, JournalWriter, Layout};
use jr_proto::v1::query_client::QueryClient;
use jr_proto::v1::LogsRequest;
use jr_server::query::logs::MAX_RESULT_ENTRIES;
use jr_server::query::request::LogQuery;

const ENTRIES: u64 = MAX_RESULT_ENTRIES + 50;

async fn shipped() -> Cluster {
    let cluster = Cluster::start().await;
    let dir = cluster.path("journal");
    std::fs::create_dir_all(&dir).expect("journal directory");
    let mut w = JournalWriter::create(&dir.join("system.journal"), Layout::Default);
    let mut fx = Fixture::new();
    let host = Host::new("big");
    for i in 0..ENTRIES {
        let mut e = fx.make(&host);
        e.unit(if i % 100 == 0 {
            "rare.service"
        } else {
            "busy.service"
        })
        .identifier("t")
        .priority((i % 8) as u8)
        .message(if i == 4242 {
            "a needle in the haystack".to_owned()
        } else {
            format!("line {i}")
        });
        w.append(&e);
    }
    w.finish();
    cluster.ship(&dir).await;
    cluster
}

fn numbers(out: &[u8]) -> Vec<u64> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| {
            l.strip_prefix("line ")
                .and_then(|n| n.parse().ok())
                .unwrap_or(u64::MAX)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_continue_without_gaps_and_plans_use_indexes() {
    let c = shipped().await;

    let all = numbers(&c.ok(&["logs", "-o", "cat"]).await);
    let mut expected: Vec<u64> = (0..ENTRIES).collect();
    expected[4242] = u64::MAX;
    assert_eq!(all, expected);

    let tail = numbers(
        &c.ok(&[
            "logs",
            "-o",
            "cat",
            "-n",
            &(MAX_RESULT_ENTRIES + 20).to_string(),
        ])
        .await,
    );
    assert_eq!(tail, expected[30..]);

    let reversed = numbers(&c.ok(&["logs", "-o", "cat", "-r"]).await);
    let mut rev = expected.clone();
    rev.reverse();
    assert_eq!(reversed, rev);

    // The protocol: a full page ends with a token, the token continues.
    let mut client = QueryClient::connect(c.url.clone()).await.expect("connect");
    let mut stream = client
        .logs(LogsRequest::default())
        .await
        .expect("logs")
        .into_inner();
    let (mut n, mut token, mut last_id) = (0u64, String::new(), 0);
    while let Some(r) = stream.message().await.expect("page") {
        n += r.entries.len() as u64;
        last_id = r.entries.last().map_or(last_id, |e| e.id);
        if !r.resume_token.is_empty() {
            token = r.resume_token;
        }
    }
    assert_eq!(n, MAX_RESULT_ENTRIES);
    assert!(!token.is_empty());
    let req = LogsRequest {
        resume_token: token,
        ..Default::default()
    };
    let mut stream = client.logs(req).await.expect("logs").into_inner();
    let mut rest = Vec::new();
    while let Some(r) = stream.message().await.expect("page") {
        assert!(r.resume_token.is_empty());
        rest.extend(r.entries);
    }
    assert_eq!(rest.len() as u64, ENTRIES - MAX_RESULT_ENTRIES);
    assert_eq!(rest[0].id, last_id + 1);

    let out = c
        .ok(&["logs", "-o", "cat", "--search", "needle haystack"])
        .await;
    assert_eq!(String::from_utf8_lossy(&out), "a needle in the haystack\n");

    // Query plans of the common queries reach entries through an index.
    // The server's view: read-only, the full-text index attached.
    let pool = jr_server::db::open::read_pool(
        &c.path("journal-router.db"),
        jr_server::config::Synchronous::Normal,
        1,
    )
    .await
    .expect("open database");
    let plan = |r: LogsRequest| {
        let pool = pool.clone();
        async move {
            let q = LogQuery::from_request(&r).expect("valid request");
            jr_server::query::sql::explain(&pool, &q)
                .await
                .expect("plan")
                .join("\n")
        }
    };
    let unit = plan(LogsRequest {
        units: vec!["rare.service".into()],
        limit: 100,
        ..Default::default()
    })
    .await;
    assert!(
        unit.contains("entries_unit_time") && unit.contains("entries_about_time"),
        "{unit}"
    );
    // Each branch walks its index in order: no sort of the unit's rows.
    assert!(!unit.contains("TEMP B-TREE"), "{unit}");
    let host_since = plan(LogsRequest {
        hosts: vec!["big".into()],
        units: vec!["busy.service".into()],
        since_usec: Some(jr_tests::fixture::EPOCH_USEC),
        ..Default::default()
    })
    .await;
    assert!(host_since.contains("USING INDEX entries_"), "{host_since}");
    assert!(
        !host_since.contains("SCAN e\n") && !host_since.ends_with("SCAN e"),
        "{host_since}"
    );
    let search = plan(LogsRequest {
        search: "needle".into(),
        ..Default::default()
    })
    .await;
    assert!(search.contains("VIRTUAL TABLE INDEX"), "{search}");
    assert!(search.contains("INTEGER PRIMARY KEY"), "{search}");
    let since = plan(LogsRequest {
        since_usec: Some(jr_tests::fixture::EPOCH_USEC),
        ..Default::default()
    })
    .await;
    assert!(since.contains("entries_time"), "{since}");
    assert!(!since.contains("TEMP B-TREE"), "{since}");
    eprintln!(
        "plans:\n-u: {unit}\n-H -u --since: {host_since}\n--search: {search}\n--since: {since}"
    );
}
