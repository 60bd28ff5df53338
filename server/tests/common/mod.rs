//! A real server on 127.0.0.1:0 with a temporary SQLite file, and a raw
//! gRPC client that speaks the ingest protocol by hand.

#![allow(dead_code)]

use bytes::Bytes;
use jr_proto::v1::ingest_client::IngestClient;
use jr_proto::v1::query_client::QueryClient;
use jr_proto::v1::ship_request::Kind as In;
use jr_proto::v1::ship_response::Kind as Out;
use jr_proto::v1::{
    Ack, Batch, Entry, Field, Hello, LogsRequest, ShipRequest, ShipResponse, Welcome,
};
use jr_server::db::retention::RetentionStats;
use jr_server::{Server, ServerConfig, ServerError};
use sqlx::sqlite::SqlitePool;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};

/// Longest a test waits for any single answer.
pub const WAIT: Duration = Duration::from_secs(20);

pub const BOOT: &str = "0123456789abcdef0123456789abcdef";
pub const SEQNUM_ID: &str = "4f30609c77d9406e86aba8a29393cad7";

pub fn machine(n: u8) -> String {
    format!("{n:02x}").repeat(16)
}

pub fn config(db: &Path) -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".into(),
        db: db.to_owned(),
        // Servers of tests run side by side; none is scraped.
        metrics_listen: Some("none".into()),
        ..ServerConfig::default()
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub db: PathBuf,
    /// What retention has done (passes, deletions).
    pub retention: Arc<RetentionStats>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), ServerError>>,
}

impl TestServer {
    pub async fn start(config: ServerConfig) -> TestServer {
        let db = config.db.clone();
        let server = Server::bind(config).await.expect("bind");
        let addr = server.local_addr();
        let retention = server.retention_stats();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server.serve(shutdown.clone()));
        TestServer {
            addr,
            db,
            retention,
            shutdown,
            task,
        }
    }

    /// Graceful stop; fails the test if serving failed.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("server stops in time")
            .expect("server task")
            .expect("server ran cleanly");
    }

    pub async fn connect(&self) -> Agent {
        Agent::connect(self.addr).await
    }

    /// A read-only view of the database, the server's (the full-text
    /// index attached as `fts`).
    pub async fn read(&self) -> SqlitePool {
        read_pool(&self.db).await
    }

    pub async fn query(&self) -> QueryClient<tonic::transport::Channel> {
        QueryClient::connect(format!("http://{}", self.addr))
            .await
            .expect("query connects")
    }

    /// Entries whose MESSAGE holds `word`, through the query service's
    /// full-text search.
    pub async fn search(&self, word: &str) -> usize {
        let mut stream = self
            .query()
            .await
            .logs(LogsRequest {
                search: word.into(),
                ..Default::default()
            })
            .await
            .expect("logs")
            .into_inner();
        let mut n = 0;
        while let Some(page) = stream.message().await.expect("logs page") {
            n += page.entries.len();
        }
        n
    }
}

/// A read-only view of the database at `db`, as the server's readers have
/// it (the full-text index attached as `fts`).
pub async fn read_pool(db: &Path) -> SqlitePool {
    jr_server::db::open::read_pool(db, jr_server::config::Synchronous::Normal, 1)
        .await
        .expect("open db for reading")
}

/// Waits until the full-text index covers every entry up to `id`.
pub async fn wait_indexed(pool: &SqlitePool, id: i64) -> i64 {
    tokio::time::timeout(WAIT, async {
        loop {
            let upto = jr_server::db::fts::indexed(pool).await.unwrap();
            if upto >= id {
                return upto;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the index reaches the newest entry")
}

pub async fn count(pool: &SqlitePool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM journal")
        .fetch_one(pool)
        .await
        .expect("count")
}

/// One agent stream, driven by hand.
pub struct Agent {
    tx: mpsc::Sender<ShipRequest>,
    rx: Streaming<ShipResponse>,
}

impl Agent {
    pub async fn connect(addr: SocketAddr) -> Agent {
        let mut client = IngestClient::connect(format!("http://{addr}"))
            .await
            .expect("connect")
            .max_encoding_message_size(usize::MAX);
        let (tx, rx) = mpsc::channel(64);
        let rx = client
            .ship(ReceiverStream::new(rx))
            .await
            .expect("stream opens")
            .into_inner();
        Agent { tx, rx }
    }

    pub async fn send(&self, kind: In) {
        // A send fails only once the server ended the stream, which the
        // next `recv` reports.
        let _ = self.tx.send(ShipRequest { kind: Some(kind) }).await;
    }

    pub async fn recv(&mut self) -> Result<Out, Status> {
        let m = tokio::time::timeout(WAIT, self.rx.message())
            .await
            .expect("answer in time")?;
        Ok(m.and_then(|m| m.kind)
            .expect("a response, not end of stream"))
    }

    /// The status the stream ends with.
    pub async fn recv_error(&mut self) -> Status {
        match self.recv().await {
            Ok(other) => panic!("expected an error, got {other:?}"),
            Err(s) => s,
        }
    }

    pub async fn hello(&mut self, machine_id: &str) -> Welcome {
        self.send(In::Hello(Hello {
            machine_id: machine_id.into(),
            hostname: format!("host-{}", &machine_id[..4]),
            boot_id: BOOT.into(),
            agent_version: "test".into(),
        }))
        .await;
        match self.recv().await.expect("welcome") {
            Out::Welcome(w) => w,
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    pub async fn batch(&self, seq: u64, prev: &str, entries: Vec<Entry>) -> String {
        let last = entries.last().map(|e| e.cursor.clone()).unwrap_or_default();
        self.send(In::Batch(Batch {
            seq,
            prev_cursor: prev.into(),
            last_cursor: last.clone(),
            entries,
            gap_entries: 0,
            head: None,
            packed_entries: Vec::new(),
        }))
        .await;
        last
    }

    pub async fn ack(&mut self) -> Ack {
        match self.recv().await.expect("ack") {
            Out::Ack(a) => a,
            other => panic!("expected Ack, got {other:?}"),
        }
    }
}

pub fn field(name: &str, value: &[u8]) -> Field {
    Field {
        name: name.to_owned().into(),
        value: Bytes::copy_from_slice(value),
    }
}

/// The cursor sd-journal would give entry `seqnum` of our test journal.
pub fn cursor(seqnum: u64, realtime: u64, monotonic: u64, xor: u64) -> String {
    format!("s={SEQNUM_ID};i={seqnum:x};b={BOOT};m={monotonic:x};t={realtime:x};x={xor:x}")
}

/// Entry `seqnum` of the test journal, stamped `realtime`, with `fields`.
pub fn entry_with(seqnum: u64, realtime: u64, fields: Vec<Field>) -> Entry {
    let monotonic = 5_000_000 + seqnum;
    Entry {
        cursor: cursor(
            seqnum,
            realtime,
            monotonic,
            seqnum.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        ),
        realtime_usec: realtime,
        monotonic_usec: monotonic,
        fields,
    }
}

/// A plain entry: unit `test-N.service`, message `message N`.
pub fn entry(seqnum: u64) -> Entry {
    entry_with(
        seqnum,
        1_700_000_000_000_000 + seqnum * 1000,
        vec![
            field(
                "_SYSTEMD_UNIT",
                format!("test-{}.service", seqnum % 3).as_bytes(),
            ),
            field("PRIORITY", b"6"),
            field("SYSLOG_IDENTIFIER", b"test"),
            field("_PID", b"42"),
            field("MESSAGE", format!("message {seqnum}").as_bytes()),
        ],
    )
}

pub fn entries(range: std::ops::Range<u64>) -> Vec<Entry> {
    range.map(entry).collect()
}
