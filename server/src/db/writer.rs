//! The single writer task: the only code that writes to the database.
//!
//! Sessions send it requests on one bounded queue (a full queue makes them
//! wait, which in turn slows their agents: nothing is dropped). The writer
//! takes the first request, opens a transaction, and keeps applying
//! whatever else is queued until the group holds `commit_entries` entries,
//! `commit_latency` has passed since the first, or the queue is empty. It
//! then commits once and only then answers every request of the group, so
//! an Ack always means "on disk together with the host's cursor".
//!
//! Each batch is checked inside the transaction: its session must still
//! hold the machine (generation check, see `sessions`), and its
//! `prev_cursor` must equal the host's cursor as of everything applied
//! before it (when the host has one). A failing batch is answered with an
//! error and not stored; the rest of the group goes on. A failing commit
//! (disk full, I/O error) rolls the whole group back and answers each
//! request with a storage error; the agents reconnect and resend, and the
//! writer goes on with the next group.

use crate::db::hosts::{self, HostHello, HostState};
use crate::db::insert::Inserter;
use crate::db::intern::Interner;
use crate::error::{quote, Error};
use crate::sessions::Sessions;
use jr_proto::v1::{Ack, Batch};
use sqlx::{Executor as _, SqliteConnection};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Requests waiting for the writer. Each holds one batch, so this bounds
/// the memory of batches accepted but not yet stored.
const QUEUE: usize = 64;

/// The answer to a Hello: where the host's journal was committed up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub cursor: String,
    /// The server has stored something for this machine before.
    pub known: bool,
}

/// What the writer answers.
#[derive(Debug)]
pub enum Response {
    Position(Position),
    Ack(Ack),
}

pub type Reply = oneshot::Sender<Result<Response, Error>>;

/// Work for the writer.
pub enum Request {
    /// Create or refresh the host's row and read its committed cursor
    /// (behind everything queued before).
    Hello { hello: HostHello, reply: Reply },
    /// Store a batch if its session still holds the machine and it
    /// continues from the committed cursor.
    Commit {
        machine_id: Arc<str>,
        generation: u64,
        batch: Batch,
        reply: Reply,
    },
}

impl Request {
    fn entries(&self) -> usize {
        match self {
            Request::Hello { .. } => 0,
            Request::Commit { batch, .. } => batch.entries.len(),
        }
    }
}

/// Counters the writer keeps for progress reports and metrics.
#[derive(Debug, Default)]
pub struct Stats {
    /// Entries stored, over all hosts and all time.
    pub stored: AtomicU64,
    /// Group commits done since start-up.
    pub commits: AtomicU64,
    /// Group commits that failed and were rolled back.
    pub failed_commits: AtomicU64,
    /// Id of the newest committed entry; wakes live-tail followers.
    pub committed: tokio::sync::watch::Sender<i64>,
}

/// The sending side of the writer's queue.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Request>,
}

impl WriterHandle {
    /// Queues a request and returns the receiver of its answer.
    pub async fn submit(
        &self,
        make: impl FnOnce(Reply) -> Request,
    ) -> Result<oneshot::Receiver<Result<Response, Error>>, Error> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| Error::ShuttingDown)?;
        Ok(rx)
    }
}

/// Group-commit bounds.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub commit_entries: usize,
    pub commit_latency: Duration,
}

/// The writer task's state.
pub struct Writer {
    conn: SqliteConnection,
    rx: mpsc::Receiver<Request>,
    sessions: Arc<Sessions>,
    stats: Arc<Stats>,
    bounds: Bounds,
    interner: Interner,
    inserter: Inserter,
    /// Hosts as committed.
    hosts: HashMap<String, HostState>,
    /// Hosts as changed by the open transaction.
    staged: HashMap<String, HostState>,
}

/// A request applied to the open transaction, answered after commit.
struct Pending {
    reply: Reply,
    result: Result<Response, Error>,
    stored: u64,
}

impl Writer {
    /// Loads the writer's state from the database; returns the writer (to
    /// be run as a task) and the handle sessions submit through.
    pub async fn new(
        mut conn: SqliteConnection,
        sessions: Arc<Sessions>,
        bounds: Bounds,
    ) -> Result<(Writer, WriterHandle, Arc<Stats>), sqlx::Error> {
        let hosts = hosts::load(&mut conn).await?;
        let stats = Arc::new(Stats::default());
        stats
            .stored
            .store(hosts::total_entries(&mut conn).await?, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer = Writer {
            conn,
            rx,
            sessions,
            stats: stats.clone(),
            bounds,
            interner: Interner::default(),
            inserter: Inserter::default(),
            hosts,
            staged: HashMap::new(),
        };
        Ok((writer, WriterHandle { tx }, stats))
    }

    /// Runs until every [`WriterHandle`] is dropped and the queue is empty.
    pub async fn run(mut self) {
        while let Some(first) = self.rx.recv().await {
            self.group(first).await;
        }
        tracing::debug!("writer stopped: queue closed and drained");
    }

    async fn group(&mut self, first: Request) {
        let started = Instant::now();
        if let Err(e) = self.conn.execute("BEGIN").await {
            tracing::error!(error = %e, "cannot begin a transaction; the request was not stored");
            let p = Pending::storage_error(first);
            let _ = p.reply.send(p.result);
            return;
        }
        let mut pending: Vec<Pending> = Vec::new();
        let mut failure = None;
        let mut next = Some(first);
        let mut entries = 0usize;
        while let Some(req) = next.take() {
            entries += req.entries();
            match self.apply(req).await {
                Ok(p) => pending.push(p),
                Err((p, e)) => {
                    pending.push(p);
                    failure = Some(e);
                    break;
                }
            }
            if entries >= self.bounds.commit_entries
                || started.elapsed() >= self.bounds.commit_latency
            {
                break;
            }
            next = self.rx.try_recv().ok();
        }
        let outcome = match failure {
            None => self.conn.execute("COMMIT").await.map(drop),
            Some(e) => Err(e),
        };
        match outcome {
            Ok(()) => {
                self.hosts.extend(self.staged.drain());
                self.interner.committed();
                let stored: u64 = pending.iter().map(|p| p.stored).sum();
                self.stats.stored.fetch_add(stored, Ordering::Relaxed);
                self.stats.commits.fetch_add(1, Ordering::Relaxed);
                tracing::trace!(requests = pending.len(), stored, "group committed");
                if stored > 0 {
                    self.publish_head().await;
                }
                for p in pending {
                    let _ = p.reply.send(p.result);
                }
            }
            Err(e) => {
                if let Err(rb) = self.conn.execute("ROLLBACK").await {
                    tracing::debug!(error = %rb, "rollback after failed group");
                }
                self.staged.clear();
                self.interner.forget_uncommitted();
                self.stats.failed_commits.fetch_add(1, Ordering::Relaxed);
                let batches = pending.len();
                tracing::error!(error = %e, batches, "group commit failed and was rolled back; its agents will resend");
                for p in pending {
                    let result = match p.result {
                        Ok(_) => Err(Error::Storage),
                        refused => refused,
                    };
                    let _ = p.reply.send(result);
                }
            }
        }
    }

    /// Applies one request to the open transaction. A refused batch is an
    /// `Ok` with an error result; `Err` means the transaction broke.
    async fn apply(&mut self, req: Request) -> Result<Pending, (Pending, sqlx::Error)> {
        match req {
            Request::Hello { hello, reply } => match hosts::upsert(&mut self.conn, &hello).await {
                Ok(state) => {
                    let position = Position {
                        known: !state.cursor.is_empty(),
                        cursor: state.cursor.clone(),
                    };
                    self.staged.insert(hello.machine_id, state);
                    Ok(Pending::ok(reply, Response::Position(position), 0))
                }
                Err(e) => Err((Pending::err(reply, Error::Storage), e)),
            },
            Request::Commit {
                machine_id,
                generation,
                batch,
                reply,
            } => {
                if !self.sessions.is_current(&machine_id, generation) {
                    let machine_id = machine_id.to_string();
                    return Ok(Pending::err(reply, Error::Superseded { machine_id }));
                }
                let host = match self.check_continuity(&machine_id, &batch) {
                    Ok(h) => h,
                    Err(e) => return Ok(Pending::err(reply, e)),
                };
                match self.store(host.id, &host.cursor, &batch).await {
                    Ok((cursor, stored)) => {
                        let ack = Ack {
                            seq: batch.seq,
                            cursor: cursor.clone(),
                            stored,
                        };
                        self.staged.insert(
                            machine_id.to_string(),
                            HostState {
                                id: host.id,
                                cursor,
                            },
                        );
                        Ok(Pending::ok(reply, Response::Ack(ack), stored))
                    }
                    Err(e) => Err((Pending::err(reply, Error::Storage), e)),
                }
            }
        }
    }

    /// Tells followers the id of the newest committed entry.
    async fn publish_head(&mut self) {
        match sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(id) FROM entries")
            .fetch_one(&mut self.conn)
            .await
        {
            Ok(Some(id)) => {
                self.stats.committed.send_replace(id);
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "cannot read the newest entry id"),
        }
    }

    /// The host as of the open transaction, if `batch` continues from its
    /// cursor.
    fn check_continuity(&self, machine_id: &str, batch: &Batch) -> Result<HostState, Error> {
        let host = self
            .staged
            .get(machine_id)
            .or_else(|| self.hosts.get(machine_id))
            .cloned()
            .ok_or_else(|| {
                Error::FailedPrecondition(format!("machine {machine_id} has not said Hello"))
            })?;
        if !host.cursor.is_empty() && batch.prev_cursor != host.cursor {
            return Err(Error::FailedPrecondition(format!(
                "batch {} continues from cursor {} but the committed cursor of machine {machine_id} is {}; \
                 reconnect to resume from the committed cursor",
                batch.seq,
                quote(&batch.prev_cursor),
                quote(&host.cursor),
            )));
        }
        Ok(host)
    }

    /// Inserts the batch's entries and advances the host; returns the
    /// host's new cursor and the number of entries stored.
    async fn store(
        &mut self,
        host_id: i64,
        old_cursor: &str,
        batch: &Batch,
    ) -> Result<(String, u64), sqlx::Error> {
        let stored = self
            .inserter
            .insert(&mut self.conn, &mut self.interner, host_id, &batch.entries)
            .await?;
        let cursor = if batch.last_cursor.is_empty() {
            old_cursor.to_owned()
        } else {
            batch.last_cursor.clone()
        };
        hosts::advance(&mut self.conn, host_id, &cursor, stored, batch.gap_entries).await?;
        Ok((cursor, stored))
    }
}

impl Pending {
    fn ok(reply: Reply, response: Response, stored: u64) -> Pending {
        Pending {
            reply,
            result: Ok(response),
            stored,
        }
    }

    fn err(reply: Reply, e: Error) -> Pending {
        Pending {
            reply,
            result: Err(e),
            stored: 0,
        }
    }

    fn storage_error(req: Request) -> Pending {
        let reply = match req {
            Request::Hello { reply, .. } | Request::Commit { reply, .. } => reply,
        };
        Pending::err(reply, Error::Storage)
    }
}
