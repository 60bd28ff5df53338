//! Bad input on the ingest stream: bytes that are not protobuf, a message
//! over the server's size limit, a batch before the hello, a garbage
//! cursor, a garbage machine id. Each ends that stream with a gRPC error
//! that says what was wrong, stores nothing, and the server goes on serving
//! a well-behaved agent.
//!
//! The client here is raw on purpose: a codec that sends whatever bytes the
//! test gives it, so malformed frames can be put on the wire.

use bytes::{BufMut, Bytes};
use jr_proto::v1::{
    ship_request, ship_response, Batch, Entry, Field, Hello, ShipRequest, ShipResponse,
};
use jr_tests::journalctl;
use jr_tests::{workdir, Agent, Db, Fixture, Host, Layout, Server};
use prost::Message;
use std::time::Duration;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::{Code, Status};

const SHIP_PATH: &str = "/journal_router.v1.Ingest/Ship";
/// The server runs with this limit; the oversized message is twice that.
const MAX_MESSAGE_BYTES: usize = 1 << 20;
const SESSION_TIMEOUT: Duration = Duration::from_secs(15);

/// Sends request bodies as given; decodes responses as `ShipResponse`.
#[derive(Clone, Copy, Default)]
struct RawCodec;

struct RawEncoder;
struct ResponseDecoder;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ShipResponse;
    type Encoder = RawEncoder;
    type Decoder = ResponseDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> ResponseDecoder {
        ResponseDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for ResponseDecoder {
    type Item = ShipResponse;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<ShipResponse>, Status> {
        ShipResponse::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(format!("test client cannot decode a response: {e}")))
    }
}

/// Opens a Ship stream, sends `bodies`, and returns what the server
/// answered until it ended the stream with an error.
async fn session(server: &Server, bodies: Vec<Bytes>) -> (Vec<ShipResponse>, Status) {
    let channel = tonic::transport::Channel::from_shared(server.url())
        .expect("server URL")
        .connect()
        .await
        .expect("connect to jr-server");
    let mut grpc = tonic::client::Grpc::new(channel);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    for body in bodies {
        tx.send(body).await.expect("queue a request body");
    }
    let run = async {
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        let mut stream = grpc
            .streaming(request, PathAndQuery::from_static(SHIP_PATH), RawCodec)
            .await?
            .into_inner();
        let mut answers = Vec::new();
        loop {
            match stream.message().await? {
                Some(answer) => answers.push(answer),
                None => return Ok::<_, Status>(answers),
            }
        }
    };
    // The request side stays open: the server must end the stream itself.
    let outcome = tokio::time::timeout(SESSION_TIMEOUT, run).await;
    drop(tx);
    match outcome {
        Err(_) => {
            panic!("the server neither answered nor ended the stream within {SESSION_TIMEOUT:?}")
        }
        Ok(Ok(answers)) => {
            panic!("the server ended the stream without an error; answers: {answers:?}")
        }
        Ok(Err(status)) => {
            eprintln!("bad input: {:?} {:?}", status.code(), status.message());
            (Vec::new(), status)
        }
    }
}

fn encode(kind: ship_request::Kind) -> Bytes {
    Bytes::from(ShipRequest { kind: Some(kind) }.encode_to_vec())
}

fn hello(machine_id: &str) -> Bytes {
    encode(ship_request::Kind::Hello(Hello {
        machine_id: machine_id.to_owned(),
        hostname: "bad-input".to_owned(),
        boot_id: "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0".to_owned(),
        agent_version: "test".to_owned(),
    }))
}

fn entry(cursor: &str, message: Vec<u8>) -> Entry {
    Entry {
        cursor: cursor.to_owned(),
        realtime_usec: 1_704_067_200_000_000,
        monotonic_usec: 1_000,
        fields: vec![
            Field {
                name: "MESSAGE".into(),
                value: Bytes::from(message),
            },
            Field {
                name: "PRIORITY".into(),
                value: Bytes::from_static(b"6"),
            },
        ],
    }
}

fn batch(cursor: &str, message: Vec<u8>) -> Bytes {
    encode(ship_request::Kind::Batch(Batch {
        seq: 1,
        prev_cursor: String::new(),
        last_cursor: cursor.to_owned(),
        entries: vec![entry(cursor, message)],
        gap_entries: 0,
        head: None,
        packed_entries: Vec::new(),
    }))
}

fn cursor(seqnum: u64) -> String {
    format!(
        "s=5e005e005e005e005e005e005e005e00;i={seqnum:x};b=b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0;m=3e8;t=60ddf8b7f8000;x=1234abcd"
    )
}

fn assert_code(status: &Status, allowed: &[Code], what: &str) {
    assert!(
        allowed.contains(&status.code()),
        "{what}: expected one of {allowed:?}, got {:?}: {:?}",
        status.code(),
        status.message()
    );
    assert!(
        !status.message().trim().is_empty(),
        "{what}: the error has no message"
    );
}

fn mentions(status: &Status, word: &str) -> bool {
    status.message().to_lowercase().contains(word)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_clearly_and_the_server_keeps_serving() {
    let work = workdir();
    let limit = MAX_MESSAGE_BYTES.to_string();
    let server = Server::start_with(work.path(), &["--max-message-bytes", &limit]).await;

    // Not protobuf: field 1 (hello) claims 16 bytes and carries 3.
    let (_, status) = session(&server, vec![Bytes::from_static(b"\x0a\x10abc")]).await;
    assert_code(
        &status,
        &[Code::InvalidArgument, Code::Internal],
        "malformed protobuf",
    );

    // Over the server's message limit.
    let (_, status) = session(
        &server,
        vec![
            hello("0123456789abcdef0123456789abcdef"),
            batch(&cursor(1), vec![b'x'; 2 * MAX_MESSAGE_BYTES]),
        ],
    )
    .await;
    assert_code(
        &status,
        &[
            Code::OutOfRange,
            Code::ResourceExhausted,
            Code::InvalidArgument,
        ],
        "oversized message",
    );

    // A batch before the hello.
    let (_, status) = session(&server, vec![batch(&cursor(1), b"too early".to_vec())]).await;
    assert_code(
        &status,
        &[Code::FailedPrecondition, Code::InvalidArgument],
        "batch before hello",
    );
    assert!(
        mentions(&status, "hello"),
        "the error names the missing hello: {:?}",
        status.message()
    );

    // An unknown machine's garbage cursor.
    let (_, status) = session(
        &server,
        vec![
            hello("fedcba9876543210fedcba9876543210"),
            batch("garbage;cursor", b"lost".to_vec()),
        ],
    )
    .await;
    assert_code(&status, &[Code::InvalidArgument], "garbage cursor");
    assert!(
        mentions(&status, "cursor"),
        "the error names the cursor: {:?}",
        status.message()
    );

    // A machine id that is not 32 hex digits.
    let (_, status) = session(&server, vec![hello("not a machine id")]).await;
    assert_code(&status, &[Code::InvalidArgument], "garbage machine id");
    assert!(
        mentions(&status, "machine"),
        "the error names the machine id: {:?}",
        status.message()
    );

    // Nothing from the bad sessions was stored, and a real agent still ships.
    let dir = work.path().join("journal");
    std::fs::create_dir(&dir).expect("journal directory");
    let host = Host::new("well-behaved");
    let mut fx = Fixture::new();
    for i in 0..20 {
        fx.entry(&host)
            .unit("good.service")
            .priority(6)
            .message(format!("good {i}"));
    }
    fx.write_new(&dir.join("system.journal"), Layout::Default);
    let mut agent = Agent::command(&server, work.path(), "well-behaved")
        .directory(&dir)
        .flag("--batch-bytes", "262144")
        .no_follow()
        .spawn();
    agent.wait_success(Duration::from_secs(60)).await;
    let db = Db::open(server.db_path()).await;
    if let Err(e) = db
        .holds_exactly(&journalctl::cursors_of_directory(&dir))
        .await
    {
        panic!("after the bad sessions: {e}");
    }
}

#[test]
fn responses_decode_with_the_raw_codec() {
    // The raw client must understand a real Welcome, or every session above
    // would fail for the wrong reason.
    let welcome = ShipResponse {
        kind: Some(ship_response::Kind::Welcome(jr_proto::v1::Welcome {
            cursor: cursor(7),
            known: true,
            max_batch_entries: 10,
            max_batch_bytes: 20,
            packed_entries: true,
        })),
    };
    let bytes = welcome.encode_to_vec();
    assert_eq!(
        ShipResponse::decode(bytes.as_slice()).expect("decode"),
        welcome
    );
}
