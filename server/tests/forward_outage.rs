//! An endpoint outage: the listener goes away and comes back; every entry
//! arrives, in order per host, and repeats stay within one write and are
//! reported.

mod common;
mod forward_support;

use common::*;
use forward_support::*;

const CHUNK_ROWS: usize = jr_server::forward::route::CHUNK_ROWS as usize;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_loses_nothing_and_reports_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let mut fake = Fake::plain().await;
    let server = server_with(dir.path(), &route("r", TOKEN_A, fake.addr, None, "")).await;
    eventually("route started", 500, async || {
        !list(server.addr).await.is_empty()
    })
    .await;

    let (m1, m2) = (machine(1), machine(2));
    let (h1, h2) = (format!("host-{}", &m1[..4]), format!("host-{}", &m2[..4]));
    let mut a1 = server.connect().await;
    let mut a2 = server.connect().await;
    let mut prev1 = a1.hello(&m1).await.cursor;
    let mut prev2 = a2.hello(&m2).await.cursor;
    let mut seq = 0;
    let mut send = async |range: std::ops::Range<u64>| {
        for start in range.clone().step_by(500) {
            seq += 1;
            let end = (start + 500).min(range.end);
            prev1 = a1.batch(seq, &prev1, entries(start..end)).await;
            a1.ack().await;
            prev2 = a2
                .batch(seq, &prev2, entries(1_000_000 + start..1_000_000 + end))
                .await;
            a2.ack().await;
        }
    };

    send(0..2000).await;
    fake.wait_for(4000).await;
    fake.down();
    // Entries stored while the endpoint is away.
    send(2000..5000).await;
    eventually("the route notices the outage", 1000, async || {
        let s = status(server.addr, "r").await;
        !s.last_error.is_empty() && !s.connected
    })
    .await;
    let during = status(server.addr, "r").await;
    assert!(during.lag_entries > 0, "{during:?}");
    fake.up().await;
    send(5000..6000).await;
    fake.wait_for(12_000).await;
    eventually("position reaches the head", 1000, async || {
        status(server.addr, "r").await.lag_entries == 0
    })
    .await;

    let lines = fake.lines();
    let mut dups = check_complete_in_order(&numbers_of(&lines, TOKEN_A, &h1), 0..6000);
    dups += check_complete_in_order(&numbers_of(&lines, TOKEN_A, &h2), 1_000_000..1_006_000);
    let st = status(server.addr, "r").await;
    assert!(dups <= CHUNK_ROWS, "{dups} repeated lines");
    assert!(
        dups as u64 <= st.repeated_lines,
        "{dups} repeats arrived but {} reported",
        st.repeated_lines
    );
    assert_eq!(
        st.lines_sent as usize,
        lines.len(),
        "every line sent is counted"
    );
    assert!(fake.connections() >= 2);
    server.stop().await;
}
