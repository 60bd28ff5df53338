//! A stuck endpoint (accepts, never reads) slows neither ingest nor
//! another route: asserted with counts.

mod common;
mod forward_support;

use common::*;
use forward_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_endpoint_holds_back_only_its_route() {
    let dir = tempfile::tempdir().unwrap();
    let stuck = Fake::stuck().await;
    let ok = Fake::plain().await;
    let toml = format!(
        "{}{}",
        route("stuck", TOKEN_A, stuck.addr, None, ""),
        route("ok", TOKEN_B, ok.addr, None, "")
    );
    let server = server_with(dir.path(), &toml).await;
    eventually("routes started", 500, async || {
        list(server.addr).await.len() == 2
    })
    .await;

    // About 40 MB of lines: far more than the stuck socket's buffers hold.
    let pad = "p".repeat(2000);
    let total = 20_000u64;
    let m = machine(3);
    let mut a = server.connect().await;
    let mut prev = a.hello(&m).await.cursor;
    for (seq, start) in (0..total).step_by(1000).enumerate() {
        let batch: Vec<_> = entries(start..start + 1000)
            .into_iter()
            .map(|mut e| {
                for f in &mut e.fields {
                    if f.name == "MESSAGE" {
                        let m = format!("{pad} {}", String::from_utf8_lossy(&f.value));
                        f.value = bytes::Bytes::from(m);
                    }
                }
                e
            })
            .collect();
        prev = a.batch(seq as u64 + 1, &prev, batch).await;
        assert_eq!(a.ack().await.stored, 1000, "ingest takes every batch");
    }
    let pool = server.read().await;
    assert_eq!(count(&pool).await, total as i64);

    // The healthy route delivers everything while the stuck one cannot.
    ok.wait_for(total as usize).await;
    let host = format!("host-{}", &m[..4]);
    check_complete_in_order(&numbers_of(&ok.lines(), TOKEN_B, &host), 0..total);
    // Its position is saved a moment after the peer has the lines.
    eventually("the healthy route caught up", 500, async || {
        status(server.addr, "ok").await.lag_entries == 0
    })
    .await;
    let s = status(server.addr, "stuck").await;
    assert!(
        s.lag_entries > 0,
        "the stuck route cannot have delivered everything: {s:?}"
    );
    assert_eq!(stuck.count(), 0);
    server.stop().await;
}
