//! Requests of the ingest stream, encoded once, as they will be sent.
//!
//! The batcher encodes each entry into its batch's buffer as it reads it
//! and drops the decoded entry: a batch waiting for the window, or in the
//! request channel until tonic writes it, takes its encoded size (at most
//! `--batch-bytes`) instead of several times that as decoded entries,
//! each field a separate allocation. The stream therefore carries
//! [`Frame`]s, pre-encoded `ShipRequest` messages, through [`FrameCodec`];
//! the bytes on the wire are exactly those of the generated client.

use bytes::BufMut as _;
use jr_proto::v1::{Batch, ShipRequest, ShipResponse};
use prost::encoding::{encode_key, encode_varint, WireType};
use prost::Message as _;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::Status;

/// `ShipRequest.batch`'s field number.
const SHIP_REQUEST_BATCH: u32 = 2;
/// `Batch.entries`' field number.
pub const BATCH_ENTRIES: u32 = 4;

/// One encoded `ShipRequest`: `head`, then `body` (a batch's encoded
/// entries, kept apart so they are not copied once more).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frame {
    head: Vec<u8>,
    body: Vec<u8>,
}

impl Frame {
    /// A request without a batch (Hello, Head).
    pub fn message(request: &ShipRequest) -> Frame {
        Frame {
            head: request.encode_to_vec(),
            body: Vec::new(),
        }
    }

    /// A request carrying `batch` (whose `entries` are left empty) and the
    /// entries already encoded as `Batch.entries` fields.
    pub fn batch(batch: &Batch, entries: Vec<u8>) -> Frame {
        debug_assert!(batch.entries.is_empty());
        let batch_len = batch.encoded_len() + entries.len();
        let mut head = Vec::with_capacity(batch.encoded_len() + 11);
        encode_key(SHIP_REQUEST_BATCH, WireType::LengthDelimited, &mut head);
        encode_varint(batch_len as u64, &mut head);
        // Fields may come in any order: the batch's own fields first, its
        // entries after.
        batch
            .encode(&mut head)
            .expect("a Vec grows to fit the message");
        Frame {
            head,
            body: entries,
        }
    }

    /// Encoded size in bytes.
    pub fn len(&self) -> usize {
        self.head.len() + self.body.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The request as the server decodes it.
    pub fn decode(&self) -> Result<ShipRequest, prost::DecodeError> {
        let mut all = Vec::with_capacity(self.len());
        all.extend_from_slice(&self.head);
        all.extend_from_slice(&self.body);
        ShipRequest::decode(all.as_slice())
    }
}

/// Writes [`Frame`]s as they are; reads `ShipResponse`s with prost.
#[derive(Debug, Default, Clone, Copy)]
pub struct FrameCodec;

#[derive(Debug, Default, Clone, Copy)]
pub struct FrameEncoder;

impl Encoder for FrameEncoder {
    type Item = Frame;
    type Error = Status;

    fn encode(&mut self, item: Frame, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item.head);
        dst.put_slice(&item.body);
        Ok(())
    }
}

impl Codec for FrameCodec {
    type Encode = Frame;
    type Decode = ShipResponse;
    type Encoder = FrameEncoder;
    type Decoder = tonic_prost::ProstDecoder<ShipResponse>;

    fn encoder(&mut self) -> FrameEncoder {
        FrameEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstCodec::<ShipRequest, ShipResponse>::default().decoder()
    }
}

/// `/journal_router.v1.Ingest/Ship`, from the generated service name.
pub fn ship_path() -> tonic::codegen::http::uri::PathAndQuery {
    let path = format!("/{}/Ship", jr_proto::v1::ingest_server::SERVICE_NAME);
    tonic::codegen::http::uri::PathAndQuery::try_from(path)
        .expect("the generated service name is a valid path")
}

#[cfg(test)]
mod tests {
    use super::*;
    use jr_proto::v1::{ship_request, Entry, Field, Head, Hello};

    fn entry(i: u64) -> Entry {
        Entry {
            cursor: format!("c{i}"),
            realtime_usec: i,
            monotonic_usec: i,
            fields: vec![Field {
                name: "MESSAGE".into(),
                value: format!("m{i}").into_bytes().into(),
            }],
        }
    }

    #[test]
    fn a_batch_frame_is_the_request_prost_would_encode() {
        let entries: Vec<Entry> = (1..=3).map(entry).collect();
        let mut encoded = Vec::new();
        for e in &entries {
            prost::encoding::message::encode(BATCH_ENTRIES, e, &mut encoded);
        }
        let header = Batch {
            seq: 7,
            prev_cursor: "c0".into(),
            last_cursor: "c3".into(),
            entries: Vec::new(),
            gap_entries: 2,
            packed_entries: Vec::new(),
            head: Some(Head {
                cursor: "c9".into(),
                ..Default::default()
            }),
        };
        let frame = Frame::batch(&header, encoded);
        let whole = ShipRequest {
            kind: Some(ship_request::Kind::Batch(Batch {
                entries: entries.clone(),
                ..header
            })),
        };
        assert_eq!(frame.decode().unwrap(), whole);
        assert_eq!(frame.len(), whole.encoded_len());
    }

    #[test]
    fn other_requests_are_encoded_whole() {
        let hello = ShipRequest {
            kind: Some(ship_request::Kind::Hello(Hello {
                machine_id: "m".into(),
                ..Default::default()
            })),
        };
        let frame = Frame::message(&hello);
        assert_eq!(frame.decode().unwrap(), hello);
        assert_eq!(ship_path().as_str(), "/journal_router.v1.Ingest/Ship");
    }
}
