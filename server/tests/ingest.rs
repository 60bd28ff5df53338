//! The ingest protocol against a real server and a real SQLite file.

mod common;

use common::*;
use jr_proto::v1::ship_request::Kind as In;
use jr_proto::v1::{Batch, Entry, Hello};
use prost::Message as _;
use sqlx::Row as _;
use tonic::Code;

#[tokio::test]
async fn round_trip_stores_exact_bytes() {
    round_trip(false).await;
}

#[tokio::test]
async fn packed_batches_store_the_same_bytes() {
    round_trip(true).await;
}

async fn round_trip(packed: bool) {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(&dir.path().join("j.db"))).await;
    let m = machine(1);
    let mut a = server.connect().await;
    let w = a.hello(&m).await;
    assert_eq!(w.cursor, "");
    assert!(!w.known);
    assert!(w.max_batch_entries > 0 && w.max_batch_bytes > 0);

    let binary = b"bin\0ary \xff\xfe not utf-8\n second line".to_vec();
    let realtime = 1_700_000_123_456_789;
    // An xor hash past i64::MAX must come back as the same unsigned hex.
    let special = Entry {
        cursor: cursor(7, realtime, 99, 0xfedc_ba98_7654_3210),
        realtime_usec: realtime,
        monotonic_usec: 99,
        fields: vec![
            field("_SYSTEMD_UNIT", b"init.scope"),
            field("UNIT", b"hello.service"),
            field("MESSAGE", &binary),
            field("MESSAGE", b"a second MESSAGE field"),
            field("PRIORITY", b"3"),
            field("_PID", b"1"),
            field("SYSLOG_IDENTIFIER", b"systemd"),
            field("CONTAINER_NAME", b"web-1"),
            field("BINARY_FIELD", b"\0\x01\x02"),
            // Values the row already has are stored as references to it;
            // another machine's id is not the host's and is kept as is.
            field("_BOOT_ID", BOOT.as_bytes()),
            field("_MACHINE_ID", m.as_bytes()),
            field("_MACHINE_ID", machine(9).as_bytes()),
        ],
    };
    // A cursor that parses but is not in sd-journal's canonical spelling
    // is stored whole.
    let mut odd = entry(8);
    odd.cursor = odd
        .cursor
        .to_uppercase()
        .replace("S=", "s=")
        .replace(";I=", ";i=")
        .replace(";B=", ";b=")
        .replace(";M=", ";m=")
        .replace(";T=", ";t=")
        .replace(";X=", ";x=");
    let sent = vec![entry(6), special.clone(), odd.clone()];
    let last = if packed {
        assert!(w.packed_entries);
        let content = jr_proto::v1::PackedEntries {
            entries: sent.clone(),
        }
        .encode_to_vec();
        let last = odd.cursor.clone();
        a.send(In::Batch(Batch {
            seq: 1,
            last_cursor: last.clone(),
            packed_entries: zstd::bulk::compress(&content, 1).unwrap(),
            ..Batch::default()
        }))
        .await;
        last
    } else {
        a.batch(1, "", sent.clone()).await
    };
    let ack = a.ack().await;
    assert_eq!(
        (ack.seq, ack.stored, ack.cursor.as_str()),
        (1, 3, last.as_str())
    );

    let pool = server.read().await;
    let rows = sqlx::query(
        "SELECT j.*, e.fields AS fields FROM journal j JOIN entries e ON e.id = j.id ORDER BY j.id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 3);
    for (row, e) in rows.iter().zip(&sent) {
        assert_eq!(
            row.get::<String, _>("cursor"),
            e.cursor,
            "cursor text survives"
        );
        assert_eq!(row.get::<i64, _>("realtime_usec") as u64, e.realtime_usec);
        assert_eq!(row.get::<String, _>("machine_id"), m);
        assert_eq!(row.get::<String, _>("host"), format!("host-{}", &m[..4]));
        let message: Option<Vec<u8>> = row.get("message");
        let fields: Vec<u8> = row.get("fields");
        let boot_id: Option<String> = row.get("boot_id");
        let values = jr_journal::stored::RowValues {
            message: message.as_deref(),
            boot_id: boot_id.as_deref().map(str::as_bytes),
            machine_id: Some(m.as_bytes()),
        };
        let decoded = jr_journal::stored::decode_fields(&fields, &values).unwrap();
        assert_eq!(decoded, e.fields, "every field, byte for byte");
    }
    let s = &rows[1];
    assert_eq!(s.get::<Vec<u8>, _>("message"), binary);
    assert_eq!(s.get::<String, _>("unit"), "init.scope");
    assert_eq!(s.get::<String, _>("about_unit"), "hello.service");
    assert_eq!(s.get::<String, _>("container"), "web-1");
    assert_eq!(s.get::<String, _>("identifier"), "systemd");
    assert_eq!(s.get::<i64, _>("priority"), 3);
    assert_eq!(s.get::<i64, _>("pid"), 1);
    assert_eq!(s.get::<String, _>("boot_id"), BOOT);
    let blob = s.get::<Vec<u8>, _>("fields");
    let holds = |text: &str| blob.windows(text.len()).any(|w| w == text.as_bytes());
    assert!(!holds(BOOT) && !holds(&m), "referred to, not repeated");
    assert!(holds(&machine(9)));
    assert_eq!(rows[0].get::<Vec<u8>, _>("message"), b"message 6");
    assert_eq!(rows[0].get::<String, _>("unit"), "test-0.service");
    assert_eq!(rows[0].get::<Option<String>, _>("about_unit"), None);

    // A second session for the machine is welcomed with the cursor.
    drop(a);
    let mut b = server.connect().await;
    let w = b.hello(&m).await;
    assert_eq!(w.cursor, last);
    assert!(w.known);
    let host: (i64, String) =
        sqlx::query_as("SELECT entries, cursor FROM hosts WHERE machine_id = ?")
            .bind(&m)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(host, (3, last));
    server.stop().await;
}

#[tokio::test]
async fn pipelined_batches_are_acked_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(&dir.path().join("j.db"))).await;
    let mut a = server.connect().await;
    a.hello(&machine(2)).await;
    let mut prev = String::new();
    for seq in 1..=10u64 {
        prev = a
            .batch(seq, &prev, entries(seq * 100..seq * 100 + 50))
            .await;
    }
    for seq in 1..=10u64 {
        let ack = a.ack().await;
        assert_eq!((ack.seq, ack.stored), (seq, 50));
    }
    assert_eq!(count(&server.read().await).await, 500);
    server.stop().await;
}

#[tokio::test]
async fn batch_before_hello_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(&dir.path().join("j.db"))).await;
    let mut a = server.connect().await;
    a.batch(1, "", entries(0..1)).await;
    let s = a.recv_error().await;
    assert_eq!(s.code(), Code::FailedPrecondition);
    assert!(s.message().contains("expected Hello before Batch"), "{s:?}");
    // The server still serves.
    let mut b = server.connect().await;
    b.hello(&machine(3)).await;
    server.stop().await;
}

#[tokio::test]
async fn bad_hello_and_garbage_cursors_are_invalid_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(&dir.path().join("j.db"))).await;

    let mut a = server.connect().await;
    a.send(In::Hello(Hello {
        machine_id: "my-laptop".into(),
        ..Hello::default()
    }))
    .await;
    let s = a.recv_error().await;
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(
        s.message().contains("my-laptop") && s.message().contains("machine_id"),
        "{s:?}"
    );

    // An unknown machine's garbage prev_cursor.
    let mut b = server.connect().await;
    b.hello(&machine(4)).await;
    b.send(In::Batch(Batch {
        seq: 1,
        prev_cursor: "garbage;cursor".into(),
        last_cursor: entry(1).cursor,
        entries: entries(1..2),
        gap_entries: 0,
        head: None,
        packed_entries: Vec::new(),
    }))
    .await;
    let s = b.recv_error().await;
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(s.message().contains("garbage;cursor"), "{s:?}");

    // A garbage cursor on an entry.
    let mut c = server.connect().await;
    c.hello(&machine(5)).await;
    let mut e = entry(1);
    e.cursor = "s=nope".into();
    c.batch(1, "", vec![e]).await;
    let s = c.recv_error().await;
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(s.message().contains("s=nope"), "{s:?}");

    // Out-of-order seq.
    let mut d = server.connect().await;
    d.hello(&machine(6)).await;
    d.batch(2, "", entries(1..2)).await;
    let s = d.recv_error().await;
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(s.message().contains("seq"), "{s:?}");

    // Field names that are not journal field names: not UTF-8, an `=`
    // that would break export output, an address field.
    for (m, name) in [
        (7, &b"BAD\xffNAME"[..]),
        (8, &b"A=B"[..]),
        (9, &b"__CURSOR"[..]),
    ] {
        let mut c = server.connect().await;
        c.hello(&machine(m)).await;
        let mut e = entry(1);
        e.fields
            .push(jr_proto::v1::Field::new(name.to_vec(), b"x".to_vec()));
        c.batch(1, "", vec![e]).await;
        let s = c.recv_error().await;
        assert_eq!(s.code(), Code::InvalidArgument, "{name:?}");
        assert!(
            s.message()
                .contains("not a journal field name (A-Z, 0-9 and _"),
            "{s:?}"
        );
    }

    assert_eq!(count(&server.read().await).await, 0, "nothing stored");
    server.stop().await;
}

#[tokio::test]
async fn oversized_message_is_refused_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&dir.path().join("j.db"));
    cfg.max_message_bytes = 64 * 1024;
    let server = TestServer::start(cfg).await;
    let mut a = server.connect().await;
    a.hello(&machine(7)).await;
    let mut big = entry(1);
    big.fields.push(field("BLOB", &vec![b'x'; 200 * 1024]));
    a.batch(1, "", vec![big]).await;
    let s = a.recv_error().await;
    assert!(
        matches!(s.code(), Code::ResourceExhausted | Code::OutOfRange),
        "{s:?}"
    );
    assert!(s.message().contains("too large"), "{s:?}");

    let mut b = server.connect().await;
    b.hello(&machine(8)).await;
    b.batch(1, "", entries(1..3)).await;
    assert_eq!(b.ack().await.stored, 2);
    assert_eq!(count(&server.read().await).await, 2);
    server.stop().await;
}

#[tokio::test]
async fn batch_not_continuing_the_committed_cursor_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(&dir.path().join("j.db"))).await;
    let m = machine(9);
    let mut a = server.connect().await;
    a.hello(&m).await;
    let committed = a.batch(1, "", entries(1..4)).await;
    a.ack().await;
    drop(a);

    let mut b = server.connect().await;
    assert_eq!(b.hello(&m).await.cursor, committed);
    // Continues from entry 1 instead of entry 3: would duplicate 2 and 3.
    b.batch(1, &entry(1).cursor, entries(2..6)).await;
    let s = b.recv_error().await;
    assert_eq!(s.code(), Code::FailedPrecondition);
    assert!(s.message().contains("committed cursor"), "{s:?}");
    assert_eq!(
        count(&server.read().await).await,
        3,
        "nothing of the refused batch"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_new_session_fences_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(&dir.path().join("j.db"))).await;
    let m = machine(10);
    let mut old = server.connect().await;
    old.hello(&m).await;
    let c1 = old.batch(1, "", entries(1..3)).await;
    old.ack().await;

    let mut new = server.connect().await;
    let w = new.hello(&m).await;
    assert_eq!(w.cursor, c1);
    let s = old.recv_error().await;
    assert_eq!(s.code(), Code::Aborted);
    assert!(
        s.message().contains("superseded") && s.message().contains(&m),
        "{s:?}"
    );
    // The old session's later batch is not stored.
    old.batch(2, &c1, entries(3..5)).await;

    let c2 = new.batch(1, &c1, entries(3..6)).await;
    let ack = new.ack().await;
    assert_eq!((ack.stored, ack.cursor.as_str()), (3, c2.as_str()));
    let pool = server.read().await;
    assert_eq!(count(&pool).await, 5);
    let distinct: i64 = sqlx::query_scalar("SELECT count(DISTINCT cursor) FROM journal")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(distinct, 5, "no entry twice");
    server.stop().await;
}

#[tokio::test]
async fn restart_welcomes_with_the_last_committed_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("j.db");
    let m = machine(11);
    let server = TestServer::start(config(&db)).await;
    let mut a = server.connect().await;
    a.hello(&m).await;
    let mut prev = String::new();
    for seq in 1..=3u64 {
        prev = a.batch(seq, &prev, entries(seq * 10..seq * 10 + 5)).await;
        a.ack().await;
    }
    server.stop().await;
    drop(a);

    let server = TestServer::start(config(&db)).await;
    let mut b = server.connect().await;
    let w = b.hello(&m).await;
    assert_eq!(w.cursor, prev);
    assert!(w.known);
    // A machine the server never stored anything for is unknown.
    let mut c = server.connect().await;
    let w = c.hello(&machine(12)).await;
    assert!(!w.known && w.cursor.is_empty());
    let next = b.batch(1, &prev, entries(100..101)).await;
    assert_eq!(b.ack().await.cursor, next);
    assert_eq!(count(&server.read().await).await, 16);
    server.stop().await;
}

#[tokio::test]
async fn health_and_reflection_are_served() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(&dir.path().join("j.db"))).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut h = HealthClient::new(channel.clone());
    let r = h
        .check(HealthCheckRequest {
            service: "journal_router.v1.Ingest".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let mut r = ServerReflectionClient::new(channel);
    let ask = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = r
        .server_reflection_info(tokio_stream::iter(vec![ask]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("expected a service list, got {answer:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"journal_router.v1.Ingest"), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
    server.stop().await;
}
