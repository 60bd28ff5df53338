//! `jr_agent::run` against an in-process ingest service on 127.0.0.1:0
//! that keeps entries and cursors in memory and checks batch chaining the
//! way jr-server does. It can fail a stream on purpose to exercise
//! reconnect and resume, and play a server that does not take packed
//! batches.

mod common;

use common::*;
use jr_agent::{AgentConfig, ReaderKind};
use jr_journal::labels::Labels;
use jr_journal::Entry;
use jr_proto::v1::ingest_server::{Ingest, IngestServer};
use jr_proto::v1::{ship_request, ship_response, Ack, ShipRequest, ShipResponse, Welcome};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status, Streaming};

#[derive(Default)]
struct Store {
    committed: HashMap<String, String>,
    entries: Vec<Entry>,
    hellos: Vec<jr_proto::v1::Hello>,
    gap_entries: u64,
    /// Each stream's grpc-encoding (stream compression), in order.
    encodings: Vec<Option<String>>,
    packed_batches: u64,
    plain_batches: u64,
}

#[derive(Clone)]
struct MockIngest {
    store: Arc<Mutex<Store>>,
    /// Batches to accept before failing one stream with UNAVAILABLE; -1: never.
    fail_after: Arc<AtomicI64>,
    /// Acknowledge with a wrong sequence number.
    bad_acks: Arc<AtomicBool>,
    /// Take packed batches (Welcome.packed_entries), as jr-server does.
    packs: Arc<AtomicBool>,
}

type Reply = Result<ShipResponse, Status>;

#[tonic::async_trait]
impl Ingest for MockIngest {
    type ShipStream = ReceiverStream<Reply>;

    async fn ship(
        &self,
        request: Request<Streaming<ShipRequest>>,
    ) -> Result<Response<Self::ShipStream>, Status> {
        let encoding = request
            .metadata()
            .get("grpc-encoding")
            .map(|v| v.to_str().unwrap().to_owned());
        self.store.lock().unwrap().encodings.push(encoding);
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(status) = this.session(&mut inbound, &tx).await {
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

impl MockIngest {
    async fn session(
        &self,
        inbound: &mut Streaming<ShipRequest>,
        tx: &mpsc::Sender<Reply>,
    ) -> Result<(), Status> {
        let hello = match inbound.message().await? {
            Some(ShipRequest {
                kind: Some(ship_request::Kind::Hello(h)),
            }) => h,
            _ => return Err(Status::failed_precondition("Hello first")),
        };
        let machine = hello.machine_id.clone();
        let welcome = {
            let mut s = self.store.lock().unwrap();
            s.hellos.push(hello);
            let cursor = s.committed.get(&machine).cloned();
            Welcome {
                known: cursor.is_some(),
                cursor: cursor.unwrap_or_default(),
                max_batch_entries: 0,
                max_batch_bytes: 0,
                packed_entries: self.packs.load(Ordering::SeqCst),
            }
        };
        let _ = tx
            .send(Ok(ShipResponse {
                kind: Some(ship_response::Kind::Welcome(welcome)),
            }))
            .await;
        while let Some(msg) = inbound.message().await? {
            let mut b = match msg.kind {
                Some(ship_request::Kind::Batch(b)) => b,
                // Heads (heartbeats) are not acknowledged.
                Some(ship_request::Kind::Head(_)) => continue,
                _ => return Err(Status::failed_precondition("second Hello")),
            };
            if self.fail_after.fetch_sub(1, Ordering::SeqCst) == 0 {
                return Err(Status::unavailable("injected failure"));
            }
            let packed = !b.packed_entries.is_empty();
            if packed {
                if !self.packs.load(Ordering::SeqCst) {
                    return Err(Status::invalid_argument("packed batch to an older server"));
                }
                b.entries = unpack(&b.packed_entries);
            }
            let ack = {
                let mut s = self.store.lock().unwrap();
                if packed {
                    s.packed_batches += 1;
                } else if !b.entries.is_empty() {
                    s.plain_batches += 1;
                }
                if let Some(c) = s.committed.get(&machine) {
                    if *c != b.prev_cursor {
                        return Err(Status::failed_precondition(format!(
                            "batch continues from {:?}, committed is {c:?}",
                            b.prev_cursor
                        )));
                    }
                }
                let stored = b.entries.len() as u64;
                s.entries.extend(b.entries);
                s.gap_entries += b.gap_entries;
                if !b.last_cursor.is_empty() {
                    s.committed.insert(machine.clone(), b.last_cursor.clone());
                }
                let bad = self.bad_acks.load(Ordering::SeqCst);
                Ack {
                    seq: if bad { b.seq + 100 } else { b.seq },
                    cursor: b.last_cursor,
                    stored,
                }
            };
            let _ = tx
                .send(Ok(ShipResponse {
                    kind: Some(ship_response::Kind::Ack(ack)),
                }))
                .await;
        }
        Ok(())
    }
}

/// `Batch.packed_entries` back into entries.
fn unpack(packed: &[u8]) -> Vec<Entry> {
    use prost::Message as _;
    let size = zstd::zstd_safe::get_frame_content_size(packed)
        .unwrap()
        .expect("content size in the frame header");
    let content = zstd::bulk::decompress(packed, size as usize).unwrap();
    jr_proto::v1::PackedEntries::decode(content.as_slice())
        .unwrap()
        .entries
}

struct Server {
    addr: SocketAddr,
    store: Arc<Mutex<Store>>,
    fail_after: Arc<AtomicI64>,
    bad_acks: Arc<AtomicBool>,
    packs: Arc<AtomicBool>,
    stop: CancellationToken,
}

async fn start_server() -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mock = MockIngest {
        store: Arc::default(),
        fail_after: Arc::new(AtomicI64::new(-1)),
        bad_acks: Arc::default(),
        packs: Arc::new(AtomicBool::new(true)),
    };
    let (store, fail_after, bad_acks, packs) = (
        mock.store.clone(),
        mock.fail_after.clone(),
        mock.bad_acks.clone(),
        mock.packs.clone(),
    );
    let svc = IngestServer::new(mock)
        .accept_compressed(CompressionEncoding::Zstd)
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Zstd);
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), s.cancelled())
            .await
            .unwrap();
    });
    Server {
        addr,
        store,
        fail_after,
        bad_acks,
        packs,
        stop,
    }
}

fn config(server: &Server, journal: &Path, state: &Path) -> AgentConfig {
    AgentConfig {
        server: format!("http://{}", server.addr),
        file: vec![journal.to_path_buf()],
        no_follow: true,
        batch_entries: 7,
        max_inflight: 2,
        linger: Duration::from_millis(20),
        state_file: Some(state.to_path_buf()),
        ..Default::default()
    }
}

fn stored_messages(server: &Server) -> Vec<Vec<u8>> {
    let s = server.store.lock().unwrap();
    s.entries
        .iter()
        .map(|e| Labels::of(&e.fields).message.unwrap_or_default().to_vec())
        .collect()
}

fn expected(from: u64, to: u64) -> Vec<Vec<u8>> {
    (from..to)
        .map(|i| format!("entry {i}").into_bytes())
        .collect()
}

async fn run(cfg: AgentConfig) -> jr_agent::RunSummary {
    tokio::time::timeout(
        Duration::from_secs(60),
        jr_agent::run(cfg, CancellationToken::new()),
    )
    .await
    .expect("agent finished in time")
    .expect("agent succeeded")
}

#[tokio::test]
async fn no_follow_ships_every_entry_once_then_resumes_after_the_server_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let journal = journal_path(dir.path(), "ship");
    let state = dir.path().join("agent.state");
    write_journal(&journal, &plain(0, 50, "a.service"));
    let server = start_server().await;

    let summary = run(config(&server, &journal, &state)).await;
    assert!(summary.finished);
    assert_eq!(summary.metrics.acknowledged, 50);
    assert_eq!(stored_messages(&server), expected(0, 50));
    {
        let s = server.store.lock().unwrap();
        let hello = &s.hellos[0];
        assert_eq!(hello.machine_id, MACHINE_ID, "identity is the journal's");
        assert_eq!(hello.hostname, "fixture-host");
        assert_eq!(hello.boot_id, BOOT_ID);
        // zstd (the default) packs batches on an uncompressed stream.
        assert!(s.packed_batches > 0 && s.plain_batches == 0);
        assert_eq!(s.encodings, [None]);
    }
    let saved = std::fs::read_to_string(&state).unwrap();
    let last = server.store.lock().unwrap().entries[49].cursor.clone();
    assert!(
        saved.contains(&last),
        "state file holds the last acknowledged cursor"
    );

    // More entries arrive; a second run ships only those.
    write_journal(&journal, &plain(50, 10, "a.service"));
    let summary = run(config(&server, &journal, &state)).await;
    assert_eq!(summary.metrics.acknowledged, 10);
    assert_eq!(stored_messages(&server), expected(0, 60));
    server.stop.cancel();
}

#[tokio::test]
async fn an_older_server_gets_unpacked_batches_on_a_compressed_stream() {
    let dir = tempfile::tempdir().unwrap();
    let journal = journal_path(dir.path(), "older");
    let state = dir.path().join("agent.state");
    write_journal(&journal, &plain(0, 30, "a.service"));
    let server = start_server().await;
    server.packs.store(false, Ordering::SeqCst);
    // One failed stream on the way: the agent does not ask again.
    server.fail_after.store(2, Ordering::SeqCst);

    let summary = run(config(&server, &journal, &state)).await;
    assert_eq!(summary.metrics.acknowledged, 30);
    assert_eq!(stored_messages(&server), expected(0, 30));
    let s = server.store.lock().unwrap();
    assert_eq!((s.packed_batches, s.hellos.len()), (0, 3));
    assert!(s.plain_batches > 0);
    // The first stream asked; every later one is compressed.
    assert_eq!(
        s.encodings,
        [None, Some("zstd".to_owned()), Some("zstd".to_owned())]
    );
    drop(s);
    server.stop.cancel();
}

#[tokio::test]
async fn native_reader_ships_without_journalctl_and_resumes_a_journalctl_position() {
    let dir = tempfile::tempdir().unwrap();
    let journal = journal_path(dir.path(), "readers");
    let state = dir.path().join("agent.state");
    write_journal(&journal, &plain(0, 30, "a.service"));
    let server = start_server().await;

    let summary = run(AgentConfig {
        reader: ReaderKind::Journalctl,
        ..config(&server, &journal, &state)
    })
    .await;
    assert_eq!(summary.metrics.acknowledged, 30);

    // The native reader resumes after journalctl's cursor, and needs
    // journalctl for nothing: not for identity, not for reading.
    write_journal(&journal, &plain(30, 12, "a.service"));
    let summary = run(AgentConfig {
        reader: ReaderKind::Native,
        journalctl: "/nonexistent/journalctl".into(),
        ..config(&server, &journal, &state)
    })
    .await;
    assert_eq!(summary.metrics.acknowledged, 12);
    assert_eq!(summary.metrics.reader_fallbacks, 0);
    assert_eq!(summary.metrics.gaps, 0);
    assert_eq!(stored_messages(&server), expected(0, 42));
    {
        let s = server.store.lock().unwrap();
        let hello = &s.hellos[1];
        assert_eq!(
            (hello.machine_id.as_str(), hello.hostname.as_str()),
            (MACHINE_ID, "fixture-host"),
            "identity read natively"
        );
        assert_eq!(hello.boot_id, BOOT_ID);
    }
    server.stop.cancel();
}

#[tokio::test]
async fn a_failed_stream_reconnects_and_resumes_without_loss_or_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let journal = journal_path(dir.path(), "fail");
    let state = dir.path().join("agent.state");
    write_journal(&journal, &plain(0, 40, "a.service"));
    let server = start_server().await;
    server.fail_after.store(3, Ordering::SeqCst);

    let summary = run(config(&server, &journal, &state)).await;
    assert!(summary.metrics.reconnects >= 1, "{summary}");
    assert!(summary.metrics.reader_restarts >= 1, "{summary}");
    assert_eq!(stored_messages(&server), expected(0, 40));
    server.stop.cancel();
}

#[tokio::test]
async fn unknown_machine_falls_back_to_the_state_file_and_filters_advance_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let journal = journal_path(dir.path(), "state");
    let state = dir.path().join("agent.state");
    let mut specs = plain(0, 20, "a.service");
    specs.extend(plain(20, 5, "noise.service"));
    write_journal(&journal, &specs);

    // A first server stores the first 10 entries; the agent's state file
    // then holds entry 9's cursor.
    let first = start_server().await;
    let cfg = AgentConfig {
        file: vec![journal.clone()],
        ..config(&first, &journal, &state)
    };
    let summary = run(AgentConfig {
        matches: vec!["MESSAGE=entry 0".into()],
        ..cfg.clone()
    })
    .await;
    assert_eq!(summary.metrics.acknowledged, 1);
    assert_eq!(summary.metrics.filtered, 24);
    let last = first
        .store
        .lock()
        .unwrap()
        .committed
        .get(MACHINE_ID)
        .cloned()
        .unwrap();
    assert!(
        last.contains("i=19"),
        "filtered entries advanced the cursor to the end: {last}"
    );
    first.stop.cancel();

    // Rewind the state file to entry 9 and use a fresh server that knows
    // nothing: the agent resumes after the state file's cursor.
    let (all, _) = {
        let out = std::process::Command::new("journalctl")
            .args(["-o", "export", "--file"])
            .arg(&journal)
            .output()
            .unwrap();
        (String::from_utf8_lossy(&out.stdout).into_owned(), ())
    };
    let cursors: Vec<&str> = all
        .lines()
        .filter_map(|l| l.strip_prefix("__CURSOR="))
        .collect();
    std::fs::write(
        &state,
        format!(
            "{{\"machine_id\":\"{MACHINE_ID}\",\"cursor\":\"{}\"}}",
            cursors[9]
        ),
    )
    .unwrap();
    let second = start_server().await;
    let summary = run(AgentConfig {
        server: format!("http://{}", second.addr),
        exclude_unit: vec!["noise.*".into()],
        ..cfg
    })
    .await;
    assert_eq!(summary.metrics.acknowledged, 10);
    assert_eq!(summary.metrics.filtered, 5);
    assert_eq!(stored_messages(&second), expected(10, 20));
    second.stop.cancel();
}

#[tokio::test]
async fn follow_mode_ships_appends_and_stops_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let journal = journal_path(dir.path(), "follow");
    let state = dir.path().join("agent.state");
    write_journal(&journal, &plain(0, 5, "a.service"));
    let server = start_server().await;
    let cfg = AgentConfig {
        no_follow: false,
        ..config(&server, &journal, &state)
    };
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(jr_agent::run(cfg, shutdown.clone()));

    let wait_for = |n: usize| {
        let store = server.store.clone();
        async move {
            for _ in 0..400 {
                if store.lock().unwrap().entries.len() >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            panic!("server never reached {n} entries");
        }
    };
    wait_for(5).await;
    write_journal(&journal, &plain(5, 3, "a.service"));
    wait_for(8).await;
    shutdown.cancel();
    let summary = tokio::time::timeout(Duration::from_secs(15), agent)
        .await
        .expect("agent stops promptly")
        .unwrap()
        .unwrap();
    assert!(!summary.finished);
    assert_eq!(summary.metrics.acknowledged, 8);
    assert_eq!(stored_messages(&server), expected(0, 8));
    server.stop.cancel();
}

#[tokio::test]
async fn bad_configuration_fails_before_any_io() {
    let err = jr_agent::run(
        AgentConfig {
            unit: vec!["[".into()],
            ..Default::default()
        },
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("unit glob"), "{err}");
}

#[tokio::test]
async fn an_ack_out_of_order_ends_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let journal = journal_path(dir.path(), "acks");
    let state = dir.path().join("agent.state");
    write_journal(&journal, &plain(0, 5, "a.service"));
    let server = start_server().await;
    server.bad_acks.store(true, Ordering::SeqCst);
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(jr_agent::run(
        config(&server, &journal, &state),
        shutdown.clone(),
    ));
    // The agent rejects the ack, reconnects and tries again.
    for _ in 0..400 {
        if server.store.lock().unwrap().hellos.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        server.store.lock().unwrap().hellos.len() >= 2,
        "the agent reconnected"
    );
    shutdown.cancel();
    let summary = tokio::time::timeout(Duration::from_secs(15), agent)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!summary.finished);
    assert_eq!(
        summary.metrics.acknowledged, 0,
        "a mismatched ack acknowledges nothing"
    );
    assert!(!state.exists(), "no position saved from a bad ack");
    server.stop.cancel();
}
