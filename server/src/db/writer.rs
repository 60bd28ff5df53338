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
//!
//! The full-text index is not the writer's: it lives in a file of its own,
//! filled beside the writer (see `fts`).

use crate::db::gaps;
use crate::db::hosts::{self, HeadReport, HostHello, HostState};
use crate::db::insert::Inserter;
use crate::db::intern::Interner;
use crate::db::retention;
use crate::error::{quote, Error};
use crate::metrics::Reason;
use crate::sessions::Sessions;
use jr_proto::v1::{Ack, Batch};
use sqlx::{Executor as _, SqliteConnection};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

/// Requests waiting for the writer (the byte budget below is what bounds
/// their memory).
const QUEUE: usize = 64;
/// Encoded bytes of batches submitted and not yet applied by the writer,
/// over all sessions. A decoded batch takes a few times its encoded size,
/// so this is what bounds the server's memory for batches whatever the
/// number of agents and their windows; it holds more than one full group
/// (`--commit-entries` of typical entries), so the writer never waits for
/// it. A session whose batch does not fit waits (and so does its agent).
const BATCH_BUDGET: usize = 16 << 20;

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
    /// Heads recorded.
    Recorded,
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
    /// Record heads agents reported outside batches (heartbeats), many
    /// hosts in one request.
    Heads {
        heads: Vec<HeadReport>,
        reply: Reply,
    },
}

impl Request {
    fn entries(&self) -> usize {
        match self {
            Request::Hello { .. } | Request::Heads { .. } => 0,
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
    /// Commit latency, group sizes and refusals, for `/metrics`.
    pub counters: crate::metrics::Counters,
}

/// The sending side of the writer's queue.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Queued>,
    budget: Arc<Semaphore>,
}

/// A request in the queue with its share of [`BATCH_BUDGET`], given back
/// once the writer has applied it (and dropped the batch).
pub struct Queued {
    request: Request,
    room: Option<OwnedSemaphorePermit>,
}

impl WriterHandle {
    /// Queues a request and returns the receiver of its answer.
    pub async fn submit(
        &self,
        make: impl FnOnce(Reply) -> Request,
    ) -> Result<oneshot::Receiver<Result<Response, Error>>, Error> {
        let (reply, rx) = oneshot::channel();
        let request = make(reply);
        let room = match &request {
            Request::Commit { batch, .. } => {
                // A batch larger than the whole budget waits for all of it.
                let bytes = prost::Message::encoded_len(batch).clamp(1, BATCH_BUDGET);
                let permits = u32::try_from(bytes).unwrap_or(u32::MAX);
                let room = self.budget.clone().acquire_many_owned(permits).await;
                Some(room.map_err(|_| Error::ShuttingDown)?)
            }
            _ => None,
        };
        self.tx
            .send(Queued { request, room })
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
    rx: mpsc::Receiver<Queued>,
    sessions: Arc<Sessions>,
    stats: Arc<Stats>,
    bounds: Bounds,
    interner: Interner,
    inserter: Inserter,
    /// Hosts as committed.
    hosts: HashMap<String, HostState>,
    /// Hosts as changed by the open transaction.
    staged: HashMap<String, HostState>,
    /// Retention's queue, once [`Writer::maintenance`] made it.
    maintenance: Option<mpsc::Receiver<retention::Job>>,
    /// Id of the last entry inserted by the open transaction.
    last_id: Option<i64>,
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
            maintenance: None,
            last_id: None,
        };
        let budget = Arc::new(Semaphore::new(BATCH_BUDGET));
        Ok((writer, WriterHandle { tx, budget }, stats))
    }

    /// The queue retention sends its jobs through (see `retention`). Jobs
    /// run between group commits, never inside one; the writer picks
    /// fairly between this queue and the ingest queue.
    pub fn maintenance(&mut self, db: &std::path::Path) -> retention::Maintenance {
        let (handle, rx) = retention::Maintenance::channel(db);
        self.maintenance = Some(rx);
        handle
    }

    /// Runs until every [`WriterHandle`] is dropped and the queue is empty.
    pub async fn run(mut self) {
        loop {
            let next = tokio::select! {
                r = self.rx.recv() => r.map(Next::Group),
                Some(job) = next_job(&mut self.maintenance) => Some(Next::Job(job)),
            };
            match next {
                Some(Next::Group(first)) => self.group(first).await,
                Some(Next::Job(job)) => job.run(&mut self.conn).await,
                None => break,
            }
        }
        tracing::debug!("writer stopped: queue closed and drained");
    }

    async fn group(&mut self, first: Queued) {
        let started = Instant::now();
        // IMMEDIATE: the write lock is taken (waiting out the busy timeout)
        // before the first read below; a deferred transaction that read
        // first could not upgrade after another connection's write.
        if let Err(e) = self.conn.execute("BEGIN IMMEDIATE").await {
            tracing::error!(error = %e, "cannot begin a transaction; the request was not stored");
            let p = Pending::storage_error(first.request);
            let _ = p.reply.send(p.result);
            return;
        }
        self.last_id = None;
        let mut pending: Vec<Pending> = Vec::new();
        let mut failure = None;
        let mut next = Some(first);
        let mut entries = 0usize;
        while let Some(Queued { request, room }) = next.take() {
            entries += request.entries();
            let applied = self.apply(request).await;
            drop(room);
            match applied {
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
                let batches = pending
                    .iter()
                    .filter(|p| matches!(p.result, Ok(Response::Ack(_))))
                    .count();
                (self.stats.counters).committed(started.elapsed(), stored, batches as u64);
                tracing::trace!(requests = pending.len(), stored, "group committed");
                if let Some(id) = self.last_id.filter(|_| stored > 0) {
                    self.stats.committed.send_replace(id);
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
                self.stats.counters.commit_failed();
                let batches = pending.len();
                tracing::error!(error = %e, batches, "group commit failed and was rolled back; its agents will resend");
                for p in pending {
                    let result = match p.result {
                        Ok(Response::Ack(_)) => {
                            (self.stats.counters).rejected(Reason::storage, p.stored);
                            Err(Error::Storage)
                        }
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
                    (self.stats.counters).rejected(Reason::superseded, batch.entries.len() as u64);
                    return Ok(Pending::err(reply, Error::Superseded { machine_id }));
                }
                let host = match self.check_continuity(&machine_id, &batch) {
                    Ok(h) => h,
                    Err(e) => {
                        let n = batch.entries.len() as u64;
                        (self.stats.counters).rejected(Reason::failed_precondition, n);
                        return Ok(Pending::err(reply, e));
                    }
                };
                match self.store(&host, &machine_id, &batch).await {
                    Ok((state, stored)) => {
                        let ack = Ack {
                            seq: batch.seq,
                            cursor: state.cursor.clone(),
                            stored,
                        };
                        self.staged.insert(machine_id.to_string(), state);
                        Ok(Pending::ok(reply, Response::Ack(ack), stored))
                    }
                    Err(e) => Err((Pending::err(reply, Error::Storage), e)),
                }
            }
            Request::Heads { heads, reply } => match self.record_heads(heads).await {
                Ok(()) => Ok(Pending::ok(reply, Response::Recorded, 0)),
                Err(e) => Err((Pending::err(reply, Error::Storage), e)),
            },
        }
    }

    /// Records heartbeat heads of hosts whose session is still current.
    async fn record_heads(&mut self, heads: Vec<HeadReport>) -> Result<(), sqlx::Error> {
        for r in heads {
            if !self.sessions.is_current(&r.machine_id, r.generation) {
                continue;
            }
            let Some(host) = self
                .staged
                .get(&*r.machine_id)
                .or_else(|| self.hosts.get(&*r.machine_id))
            else {
                continue;
            };
            if let Some(state) = hosts::record_head(&mut self.conn, host, &r).await? {
                self.staged.insert(r.machine_id.to_string(), state);
            }
        }
        Ok(())
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

    /// Inserts the batch's entries, records its gaps and unit counts, and
    /// advances the host; returns the host's new state and the number of
    /// entries stored.
    async fn store(
        &mut self,
        host: &HostState,
        machine_id: &str,
        batch: &Batch,
    ) -> Result<(HostState, u64), sqlx::Error> {
        let (stored, last_id) = self
            .inserter
            .insert(
                &mut self.conn,
                &mut self.interner,
                host.id,
                machine_id,
                &batch.entries,
            )
            .await?;
        if last_id.is_some() {
            self.last_id = last_id;
        }
        hosts::count_units(&mut self.conn, host.id, self.inserter.unit_counts()).await?;
        gaps::record_batch(&mut self.conn, &mut self.interner, host.id, batch).await?;
        let state = hosts::advance(&mut self.conn, host, batch, stored).await?;
        Ok((state, stored))
    }
}

enum Next {
    Group(Queued),
    Job(retention::Job),
}

/// The next retention job; never ready when there is no retention queue
/// or it has closed.
async fn next_job(rx: &mut Option<mpsc::Receiver<retention::Job>>) -> Option<retention::Job> {
    match rx {
        Some(r) => match r.recv().await {
            Some(job) => Some(job),
            None => {
                *rx = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
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
            Request::Hello { reply, .. }
            | Request::Commit { reply, .. }
            | Request::Heads { reply, .. } => reply,
        };
        Pending::err(reply, Error::Storage)
    }
}
