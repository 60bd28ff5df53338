//! The journal-router wire protocol, package `journal_router.v1`.
//!
//! Generated from the `.proto` files under `proto/`; this crate adds only
//! the encoded file descriptor set (for server reflection) and small
//! helpers that belong beside the generated types.

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("journal_router.v1");

    /// Encoded file descriptor set of every service, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("journal_router_descriptor");
}

impl v1::Field {
    /// A field from its name and value.
    pub fn new(name: impl Into<bytes::Bytes>, value: impl Into<bytes::Bytes>) -> v1::Field {
        v1::Field {
            name: name.into(),
            value: value.into(),
        }
    }

    /// The name as text. Names are checked to be UTF-8 wherever fields
    /// enter (the readers, ingest, stored rows); one that is not reads as
    /// empty rather than failing here.
    pub fn name_str(&self) -> &str {
        std::str::from_utf8(&self.name).unwrap_or_default()
    }
}
