//! Full-text search against a real server while an agent ships: the
//! index is filled beside the writer and trails it, yet a search sees
//! every entry committed before it began, and a live search gets every
//! matching entry committed after it began, once and in order.

mod common;

use common::*;
use jr_proto::v1::query_client::QueryClient;
use jr_proto::v1::{Entry, LogsRequest};
use std::collections::HashSet;

/// Entry `seq`; every third one mentions the needle.
fn maybe_needle(seq: u64) -> Entry {
    let mut e = entry(seq);
    if seq.is_multiple_of(3) {
        set_message(
            &mut e,
            format!("found the needle in batch entry {seq}").into_bytes(),
        );
    }
    e
}

fn set_message(e: &mut Entry, text: Vec<u8>) {
    for f in &mut e.fields {
        if f.name == "MESSAGE" {
            f.value = text.clone().into();
        }
    }
}

/// Sequence numbers of the needle entries in `entries`.
fn needles(entries: &[jr_proto::v1::LogEntry]) -> Vec<u64> {
    entries
        .iter()
        .map(|e| {
            let text = message_of(e);
            assert!(text.contains("needle"), "{text:?} does not match");
            seq_of(e)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_see_every_commit_and_live_searches_miss_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(&dir.path().join("s.db"))).await;
    let mut agent = server.connect().await;
    agent.hello(&machine(1)).await;
    let mut query = QueryClient::connect(format!("http://{}", server.addr))
        .await
        .unwrap();
    let search = |follow: bool| LogsRequest {
        search: "needle".into(),
        follow,
        // With `follow`: only what comes after the stored entries.
        limit: u32::from(follow),
        ..Default::default()
    };

    // Each search right after an acknowledgement finds every needle
    // committed so far, however far behind the index was at that moment
    // (it often is: the index is filled after the commit that acknowledged
    // the batch).
    // Large batches, so that indexing one takes a while.
    let (mut prev, mut seq, mut batch) = (String::new(), 0u64, 0u64);
    for _ in 0..6 {
        batch += 1;
        let entries: Vec<Entry> = (seq + 1..=seq + 4000).map(maybe_needle).collect();
        seq += 4000;
        prev = agent.batch(batch, &prev, entries).await;
        agent.ack().await;
        let mut stream = query.logs(search(false)).await.unwrap().into_inner();
        let mut found = Vec::new();
        while let Some(page) = stream.message().await.unwrap() {
            found.extend(needles(&page.entries));
        }
        assert_eq!(found, (3..=seq).step_by(3).collect::<Vec<_>>());
    }

    // A live search: the newest stored needle, then every needle shipped
    // after it began.
    let mut live = query.logs(search(true)).await.unwrap().into_inner();
    let stored = seq;
    for _ in 0..10 {
        batch += 1;
        let entries: Vec<Entry> = (seq + 1..=seq + 300).map(maybe_needle).collect();
        seq += 300;
        prev = agent.batch(batch, &prev, entries).await;
        agent.ack().await;
    }
    let want: Vec<u64> = (stored..=seq).step_by(3).collect();
    let got = next_live(&mut live, want.len()).await;
    assert_eq!(got, want, "every needle once, in commit order");
    assert_eq!(got.iter().collect::<HashSet<_>>().len(), got.len());
    drop(live);
    server.stop().await;
}

/// Entry `seq`; a few mention the zebra, every third the needle.
fn zebra_or_needle(seq: u64, zebras: &[u64]) -> Entry {
    let mut e = maybe_needle(seq);
    if zebras.contains(&seq) {
        // One of them binary: a NUL and bytes that are not UTF-8.
        let text = if zebras.get(4) == Some(&seq) {
            let mut text = b"\0\x01\xffa ZEBRA\nnot a needle, in entry ".to_vec();
            text.extend_from_slice(seq.to_string().as_bytes());
            text
        } else {
            format!("a ZEBRA, not a needle, in entry {seq}").into_bytes()
        };
        set_message(&mut e, text);
    }
    e
}

fn message_of(e: &jr_proto::v1::LogEntry) -> String {
    let m = e
        .fields
        .iter()
        .find(|f| f.name == "MESSAGE")
        .expect("MESSAGE");
    String::from_utf8_lossy(&m.value).into_owned()
}

/// The sequence number an entry's message ends with.
fn seq_of(e: &jr_proto::v1::LogEntry) -> u64 {
    message_of(e).rsplit(' ').next().unwrap().parse().unwrap()
}

/// The sequence numbers of at least `n` more entries of a live search.
async fn next_live(live: &mut tonic::Streaming<jr_proto::v1::LogsResponse>, n: usize) -> Vec<u64> {
    let mut got = Vec::new();
    while got.len() < n {
        let page = tokio::time::timeout(WAIT, live.message())
            .await
            .expect("live search keeps up")
            .unwrap()
            .expect("stream open");
        got.extend(needles(&page.entries));
    }
    got
}

/// What one agent has shipped so far.
#[derive(Default)]
struct Shipped {
    batch: u64,
    seq: u64,
    prev: String,
}

impl Shipped {
    /// Ships `batches` more batches of 2,000 entries, with the zebra in
    /// the messages of `zebras`.
    async fn zebras(&mut self, agent: &mut Agent, batches: u64, zebras: &[u64]) {
        for _ in 0..batches {
            self.batch += 1;
            let entries: Vec<Entry> = (self.seq + 1..=self.seq + 2000)
                .map(|s| zebra_or_needle(s, zebras))
                .collect();
            self.seq += 2000;
            self.prev = agent.batch(self.batch, &self.prev, entries).await;
            agent.ack().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rare_and_common_words_are_found_in_every_block_of_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(&dir.path().join("s.db"))).await;
    let mut agent = server.connect().await;
    agent.hello(&machine(1)).await;
    let block = jr_server::db::fts::BLOCK as u64;
    // Both ends of blocks, and the first and the last entry.
    let zebras = [1, block - 1, block, block + 1, 2 * block, 20_000];
    let mut shipped = Shipped::default();
    shipped.zebras(&mut agent, 10, &zebras).await;
    let seq = shipped.seq;
    let pool = server.read().await;
    wait_indexed(&pool, seq as i64).await;

    let mut query = server.query().await;
    let mut search = async |words: &str, limit: u32| {
        let mut stream = query
            .logs(LogsRequest {
                search: words.into(),
                limit,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let mut seqs = Vec::new();
        while let Some(page) = stream.message().await.unwrap() {
            seqs.extend(page.entries.iter().map(seq_of));
        }
        seqs
    };
    // A word in a few blocks: each of its entries and no other of those
    // blocks; any case; whole words only.
    assert_eq!(search("zebra", 0).await, zebras);
    assert_eq!(search("Zebra NEEDLE", 0).await, zebras);
    assert_eq!(search(&format!("zebra entry {block}"), 0).await, [block]);
    let binary = zebras[4];
    assert_eq!(
        search(&format!("in entry {binary} zebra"), 0).await,
        [binary]
    );
    assert_eq!(search("zebr", 0).await, Vec::<u64>::new());
    // A word in every block, with and without a limit.
    let needles: Vec<u64> = (3..=seq)
        .step_by(3)
        .filter(|s| !zebras.contains(s))
        .collect();
    assert_eq!(
        search("needle batch", 0).await.len(),
        needles.len().min(10_000)
    );
    assert_eq!(
        search("needle batch", 5).await,
        needles[needles.len() - 5..]
    );
    assert_eq!(search("the needle in batch entry 19998", 0).await, [19998]);
    // Words of several terms must appear as written.
    assert_eq!(
        search("batch-entry", 0).await.len(),
        needles.len().min(10_000)
    );
    assert_eq!(search("entry-batch", 0).await, Vec::<u64>::new());

    // Live: the newest stored zebra, then each one shipped later, whether
    // the index has reached it yet or not.
    let mut live = query
        .logs(LogsRequest {
            search: "zebra".into(),
            follow: true,
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let later = [seq + 1, seq + block, seq + 3 * block + 7];
    shipped.zebras(&mut agent, 3, &later).await;
    let want: Vec<u64> = std::iter::once(20_000).chain(later).collect();
    let got = next_live(&mut live, want.len()).await;
    assert_eq!(got, want);
    drop(live);
    server.stop().await;
}
