//! The `Ingest` gRPC service: a thin adapter between an agent's stream and
//! the sessions registry and writer.
//!
//! A session reads Hello, is welcomed with the committed cursor, then
//! validates each Batch and hands it to the writer without waiting for
//! the commit: up to [`MAX_IN_FLIGHT`] batches per session are in the
//! writer at once. Their reply receivers wait in a queue in seq order, so
//! Acks go out in the order the batches came in. Any error ends the
//! session with one gRPC status (see `error`); other sessions go on.

use crate::db::heartbeats::Heartbeats;
use crate::db::hosts::{HeadReport, HostHello};
use crate::db::writer::{Request as WriterRequest, Response as WriterResponse, WriterHandle};
use crate::error::{quote, Error};
use crate::sessions::{Claim, Sessions};
use jr_journal::{cursor, fields};
use jr_proto::v1::ingest_server::Ingest;
use jr_proto::v1::ship_request::Kind as In;
use jr_proto::v1::ship_response::Kind as Out;
use jr_proto::v1::{Batch, Head, Hello, ShipRequest, ShipResponse, Welcome};
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Code, Request, Response, Status, Streaming};

/// Batches of one session inside the writer at once.
pub const MAX_IN_FLIGHT: usize = 16;
/// Responses buffered for a slow client before the session waits.
const RESPONSE_QUEUE: usize = MAX_IN_FLIGHT + 2;
/// Entries in one batch, whatever its size in bytes.
pub const MAX_BATCH_ENTRIES: usize = 65_536;
/// Longest hostname or agent version accepted in Hello.
const MAX_NAME: usize = 255;
/// How long a session that the server ended waits for the agent to close
/// its side of the stream.
const CLOSE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

/// Limits announced in Welcome and enforced on every batch.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_batch_entries: usize,
    /// Ingest sessions at once (`--max-sessions`).
    pub max_sessions: usize,
}

/// The service object tonic calls; cheap to clone.
#[derive(Clone)]
pub struct IngestService {
    writer: WriterHandle,
    sessions: Arc<Sessions>,
    limits: Limits,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// Heads reported outside batches, written in bulk.
    heartbeats: Arc<Heartbeats>,
    /// One permit per running session (`--max-sessions`).
    session_slots: Arc<tokio::sync::Semaphore>,
    /// Sessions, batches received and refused, for `/metrics`.
    counters: crate::metrics::Counters,
}

impl IngestService {
    pub fn new(
        writer: WriterHandle,
        sessions: Arc<Sessions>,
        limits: Limits,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> IngestService {
        let heartbeats = Arc::new(Heartbeats::default());
        heartbeats.spawn_flusher(writer.clone(), shutdown.clone(), &tasks);
        IngestService {
            writer,
            sessions,
            limits,
            shutdown,
            tasks,
            session_slots: Arc::new(tokio::sync::Semaphore::new(limits.max_sessions)),
            heartbeats,
            counters: Default::default(),
        }
    }

    /// Counts sessions and batches into `counters` (the server's metrics).
    pub fn with_counters(mut self, counters: crate::metrics::Counters) -> IngestService {
        self.counters = counters;
        self
    }
}

type ResponseTx = mpsc::Sender<Result<ShipResponse, Status>>;

#[tonic::async_trait]
impl Ingest for IngestService {
    type ShipStream = ReceiverStream<Result<ShipResponse, Status>>;

    async fn ship(
        &self,
        request: Request<Streaming<ShipRequest>>,
    ) -> Result<Response<Self::ShipStream>, Status> {
        let peer = request.remote_addr();
        let slot = self
            .session_slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| {
                Status::resource_exhausted(format!(
                    "jr-server already has {} ingest sessions (--max-sessions); retry later",
                    self.limits.max_sessions
                ))
            })?;
        let bound = request
            .extensions()
            .get::<crate::auth::Principal>()
            .cloned();
        let (tx, rx) = mpsc::channel(RESPONSE_QUEUE);
        let session = Session {
            bound,
            service: self.clone(),
            inbound: request.into_inner(),
            tx,
            next_seq: 1,
        };
        let counted = self.counters.session();
        self.tasks.spawn(async move {
            let _slot = slot;
            let _counted = counted;
            let mut session = session;
            let tx = session.tx.clone();
            if let Err(e) = session.run().await {
                let drain = matches!(e, Error::Storage | Error::ShuttingDown);
                match &e {
                    Error::ClientGone => tracing::debug!(?peer, "agent went away"),
                    Error::Storage | Error::ShuttingDown => {
                        tracing::info!(?peer, error = %e, "ingest session ended")
                    }
                    _ => tracing::warn!(?peer, error = %e, "ingest session refused"),
                }
                let _ = tx.send(Err(e.into())).await;
                drop(tx);
                if drain {
                    session.drain_inbound().await;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// The state of one agent's stream.
struct Session {
    /// The caller's credential, when authentication is on.
    bound: Option<crate::auth::Principal>,
    service: IngestService,
    inbound: Streaming<ShipRequest>,
    tx: ResponseTx,
    next_seq: u64,
}

/// Why reading from the agent stopped.
enum Inbound {
    Message(ShipRequest),
    /// The agent closed its side: answer what is in flight, then end.
    Closed,
}

impl Session {
    async fn run(&mut self) -> Result<(), Error> {
        let shutdown = self.service.shutdown.clone();
        let first = tokio::select! {
            m = self.next() => m?,
            _ = shutdown.cancelled() => return Err(Error::ShuttingDown),
        };
        let hello = match first {
            Inbound::Message(ShipRequest {
                kind: Some(In::Hello(h)),
            }) => check_binding(self.bound.as_ref(), check_hello(h)?)?,
            Inbound::Message(ShipRequest {
                kind: Some(In::Batch(_)),
            }) => {
                return Err(Error::FailedPrecondition(
                    "expected Hello before Batch".into(),
                ))
            }
            Inbound::Message(ShipRequest {
                kind: Some(In::Head(_)),
            }) => {
                return Err(Error::FailedPrecondition(
                    "expected Hello before Head".into(),
                ))
            }
            Inbound::Message(ShipRequest { kind: None }) => {
                return Err(Error::InvalidArgument(
                    "empty ShipRequest: expected Hello".into(),
                ))
            }
            Inbound::Closed => return Ok(()),
        };
        let hostname = hello.hostname.clone();
        let (claim, position) = self
            .service
            .sessions
            .open(&self.service.writer, hello)
            .await?;
        tracing::info!(
            machine_id = %claim.machine_id, %hostname, cursor = %position.cursor,
            known = position.known, "agent session started"
        );
        self.send(Out::Welcome(Welcome {
            cursor: position.cursor,
            known: position.known,
            max_batch_entries: u32::try_from(self.service.limits.max_batch_entries)
                .unwrap_or(u32::MAX),
            max_batch_bytes: self.service.limits.max_message_bytes as u64,
            packed_entries: true,
        }))
        .await?;
        self.batches(&claim).await
    }

    async fn batches(&mut self, claim: &Claim) -> Result<(), Error> {
        let shutdown = self.service.shutdown.clone();
        let mut pending: VecDeque<oneshot::Receiver<Result<WriterResponse, Error>>> =
            VecDeque::with_capacity(MAX_IN_FLIGHT);
        let mut reading = true;
        loop {
            if !reading && pending.is_empty() {
                break;
            }
            let can_read = reading && pending.len() < MAX_IN_FLIGHT;
            tokio::select! {
                biased;
                _ = claim.fenced.cancelled() => {
                    return Err(Error::Superseded { machine_id: claim.machine_id.to_string() });
                }
                // On shutdown stop reading; what is in flight still gets
                // its answer before the stream ends.
                _ = shutdown.cancelled(), if reading => reading = false,
                answer = front(&mut pending) => {
                    pending.pop_front();
                    match answer.map_err(|_| Error::ShuttingDown)?? {
                        WriterResponse::Ack(ack) => self.send(Out::Ack(ack)).await?,
                        WriterResponse::Position(_) | WriterResponse::Recorded => return Err(Error::Storage),
                    }
                }
                m = self.next(), if can_read => match m? {
                    Inbound::Closed => reading = false,
                    Inbound::Message(ShipRequest { kind: Some(In::Batch(mut b)) }) => {
                        let unpacked = crate::packed::unpack(&mut b, self.service.limits.max_message_bytes);
                        self.service.counters.received(b.entries.len());
                        unpacked.and_then(|()| self.check_batch(&b)).inspect_err(|e| {
                            if let Some(r) = crate::metrics::Reason::of(e) {
                                self.service.counters.rejected(r, b.entries.len() as u64);
                            }
                        })?;
                        let (machine_id, generation) = (claim.machine_id.clone(), claim.generation);
                        let rx = self
                            .service
                            .writer
                            .submit(|reply| WriterRequest::Commit { machine_id, generation, batch: b, reply })
                            .await?;
                        pending.push_back(rx);
                    }
                    Inbound::Message(ShipRequest { kind: Some(In::Head(h)) }) => {
                        self.heartbeat(claim, h)?;
                    }
                    Inbound::Message(ShipRequest { kind: Some(In::Hello(_)) }) => {
                        return Err(Error::FailedPrecondition(
                            "Hello may be sent only once, at the start of a session".into(),
                        ));
                    }
                    Inbound::Message(ShipRequest { kind: None }) => {
                        return Err(Error::InvalidArgument("empty ShipRequest".into()));
                    }
                },
            }
        }
        if shutdown.is_cancelled() {
            Err(Error::ShuttingDown)
        } else {
            Ok(())
        }
    }

    /// Reads and drops what the agent still sends until it closes its side
    /// (or [`CLOSE_DEADLINE`] passes). Dropping the request stream while
    /// the agent is still sending resets the HTTP/2 stream, and a reset can
    /// overtake the last acknowledgements and the final status on their
    /// way to the agent. Nothing would repeat (the agent resumes from the
    /// Welcome cursor) but its acknowledged position would lag the truth.
    async fn drain_inbound(&mut self) {
        let _ = tokio::time::timeout(CLOSE_DEADLINE, async {
            while let Ok(Some(_)) = self.inbound.message().await {}
        })
        .await;
    }

    /// The next message from the agent, with transport errors mapped.
    async fn next(&mut self) -> Result<Inbound, Error> {
        match self.inbound.message().await {
            Ok(Some(m)) => Ok(Inbound::Message(m)),
            Ok(None) => Ok(Inbound::Closed),
            Err(status) => Err(inbound_error(status, self.service.limits.max_message_bytes)),
        }
    }

    async fn send(&self, kind: Out) -> Result<(), Error> {
        self.tx
            .send(Ok(ShipResponse { kind: Some(kind) }))
            .await
            .map_err(|_| Error::ClientGone)
    }

    /// Keeps a reported head for the next bulk write.
    fn heartbeat(&self, claim: &Claim, h: Head) -> Result<(), Error> {
        if !h.cursor.is_empty() {
            cursor::validate(&h.cursor).map_err(|err| {
                Error::InvalidArgument(format!(
                    "Head.cursor {} is not a journal cursor: {err}",
                    quote(&h.cursor)
                ))
            })?;
        }
        self.service.heartbeats.report(HeadReport {
            machine_id: claim.machine_id.clone(),
            generation: claim.generation,
            cursor: h.cursor,
            realtime_usec: i64::try_from(h.realtime_usec).unwrap_or(i64::MAX),
            reported_usec: crate::db::hosts::now_usec(),
        });
        Ok(())
    }

    fn check_batch(&mut self, b: &Batch) -> Result<(), Error> {
        if b.seq != self.next_seq {
            return Err(Error::InvalidArgument(format!(
                "batch seq {} out of order: expected {}",
                b.seq, self.next_seq
            )));
        }
        self.next_seq += 1;
        let max = self.service.limits.max_batch_entries;
        if b.entries.len() > max {
            return Err(Error::TooLarge(format!(
                "batch {} has {} entries; the server accepts at most {max} per batch (--max-batch-entries)",
                b.seq,
                b.entries.len()
            )));
        }
        check_cursor(b.seq, "prev_cursor", &b.prev_cursor)?;
        check_cursor(b.seq, "last_cursor", &b.last_cursor)?;
        if let Some(h) = &b.head {
            check_cursor(b.seq, "head.cursor", &h.cursor)?;
        }
        if b.last_cursor.is_empty() && !b.entries.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "batch {} has entries but no last_cursor",
                b.seq
            )));
        }
        for (i, e) in b.entries.iter().enumerate() {
            cursor::validate(&e.cursor).map_err(|err| {
                Error::InvalidArgument(format!(
                    "batch {}, entry {i}: cursor {} is not a journal cursor: {err}",
                    b.seq,
                    quote(&e.cursor)
                ))
            })?;
            // Names go into export output and JSON keys as they are; the
            // readers only ever yield valid ones.
            if let Some(f) = e
                .fields
                .iter()
                .find(|f| !fields::is_valid_name(&f.name) || fields::is_address_field(&f.name))
            {
                return Err(Error::InvalidArgument(format!(
                    "batch {}, entry {i}: {:?} is not a journal field name \
                     (A-Z, 0-9 and _, at most 64, no leading digit; address fields like __CURSOR are not sent)",
                    b.seq,
                    String::from_utf8_lossy(&f.name[..f.name.len().min(80)])
                )));
            }
        }
        Ok(())
    }
}

/// Waits for the oldest in-flight batch's answer; never resolves when
/// nothing is in flight.
async fn front(
    pending: &mut VecDeque<oneshot::Receiver<Result<WriterResponse, Error>>>,
) -> Result<Result<WriterResponse, Error>, oneshot::error::RecvError> {
    match pending.front_mut() {
        Some(rx) => rx.await,
        None => std::future::pending().await,
    }
}

fn check_cursor(seq: u64, name: &str, c: &str) -> Result<(), Error> {
    if c.is_empty() {
        return Ok(());
    }
    cursor::validate(c).map(drop).map_err(|err| {
        Error::InvalidArgument(format!(
            "batch {seq}: {name} {} is not a journal cursor: {err}",
            quote(c)
        ))
    })
}

fn is_id128(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Validates Hello and normalises the ids to lowercase.
fn check_hello(h: Hello) -> Result<HostHello, Error> {
    if !is_id128(&h.machine_id) {
        return Err(Error::InvalidArgument(format!(
            "Hello.machine_id {} is not 32 hex digits like /etc/machine-id",
            quote(&h.machine_id)
        )));
    }
    if !h.boot_id.is_empty() && !is_id128(&h.boot_id) {
        return Err(Error::InvalidArgument(format!(
            "Hello.boot_id {} is not 32 hex digits (or empty)",
            quote(&h.boot_id)
        )));
    }
    if h.hostname.len() > MAX_NAME || h.agent_version.len() > MAX_NAME {
        return Err(Error::InvalidArgument(format!(
            "Hello.hostname and Hello.agent_version are limited to {MAX_NAME} bytes"
        )));
    }
    let machine_id = h.machine_id.to_ascii_lowercase();
    let hostname = if h.hostname.is_empty() {
        machine_id.clone()
    } else {
        h.hostname
    };
    Ok(HostHello {
        machine_id,
        hostname,
        boot_id: h.boot_id.to_ascii_lowercase(),
        agent_version: h.agent_version,
    })
}

/// An agent whose credential names a machine id may only say Hello as
/// that machine.
fn check_binding(
    principal: Option<&crate::auth::Principal>,
    hello: HostHello,
) -> Result<HostHello, Error> {
    match principal.and_then(|p| p.machine_id.as_deref().map(|m| (p, m))) {
        Some((p, bound)) if bound != hello.machine_id => Err(Error::PermissionDenied(format!(
            "{} may only ship as machine {bound}; Hello names machine {}",
            p.name, hello.machine_id
        ))),
        _ => Ok(hello),
    }
}

/// Maps a failure to read from the agent's stream.
fn inbound_error(status: Status, limit: usize) -> Error {
    match status.code() {
        Code::OutOfRange | Code::ResourceExhausted => Error::TooLarge(format!(
            "message too large for this server (limit {limit} bytes, --max-message-bytes): {}",
            status.message()
        )),
        Code::Internal | Code::InvalidArgument | Code::DataLoss => {
            Error::InvalidArgument(format!("malformed message: {}", status.message()))
        }
        _ => {
            tracing::debug!(%status, "agent stream broke");
            Error::ClientGone
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_needs_a_machine_id() {
        let h = Hello {
            machine_id: "not-an-id".into(),
            ..Hello::default()
        };
        let e = check_hello(h).unwrap_err();
        assert!(
            matches!(e, Error::InvalidArgument(ref m) if m.contains("not-an-id")),
            "{e}"
        );
        let h = Hello {
            machine_id: "AB".repeat(16),
            ..Hello::default()
        };
        let ok = check_hello(h).unwrap();
        assert_eq!(ok.machine_id, "ab".repeat(16));
        assert_eq!(ok.hostname, "ab".repeat(16));
    }
}
