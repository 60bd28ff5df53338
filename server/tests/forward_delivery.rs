//! Routes deliver what they match, framed for Logentries, over plain TCP
//! and TLS, with entries put in through the real ingest path.

mod common;
mod forward_support;

use common::*;
use forward_support::*;
use jr_proto::v1::Entry;

/// Ships `entries` for `machine` in batches, as one agent session.
pub async fn ship(server: &TestServer, machine: &str, entries: Vec<Entry>) {
    let mut a = server.connect().await;
    let w = a.hello(machine).await;
    let mut prev = w.cursor;
    for (seq, chunk) in entries.chunks(1000).enumerate() {
        prev = a.batch(seq as u64 + 1, &prev, chunk.to_vec()).await;
        let ack = a.ack().await;
        assert_eq!(ack.stored as usize, chunk.len());
    }
}

fn with_message(mut e: Entry, unit: &str, message: &[u8]) -> Entry {
    for f in &mut e.fields {
        match f.name_str() {
            "MESSAGE" => f.value = bytes::Bytes::copy_from_slice(message),
            "_SYSTEMD_UNIT" => f.value = bytes::Bytes::copy_from_slice(unit.as_bytes()),
            _ => {}
        }
    }
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_send_their_entries_framed_over_tcp_and_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let ca_file = ca.write_ca(dir.path());
    let plain = Fake::plain().await;
    let tls = Fake::tls(&ca).await;
    let config = format!(
        "{}{}",
        route(
            "plain",
            TOKEN_A,
            plain.addr,
            None,
            "filter = { units = [\"test-1.service\", \"special.service\"] }\nstart = \"1970-01-01T00:00:00Z\"",
        ),
        route(
            "secure",
            TOKEN_B,
            tls.addr,
            Some(&ca_file),
            "template = \"{priority_name} {_PID} {host} {unit}: {message}\"\n\
             filter = { priority = \"err..info\" }\nstart = \"1970-01-01T00:00:00Z\"",
        ),
    );
    let server = server_with(dir.path(), &config).await;

    let mut entries = entries(0..300);
    let long: String = "x".repeat(150 * 1024);
    entries.push(with_message(
        entry(300),
        "special.service",
        b"first\nsecond\r\nthird",
    ));
    entries.push(with_message(entry(301), "special.service", long.as_bytes()));
    entries.push(with_message(entry(302), "special.service", b"bin\xff\0ary"));
    let m = machine(1);
    let host = format!("host-{}", &m[..4]);
    ship(&server, &m, entries).await;

    // test-1.service is every third entry of 0..300; then the three
    // special ones, the long one split in three parts.
    let plain_expected = 100 + 1 + 3 + 1;
    plain.wait_for(plain_expected).await;
    let secure_expected = 303 + 2;
    tls.wait_for(secure_expected).await;

    let lines = plain.lines();
    assert!(lines.iter().all(|l| l.starts_with(&format!("{TOKEN_A} "))));
    assert_eq!(
        lines[0],
        format!("{TOKEN_A} {host} test-1.service: message 1")
    );
    assert_eq!(
        numbers(&lines[..100], TOKEN_A),
        (0..300).filter(|n| n % 3 == 1).collect::<Vec<_>>()
    );
    assert_eq!(
        lines[100],
        format!("{TOKEN_A} {host} special.service: first\u{2028}second\u{2028}third")
    );
    let mut joined = String::new();
    for (i, l) in lines[101..104].iter().enumerate() {
        let suffix = format!(" (part {}/3)", i + 1);
        assert!(
            l.len() <= TOKEN_A.len() + 1 + 64 * 1024,
            "part {i} too long"
        );
        let body = l
            .strip_suffix(&suffix)
            .unwrap_or_else(|| panic!("part {i} lacks {suffix}"));
        joined.push_str(body.strip_prefix(&format!("{TOKEN_A} ")).unwrap());
    }
    assert_eq!(joined, format!("{host} special.service: {long}"));
    assert_eq!(
        lines[104],
        format!("{TOKEN_A} {host} special.service: bin\u{fffd}\0ary")
    );
    assert_eq!(lines.len(), plain_expected, "no line twice");

    let lines = tls.lines();
    assert!(lines.iter().all(|l| l.starts_with(&format!("{TOKEN_B} "))));
    assert_eq!(
        lines[0],
        format!("{TOKEN_B} info 42 {host} test-0.service: message 0")
    );
    assert_eq!(
        numbers(&lines[..300], TOKEN_B),
        (0..300).collect::<Vec<_>>()
    );
    assert_eq!(lines.len(), secure_expected);

    // The peer has the lines a moment before the route saves its
    // position and counters (after the acknowledgement).
    for name in ["plain", "secure"] {
        eventually(&format!("route {name} caught up"), 500, async || {
            status(server.addr, name).await.lag_entries == 0
        })
        .await;
    }
    let st = status(server.addr, "plain").await;
    assert_eq!(st.lines_sent as usize, plain_expected);
    assert_eq!(st.entries_sent, 103);
    assert_eq!(st.repeated_lines, 0);
    assert_eq!(st.lag_entries, 0);
    assert!(st.connected);
    assert_eq!(st.destination, format!("logentries+tcp://{}", plain.addr));
    let st = status(server.addr, "secure").await;
    assert_eq!(st.lines_sent as usize, secure_expected);
    assert!(st.bytes_sent > 150 * 1024);
    assert_eq!(
        st.destination,
        format!("logentries+tls://localhost:{}", tls.addr.port())
    );

    // Replay: the plain route sends entries 0..300's matches once more.
    let mut c = routes_client(server.addr).await;
    c.replay_route(jr_proto::v1::ReplayRouteRequest {
        name: "plain".into(),
        since_usec: 1_700_000_000_000_000,
        until_usec: Some(1_700_000_000_000_000 + 299 * 1000),
    })
    .await
    .unwrap();
    plain.wait_for(plain_expected + 100).await;
    let again = plain.lines();
    assert_eq!(
        numbers(&again[plain_expected..], TOKEN_A),
        (0..300).filter(|n| n % 3 == 1).collect::<Vec<_>>()
    );
    let missing = c
        .replay_route(jr_proto::v1::ReplayRouteRequest {
            name: "nope".into(),
            since_usec: 0,
            until_usec: None,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_route_starts_now_and_keeps_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::plain().await;
    let m = machine(2);
    // Entries stored before the route exists are not sent.
    let server = server_with(dir.path(), "").await;
    ship(&server, &m, entries(0..50)).await;
    server.stop().await;

    let config = route("r", TOKEN_A, fake.addr, None, "");
    let server = server_with(dir.path(), &config).await;
    eventually("route row", 500, async || {
        status(server.addr, "r").await.position == 50
    })
    .await;
    let mut a = server.connect().await;
    let w = a.hello(&m).await;
    let last = a.batch(1, &w.cursor, entries(50..80)).await;
    a.ack().await;
    fake.wait_for(30).await;
    assert_eq!(
        numbers(&fake.lines(), TOKEN_A),
        (50..80).collect::<Vec<_>>()
    );
    server.stop().await;

    // After a restart the route resumes after what it delivered.
    let server = server_with(dir.path(), &config).await;
    let mut a = server.connect().await;
    a.hello(&m).await;
    a.batch(1, &last, entries(80..90)).await;
    a.ack().await;
    fake.wait_for(40).await;
    assert_eq!(
        numbers(&fake.lines(), TOKEN_A),
        (50..90).collect::<Vec<_>>()
    );
    server.stop().await;
}
