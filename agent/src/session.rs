//! One session with the server: connect, Hello/Welcome, decide where to
//! start, then pump batches from a fresh reader and batcher while matching
//! acknowledgements.
//!
//! Flow control: at most `max_inflight` batches, and at most
//! `max_inflight × batch_bytes` encoded bytes, are sent and not yet
//! acknowledged; when the window is full the session stops taking batches,
//! which stops the batcher and the reader (journalctl on its pipe, the
//! native reader on its bounded channel).
//! Nothing is dropped: the journal is the buffer.
//!
//! Any failure ends the session (dropping the reader stops it);
//! the caller reconnects, and the server's Welcome cursor says where to
//! resume, so batches lost in flight are simply read again.

use crate::batch::{self, Batcher, BatcherItem, Limits, PendingBatch};
use crate::config::{AgentConfig, Compression, StartPosition, Validated};
use crate::head::{self, HeadGauge, JournalHead};
use crate::identity::Identity;
use crate::journal_reader;
use crate::metrics::Metrics;
use crate::reader::{ReaderError, ReaderOptions, StartAt};
use crate::state::{self, State};
use crate::wire::{self, Frame, FrameCodec};
use jr_journal::cursor::Cursor;
use jr_proto::v1::ingest_server::SERVICE_NAME;
use jr_proto::v1::{ship_request, ship_response, Hello, ShipRequest, ShipResponse, Welcome};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use thiserror::Error;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tonic::codec::{CompressionEncoding, Streaming};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server may take to answer Hello (it may first fence an
/// older session of this machine).
const WELCOME_TIMEOUT: Duration = Duration::from_secs(60);
/// How long shutdown waits for outstanding acknowledgements.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest server message accepted (acks and welcomes are small).
const MAX_DECODING: usize = 4 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum SessionError {
    #[error("cannot connect to {server}: {source}")]
    Connect {
        server: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error(transparent)]
    Channel(#[from] crate::channel::ChannelError),
    #[error("server error: {0}")]
    Status(#[from] tonic::Status),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("the server sent an invalid resume cursor {cursor:?}: {reason}")]
    BadServerCursor { cursor: String, reason: String },
    #[error("the server closed the stream")]
    ServerClosed,
    #[error("timed out waiting for the server's {0}")]
    Timeout(&'static str),
    #[error(transparent)]
    Reader(#[from] ReaderError),
}

/// How a session ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// `--no-follow`: everything read was acknowledged.
    Finished,
    /// The shutdown token fired.
    Shutdown,
}

/// Where the start position came from, for logs and for dropping a bad
/// state-file cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Server,
    StateFile,
    StartFlag,
}

/// Everything a session needs that outlives it.
#[derive(Debug)]
pub struct Context {
    pub config: AgentConfig,
    pub validated: Validated,
    pub identity: Identity,
    pub metrics: Arc<Metrics>,
    /// Journal head and acknowledged position, for the lag metric.
    pub head: Arc<HeadGauge>,
    /// When the agent started; `--start 1h` counts back from here.
    pub started_at: SystemTime,
    /// The server did not take packed batches: later sessions of this
    /// process compress the stream from the start.
    pub server_unpacked: AtomicBool,
}

/// What the caller learns from a session, error or not.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Sessions that failed in a row before this one (set by the caller),
    /// so recovery is logged when it happens.
    pub prior_failures: u64,
    /// At least one batch was acknowledged.
    pub progressed: bool,
    /// The start position's origin, once decided.
    pub origin: Option<Origin>,
    /// A reader was started.
    pub reader_started: bool,
    /// Log one line when the session is established: an outage was
    /// reported (set by the caller, see `outage`).
    pub announce_connect: bool,
    /// The server's Welcome arrived.
    pub connected: bool,
}

/// The session's start position.
fn start_from(
    welcome: &Welcome,
    saved: Option<&State>,
    start: StartPosition,
    started_at: SystemTime,
) -> Result<(StartAt, Origin), SessionError> {
    if !welcome.cursor.is_empty() {
        let c = welcome
            .cursor
            .parse::<Cursor>()
            .map_err(|e| SessionError::BadServerCursor {
                cursor: welcome.cursor.clone(),
                reason: e.to_string(),
            })?;
        return Ok((StartAt::After(c), Origin::Server));
    }
    if let Some(s) = saved {
        match s.cursor.parse::<Cursor>() {
            Ok(c) => return Ok((StartAt::After(c), Origin::StateFile)),
            Err(e) => {
                tracing::warn!(cursor = %s.cursor, error = %e, "ignoring the state file's invalid cursor")
            }
        }
    }
    let at = match start {
        StartPosition::Head => StartAt::Head,
        StartPosition::Tail => StartAt::Tail,
        StartPosition::Ago(d) => {
            StartAt::Since(started_at.checked_sub(d).unwrap_or(SystemTime::UNIX_EPOCH))
        }
    };
    Ok((at, Origin::StartFlag))
}

/// Opens the Ship stream on `channel`, sends Hello and waits for the
/// Welcome; `None` when shut down meanwhile.
async fn open_stream(
    ctx: &Context,
    shutdown: &CancellationToken,
    channel: tonic::transport::Channel,
    encoding: Option<CompressionEncoding>,
) -> Result<Option<(mpsc::Sender<Frame>, Streaming<ShipResponse>, Welcome)>, SessionError> {
    let cfg = &ctx.config;
    let bearer = crate::channel::ClientAuth::of(cfg).bearer()?;
    // The generated client's call with a codec that writes pre-encoded
    // requests (see `wire`).
    let mut client = tonic::client::Grpc::new(channel).max_decoding_message_size(MAX_DECODING);
    // Only requests are compressed: acknowledgements are a few bytes, and
    // accepting compressed responses would have the server compress each
    // one and this side set up a decompression context (megabytes of
    // window) for every acknowledgement.
    if let Some(enc) = encoding {
        client = client.send_compressed(enc);
    }

    // Hello goes into the request stream before the call, so a server
    // that waits for it before answering cannot deadlock with us.
    // Room for the window's batches plus one head heartbeat (sent only into
    // an empty channel, see `Pump::heartbeat`).
    let (requests, request_rx) = mpsc::channel::<Frame>(cfg.max_inflight + 2);
    let hello = Hello {
        machine_id: ctx.identity.machine_id.clone(),
        hostname: ctx.identity.hostname.clone(),
        boot_id: ctx.identity.boot_id.clone(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    requests
        .try_send(Frame::message(&ShipRequest {
            kind: Some(ship_request::Kind::Hello(hello)),
        }))
        .map_err(|_| SessionError::ServerClosed)?;
    let mut request = tonic::Request::new(ReceiverStream::new(request_rx));
    if let Some(b) = bearer {
        request.metadata_mut().insert("authorization", b);
    }
    request
        .extensions_mut()
        .insert(tonic::GrpcMethod::new(SERVICE_NAME, "Ship"));
    let call = tokio::time::timeout(WELCOME_TIMEOUT, async {
        client
            .ready()
            .await
            .map_err(|e| tonic::Status::unknown(format!("service was not ready: {e}")))?;
        client
            .streaming(request, wire::ship_path(), FrameCodec)
            .await
    });
    let mut inbound = tokio::select! {
        () = shutdown.cancelled() => return Ok(None),
        r = call => r.map_err(|_| SessionError::Timeout("response"))??.into_inner(),
    };
    let first = tokio::select! {
        () = shutdown.cancelled() => return Ok(None),
        m = tokio::time::timeout(WELCOME_TIMEOUT, inbound.message()) => m.map_err(|_| SessionError::Timeout("welcome"))??,
    };
    let welcome = match first {
        Some(ShipResponse {
            kind: Some(ship_response::Kind::Welcome(w)),
        }) => w,
        Some(other) => {
            return Err(SessionError::Protocol(format!(
                "expected Welcome, got {other:?}"
            )))
        }
        None => return Err(SessionError::ServerClosed),
    };
    Ok(Some((requests, inbound, welcome)))
}

/// Runs one session. `use_state_file` is false once the state file's
/// cursor proved unusable.
pub async fn run(
    ctx: &Context,
    shutdown: &CancellationToken,
    use_state_file: bool,
    outcome: &mut Outcome,
) -> Result<SessionEnd, SessionError> {
    let cfg = &ctx.config;
    let auth = crate::channel::ClientAuth::of(cfg);
    let endpoint = auth
        .endpoint(&cfg.server)?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
    let channel = tokio::select! {
        () = shutdown.cancelled() => return Ok(SessionEnd::Shutdown),
        c = endpoint.connect() => c.map_err(|source| SessionError::Connect { server: cfg.server.clone(), source })?,
    };
    // zstd batches are packed (see `batch`) on an uncompressed stream when
    // the server takes them; an older server gets a compressed stream.
    let packing = cfg.compression == Compression::Zstd && !ctx.server_unpacked.load(Relaxed);
    let encoding = match cfg.compression {
        Compression::Gzip => Some(CompressionEncoding::Gzip),
        Compression::Zstd if !packing => Some(CompressionEncoding::Zstd),
        Compression::Zstd | Compression::None => None,
    };
    let Some((mut requests, mut inbound, mut welcome)) =
        open_stream(ctx, shutdown, channel.clone(), encoding).await?
    else {
        return Ok(SessionEnd::Shutdown);
    };
    if packing && !welcome.packed_entries {
        ctx.server_unpacked.store(true, Relaxed);
        tracing::warn!(
            server = %cfg.server,
            "the server does not take packed batches (an older jr-server): \
             compressing the stream instead"
        );
        drop((requests, inbound));
        let Some(again) =
            open_stream(ctx, shutdown, channel, Some(CompressionEncoding::Zstd)).await?
        else {
            return Ok(SessionEnd::Shutdown);
        };
        (requests, inbound, welcome) = again;
    }
    let packing = packing && welcome.packed_entries;

    let _connected = ctx.metrics.connected();
    outcome.connected = true;
    if outcome.announce_connect {
        tracing::info!(
            server = %cfg.server,
            failed_attempts = outcome.prior_failures,
            "connected to the server again"
        );
    }

    let saved = match (&cfg.state_file, use_state_file && welcome.cursor.is_empty()) {
        (Some(path), true) => state::load(path, &ctx.identity.machine_id).await,
        _ => None,
    };
    let (start, origin) = start_from(&welcome, saved.as_ref(), cfg.start, ctx.started_at)?;
    outcome.origin = Some(origin);
    let limits = Limits {
        entries: cfg.batch_entries,
        bytes: cfg.batch_bytes,
        linger: cfg.linger,
    }
    .within(welcome.max_batch_entries, welcome.max_batch_bytes);
    tracing::info!(
        server = %cfg.server,
        machine_id = %ctx.identity.machine_id,
        server_cursor = %welcome.cursor,
        known = welcome.known,
        start = %start,
        origin = ?origin,
        "session started"
    );

    let reader = journal_reader::start(
        cfg.reader,
        &ReaderOptions {
            source: ctx.validated.source.clone(),
            start,
            follow: !cfg.no_follow,
            max_field_bytes: cfg.max_field_bytes,
        },
        &ctx.validated.filter,
        ctx.metrics.clone(),
    )
    .await?;
    tracing::debug!(reader = %reader.kind, "reader started");
    outcome.reader_started = true;
    let (events, reader_guard) = reader.into_parts();
    let (batch_tx, batches) = mpsc::channel::<BatcherItem>(1);
    let mut batcher = Batcher::new(
        limits,
        ctx.validated.filter.clone(),
        welcome.cursor.clone(),
        ctx.metrics.clone(),
    );
    if packing {
        batcher = batcher
            .packing()
            .map_err(|e| SessionError::Protocol(format!("cannot set up batch compression: {e}")))?;
    }
    let batcher_task = AbortOnDropHandle::new(tokio::spawn(batch::run(events, batch_tx, batcher)));
    let (heads, head_task) = head::spawn(
        ctx.validated.source.clone(),
        cfg.head_interval,
        ctx.head.clone(),
    );
    let mut heartbeat = tokio::time::interval(cfg.head_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let mut pump = Pump {
        ctx,
        requests,
        inbound,
        batches,
        inflight: VecDeque::new(),
        inflight_bytes: 0,
        byte_budget: limits.bytes.saturating_mul(cfg.max_inflight),
        state_file: cfg.state_file.clone(),
        outcome,
        heads,
        heartbeat,
    };
    let end = pump.run(shutdown).await;
    // Stop the reader before the batcher, so nothing is read for nobody.
    drop(reader_guard);
    drop(batcher_task);
    drop(head_task);
    end
}

struct Pump<'a> {
    ctx: &'a Context,
    requests: mpsc::Sender<Frame>,
    inbound: Streaming<ShipResponse>,
    batches: mpsc::Receiver<BatcherItem>,
    /// (seq, entries, bytes, last_cursor) of sent, unacknowledged batches.
    inflight: VecDeque<(u64, u64, usize, String)>,
    inflight_bytes: usize,
    byte_budget: usize,
    state_file: Option<PathBuf>,
    outcome: &'a mut Outcome,
    /// The journal's head, as the head task last found it.
    heads: tokio::sync::watch::Receiver<Option<JournalHead>>,
    /// When to send the head on its own.
    heartbeat: tokio::time::Interval,
}

impl Pump<'_> {
    fn window_open(&self, next: &PendingBatch) -> bool {
        self.inflight.is_empty()
            || (self.inflight.len() < self.ctx.config.max_inflight
                && self.inflight_bytes + next.bytes <= self.byte_budget)
    }

    fn head(&self) -> jr_proto::v1::Head {
        self.heads
            .borrow()
            .as_ref()
            .map(JournalHead::to_proto)
            .unwrap_or_default()
    }

    /// Sends the head on its own, as a heartbeat. Only into an empty
    /// request channel: when batches are queued they carry the head, and
    /// the channel keeps its room for the window's batches.
    fn heartbeat(&mut self) {
        if self.requests.capacity() == self.requests.max_capacity() {
            let head = self.head();
            let _ = self.requests.try_send(Frame::message(&ShipRequest {
                kind: Some(ship_request::Kind::Head(head)),
            }));
        }
    }

    fn send(&mut self, p: PendingBatch) -> Result<(), SessionError> {
        let head = Some(self.head()).filter(|h| !h.cursor.is_empty());
        let entries = p.entries;
        let seq = p.batch.seq;
        let last = p.batch.last_cursor.clone();
        let bytes = p.bytes;
        // The channel holds max_inflight + 1 and never more than the
        // window's batches are queued, so it cannot be full.
        self.requests
            .try_send(p.into_frame(head))
            .map_err(|_| SessionError::ServerClosed)?;
        self.inflight.push_back((seq, entries, bytes, last));
        self.inflight_bytes += bytes;
        let m = &self.ctx.metrics;
        Metrics::add(&m.shipped, entries);
        Metrics::add(&m.bytes_sent, bytes as u64);
        Ok(())
    }

    async fn on_response(&mut self, msg: Option<ShipResponse>) -> Result<(), SessionError> {
        let ack = match msg {
            Some(ShipResponse {
                kind: Some(ship_response::Kind::Ack(a)),
            }) => a,
            Some(other) => {
                return Err(SessionError::Protocol(format!(
                    "expected Ack, got {other:?}"
                )))
            }
            None => return Err(SessionError::ServerClosed),
        };
        let Some((seq, entries, bytes, last)) = self.inflight.pop_front() else {
            return Err(SessionError::Protocol(format!(
                "Ack for seq {} with no batch outstanding",
                ack.seq
            )));
        };
        if ack.seq != seq {
            return Err(SessionError::Protocol(format!(
                "Ack for seq {} while the oldest unacknowledged batch is {seq}",
                ack.seq
            )));
        }
        self.inflight_bytes -= bytes;
        Metrics::add(&self.ctx.metrics.acknowledged, entries);
        self.outcome.progressed = true;
        let cursor = if ack.cursor.is_empty() {
            last
        } else {
            ack.cursor
        };
        if let Ok(c) = cursor.parse::<Cursor>() {
            self.ctx.head.set_acked(c.realtime_usec);
        }
        if let (Some(path), false) = (&self.state_file, cursor.is_empty()) {
            let s = State {
                machine_id: self.ctx.identity.machine_id.clone(),
                cursor,
            };
            if let Err(e) = state::save(path, &s).await {
                tracing::warn!(path = %path.display(), error = %e, "cannot write the state file");
            }
        }
        Ok(())
    }

    async fn run(&mut self, shutdown: &CancellationToken) -> Result<SessionEnd, SessionError> {
        let mut pending: Option<PendingBatch> = None;
        let mut input_done = false;
        loop {
            if let Some(p) = pending.take() {
                if self.window_open(&p) {
                    self.send(p)?;
                } else {
                    pending = Some(p);
                }
            }
            if input_done && pending.is_none() && self.inflight.is_empty() {
                return Ok(self.finish().await);
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(self.drain().await),
                msg = self.inbound.message() => {
                    let msg = msg?;
                    self.on_response(msg).await?;
                }
                _ = self.heartbeat.tick() => self.heartbeat(),
                item = self.batches.recv(), if pending.is_none() && !input_done => match item {
                    Some(Ok(p)) => pending = Some(p),
                    Some(Err(e)) => return Err(e.into()),
                    None => input_done = true,
                },
            }
        }
    }

    /// Ends a `--no-follow` session: close our side, let the server close its.
    async fn finish(&mut self) -> SessionEnd {
        let (tx, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.requests, tx));
        let _ = tokio::time::timeout(Duration::from_secs(5), self.inbound.message()).await;
        SessionEnd::Finished
    }

    /// Shutdown: stop reading, wait (bounded) for outstanding acks.
    async fn drain(&mut self) -> SessionEnd {
        self.batches.close();
        let waiting = self.inflight.len();
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        while !self.inflight.is_empty() {
            match tokio::time::timeout_at(deadline, self.inbound.message()).await {
                Ok(Ok(msg)) => {
                    if let Err(e) = self.on_response(msg).await {
                        tracing::warn!(error = %e, "while waiting for acknowledgements at shutdown");
                        break;
                    }
                }
                Ok(Err(status)) => {
                    tracing::warn!(error = %status, "while waiting for acknowledgements at shutdown");
                    break;
                }
                Err(_) => {
                    tracing::warn!(
                        outstanding = self.inflight.len(),
                        "gave up waiting for acknowledgements at shutdown; they will be resent"
                    );
                    break;
                }
            }
        }
        if waiting > 0 && self.inflight.is_empty() {
            tracing::info!(
                batches = waiting,
                "outstanding batches acknowledged before shutdown"
            );
        }
        SessionEnd::Shutdown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: &str = "s=4f30609c77d9406e86aba8a29393cad7;i=1;b=0123456789abcdef0123456789abcdef;m=3e8;t=60a24181e4000;x=782928888f5f5546";

    #[test]
    fn start_prefers_server_then_state_then_flag() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        let known = Welcome {
            cursor: C.into(),
            known: true,
            ..Default::default()
        };
        let unknown = Welcome::default();
        let saved = State {
            machine_id: "m".into(),
            cursor: C.replace("i=1", "i=2"),
        };
        let (at, o) = start_from(&known, Some(&saved), StartPosition::Tail, now).unwrap();
        assert_eq!(
            (o, matches!(at, StartAt::After(c) if c.seqnum == 1)),
            (Origin::Server, true)
        );
        let (at, o) = start_from(&unknown, Some(&saved), StartPosition::Tail, now).unwrap();
        assert_eq!(
            (o, matches!(at, StartAt::After(c) if c.seqnum == 2)),
            (Origin::StateFile, true)
        );
        let (at, o) = start_from(&unknown, None, StartPosition::Tail, now).unwrap();
        assert_eq!((at, o), (StartAt::Tail, Origin::StartFlag));
        let (at, _) = start_from(
            &unknown,
            None,
            StartPosition::Ago(Duration::from_secs(100)),
            now,
        )
        .unwrap();
        assert_eq!(
            at,
            StartAt::Since(SystemTime::UNIX_EPOCH + Duration::from_secs(9_900))
        );
        let bad_saved = State {
            machine_id: "m".into(),
            cursor: "junk".into(),
        };
        let (at, _) = start_from(&unknown, Some(&bad_saved), StartPosition::Head, now).unwrap();
        assert_eq!(at, StartAt::Head);
        let garbage = Welcome {
            cursor: "junk".into(),
            known: true,
            ..Default::default()
        };
        assert!(matches!(
            start_from(&garbage, None, StartPosition::Head, now),
            Err(SessionError::BadServerCursor { .. })
        ));
    }
}
