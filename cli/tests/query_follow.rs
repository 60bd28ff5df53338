//! `jrctl logs -f` while two agents ship: the last lines first, then every
//! new entry exactly once, in journal order per host.

mod common;

use common::{jrctl_command, Cluster, Fixture, Host, JournalWriter, Layout};
use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

const BEFORE: u64 = 30;
const ROUNDS: u64 = 10;
const PER_ROUND: u64 = 25;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_prints_every_entry_once_in_order() {
    let cluster = Cluster::start().await;
    let hosts = [Host::new("left"), Host::new("right")];
    let dirs: Vec<_> = hosts
        .iter()
        .map(|h| {
            let d = cluster.path(&format!("journal-{}", h.hostname));
            std::fs::create_dir_all(&d).expect("journal directory");
            d
        })
        .collect();
    let open = |name: &str| -> Vec<JournalWriter> {
        dirs.iter()
            .map(|d| JournalWriter::create(&d.join(name), Layout::Default))
            .collect()
    };
    let mut fx = Fixture::new();
    let mut tag_host = HashMap::new();
    let mut append = |fx: &mut Fixture, writers: &mut Vec<JournalWriter>, n: u64| {
        for i in 0..n {
            let w = (i % 2) as usize;
            let mut e = fx.make(&hosts[w]);
            let tag = e.tag;
            e.unit("load.service")
                .identifier("load")
                .priority(6)
                .message(format!("entry {tag}"));
            tag_host.insert(tag, hosts[w].hostname.clone());
            writers[w].append(&e);
        }
        for w in writers.iter_mut() {
            w.flush();
        }
    };
    // A complete journal file per host before the agents start.
    let mut first = open("system@0001.journal");
    append(&mut fx, &mut first, BEFORE);
    for w in first {
        w.finish();
    }

    for d in &dirs {
        cluster.ship(d).await;
    }
    // Two live sessions that resume after the stored cursor and keep
    // following their journals.
    let stop = CancellationToken::new();
    let agents: Vec<_> = dirs
        .iter()
        .map(|d| cluster.follow(d, stop.clone()))
        .collect();
    let stats_has = |n: u64| {
        let url = cluster.url.clone();
        async move {
            let out = common::jrctl_at(&url, &["stats"]).await;
            String::from_utf8_lossy(&out.stdout).contains(&format!("entries:        {n}\n"))
        }
    };
    assert!(
        common::eventually(400, || stats_has(BEFORE)).await,
        "first entries stored: {}",
        String::from_utf8_lossy(&common::jrctl_at(&cluster.url, &["stats"]).await.stdout)
    );

    let mut child = jrctl_command(&cluster.url, &["logs", "-f", "-n", "5", "-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start jrctl -f");
    let lines = Arc::new(Mutex::new(Vec::<serde_json::Value>::new()));
    let reader = {
        let lines = lines.clone();
        let stdout = child.stdout.take().expect("stdout");
        tokio::spawn(async move {
            let mut r = BufReader::new(stdout).lines();
            while let Ok(Some(l)) = r.next_line().await {
                let v: serde_json::Value = serde_json::from_str(&l).expect("json line");
                lines.lock().expect("lines").push(v);
            }
        })
    };
    let count = |n: usize| {
        let lines = lines.clone();
        async move { lines.lock().expect("lines").len() >= n }
    };
    assert!(
        common::eventually(400, || count(5)).await,
        "the last 5 lines are printed"
    );

    // Both journals grow while jrctl follows.
    let mut writers = open("system.journal");
    for _ in 0..ROUNDS {
        append(&mut fx, &mut writers, PER_ROUND);
        tokio::task::yield_now().await;
    }
    let total = (5 + ROUNDS * PER_ROUND) as usize;
    let all = common::eventually(600, || count(total)).await;
    // Give a duplicate the chance to show up before judging.
    assert!(common::eventually(400, || stats_has(BEFORE + ROUNDS * PER_ROUND)).await);
    let _ = common::eventually(10, || async { false }).await;
    child.kill().await.expect("stop jrctl");
    let _ = reader.await;
    stop.cancel();
    for a in agents {
        let _ = a.await;
    }
    for w in writers {
        w.finish();
    }

    let lines = lines.lock().expect("lines").clone();
    assert!(all, "printed {} of {total} lines", lines.len());
    let tags: Vec<u64> = lines
        .iter()
        .map(|v| {
            v["JR_TEST_ID"]
                .as_str()
                .and_then(|t| t.parse().ok())
                .expect("JR_TEST_ID")
        })
        .collect();
    // The last 5 stored entries first, oldest first.
    assert_eq!(tags[..5], [26, 27, 28, 29, 30]);
    let mut seen = std::collections::HashSet::new();
    for t in &tags {
        assert!(seen.insert(*t), "entry {t} printed twice");
    }
    let expected: std::collections::HashSet<u64> = (26..=BEFORE + ROUNDS * PER_ROUND).collect();
    assert_eq!(seen, expected, "every entry printed");
    // In journal order per host.
    for h in &hosts {
        let mine: Vec<u64> = tags
            .iter()
            .copied()
            .filter(|t| tag_host.get(t) == Some(&h.hostname))
            .collect();
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "{} out of order: {mine:?}",
            h.hostname
        );
    }
}

/// A follower whose server restarts reconnects after the last entry it
/// printed: nothing lost, nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_survives_a_server_restart() {
    let mut cluster = Cluster::start().await;
    let host = Host::new("restarted");
    let dir = cluster.path("journal");
    std::fs::create_dir_all(&dir).expect("journal directory");
    let mut fx = Fixture::new();
    let write = |fx: &mut Fixture, name: &str, n: u64| {
        let mut w = JournalWriter::create(&dir.join(name), Layout::Default);
        for _ in 0..n {
            let mut e = fx.make(&host);
            let tag = e.tag;
            e.unit("r.service")
                .priority(6)
                .message(format!("entry {tag}"));
            w.append(&e);
        }
        w.finish();
    };
    write(&mut fx, "system@1.journal", 20);
    cluster.ship(&dir).await;

    let mut child = jrctl_command(&cluster.url, &["logs", "-f", "-n", "3", "-o", "cat"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start jrctl -f");
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = lines.clone();
        let stdout = child.stdout.take().expect("stdout");
        tokio::spawn(async move {
            let mut r = BufReader::new(stdout).lines();
            while let Ok(Some(l)) = r.next_line().await {
                lines.lock().expect("lines").push(l);
            }
        })
    };
    let count = |n: usize| {
        let lines = lines.clone();
        async move { lines.lock().expect("lines").len() >= n }
    };
    assert!(
        common::eventually(400, || count(3)).await,
        "last lines printed"
    );

    cluster.restart().await;
    write(&mut fx, "system@2.journal", 10);
    cluster.ship(&dir).await;
    let all = common::eventually(400, || count(13)).await;
    let _ = common::eventually(10, || async { false }).await;
    child.kill().await.expect("stop jrctl");
    let _ = reader.await;
    let lines = lines.lock().expect("lines").clone();
    assert!(all, "printed: {lines:?}");
    let expected: Vec<String> = (18..=30).map(|t| format!("entry {t}")).collect();
    assert_eq!(lines, expected);
}
